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
    static final String DEFAULT_CREDENTIALS_ID = 'home-mlops-registry'

    /** Options that hold one of the five job parameters: option -> environment variable. */
    static final Map<String, String> PARAMETER_ENV = [
        app         : 'APP_NAME',
        experimentId: 'EXPERIMENT_ID',
        runId       : 'RUN_ID',
        nas         : 'NAS',
        registry    : 'AR_NAME',
    ]

    static final List<String> STRING_OPTIONS = [
        'app', 'experimentId', 'runId', 'nas', 'registry',
        'registryCredentialsId', 'trackingUri', 'jsonFile', 'helperPath', 'helperSpec',
    ]
    static final List<String> BOOLEAN_OPTIONS = ['push', 'force', 'ensureHelper']

    /**
     * The defaults of one step. Job parameters come from {@code params} first,
     * then from {@code env} (Jenkins exposes parameters in both).
     */
    @NonCPS
    static Map defaults(String jsonFile, Object params, Object env, boolean buildStep) {
        Map d = [:]
        for (String option : PARAMETER_ENV.keySet()) {
            String var = PARAMETER_ENV[option]
            d[option] = firstNonNull(lookup(params, var), lookup(env, var), '')
        }
        if (!d.registry) {
            d.registry = DEFAULT_REGISTRY
        }
        d.registryCredentialsId = DEFAULT_CREDENTIALS_ID
        d.trackingUri = firstNonNull(lookup(env, 'MLFLOW_TRACKING_URI'), '')
        d.jsonFile = jsonFile
        d.helperPath = ''
        d.helperSpec = ''
        d.ensureHelper = false
        if (buildStep) {
            d.push = true
            d.force = false
        }
        return d
    }

    @NonCPS
    static List<String> required() {
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
            if (STRING_OPTIONS.contains(name) && !(value instanceof CharSequence) && !(value instanceof Number)) {
                return "${step}: option '${name}' must be a string, got a ${value.getClass().simpleName}; known: ${knownText}".toString()
            }
        }
        Map merged = merge(defaults, config)
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

    /** defaults overlaid with config; CharSequence/Number values become plain Strings. */
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
