import io.homemlops.CliStep
import io.homemlops.StepSpec

/**
 * deployApp: runs `home-mlops deploy` for the job's app and run, with the app's deploy
 * settings (HOME_MLOPS_PORT, ... from the job's environment), under lock(resource:
 * 'home-mlops-port-<port>').
 * See deployApp.txt for the options. Returns the CLI's JSON result as a map.
 */
def call(Map config = [:]) {
    return new CliStep(this, StepSpec.DEPLOY).run(config)
}
