/*
 * A small Jenkins-pipeline harness for Debian's Groovy 2.4 (JenkinsPipelineUnit's
 * shape, without its jars): loads the real vars/*.groovy steps, the real src/
 * classes and the real Jenkinsfile, runs them against closures standing in for
 * the Jenkins steps, records every step call (name, arguments, the environment
 * active at that moment) and writes the records as JSON for pytest.
 *
 *   groovy tests/groovy/harness.groovy CONFIG.json
 *
 * CONFIG (all keys optional except repo and runs):
 *   repo          the repository root (vars/, src/, resources/, Jenkinsfile)
 *   output        where to write the JSON result (default: stdout)
 *   parallel      how many runs at once (default 1)
 *   runs          list of runs; each run's keys override the top-level ones:
 *     name        label echoed back
 *     target      "jenkinsfile" | "code"
 *     code        Groovy code evaluated with the pipeline binding (target code)
 *     workspace   the run's workspace folder (created; cwd of real sh)
 *     mode        "record" (default) | "real": sh runs `/bin/sh -xe -c script` for
 *                 real, as Jenkins' sh step does on a Unix agent (dash on Debian)
 *     params, env job parameters and the initial pipeline environment
 *     credentials {id: {user:, password:}} for withCredentials/usernamePassword
 *     sh          record mode: {status: N, rules: [{match: "bento-build",
 *                 status: N, json: {...}, stdout: "..."}]}; the first rule whose
 *                 match is a substring of the script applies; its json is
 *                 written to $HOME_MLOPS_JSON (or rule.file) in the workspace.
 *     recordEnv   false: leave the environment out of the records (big runs)
 *     supersededAt  a milestone ordinal: a newer build of the same job passes it
 *                 before this run gets there (the race milestones guard against), so
 *                 this run is cancelled on reaching it with result NOT_BUILT
 *                 (pipeline-milestone-step: Executor.interrupt(Result.NOT_BUILT, ...))
 *
 * Where Jenkins' behaviour matters, the stand-ins follow its sources:
 *   sh        `/bin/sh -xe -c script` in real mode (durable-task on Unix; dash on Debian)
 *   withEnv   EnvVars.overrideAll (workflow-basic-steps EnvStep): values are set as
 *             given, never expanded ($VAR expands only in the shell); an empty value
 *             removes the variable; NAME+SUFFIX=v prepends v to NAME with ':'; an
 *             entry without '=' is an error
 *   readJSON  pipeline-utility-steps: json-lib objects (net.sf.json.JSONObject /
 *             JSONArray, JSON null as JSONNull, decimals as Double; stand-ins in
 *             stubs/), or with returnPojo: true LinkedHashMap / ArrayList / null
 *   stages    declarative: `when { expression / environment / not / allOf / anyOf }`
 *             skips a stage (recorded as skipped: 'when'); after a failure the
 *             later stages are skipped (skipped: 'failure'); post conditions run
 *             in Jenkins' order (always, failure|success|aborted|notBuilt, cleanup)
 */
import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import org.codehaus.groovy.runtime.InvokerHelper

import java.util.concurrent.Callable
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.Future

class StepError extends RuntimeException {
    StepError(String message) { super(message) }
}

/** The build was interrupted (FlowInterruptedException in Jenkins) with this result. */
class AbortError extends StepError {
    String result

    AbortError(String result, String message) {
        super(message)
        this.result = result
    }
}

/** State of one pipeline run. */
class Run {
    String name
    Map cfg
    File repo
    File workspace
    String mode
    boolean recordEnv
    Map<String, String> env = new LinkedHashMap<String, String>()
    Map params = [:]
    Map currentBuild = [result: null, currentResult: 'SUCCESS', description: null, displayName: '#1', number: 1]
    List calls = []
    List log = []
    String failure
    String failedStage
    List<String> stageStack = []
    List<String> locks = []
    int milestones = 0

    Map record(String step, List args, Map extra = [:]) {
        Map entry = [step: step, args: Harness.plain(args), stage: stageStack ? stageStack[-1] : null,
                     locks: new ArrayList<String>(locks)]
        if (recordEnv) {
            entry.env = new LinkedHashMap(env)
        }
        entry.putAll(extra)
        calls << entry
        return entry
    }

    File file(String path) {
        File f = new File(path)
        return f.isAbsolute() ? f : new File(workspace, path)
    }

    Object sh(Object arg) {
        Map a = arg instanceof Map ? (Map) arg : [script: arg]
        String script = a.script.toString()
        Map entry = record('sh', [a])
        int status
        String output = ''
        if (mode == 'real') {
            ProcessBuilder pb = new ProcessBuilder(['/bin/sh', '-xe', '-c', script])
            pb.directory(workspace)
            Map<String, String> penv = pb.environment()
            env.each { k, v -> penv.put(k.toString(), v == null ? '' : v.toString()) }
            pb.redirectErrorStream(false)
            long started = System.nanoTime()
            Process p = pb.start()
            StringBuilder err = new StringBuilder()
            Thread t = Thread.start { err.append(p.errorStream.getText('UTF-8')) }
            output = p.inputStream.getText('UTF-8')
            status = p.waitFor()
            t.join()
            entry.seconds = (System.nanoTime() - started) / 1.0e9
            entry.stderr = Harness.cut(err.toString())
            entry.stdout = Harness.cut(output)
        } else {
            Map shCfg = (Map) (cfg.sh ?: [:])
            status = (shCfg.status ?: 0) as int
            Map rule = null
            for (Object r : (List) (shCfg.rules ?: [])) {
                if (script.contains(((Map) r).match.toString())) {
                    rule = (Map) r
                    break
                }
            }
            if (rule != null) {
                status = (rule.status ?: 0) as int
                output = (rule.stdout ?: '').toString()
                if (rule.containsKey('json')) {
                    String target = (rule.file ?: env.HOME_MLOPS_JSON).toString()
                    File f = file(target)
                    f.parentFile.mkdirs()
                    f.setText(JsonOutput.toJson(rule.json), 'UTF-8')
                }
            }
        }
        entry.status = status
        if (a.returnStatus) {
            return status
        }
        if (status != 0) {
            throw new StepError("script returned exit code ${status}")
        }
        return a.returnStdout ? output : null
    }
}

/** The declarative `pipeline {}` words: collected first, then executed like Jenkins does. */
class PipelineDsl {
    Run run
    List<StageDsl> stages = []
    PostDsl post = new PostDsl()

    String getAny() { 'any' }
    String getNone() { 'none' }

    void agent(Object spec) { run.record('agent', [spec instanceof Closure ? '<closure>' : spec]) }

    void options(Closure c) { Harness.collect(run, 'options', c) }

    void triggers(Closure c) { Harness.collect(run, 'triggers', c) }

    void tools(Closure c) { Harness.collect(run, 'tools', c) }

    void parameters(Closure c) {
        run.record('parameters', [])
        Harness.collect(run, 'parameters', c)
    }

    void environment(Closure c) {
        EnvDsl d = new EnvDsl(run: run)
        c.delegate = d
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c()
    }

    void stages(Closure c) {
        StagesDsl d = new StagesDsl(pipeline: this)
        c.delegate = d
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c()
    }

    void post(Closure c) {
        c.delegate = post
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c()
    }
}

class EnvDsl {
    Run run

    void setProperty(String name, Object value) {
        run.env[name] = value == null ? null : value.toString()
    }
}

class StagesDsl {
    PipelineDsl pipeline

    void stage(String name, Closure c) {
        StageDsl s = new StageDsl(name: name)
        c.delegate = s
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c()
        pipeline.stages << s
    }
}

class StageDsl {
    String name
    Closure body
    Closure when

    void steps(Closure c) { body = c }

    void when(Closure c) { when = c }
}

/**
 * The declarative `when {}` conditions this project uses; all must hold (as in Jenkins).
 * An unknown condition is a MissingMethodException, never taken as true.
 */
class WhenDsl {
    Run run
    List<Boolean> results = []

    static boolean evaluate(Run run, Closure c) {
        WhenDsl d = new WhenDsl(run: run)
        c.delegate = d
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c()
        return !d.results.contains(false)
    }

    void expression(Closure c) {
        // the closure sees the pipeline's variables (env, params, currentBuild) through its owner
        results << (c() as boolean)
    }

    void environment(Map a) {
        results << (run.env[a.name.toString()] == a.value?.toString())
    }

    void not(Closure c) { results << !evaluate(run, c) }

    void allOf(Closure c) { results << evaluate(run, c) }

    void anyOf(Closure c) {
        WhenDsl d = new WhenDsl(run: run)
        c.delegate = d
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c()
        results << d.results.contains(true)
    }

    void beforeAgent(boolean ignored) {}
}

class PostDsl {
    Map<String, Closure> blocks = [:]

    void always(Closure c) { blocks.always = c }
    void success(Closure c) { blocks.success = c }
    void failure(Closure c) { blocks.failure = c }
    void unstable(Closure c) { blocks.unstable = c }
    void aborted(Closure c) { blocks.aborted = c }
    void notBuilt(Closure c) { blocks.notBuilt = c }
    void changed(Closure c) { blocks.changed = c }
    void cleanup(Closure c) { blocks.cleanup = c }
}

/** Records whatever is called inside options {} and friends. */
class RecordingDsl {
    Run run
    String block

    Object methodMissing(String name, Object args) {
        run.record("${block}.${name}".toString(), (args as List))
        return [(name): Harness.plain(args as List)]
    }
}

class Harness {
    static final int CUT = 20000

    static String cut(String s) {
        return s.length() > CUT ? s.substring(0, CUT) + '...[cut]' : s
    }

    static void collect(Run run, String block, Closure c) {
        c.delegate = new RecordingDsl(run: run, block: block)
        c.resolveStrategy = Closure.DELEGATE_ONLY
        c()
    }

    /** JSON-safe copy of step arguments. */
    static Object plain(Object o) {
        if (o == null || o instanceof Number || o instanceof Boolean) {
            return o
        }
        if (o instanceof CharSequence) {
            return o.toString()
        }
        if (o instanceof Closure) {
            return '<closure>'
        }
        if (o instanceof Map) {
            Map m = new LinkedHashMap()
            ((Map) o).each { k, v -> m[k.toString()] = plain(v) }
            return m
        }
        if (o instanceof Collection || o instanceof Object[]) {
            return (o as List).collect { plain(it) }
        }
        return o.toString()
    }

    /** JsonSlurper's lazy maps into plain serializable maps and lists. */
    static Object copy(Object o) {
        if (o instanceof Map) {
            Map m = new LinkedHashMap()
            ((Map) o).each { k, v -> m[k.toString()] = copy(v) }
            return m
        }
        if (o instanceof List) {
            return ((List) o).collect { copy(it) }
        }
        return o
    }

    /** hudson.EnvVars.override: empty removes, NAME+SUFFIX prepends, never expands. */
    static void override(Map<String, String> env, String key, String value) {
        if (value == null || value.isEmpty()) {
            env.remove(key)
            return
        }
        int plus = key.indexOf('+')
        if (plus > 0) {
            String real = key.substring(0, plus)
            String before = env[real]
            env[real] = before == null ? value : value + ':' + before
            return
        }
        env[key] = value
    }

    /** What pipeline-utility-steps' readJSON returns for parsed JSON (see the header). */
    Object jsonLib(Object o, boolean pojo) {
        if (o == null) {
            // the json-lib stand-ins come from stubs/, through the library's class loader
            return pojo ? null : loader.loadClass('net.sf.json.JSONNull').getInstance()
        }
        if (o instanceof Map) {
            Map m = pojo ? new LinkedHashMap() : (Map) loader.loadClass('net.sf.json.JSONObject').newInstance()
            ((Map) o).each { k, v -> m[k.toString()] = jsonLib(v, pojo) }
            return m
        }
        if (o instanceof List) {
            List l = pojo ? new ArrayList() : (List) loader.loadClass('net.sf.json.JSONArray').newInstance()
            ((List) o).each { l.add(jsonLib(it, pojo)) }
            return l
        }
        if (o instanceof BigDecimal) {
            return ((BigDecimal) o).doubleValue()
        }
        return o
    }

    File repo
    GroovyClassLoader loader
    Map<String, Class> vars = [:]
    Class jenkinsfile

    Harness(File repo) {
        this.repo = repo
        loader = new GroovyClassLoader(Harness.classLoader)
        loader.addClasspath(new File(repo, 'src').absolutePath)
        // stand-ins for Jenkins-provided classes (@NonCPS)
        loader.addClasspath(new File(repo, 'tests/groovy/stubs').absolutePath)
        new File(repo, 'vars').eachFileMatch(~/.*\.groovy/) { File f ->
            vars[f.name - '.groovy'] = loader.parseClass(f)
        }
    }

    Class jenkinsfileClass() {
        if (jenkinsfile == null) {
            String text = new File(repo, 'Jenkinsfile').getText('UTF-8')
            // The library is on the class path already; keep line numbers.
            text = text.replaceAll(/(?m)^\s*@Library\([^)]*\)\s*_\s*$/, '')
            jenkinsfile = loader.parseClass(new GroovyCodeSource(text, 'Jenkinsfile', '/groovy/script'))
        }
        return jenkinsfile
    }

    Binding binding(Run r) {
        Binding b = new Binding()
        b.setVariable('env', r.env)
        b.setVariable('params', Collections.unmodifiableMap(r.params))
        b.setVariable('currentBuild', r.currentBuild)
        b.setVariable('sh', { Object a -> r.sh(a) })
        b.setVariable('echo', { Object m -> r.record('echo', [m]); r.log << m.toString(); null })
        b.setVariable('error', { Object m -> r.record('error', [m]); throw new StepError(m.toString()) })
        b.setVariable('withEnv', { List l, Closure body ->
            r.record('withEnv', [l])
            for (Object o : l) {
                if (o.toString().indexOf('=') < 0) {
                    // EnvStep's constructor
                    throw new IllegalArgumentException(o.toString())
                }
            }
            Map saved = new LinkedHashMap(r.env)
            try {
                for (Object o : l) {
                    String s = o.toString()
                    int i = s.indexOf('=')
                    override(r.env, s.substring(0, i), s.substring(i + 1))
                }
                return body()
            } finally {
                r.env.clear()
                r.env.putAll(saved)
            }
        })
        b.setVariable('usernamePassword', { Map a ->
            r.record('usernamePassword', [a])
            return [$class: 'UsernamePasswordMultiBinding'] + a
        })
        b.setVariable('file', { Map a ->
            r.record('file', [a])
            return [$class: 'FileBinding'] + a
        })
        b.setVariable('withCredentials', { List bindings, Closure body ->
            r.record('withCredentials', [bindings])
            Map saved = new LinkedHashMap(r.env)
            try {
                for (Object o : bindings) {
                    Map bnd = (Map) o
                    Map cred = (Map) ((Map) (r.cfg.credentials ?: [:]))[bnd.credentialsId]
                    if (cred == null) {
                        throw new StepError("Could not find credentials entry with ID '${bnd.credentialsId}'")
                    }
                    if (bnd.variable != null) {
                        // file(credentialsId:, variable:): the variable holds the secret file's path
                        r.env[bnd.variable.toString()] = cred.path.toString()
                    } else {
                        r.env[bnd.usernameVariable.toString()] = cred.user.toString()
                        r.env[bnd.passwordVariable.toString()] = cred.password.toString()
                    }
                }
                return body()
            } finally {
                r.env.clear()
                r.env.putAll(saved)
            }
        })
        b.setVariable('fileExists', { Object a ->
            String path = (a instanceof Map ? a.file : a).toString()
            boolean exists = r.file(path).exists()
            r.record('fileExists', [a], [exists: exists])
            return exists
        })
        b.setVariable('readJSON', { Map a ->
            r.record('readJSON', [a])
            String text = a.text != null ? a.text.toString() : r.file(a.file.toString()).getText('UTF-8')
            return jsonLib(new JsonSlurper().parseText(text), a.returnPojo == true)
        })
        b.setVariable('readFile', { Object a ->
            String path = (a instanceof Map ? a.file : a).toString()
            r.record('readFile', [a])
            return r.file(path).getText('UTF-8')
        })
        b.setVariable('writeFile', { Map a ->
            r.record('writeFile', [[file: a.file, length: a.text?.toString()?.length()]])
            File f = r.file(a.file.toString())
            f.parentFile.mkdirs()
            f.setText(a.text.toString(), 'UTF-8')
            null
        })
        b.setVariable('libraryResource', { Object a ->
            String path = (a instanceof Map ? a.resource : a).toString()
            r.record('libraryResource', [a])
            File f = new File(new File(repo, 'resources'), path)
            if (!f.isFile()) {
                throw new StepError("No such library resource ${path} could be found.")
            }
            return f.getText('UTF-8')
        })
        b.setVariable('archiveArtifacts', { Object a ->
            Map m = a instanceof Map ? (Map) a : [artifacts: a]
            String glob = m.artifacts.toString()
            String regex = '^' + glob.split(',').collect { it.trim().replace('.', '\\.').replace('*', '[^/]*') }.join('|') + '$'
            List found = (r.workspace.list() ?: new String[0]).findAll { it ==~ regex }.sort()
            r.record('archiveArtifacts', [m], [files: found])
            if (!found && !m.allowEmptyArchive) {
                throw new StepError("No artifacts found that match the file pattern \"${glob}\"")
            }
            null
        })
        b.setVariable('stage', { String name, Closure body -> runStage(r, name, body) })
        b.setVariable('node', { Object... a ->
            Closure body = (Closure) a[-1]
            r.record('node', a.length > 1 ? [a[0]] : [])
            body()
        })
        b.setVariable('script', { Closure body -> body() })
        b.setVariable('timeout', { Map a, Closure body -> r.record('timeout', [a]); body() })
        // lockable-resources: records the resource and which sh calls ran while it was held
        b.setVariable('lock', { Object a, Closure body ->
            Map m = a instanceof Map ? (Map) a : [resource: a]
            r.record('lock', [m])
            r.locks << m.resource.toString()
            try {
                return body()
            } finally {
                r.locks.remove(r.locks.size() - 1)
            }
        })
        b.setVariable('properties', { Object a -> r.record('properties', [a]); null })
        // pipeline-milestone-step: ordinals count up in a build; a build that reaches a milestone
        // a newer build has already passed is cancelled (NOT_BUILT)
        b.setVariable('milestone', { Object a ->
            Map m = a instanceof Map ? (Map) a : [ordinal: a]
            int ordinal = m.ordinal != null ? (m.ordinal as int) : r.milestones + 1
            if (ordinal <= r.milestones) {
                throw new StepError("Invalid ordinal ${ordinal}, as the previous one was ${r.milestones}")
            }
            r.milestones = ordinal
            int newer = r.cfg.supersededAt != null ? (r.cfg.supersededAt as int) : Integer.MAX_VALUE
            r.record('milestone', [m], [ordinal: ordinal, superseded: ordinal >= newer])
            if (ordinal >= newer) {
                r.log << "Superseded by a newer build (milestone ${ordinal})".toString()
                throw new AbortError('NOT_BUILT', "Superseded by a newer build at milestone ${ordinal}".toString())
            }
            null
        })
        b.setVariable('pipeline', { Closure c -> runPipeline(r, c) })
        vars.each { String name, Class cls ->
            Script s = InvokerHelper.createScript(cls, b)
            b.setVariable(name, { Object[] a -> s.invokeMethod('call', a) })
        }
        return b
    }

    Object runStage(Run r, String name, Closure body) {
        r.record('stage', [name])
        r.stageStack << name
        try {
            return body()
        } finally {
            r.stageStack.remove(r.stageStack.size() - 1)
        }
    }

    void runPipeline(Run r, Closure c) {
        PipelineDsl p = new PipelineDsl(run: r)
        c.delegate = p
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c()
        String result = 'SUCCESS'
        for (StageDsl s : p.stages) {
            if (result != 'SUCCESS') {
                r.log << "Stage \"${s.name}\" skipped due to earlier failure(s)".toString()
                r.record('stage', [s.name], [skipped: 'failure'])
                continue
            }
            try {
                if (s.when != null && !WhenDsl.evaluate(r, s.when)) {
                    r.log << "Stage \"${s.name}\" skipped due to when conditional".toString()
                    r.record('stage', [s.name], [skipped: 'when'])
                    continue
                }
                runStage(r, s.name, s.body ?: {})
            } catch (Throwable e) {
                result = e instanceof AbortError ? ((AbortError) e).result : 'FAILURE'
                r.failedStage = s.name
                r.failure = e instanceof StepError ? e.message : "${e.getClass().name}: ${e.message}".toString()
                r.currentBuild.result = result
                r.currentBuild.currentResult = result
                r.log << "${result == 'FAILURE' ? 'ERROR' : result}: ${e.message}".toString()
            }
        }
        r.currentBuild.result = result
        // declarative's condition names: SUCCESS success, FAILURE failure, ABORTED aborted, NOT_BUILT notBuilt
        String condition = result == 'NOT_BUILT' ? 'notBuilt' : result.toLowerCase()
        List<String> order = ['always', condition, 'cleanup']
        for (String cond : order) {
            Closure block = p.post.blocks[cond]
            if (block == null) {
                continue
            }
            r.record('post', [cond])
            r.stageStack << "post:${cond}".toString()
            try {
                block()
            } catch (Throwable e) {
                r.currentBuild.result = 'FAILURE'
                r.currentBuild.currentResult = 'FAILURE'
                r.failure = r.failure ?: e.message
                r.log << "ERROR in post ${cond}: ${e.message}".toString()
            } finally {
                r.stageStack.remove(r.stageStack.size() - 1)
            }
        }
    }

    Map execute(Map cfg, int index) {
        Run r = new Run(cfg: cfg, repo: repo, name: (cfg.name ?: "run-${index}").toString())
        r.mode = (cfg.mode ?: 'record').toString()
        r.recordEnv = cfg.containsKey('recordEnv') ? cfg.recordEnv as boolean : true
        r.workspace = new File((cfg.workspace ?: System.getProperty('java.io.tmpdir') + "/home-mlops-harness-${index}").toString())
        r.workspace.mkdirs()
        ((Map) (cfg.env ?: [:])).each { k, v -> r.env[k.toString()] = v == null ? null : v.toString() }
        r.params.putAll((Map) (cfg.params ?: [:]))
        Map out = [name: r.name]
        try {
            Binding b = binding(r)
            Object returned
            if ((cfg.target ?: 'jenkinsfile') == 'jenkinsfile') {
                Script s = InvokerHelper.createScript(jenkinsfileClass(), b)
                returned = s.run()
            } else {
                returned = new GroovyShell(loader, b).evaluate(cfg.code.toString(), 'Code.groovy')
            }
            out.returned = plain(returned)
            out.result = r.currentBuild.result ?: 'SUCCESS'
        } catch (Throwable e) {
            out.result = e instanceof AbortError ? ((AbortError) e).result : 'FAILURE'
            r.failure = r.failure ?: (e instanceof StepError ? e.message : "${e.getClass().name}: ${e.message}".toString())
            if (!(e instanceof StepError)) {
                out.exception = e.getClass().name
            }
        }
        out.failure = r.failure
        out.failedStage = r.failedStage
        out.description = r.currentBuild.description
        out.log = r.log
        out.calls = r.calls
        return out
    }

    static void main(String[] args) {
        // plain maps, copied per run below: JsonSlurper's lazy maps are not safe to share
        // between the runs' threads (a run once saw another run's params: "missing runId")
        Map config = (Map) copy(new JsonSlurper().parse(new File(args[0]), 'UTF-8'))
        Harness h = new Harness(new File(config.repo.toString()))
        h.jenkinsfileClass()
        Map common = new LinkedHashMap(config)
        common.remove('runs')
        List runs = (List) config.runs
        int parallel = (config.parallel ?: 1) as int
        ExecutorService pool = Executors.newFixedThreadPool(Math.max(1, parallel))
        List<Future> futures = []
        runs.eachWithIndex { Object rc, int i ->
            Map merged = (Map) copy(common)
            merged.putAll((Map) copy(rc))
            futures << pool.submit({ h.execute(merged, i) } as Callable)
        }
        List results = futures.collect { it.get() }
        pool.shutdown()
        String json = JsonOutput.toJson([runs: results])
        if (config.output) {
            new File(config.output.toString()).setText(json, 'UTF-8')
        } else {
            println json
        }
    }
}
Harness.main(args)
