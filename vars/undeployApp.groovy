import io.homemlops.CliStep
import io.homemlops.StepSpec

/**
 * undeployApp: runs `home-mlops undeploy --app` for the job's app, under the app's
 * port lock. See undeployApp.txt for the options. Returns the CLI's JSON result as a map.
 */
def call(Map config = [:]) {
    return new CliStep(this, StepSpec.UNDEPLOY).run(config)
}
