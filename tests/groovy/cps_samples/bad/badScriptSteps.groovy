// A vars/ script whose @NonCPS helper calls steps by their bare names.
import com.cloudbees.groovy.cps.NonCPS

def call() {
    return summarise([a: 1])
}

@NonCPS
String summarise(Map m) {
    echo "summarising"                                       // expect: step-in-noncps
    if (fileExists('x.json')) {                              // expect: step-in-noncps
        return readFile('x.json')                            // expect: step-in-noncps
    }
    return m.toString()
}
