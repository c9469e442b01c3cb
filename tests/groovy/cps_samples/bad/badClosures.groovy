// A vars/ step with closure-taking collection methods in CPS-transformed code.
// Each line marked `expect: <rule>` must be reported, and nothing else.
import com.cloudbees.groovy.cps.NonCPS

def call(Map config = [:]) {
    List<String> names = ['a', 'b']
    names.each { echo it }                                   // expect: closure-in-cps
    def upper = names.collect { it.toUpperCase() }           // expect: closure-in-cps
    def sorted = names.sort { a, b -> b <=> a }              // expect: closure-in-cps
    if (names.any { it == 'a' }) {                           // expect: closure-in-cps
        echo 'found'
    }
    config.eachWithIndex { k, v, i -> echo "${k}" }          // expect: closure-in-cps
    withEnv(['A=1']) {
        // a closure given to a step is fine; one given to findAll inside it is not
        def kept = names.findAll { it != 'b' }               // expect: closure-in-cps
        sh 'true'
    }
    3.times { echo 'x' }                                     // expect: closure-in-cps
    return upper + sorted
}

def helper(List values) {
    return values.inject(0) { acc, v -> acc + v }            // expect: closure-in-cps
}
