package net.sf.json

/**
 * Stand-in for json-lib's JSONObject as readJSON returns it: a Map whose JSON nulls
 * are JSONNull, nested objects JSONObject, arrays JSONArray, decimals Double.
 */
class JSONObject extends LinkedHashMap<String, Object> {
    private static final long serialVersionUID = 1L

    boolean isArray() { false }

    boolean isNullObject() { false }
}
