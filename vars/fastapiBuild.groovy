import io.homemlops.CliStep
import io.homemlops.StepSpec

/**
 * fastapiBuild: runs `home-mlops fastapi-build` for the job's app and run.
 * See fastapiBuild.txt for the options. Returns the CLI's JSON result as a map.
 */
def call(Map config = [:]) {
    return new CliStep(this, StepSpec.FASTAPI_BUILD).run(config)
}
