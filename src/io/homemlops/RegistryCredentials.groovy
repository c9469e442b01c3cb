package io.homemlops

import com.cloudbees.groovy.cps.NonCPS

/**
 * Which Jenkins credentials id (if any) a step binds for the registry that
 * AR_NAME names. A credential is bound only for a host that has a mapping:
 * an AR_NAME pointing anywhere else gets no password at all (issue 9).
 *
 * The mapping, first one set wins:
 *   the step option   registryCredentials: ['host:port': 'credentials-id']
 *   the Jenkins-wide  env HOME_MLOPS_REGISTRY_CREDENTIALS = 'host:port=id,host2=id2'
 *                     (Manage Jenkins > System > Global properties; '' = no mapping at all)
 *   the library       DEFAULT_MAPPING (the local platform registry)
 */
class RegistryCredentials implements Serializable {
    private static final long serialVersionUID = 1L

    static final String ENV = 'HOME_MLOPS_REGISTRY_CREDENTIALS'
    static final String DOCKER_HUB = 'docker.io'
    static final Map<String, String> DEFAULT_MAPPING = ['127.0.0.1:5000': 'home-mlops-registry']
    // host[:port] and a Jenkins credentials id: no spaces, no '=' or ',' (the separators)
    private static final String HOST = /[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?/
    private static final String ID = /[A-Za-z0-9._@\-]+/

    /**
     * The registry host of an image reference, as the Python side computes it
     * (home_mlops.build.trust.registry_host, Docker's rule): the first path component is a
     * host when it contains '.' or ':', is 'localhost' or has capitals; otherwise
     * the image is on docker.io. Lowercased; index.docker.io is docker.io.
     */
    @NonCPS
    static String host(String ref) {
        String text = ref == null ? '' : ref
        int slash = text.indexOf('/')
        if (slash < 0) {
            return DOCKER_HUB
        }
        String first = text.substring(0, slash)
        if (!(first.contains('.') || first.contains(':') || first == 'localhost' || first != first.toLowerCase())) {
            return DOCKER_HUB
        }
        return normalise(first)
    }

    /** A host as the mapping and the Python side compare it. */
    @NonCPS
    static String normalise(String host) {
        String h = host.toLowerCase()
        return h == 'index.docker.io' ? DOCKER_HUB : h
    }

    /** The default mapping of a step: the Jenkins-wide env var when it is set, else the library's. */
    @NonCPS
    static Object fromEnv(Object env) {
        Object text = env == null ? null : env[ENV]
        if (text == null) {
            return new LinkedHashMap(DEFAULT_MAPPING)
        }
        return parse(text.toString())
    }

    /**
     * 'host:port=id, host2=id2' as a map; a String (the error text) when an entry is malformed.
     * Entries are separated by commas or whitespace.
     */
    @NonCPS
    static Object parse(String text) {
        Map<String, String> mapping = new LinkedHashMap<String, String>()
        for (String entry : text.trim().split(/[\s,]+/)) {
            if (entry.isEmpty()) {
                continue
            }
            int eq = entry.indexOf('=')
            String host = eq < 0 ? entry : entry.substring(0, eq)
            String id = eq < 0 ? '' : entry.substring(eq + 1)
            String bad = problem(host, id)
            if (bad) {
                return "${ENV}: entry '${entry}' ${bad}; expected host[:port]=credentials-id, e.g. 127.0.0.1:5000=home-mlops-registry".toString()
            }
            mapping[host] = id
        }
        return mapping
    }

    /** Why one mapping entry is unusable, or null. */
    @NonCPS
    static String problem(Object host, Object id) {
        if (!(host instanceof CharSequence) || !(host.toString() ==~ HOST)) {
            return "has no valid registry host (host or host:port)"
        }
        if (!(id instanceof CharSequence) || !(id.toString() ==~ ID)) {
            return "has no valid credentials id (letters, digits, . _ @ -)"
        }
        return null
    }

    /** The error text for a registryCredentials map with a bad entry, or null. */
    @NonCPS
    static String mapProblem(String step, Map mapping) {
        for (Object key : mapping.keySet()) {
            String bad = problem(key, mapping[key])
            if (bad) {
                return "${step}: option 'registryCredentials' entry '${key}' ${bad}; expected ['host:port': 'credentials-id']".toString()
            }
        }
        return null
    }

    /** The credentials id mapped to the registry host of {@code ref}, or '' when that host has none. */
    @NonCPS
    static String idFor(Map mapping, String ref) {
        String wanted = host(ref)
        for (Object key : (mapping == null ? [:] : mapping).keySet()) {
            if (normalise(key.toString()) == wanted) {
                return mapping[key].toString()
            }
        }
        return ''
    }
}
