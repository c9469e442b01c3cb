package io.homemlops

import com.cloudbees.groovy.cps.NonCPS

/** The text home-mlops puts in the build description and in the pipeline's summary. */
class Summary implements Serializable {
    private static final long serialVersionUID = 1L

    @NonCPS
    static String text(Object value) {
        // readJSON gives JSONNull for null; treat it as absent.
        if (value == null || !(value instanceof CharSequence || value instanceof Number || value instanceof Boolean)) {
            return ''
        }
        return value.toString()
    }

    /**
     * One description line for a step's result, e.g. "bento: <image> (sha256:...)".
     * The CLI writes the same text as result.summary (home_mlops/results.py); when it is
     * there it is used as is, so Jenkins and the CLI never disagree. The rest is the
     * fallback for a result without it (an older CLI).
     */
    @NonCPS
    static String line(String kind, Map result) {
        String given = text(result?.summary)
        if (given && !given.contains('\n')) {
            return given
        }
        if (kind == 'deploy') {
            String url = text(result?.url)
            String run = text(result?.run_id)
            return "deploy: ${url ?: '(no url)'}${run ? " (run ${run})" : ''}".toString()
        }
        if (kind == 'undeploy') {
            List removed = result?.removed instanceof List ? (List) result.removed : []
            String app = text(result?.app)
            return removed ? "undeploy: removed ${removed.join(', ')}".toString()
                           : "undeploy: nothing was deployed${app ? " for ${app}" : ''}".toString()
        }
        String image = text(result?.image)
        String digest = text(result?.digest)
        return "${kind}: ${image ?: '(no image)'}${digest ? " (${digest})" : ''}".toString()
    }

    /**
     * The build description is HTML (the Safe HTML markup formatter, docker/jenkins/casc.yaml):
     * each line is escaped and lines are joined with {@code <br>} so they show as lines.
     */
    @NonCPS
    static String append(Object current, String line) {
        String before = current == null ? '' : current.toString()
        String escaped = html(line)
        return before ? "${before}<br>\n${escaped}".toString() : escaped
    }

    @NonCPS
    static String html(String value) {
        return (value ?: '').replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;').replace('"', '&quot;')
    }

    /**
     * The post-success summary of the whole pipeline. {@code frontDoor} is fastapi-build's result:
     * the gateway (bento+gateway) or the standalone server (fastapi, result role 'server').
     * An image line appears only for a build that ran (a serving mode skips the other).
     */
    @NonCPS
    static String success(Map bento, Map frontDoor, Map deployment) {
        List<String> lines = ['home-mlops: deployed ' + (text(deployment?.app) ?: text(bento?.app) ?: text(frontDoor?.app))]
        if (text(deployment?.serving)) {
            lines.add('  serving:       ' + text(deployment?.serving))
        }
        if (text(bento?.image)) {
            lines.add('  bento image:   ' + imageText(bento))
        }
        if (text(frontDoor?.image)) {
            String label = text(frontDoor?.role) == 'server' ? 'server image: ' : 'gateway image:'
            lines.add("  ${label} ${imageText(frontDoor)}".toString())
        }
        lines.add('  url:           ' + text(deployment?.url) + '/predict')
        if (text(deployment?.local_url)) {
            lines.add('  on this host:  ' + text(deployment?.local_url) + '/predict')
        }
        String model = registered(deployment)
        if (model) {
            lines.add('  model:         ' + model)
        }
        if (text(deployment?.previous_run_id)) {
            lines.add('  replaced run:  ' + text(deployment?.previous_run_id))
        }
        return lines.join('\n')
    }

    @NonCPS
    private static String imageText(Map result) {
        return text(result?.image) + (text(result?.digest) ? " @ ${text(result?.digest)}" : '')
    }

    /** "models:/<name>@<alias> = version <v>, run <id>" when RUN_ID named a registered model version. */
    @NonCPS
    static String registered(Map result) {
        Object model = result?.registered_model
        if (!(model instanceof Map) || !text(((Map) model).uri)) {
            return ''
        }
        Map m = (Map) model
        return "${text(m.uri)} = version ${text(m.version)}, run ${text(m.run_id)}".toString()
    }

    /** The post-aborted line: a user (or the pipeline's timeout) stopped the build. */
    @NonCPS
    static String aborted(String stage) {
        return "home-mlops: ABORTED in stage '${stage ?: 'unknown'}': stopped by a user or by the pipeline's timeout".toString()
    }

    /**
     * The post-notBuilt line: a newer build of the job passed a milestone first (the milestone
     * step cancels the older build as NOT_BUILT). Both milestones come before the CLI deploys.
     */
    @NonCPS
    static String superseded(String stage) {
        return "home-mlops: NOT BUILT, stopped in stage '${stage ?: 'unknown'}': a newer build of this job got there first; this build deployed nothing".toString()
    }

    @NonCPS
    static String failure(String stage, Object reason) {
        String why = reason == null ? 'unknown error' : reason.toString()
        return "home-mlops: FAILED in stage '${stage ?: 'unknown'}': ${why}".toString()
    }
}
