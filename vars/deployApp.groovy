import io.homemlops.CliStep

/**
 * deployApp: runs `home-mlops deploy` for the job's app and run.
 * See deployApp.txt for the options. Returns the CLI's JSON result as a map.
 */
def call(Map config = [:]) {
    return new CliStep(this, 'deployApp', 'deploy', 'deploy', 'home-mlops-deploy.json', false).run(config)
}
