package io.homemlops

import com.cloudbees.groovy.cps.NonCPS

/** The home-mlops CLI exit codes (docs/cli-contract.md, pyhelpers/home_mlops/errors.py). */
class ExitCodes implements Serializable {
    private static final long serialVersionUID = 1L

    static final Map<Integer, String> MEANINGS = [
        0: 'ok',
        1: 'internal error in home-mlops (a bug: please report it)',
        2: 'bad input: a parameter failed validation, nothing was done',
        3: 'not found: run, experiment, model or image',
        4: 'build failed',
        5: 'push failed: registry unreachable or credentials refused',
        6: 'deploy failed: the previous deployment kept serving (rolled back)',
        7: 'a service home-mlops needs did not answer (tracking server, bucket, Docker daemon)',
        127: 'home-mlops not found on the agent (install it, or use ensureHelper: true / helperPath:)',
    ]

    @NonCPS
    static String meaning(int code) {
        String text = MEANINGS[code]
        return text != null ? text : 'unexpected exit code'
    }
}
