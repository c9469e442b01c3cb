package io.homemlops

import com.cloudbees.groovy.cps.NonCPS

/**
 * Builds the withEnv list through which option values reach the CLI.
 * Values are never pasted into a shell string: the sh scripts are constants
 * that read these variables.
 */
class CliEnv implements Serializable {
    private static final long serialVersionUID = 1L

    /** Where the ensure-helper resource puts (a link to) the CLI, relative to the workspace. */
    static final String ENSURED_HELPER = '.home-mlops/bin/home-mlops'
    static final String ENSURE_SCRIPT = '.home-mlops/ensure-helper.sh'

    @NonCPS
    static List<String> build(Map options) {
        List<String> envList = []
        for (String option : StepOptions.PARAMETER_ENV.keySet()) {
            if (options.containsKey(option)) {
                Object value = options[option]
                envList.add("${StepOptions.PARAMETER_ENV[option]}=${value == null ? '' : value}".toString())
            }
        }
        // deploy settings only when set: an unset one leaves the CLI its own default
        // (the app's entry in jobs/projects.yaml, then the built-in one)
        for (String option : StepOptions.DEPLOY_ENV.keySet()) {
            if (options[option]) {
                envList.add("${StepOptions.DEPLOY_ENV[option]}=${options[option]}".toString())
            }
        }
        if (options.trackingUri) {
            envList.add("MLFLOW_TRACKING_URI=${options.trackingUri}".toString())
        }
        if (options.from) {
            // an earlier step's result file: the CLI takes the resolved run from it instead of resolving again
            envList.add("${StepOptions.FROM_ENV}=${options.from}".toString())
        }
        envList.add("HOME_MLOPS_JSON=${options.jsonFile}".toString())
        String helper = helperPath(options)
        if (helper) {
            envList.add("HOME_MLOPS_BIN=${helper}".toString())
        }
        return envList
    }

    @NonCPS
    static String helperPath(Map options) {
        if (options.helperPath) {
            return options.helperPath.toString()
        }
        if (options.ensureHelper) {
            return ENSURED_HELPER
        }
        return ''
    }

    /**
     * The sh script: a constant chosen from fixed pieces, never containing a value.
     * rm first so that a stale result from an earlier build is never read back.
     */
    @NonCPS
    static String script(StepSpec spec, Map options) {
        String exe = helperPath(options) ? '"$HOME_MLOPS_BIN"' : 'home-mlops'
        String line = 'rm -f -- "$HOME_MLOPS_JSON" && ' + exe + ' ' + spec.command
        if (spec.appFlag) {
            // the CLI's other commands read APP_NAME themselves; --app=VALUE keeps a value
            // that starts with '-' a value, never an option
            line += ' --app="$APP_NAME"'
        }
        line += ' --json "$HOME_MLOPS_JSON"'
        if (spec.buildStep) {
            if (!options.push) {
                line += ' --no-push'
            }
            if (options.force) {
                line += ' --force'
            }
        }
        return line
    }
}
