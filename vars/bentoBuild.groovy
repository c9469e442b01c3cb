import io.homemlops.CliStep
import io.homemlops.StepSpec

/**
 * bentoBuild: runs `home-mlops bento-build` for the job's app and run.
 * See bentoBuild.txt for the options. Returns the CLI's JSON result as a map.
 */
def call(Map config = [:]) {
    return new CliStep(this, StepSpec.BENTO_BUILD).run(config)
}
