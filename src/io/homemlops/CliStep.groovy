package io.homemlops

/**
 * Runs one home-mlops CLI command for a library step (hmcts style: takes the
 * pipeline script as {@code steps}). Validation and reporting only: the work
 * is done by the CLI, which reads every value from the environment.
 */
class CliStep implements Serializable {
    private static final long serialVersionUID = 1L

    final def steps
    final String step       // e.g. bentoBuild
    final String command    // e.g. bento-build
    final String kind       // description label: bento, gateway, deploy
    final String jsonFile   // default result file
    final boolean buildStep // has --push/--force

    CliStep(def steps, String step, String command, String kind, String jsonFile, boolean buildStep) {
        this.steps = steps
        this.step = step
        this.command = command
        this.kind = kind
        this.jsonFile = jsonFile
        this.buildStep = buildStep
    }

    Map options(Map config) {
        Map defaults = StepOptions.defaults(jsonFile, steps.params, steps.env, buildStep)
        String problem = StepOptions.problem(step, config == null ? [:] : config, defaults)
        if (problem) {
            steps.error(problem)
        }
        return StepOptions.merge(defaults, config == null ? [:] : config)
    }

    Map run(Map config) {
        Map opts = options(config)
        if (opts.ensureHelper && !opts.helperPath) {
            ensureHelper(opts)
        }
        List<String> envList = CliEnv.build(opts)
        String script = CliEnv.script(command, opts, buildStep)
        int status = -1
        steps.withEnv(envList) {
            if (opts.registryCredentialsId) {
                steps.withCredentials([steps.usernamePassword(credentialsId: opts.registryCredentialsId,
                        usernameVariable: 'REGISTRY_USER', passwordVariable: 'REGISTRY_PASSWORD')]) {
                    status = steps.sh(script: script, returnStatus: true)
                }
            } else {
                status = steps.sh(script: script, returnStatus: true)
            }
        }
        Map result = readResult(opts.jsonFile.toString())
        if (status != 0) {
            String cliError = Summary.text(result?.error)
            String message = "${step}: home-mlops ${command} failed with exit code ${status} (${ExitCodes.meaning(status)})".toString()
            if (cliError) {
                message += ": ${cliError}"
            } else if (result == null) {
                message += "; no result file ${opts.jsonFile} was written, see the log above"
            }
            steps.currentBuild.description = Summary.append(steps.currentBuild.description, "${kind}: FAILED (exit ${status})".toString())
            steps.error(message)
        }
        if (result == null) {
            steps.error("${step}: home-mlops ${command} exited 0 but wrote no result file ${opts.jsonFile}".toString())
        }
        steps.currentBuild.description = Summary.append(steps.currentBuild.description, Summary.line(kind, result))
        return result
    }

    private Map readResult(String file) {
        if (!steps.fileExists(file)) {
            return null
        }
        def parsed = steps.readJSON(file: file)
        return (parsed instanceof Map) ? (Map) parsed : null
    }

    /** Writes the ensure-helper resource to the workspace and runs it (single-quoted, values via env). */
    private void ensureHelper(Map opts) {
        steps.writeFile(file: CliEnv.ENSURE_SCRIPT, text: steps.libraryResource('io/homemlops/ensure-helper.sh'))
        List<String> envList = ["HOME_MLOPS_SPEC=${opts.helperSpec ?: ''}".toString()]
        steps.withEnv(envList) {
            int rc = steps.sh(script: 'bash .home-mlops/ensure-helper.sh', returnStatus: true)
            if (rc != 0) {
                steps.error("${step}: could not provide home-mlops on this agent (ensure-helper.sh exit ${rc}); install it on the agent, or set helperSpec: to a pip requirement (path, git URL)".toString())
            }
        }
    }
}
