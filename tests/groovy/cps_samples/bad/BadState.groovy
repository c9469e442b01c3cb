package samples

import groovy.json.JsonSlurper
import java.util.regex.Matcher

/** Non-serializable values kept across steps. Marked lines must be reported. */
class BadState implements Serializable {
    def steps
    Matcher lastMatch                                        // expect: non-serializable-state
    def slurper = new JsonSlurper()                          // expect: non-serializable-state
    Iterator<String> pending                                 // expect: non-serializable-state

    BadState(def steps) { this.steps = steps }

    String version(String text) {
        def m = text =~ /version: (\S+)/                     // expect: non-serializable-state
        steps.sh('true')
        return m[0][1]
    }

    Map load(String text) {
        def data = new JsonSlurper().parseText(text)         // expect: non-serializable-state
        steps.sh('true')
        return data
    }

    void walk(List<String> items) {
        def it = items.iterator()                            // expect: non-serializable-state
        while (it.hasNext()) {
            steps.echo(it.next())
        }
    }
}

class NotKeptSafely {                                        // expect: class-not-serializable
    String name
}
