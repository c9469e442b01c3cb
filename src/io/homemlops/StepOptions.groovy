package io.homemlops

import com.cloudbees.groovy.cps.NonCPS

/**
 * Option handling shared by the home-mlops steps: defaults, known keys,
 * required keys and types. Pure data in, data out (no steps object), so it is
 * CPS-safe (plain for loops, no closures) and trivially testable.
 */
class StepOptions implements Serializable {
    private static final long serialVersionUID = 1L

    static final String DEFAULT_REGISTRY = '127.0.0.1:5000/home-mlops'

    /** Options that hold one of the five job parameters: option -> environment variable. */
    static final Map<String, String> PARAMETER_ENV = [
        app         : 'APP_NAME',
        experimentId: 'EXPERIMENT_ID',
        runId       : 'RUN_ID',
        nas         : 'NAS',
        registry    : 'AR_NAME',
    ]

    /**
     * Per-app deploy settings: option -> environment variable of the CLI (docs/cli-contract.md).
     * Jenkins Job Builder puts them into the job's environment (jobs/projects.yaml).
     */
    static final Map<String, String> DEPLOY_ENV = [
        port        : 'HOME_MLOPS_PORT',
        bind        : 'HOME_MLOPS_BIND',
        cpus        : 'HOME_MLOPS_CPUS',
        memory      : 'HOME_MLOPS_MEMORY',
        readyTimeout: 'HOME_MLOPS_READY_TIMEOUT',
        target      : 'HOME_MLOPS_TARGET',
        serving     : 'HOME_MLOPS_SERVING',
    ]

    /**
     * Jenkins-wide: the id of a secret-file credential holding the kubeconfig of the
     * cluster, bound as KUBECONFIG around deploy/undeploy only when the app's target is k8s.
     */
    static final String KUBECONFIG_CREDENTIALS_ENV = 'HOME_MLOPS_KUBECONFIG_CREDENTIALS'

    /** The CLI variable of option from: (docs/cli-contract.md, --from PATH). */
    static final String FROM_ENV = 'HOME_MLOPS_FROM'

    static final List<String> BOOLEAN_OPTIONS = ['push', 'force', 'ensureHelper', 'milestone']
    static final List<String> MAP_OPTIONS = ['registryCredentials']
    // a port is digits only: it names the Jenkins lock resource before the CLI sees it
    private static final String PORT = /[0-9]{1,5}/

    /**
     * The defaults of one step. Job parameters and deploy settings come from
     * {@code params} first, then from {@code env} (Jenkins exposes parameters in both).
     */
    @NonCPS
    static Map defaults(StepSpec spec, Object params, Object env) {
        Map d = [:]
        for (String option : spec.jobParameters) {
            String var = PARAMETER_ENV[option]
            d[option] = firstNonNull(lookup(params, var), lookup(env, var), '')
        }
        if (d.containsKey('registry') && !d.registry) {
            d.registry = DEFAULT_REGISTRY
        }
        for (String option : settingOptions(spec)) {
            d[option] = firstNonNull(lookup(env, DEPLOY_ENV[option]), '')
        }
        if (spec.usesRegistry) {
            d.registryCredentials = RegistryCredentials.fromEnv(env)
        }
        if (spec.jobParameters.contains('runId')) {
            d.trackingUri = firstNonNull(lookup(env, 'MLFLOW_TRACKING_URI'), '')
        }
        d.jsonFile = spec.jsonFile
        d.helperPath = ''
        d.helperSpec = ''
        d.ensureHelper = false
        if (spec.buildStep) {
            d.push = true
            d.force = false
        }
        if (spec.takesFrom) {
            d.from = ''
        }
        if (spec.deploySettings) {
            d.milestone = false
        }
        if (spec.locksPort) {
            // a kubeconfig only for a k8s deploy (docs/kubernetes.md); an agent inside the
            // cluster (service account) or with its own ~/.kube/config needs none
            boolean k8s = firstNonNull(lookup(env, DEPLOY_ENV.target), '').toString() == 'k8s'
            d.kubeconfigCredentials = k8s ? firstNonNull(lookup(env, KUBECONFIG_CREDENTIALS_ENV), '') : ''
        }
        return d
    }

    /** The deploy-setting options a step takes: all of them for deploy, the port (its lock) for undeploy. */
    @NonCPS
    static List<String> settingOptions(StepSpec spec) {
        if (spec.deploySettings) {
            return new ArrayList<String>(DEPLOY_ENV.keySet())
        }
        return spec.locksPort ? ['port'] : []
    }

    /** The Jenkins lock resource of a step that holds the app's port. */
    @NonCPS
    static String lockResource(Map options) {
        // the number, not its spelling: 08002 and 8002 are one port (problem() checked the digits)
        String port = options.port ? Integer.parseInt(options.port.toString()).toString() : 'default'
        return "home-mlops-port-${port}".toString()
    }

    @NonCPS
    static List<String> required() {
        // a step checks those of these it has (undeploy has no experimentId, runId nor registry)
        return ['app', 'experimentId', 'runId', 'registry', 'jsonFile']
    }

    /**
     * Checks {@code config} against {@code defaults}; returns the error text
     * (starting with the step name) or null when the options are fine.
     */
    @NonCPS
    static String problem(String step, Map config, Map defaults) {
        List<String> known = new ArrayList<String>(defaults.keySet())
        Collections.sort(known)
        String knownText = known.join(', ')
        for (Object key : config.keySet()) {
            if (!(key instanceof CharSequence) || !defaults.containsKey(key.toString())) {
                return "${step}: unknown option '${key}'; known: ${knownText}".toString()
            }
        }
        for (Object key : config.keySet()) {
            String name = key.toString()
            Object value = config[key]
            if (value == null) {
                continue
            }
            if (BOOLEAN_OPTIONS.contains(name) && !(value instanceof Boolean)) {
                return "${step}: option '${name}' must be true or false, got a ${value.getClass().simpleName}; known: ${knownText}".toString()
            }
            if (MAP_OPTIONS.contains(name)) {
                if (!(value instanceof Map)) {
                    return "${step}: option '${name}' must be a map, got a ${value.getClass().simpleName}; known: ${knownText}".toString()
                }
                continue
            }
            if (!BOOLEAN_OPTIONS.contains(name) && !(value instanceof CharSequence) && !(value instanceof Number)) {
                return "${step}: option '${name}' must be a string, got a ${value.getClass().simpleName}; known: ${knownText}".toString()
            }
        }
        Map merged = merge(defaults, config)
        if (merged.registryCredentials instanceof CharSequence) {
            // HOME_MLOPS_REGISTRY_CREDENTIALS could not be parsed: RegistryCredentials.parse said why
            return "${step}: ${merged.registryCredentials}".toString()
        }
        if (merged.registryCredentials instanceof Map) {
            String bad = RegistryCredentials.mapProblem(step, (Map) merged.registryCredentials)
            if (bad) {
                return bad
            }
        }
        if (merged.port && !(merged.port.toString() ==~ PORT)) {
            return "${step}: option 'port' must be a TCP port number (digits, e.g. 8002), got '${merged.port}'; set it in jobs/projects.yaml (HOME_MLOPS_PORT) or pass port:".toString()
        }
        for (String name : required()) {
            if (!merged.containsKey(name)) {
                continue
            }
            Object value = merged[name]
            if (value == null || value.toString().isEmpty()) {
                String var = PARAMETER_ENV[name]
                String hint = var ? " (pass ${name}: or set the job parameter ${var})" : ''
                return "${step}: missing required option '${name}'${hint}; known: ${knownText}".toString()
            }
        }
        return null
    }

    /** defaults overlaid with config; CharSequence/Number values become plain Strings, maps plain maps. */
    @NonCPS
    static Map merge(Map defaults, Map config) {
        Map merged = new LinkedHashMap(defaults)
        for (Object key : config.keySet()) {
            Object value = config[key]
            if (value == null) {
                continue
            }
            if (value instanceof CharSequence || value instanceof Number) {
                value = value.toString()
            } else if (value instanceof Map) {
                Map copy = new LinkedHashMap()
                for (Object k : ((Map) value).keySet()) {
                    copy[k.toString()] = ((Map) value)[k] instanceof CharSequence ? ((Map) value)[k].toString() : ((Map) value)[k]
                }
                value = copy
            }
            merged[key.toString()] = value
        }
        return merged
    }

    @NonCPS
    private static Object lookup(Object source, String name) {
        if (source == null) {
            return null
        }
        Object value = source[name]
        return value == null ? null : value.toString()
    }

    @NonCPS
    private static Object firstNonNull(Object... values) {
        for (Object v : values) {
            if (v != null) {
                return v
            }
        }
        return null
    }
}
