package io.homemlops

/**
 * Runs one home-mlops CLI command for a library step (hmcts style: takes the
 * pipeline script as {@code steps}). Validation and reporting only: the work
 * is done by the CLI, which reads every value from the environment.
 */
class CliStep implements Serializable {
    private static final long serialVersionUID = 1L

    final def steps
    final StepSpec spec

    CliStep(def steps, StepSpec spec) {
        this.steps = steps
        this.spec = spec
    }

    Map options(Map config) {
        Map defaults = StepOptions.defaults(spec, steps.params, steps.env)
        String problem = StepOptions.problem(spec.step, config == null ? [:] : config, defaults)
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
        String script = CliEnv.script(spec, opts)
        String credentialsId = registryCredentialsId(opts)
        String kubeconfigId = (opts.kubeconfigCredentials ?: '').toString()
        int status = -1
        steps.withEnv(envList) {
            if (spec.locksPort) {
                // one deploy per port at a time across every job of this Jenkins (issue 13)
                steps.lock(resource: StepOptions.lockResource(opts)) {
                    if (opts.milestone) {
                        // inside the lock: of two builds of one job queued on it, an older one that
                        // gets it after a newer one is cancelled here (NOT_BUILT) instead of deploying over it
                        steps.milestone(label: "${spec.step} ${opts.app}".toString())
                    }
                    status = runScript(script, credentialsId, kubeconfigId)
                }
            } else {
                status = runScript(script, credentialsId, kubeconfigId)
            }
        }
        Map result = readResult(opts.jsonFile.toString())
        if (status != 0) {
            String cliError = Summary.text(result?.error)
            String message = "${spec.step}: home-mlops ${spec.command} failed with exit code ${status} (${ExitCodes.meaning(status)})".toString()
            if (cliError) {
                message += ": ${cliError}"
            } else if (result == null) {
                message += "; no result file ${opts.jsonFile} was written, see the log above"
            }
            steps.currentBuild.description = Summary.append(steps.currentBuild.description, "${spec.kind}: FAILED (exit ${status})".toString())
            steps.error(message)
        }
        if (result == null) {
            steps.error("${spec.step}: home-mlops ${spec.command} exited 0 but wrote no result file ${opts.jsonFile}".toString())
        }
        steps.currentBuild.description = Summary.append(steps.currentBuild.description, Summary.line(spec.kind, result))
        return result
    }

    /**
     * The credentials to bind: only for a step that contacts the registry, and only
     * when AR_NAME's host has a mapping (a foreign host never gets a password).
     */
    private String registryCredentialsId(Map opts) {
        if (!spec.usesRegistry || (spec.buildStep && !opts.push)) {
            return ''
        }
        String host = RegistryCredentials.host(opts.registry.toString())
        String id = RegistryCredentials.idFor((Map) opts.registryCredentials, opts.registry.toString())
        if (id) {
            steps.echo("${spec.step}: registry ${host}: binding credentials '${id}'".toString())
        } else {
            steps.echo("${spec.step}: registry ${host}: no credentials mapped to this host, none bound (registryCredentials / ${RegistryCredentials.ENV})".toString())
        }
        return id
    }

    // not private: it is called from closures (lock), and CPS closures cannot always reach private methods
    int runScript(String script, String credentialsId, String kubeconfigId) {
        List bindings = []
        if (credentialsId) {
            bindings.add(steps.usernamePassword(credentialsId: credentialsId,
                    usernameVariable: 'REGISTRY_USER', passwordVariable: 'REGISTRY_PASSWORD'))
        }
        if (kubeconfigId) {
            bindings.add(steps.file(credentialsId: kubeconfigId, variable: 'KUBECONFIG'))
        }
        if (bindings.isEmpty()) {
            return steps.sh(script: script, returnStatus: true)
        }
        int status = -1
        steps.withCredentials(bindings) {
            status = steps.sh(script: script, returnStatus: true)
        }
        return status
    }

    private Map readResult(String file) {
        if (!steps.fileExists(file)) {
            return null
        }
        // returnPojo: plain LinkedHashMap/ArrayList with real nulls, not json-lib's JSONObject/JSONNull
        def parsed = steps.readJSON(file: file, returnPojo: true)
        return (parsed instanceof Map) ? (Map) parsed : null
    }

    /** Writes the ensure-helper resource to the workspace and runs it (single-quoted, values via env). */
    private void ensureHelper(Map opts) {
        steps.writeFile(file: CliEnv.ENSURE_SCRIPT, text: steps.libraryResource('io/homemlops/ensure-helper.sh'))
        List<String> envList = ["HOME_MLOPS_SPEC=${opts.helperSpec ?: ''}".toString()]
        steps.withEnv(envList) {
            int rc = steps.sh(script: 'bash .home-mlops/ensure-helper.sh', returnStatus: true)
            if (rc != 0) {
                steps.error("${spec.step}: could not provide home-mlops on this agent (ensure-helper.sh exit ${rc}); install it on the agent, or set helperSpec: to a pip requirement (path, git URL)".toString())
            }
        }
    }
}
