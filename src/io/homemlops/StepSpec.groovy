package io.homemlops

/**
 * What distinguishes one home-mlops library step from another: the CLI command,
 * the result file, which options it takes, whether it talks to a registry and
 * whether it holds the app's port lock. One record per step, used by CliStep.
 */
class StepSpec implements Serializable {
    private static final long serialVersionUID = 1L

    final String step          // e.g. bentoBuild
    final String command       // e.g. bento-build
    final String kind          // description label: bento, gateway, deploy, undeploy
    final String jsonFile      // default result file
    final List<String> jobParameters  // options that default from job parameters (StepOptions.PARAMETER_ENV)
    final boolean buildStep    // has push/force
    final boolean deploySettings      // has port/bind/cpus/... (StepOptions.DEPLOY_ENV)
    final boolean locksPort    // runs under lock(resource: 'home-mlops-port-<port>')
    final boolean usesRegistry // pulls or pushes images (a build step only when it pushes)
    final boolean appFlag      // the command takes --app (the others read APP_NAME from the environment)
    final boolean takesFrom    // option from: an earlier step's result file (HOME_MLOPS_FROM), no second resolve

    static final List<String> ALL_PARAMETERS = ['app', 'experimentId', 'runId', 'nas', 'registry']

    static final StepSpec BENTO_BUILD = new StepSpec(step: 'bentoBuild', command: 'bento-build', kind: 'bento',
            jsonFile: 'home-mlops-bento.json', jobParameters: ALL_PARAMETERS, buildStep: true, usesRegistry: true,
            takesFrom: true)
    static final StepSpec FASTAPI_BUILD = new StepSpec(step: 'fastapiBuild', command: 'fastapi-build', kind: 'gateway',
            jsonFile: 'home-mlops-gateway.json', jobParameters: ALL_PARAMETERS, buildStep: true, usesRegistry: true,
            takesFrom: true)
    static final StepSpec DEPLOY = new StepSpec(step: 'deployApp', command: 'deploy', kind: 'deploy',
            jsonFile: 'home-mlops-deploy.json', jobParameters: ALL_PARAMETERS, deploySettings: true, locksPort: true,
            usesRegistry: true, takesFrom: true)
    // undeploy names the app only; it talks to Docker, never to a registry
    static final StepSpec UNDEPLOY = new StepSpec(step: 'undeployApp', command: 'undeploy', kind: 'undeploy',
            jsonFile: 'home-mlops-undeploy.json', jobParameters: ['app'], locksPort: true, appFlag: true)

    StepSpec(Map fields) {
        this.step = fields.step
        this.command = fields.command
        this.kind = fields.kind
        this.jsonFile = fields.jsonFile
        this.jobParameters = fields.jobParameters
        this.buildStep = fields.buildStep ?: false
        this.deploySettings = fields.deploySettings ?: false
        this.locksPort = fields.locksPort ?: false
        this.usesRegistry = fields.usesRegistry ?: false
        this.appFlag = fields.appFlag ?: false
        this.takesFrom = fields.takesFrom ?: false
    }
}
