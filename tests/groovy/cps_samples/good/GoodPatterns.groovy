package samples

import com.cloudbees.groovy.cps.NonCPS
import groovy.json.JsonSlurper
import java.util.regex.Matcher

/**
 * The same constructs as the bad samples, where they are safe: nothing here may be
 * reported (a check that flags these would be ignored by the people it should help).
 */
class GoodPatterns implements Serializable {
    private static final long serialVersionUID = 1L
    static final JsonSlurper SHARED = null                   // static: never serialized
    transient Matcher scratch                                // transient: not serialized
    def steps

    GoodPatterns(def steps) {
        this.steps = steps
        // constructors are not CPS-transformed
        ['a'].each { String s -> s.length() }
    }

    /** CPS code: plain loops, steps, @NonCPS helpers for the rest. */
    List<String> run(List<String> names) {
        List<String> out = []
        for (String n : names) {
            steps.echo(n)
            out.add(upper(n))
        }
        steps.withEnv(['A=1']) {
            steps.sh('true')
        }
        return sortedCopy(out) + [version('version: 1')]
    }

    @NonCPS
    static String upper(String s) {
        return [s].collect { it.toUpperCase() }.join('')
    }

    @NonCPS
    static List<String> sortedCopy(List<String> l) {
        return l.sort(false) { a, b -> a <=> b }.findAll { it }
    }

    @NonCPS
    static String version(String text) {
        def m = text =~ /version: (\S+)/
        def data = new JsonSlurper().parseText('{"a": 1}')
        return m ? m[0][1] + data.a : ''
    }

    @NonCPS
    String describe(Map m) {
        // reading the environment is not a step
        return "${steps.env.APP_NAME}: ${upper(m.toString())}".toString()
    }
}

interface Named {
    String name()
}

enum Mode { BENTO, FASTAPI }
