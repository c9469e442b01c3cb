package samples

import com.cloudbees.groovy.cps.NonCPS

/** Steps and CPS methods called from @NonCPS methods. Marked lines must be reported. */
class BadSteps implements Serializable {
    def steps

    BadSteps(def steps) { this.steps = steps }

    @NonCPS
    String describe(Map result) {
        steps.echo("result: ${result}")                      // expect: step-in-noncps
        return render(result)                                // expect: cps-from-noncps
    }

    @NonCPS
    int run(String script) {
        return this.steps.sh(script: script, returnStatus: true)   // expect: step-in-noncps
    }

    @NonCPS
    static String other(Map m) {
        return Helper.cpsWork(m)                             // expect: cps-from-noncps
    }

    String render(Map result) {
        return result.toString()
    }
}

class Helper implements Serializable {
    static String cpsWork(Map m) {
        return m.toString()
    }
}
