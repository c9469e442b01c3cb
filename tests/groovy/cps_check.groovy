/*
 * A static check for the known CPS pitfalls of Jenkins Pipeline code, on Groovy's own
 * AST (parsed to the CONVERSION phase: no class path needed, nothing is run).
 *
 *   groovy tests/groovy/cps_check.groovy [--json] PATH...
 *
 * PATH: files or folders; a folder contributes its *.groovy files and files named
 * Jenkinsfile. Prints `path:line: rule: message` per finding (or, with --json, one
 * object {checked: [...], findings: [{file, line, rule, message}]}); exits 0 when
 * clean, 1 with findings, 2 when a file cannot be parsed or read.
 *
 * Code is CPS-transformed unless it is inside a @NonCPS method (closures inherit the
 * method's kind); Jenkinsfile and vars/ scripts are CPS at the top level too.
 * Constructors are never CPS-transformed, so they count as non-CPS.
 *
 * Rules
 *   closure-in-cps          a collection/iteration method given a closure in CPS code
 *                           (each, collect, findAll, sort, ...): Jenkins runs such
 *                           closures through its CPS translation, which mis-handles
 *                           several of them (JENKINS-26481, sort JENKINS-44924); use a
 *                           for loop, or move the code into a @NonCPS method
 *   step-in-noncps          a pipeline step (steps.X(...), or sh/echo/... in a script)
 *                           called from a @NonCPS method: steps must run in CPS code
 *   cps-from-noncps         a @NonCPS method calling a CPS method of a checked class:
 *                           the CPS method does not run as written from there
 *   non-serializable-state  a value that is not Serializable (a regex Matcher from =~,
 *                           JsonSlurper and its LazyMap, an Iterator, a Process, a
 *                           stream) kept in a field or a CPS local variable: the program
 *                           state is serialized at every step, and the build fails with
 *                           NotSerializableException
 *   class-not-serializable  a class whose instances can be kept across steps does not
 *                           implement Serializable
 */
import groovy.json.JsonOutput
import org.codehaus.groovy.ast.ASTNode
import org.codehaus.groovy.ast.AnnotatedNode
import org.codehaus.groovy.ast.ClassCodeVisitorSupport
import org.codehaus.groovy.ast.ClassNode
import org.codehaus.groovy.ast.ConstructorNode
import org.codehaus.groovy.ast.FieldNode
import org.codehaus.groovy.ast.MethodNode
import org.codehaus.groovy.ast.expr.BinaryExpression
import org.codehaus.groovy.ast.expr.ClosureExpression
import org.codehaus.groovy.ast.expr.ConstructorCallExpression
import org.codehaus.groovy.ast.expr.DeclarationExpression
import org.codehaus.groovy.ast.expr.Expression
import org.codehaus.groovy.ast.expr.MethodCallExpression
import org.codehaus.groovy.ast.expr.PropertyExpression
import org.codehaus.groovy.ast.expr.TupleExpression
import org.codehaus.groovy.ast.expr.VariableExpression
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.Phases
import org.codehaus.groovy.control.SourceUnit

import java.lang.reflect.Modifier

class CpsCheck {
    /** Methods that take a closure and iterate or call it (DefaultGroovyMethods and friends). */
    static final Set<String> CLOSURE_METHODS = ([
        'each', 'eachWithIndex', 'reverseEach', 'eachLine', 'eachFile', 'eachFileRecurse', 'eachMatch',
        'collect', 'collectEntries', 'collectMany', 'collectNested', 'find', 'findAll', 'findResult',
        'findResults', 'findIndexOf', 'findIndexValues', 'findLastIndexOf', 'grep', 'any', 'every',
        'inject', 'sum', 'count', 'countBy', 'groupBy', 'split', 'sort', 'toSorted', 'unique',
        'toUnique', 'min', 'max', 'takeWhile', 'dropWhile', 'removeAll', 'retainAll', 'removeIf',
        'times', 'upto', 'downto', 'step', 'withDefault', 'with', 'tap', 'eachPermutation',
        'eachCombination', 'forEach', 'replaceAll',
    ] as Set<String>)

    /** Pipeline steps a script calls by bare name (Jenkins core steps and the plugins this project uses). */
    static final Set<String> STEP_NAMES = ([
        'sh', 'bat', 'powershell', 'echo', 'error', 'unstable', 'warnError', 'catchError', 'readJSON',
        'writeJSON', 'readYaml', 'writeYaml', 'readFile', 'writeFile', 'fileExists', 'findFiles', 'dir',
        'deleteDir', 'pwd', 'withEnv', 'withCredentials', 'usernamePassword', 'string', 'file', 'lock',
        'libraryResource', 'archiveArtifacts', 'stash', 'unstash', 'stage', 'node', 'sleep', 'timeout',
        'retry', 'waitUntil', 'input', 'parallel', 'build', 'milestone', 'checkout', 'git', 'junit',
        'timestamps', 'tool', 'isUnix', 'script', 'mail', 'emailext', 'properties',
    ] as Set<String>)

    /** Types whose instances are not Serializable, by simple name. */
    static final Set<String> NON_SERIALIZABLE_TYPES = ([
        'Matcher', 'JsonSlurper', 'JsonSlurperClassic', 'LazyMap', 'Iterator', 'ListIterator',
        'Enumeration', 'Scanner', 'InputStream', 'OutputStream', 'Reader', 'Writer', 'BufferedReader',
        'BufferedWriter', 'InputStreamReader', 'FileInputStream', 'FileOutputStream', 'FileReader',
        'FileWriter', 'PrintWriter', 'Process', 'ProcessBuilder', 'Thread', 'Socket', 'URLConnection',
        'HttpURLConnection', 'XmlSlurper', 'GPathResult', 'NodeChild',
    ] as Set<String>)

    List<Map> findings = []
    List<String> checked = []
    /** simple class name -> [cps: method names, nonCps: method names] over every checked file */
    Map<String, Map<String, Set<String>>> methodKinds = [:]
    List<Map> parsed = []   // [file:, label:, module:]

    static boolean isNonCps(AnnotatedNode node) {
        return node.annotations.any { it.classNode.nameWithoutPackage == 'NonCPS' || it.classNode.name.endsWith('.NonCPS') }
    }

    static String simpleName(String name) {
        int dot = name.lastIndexOf('.')
        return dot >= 0 ? name.substring(dot + 1) : name
    }

    /** Why the value of {@code e} is not Serializable, or null. */
    static String nonSerializable(Expression e) {
        if (e instanceof BinaryExpression && ((BinaryExpression) e).operation.text == '=~') {
            return 'a regex Matcher (=~)'
        }
        if (e instanceof ConstructorCallExpression) {
            String type = ((ConstructorCallExpression) e).type.nameWithoutPackage
            return NON_SERIALIZABLE_TYPES.contains(type) ? "a new ${type}".toString() : null
        }
        if (e instanceof MethodCallExpression) {
            MethodCallExpression call = (MethodCallExpression) e
            String name = call.methodAsString
            if (name == 'iterator') {
                return 'an Iterator'
            }
            if (name == 'execute') {
                return 'a Process'
            }
            if (name in ['parseText', 'parse'] && call.objectExpression instanceof ConstructorCallExpression
                    && ((ConstructorCallExpression) call.objectExpression).type.nameWithoutPackage == 'JsonSlurper') {
                return "JsonSlurper's LazyMap"
            }
        }
        return null
    }

    void add(String label, ASTNode node, String rule, String message) {
        findings << [file: label, line: node.lineNumber, rule: rule, message: message]
    }

    void parse(File f, String label) {
        CompilationUnit cu = new CompilationUnit()
        SourceUnit su = cu.addSource(f.name.endsWith('.groovy') ? f.name : "${f.name}.groovy", f.getText('UTF-8'))
        cu.compile(Phases.CONVERSION)
        parsed << [label: label, module: su.AST]
        checked << label
        for (ClassNode cls : su.AST.classes) {
            Map<String, Set<String>> kinds = methodKinds.computeIfAbsent(cls.nameWithoutPackage) { [cps: [] as Set, nonCps: [] as Set] }
            for (MethodNode m : cls.methods) {
                if (cls.isScript() && m.name == 'run') {
                    continue
                }
                (isNonCps(m) ? kinds.nonCps : kinds.cps) << m.name
            }
        }
    }

    void check() {
        for (Map p : parsed) {
            for (ClassNode cls : p.module.classes) {
                checkClass((String) p.label, cls, (SourceUnit) p.module.context)
            }
        }
        findings.sort { a, b -> a.file <=> b.file ?: a.line <=> b.line ?: a.rule <=> b.rule }
    }

    void checkClass(String label, ClassNode cls, SourceUnit su) {
        boolean plainClass = !cls.isScript() && !cls.isInterface() && !cls.isEnum() && !cls.isAnnotationDefinition()
        if (plainClass && cls.superClass.name == 'java.lang.Object'
                && !cls.interfaces.any { it.nameWithoutPackage == 'Serializable' }) {
            add(label, cls, 'class-not-serializable',
                "class ${cls.nameWithoutPackage} does not implement Serializable: an instance kept in a pipeline variable across a step fails the build (NotSerializableException)")
        }
        for (FieldNode field : cls.fields) {
            // (a property's backing field counts: Groovy marks it synthetic, but it is serialized)
            if (Modifier.isStatic(field.modifiers) || Modifier.isTransient(field.modifiers)) {
                continue
            }
            String why = NON_SERIALIZABLE_TYPES.contains(field.originType.nameWithoutPackage) ? "a value of type ${field.originType.nameWithoutPackage}".toString()
                    : (field.initialValueExpression != null ? nonSerializable(field.initialValueExpression) : null)
            if (why) {
                add(label, field, 'non-serializable-state',
                    "field '${field.name}' holds ${why}, which is not Serializable: the build fails at the next step; make it transient and rebuild it, or keep it inside a @NonCPS method")
            }
        }
        Visitor v = new Visitor(check: this, label: label, cls: cls, source: su)
        for (MethodNode m : cls.methods) {
            v.method = m
            v.cps = !isNonCps(m)
            m.code?.visit(v)
        }
        for (ConstructorNode c : cls.declaredConstructors) {
            v.method = c
            v.cps = false
            c.code?.visit(v)
        }
    }

    static void main(String[] args) {
        boolean json = args.contains('--json')
        List<String> paths = args.findAll { it != '--json' }
        if (!paths) {
            System.err.println('usage: cps_check.groovy [--json] PATH...')
            System.exit(2)
        }
        CpsCheck check = new CpsCheck()
        List<File> files = []
        for (String p : paths) {
            File f = new File(p)
            if (f.isDirectory()) {
                f.eachFileRecurse { File g -> if (g.isFile() && (g.name.endsWith('.groovy') || g.name == 'Jenkinsfile')) files << g }
            } else if (f.isFile()) {
                files << f
            } else {
                System.err.println("cps_check: ${p}: no such file or folder")
                System.exit(2)
            }
        }
        files.sort { it.path }
        for (File f : files) {
            try {
                check.parse(f, f.path)
            } catch (Exception e) {
                System.err.println("cps_check: ${f.path}: cannot parse: ${e.message}")
                System.exit(2)
            }
        }
        check.check()
        if (json) {
            println JsonOutput.toJson([checked: check.checked, findings: check.findings])
        } else {
            check.findings.each { println "${it.file}:${it.line}: ${it.rule}: ${it.message}" }
            System.err.println("cps_check: ${check.checked.size()} files, ${check.findings.size()} findings")
        }
        System.exit(check.findings ? 1 : 0)
    }
}

class Visitor extends ClassCodeVisitorSupport {
    CpsCheck check
    String label
    ClassNode cls
    SourceUnit source
    MethodNode method
    boolean cps

    @Override
    protected SourceUnit getSourceUnit() { source }

    String where() {
        return cls.isScript() && method.name == 'run' ? 'the script body' : "method '${method.name}'"
    }

    static boolean hasClosureArgument(Expression args) {
        if (args instanceof TupleExpression) {
            return ((TupleExpression) args).expressions.any { it instanceof ClosureExpression }
        }
        return args instanceof ClosureExpression
    }

    static boolean isStepsReceiver(Expression receiver) {
        if (receiver instanceof VariableExpression) {
            return ((VariableExpression) receiver).name == 'steps'
        }
        return receiver instanceof PropertyExpression && ((PropertyExpression) receiver).propertyAsString == 'steps'
    }

    @Override
    void visitMethodCallExpression(MethodCallExpression call) {
        String name = call.methodAsString
        if (name != null) {
            if (cps && CpsCheck.CLOSURE_METHODS.contains(name) && hasClosureArgument(call.arguments)) {
                check.add(label, call, 'closure-in-cps',
                    "'${name}' with a closure in CPS-transformed code (${where()}): Jenkins' CPS translation mis-runs such closures; use a for loop, or move this into a @NonCPS method")
            }
            if (!cps) {
                if (isStepsReceiver(call.objectExpression)
                        || (call.isImplicitThis() && CpsCheck.STEP_NAMES.contains(name) && !definedHere(name))) {
                    check.add(label, call, 'step-in-noncps',
                        "step '${name}' called from @NonCPS ${where()}: pipeline steps cannot run in non-CPS code; call it from CPS code")
                } else {
                    String owner = call.isImplicitThis() ? cls.nameWithoutPackage
                            : (call.objectExpression instanceof VariableExpression ? ((VariableExpression) call.objectExpression).name : null)
                    Map<String, Set<String>> kinds = owner == null ? null : check.methodKinds[owner]
                    if (kinds != null && kinds.cps.contains(name) && !kinds.nonCps.contains(name)) {
                        check.add(label, call, 'cps-from-noncps',
                            "@NonCPS ${where()} calls '${owner}.${name}', which is CPS-transformed: it does not run as written from non-CPS code; mark it @NonCPS too, or call it from CPS code")
                    }
                }
            }
        }
        super.visitMethodCallExpression(call)
    }

    boolean definedHere(String name) {
        return cls.methods.any { it.name == name }
    }

    @Override
    void visitDeclarationExpression(DeclarationExpression decl) {
        if (cps && !decl.isMultipleAssignmentDeclaration()) {
            VariableExpression variable = decl.variableExpression
            String why = CpsCheck.NON_SERIALIZABLE_TYPES.contains(variable.originType.nameWithoutPackage)
                    ? "a value of type ${variable.originType.nameWithoutPackage}".toString()
                    : CpsCheck.nonSerializable(decl.rightExpression)
            if (why) {
                check.add(label, decl, 'non-serializable-state',
                    "variable '${variable.name}' in CPS ${where()} holds ${why}, which is not Serializable: the build fails at the next step; use it inside a @NonCPS method and return a plain value")
            }
        }
        super.visitDeclarationExpression(decl)
    }
}

CpsCheck.main(args)
