package net.sf.json

/** Stand-in for json-lib's JSONArray as readJSON returns it (see JSONObject). */
class JSONArray extends ArrayList<Object> {
    private static final long serialVersionUID = 1L

    boolean isArray() { true }
}
