package io.homemlops

import com.cloudbees.groovy.cps.NonCPS

/**
 * The app's serving mode (issue 16) as the Jenkinsfile sees it: env.HOME_MLOPS_SERVING,
 * set per job by Jenkins Job Builder (EnvInject) from jobs/projects.yaml; unset or empty
 * means bento+gateway. It only decides which build stages run (`when`), so the stages a
 * mode does not need show as skipped. The CLI owns the mode's validation: a value that is
 * not a mode runs both builds, and bento-build refuses it (exit 2, naming the setting).
 */
class Serving implements Serializable {
    private static final long serialVersionUID = 1L

    static final String ENV = 'HOME_MLOPS_SERVING'
    static final String DEFAULT = 'bento+gateway'

    @NonCPS
    static String mode(Object value) {
        String given = value == null ? '' : value.toString()
        return given ? given : DEFAULT
    }

    /** The mode uses a BentoML model server image (bento, bento+gateway): stage 'Build bento'. */
    @NonCPS
    static boolean buildsBento(Object value) {
        return mode(value) != 'fastapi'
    }

    /** The mode uses a FastAPI image, the gateway or the standalone server (bento+gateway, fastapi): stage 'Build gateway'. */
    @NonCPS
    static boolean buildsFastapi(Object value) {
        return mode(value) != 'bento'
    }
}
