import io.homemlops.CliStep

/**
 * bentoBuild: runs `home-mlops bento-build` for the job's app and run.
 * See bentoBuild.txt for the options. Returns the CLI's JSON result as a map.
 */
def call(Map config = [:]) {
    return new CliStep(this, 'bentoBuild', 'bento-build', 'bento', 'home-mlops-bento.json', true).run(config)
}
