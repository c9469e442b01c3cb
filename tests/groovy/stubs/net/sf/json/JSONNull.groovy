package net.sf.json

/**
 * Stand-in for json-lib's JSONNull (Jenkins provides the real one): what readJSON
 * (pipeline-utility-steps, without returnPojo) hands a pipeline for a JSON null.
 * The semantics that bite pipeline code are kept: it is a singleton object, so in
 * Groovy `value == null` is false and `if (value)` is true; equals(null) is true
 * in Java; toString() is "null".
 */
final class JSONNull implements Serializable {
    private static final long serialVersionUID = 1L
    private static final JSONNull INSTANCE = new JSONNull()

    private JSONNull() {}

    static JSONNull getInstance() { INSTANCE }

    @Override
    boolean equals(Object other) { other == null || other.is(INSTANCE) || 'null'.equals(other) }

    @Override
    int hashCode() { 37 + 'null'.hashCode() }

    @Override
    String toString() { 'null' }

    boolean isArray() { false }

    Object readResolve() { INSTANCE }
}
