/* Layer 1. JSON for request and response bodies.
 *
 * Debian's lua-cjson 2.1.0 turns every number into a float under Lua 5.4 and
 * cannot tell [] from {}, and the wire contract needs both (integer limits,
 * `scopes = []`), so the core carries this small codec. Arrays are marked with
 * the metatable registered as JSON_ARRAY_MT, or, when the loaded lua-cjson is
 * OpenResty's fork, with its array_mt (its empty_array_mt and empty_array are
 * arrays too); JSON null is a NULL light userdata (the same sentinel
 * lua-cjson uses). */
#ifndef MOLTFLOW_JSON_H
#define MOLTFLOW_JSON_H

#include <stddef.h>
#include <lua.h>
#include "buffer.h"

#define JSON_ARRAY_MT "moltflow.array"
#define JSON_MAX_DEPTH 200

/* Encodes the value at idx. hints, when not 0, is the stack index of a table
 * whose keys name top-level fields that are arrays even when empty. Returns 0,
 * or -1 with a message in err (err_size bytes) naming the offending field. */
int moltflow_json_encode(lua_State *L, int idx, int hints, buffer *out, char *err, size_t err_size);

/* Pushes the decoded value and returns 0, or pushes nothing and returns -1
 * with a message in err. Strings must be valid UTF-8. scratch holds unescaped
 * strings; it belongs to the caller so that a Lua memory error leaks nothing. */
int moltflow_json_decode(lua_State *L, const char *s, size_t len, buffer *scratch, char *err,
                size_t err_size);

/* Numbers written so that they read back exactly: whole numbers within int64
 * as integers, others in the shortest %.15g to %.17g form. Return the length
 * written to buf (JSON_NUMBER_SIZE bytes), or 0 for NaN and infinities. */
#define JSON_NUMBER_SIZE 32
size_t moltflow_json_format_double(double d, char *buf);
size_t moltflow_json_format_number(lua_State *L, int idx, char *buf);

/* core.json_encode, core.json_decode, core.json_array, core.null, core.array_mt */
void moltflow_json_open(lua_State *L);

/* Whether the value at idx is lua-cjson's empty_array sentinel (OpenResty
 * fork), with a cjson module loaded in this state. */
int moltflow_json_is_empty_array(lua_State *L, int idx);

/* Pushes the shared array metatable, creating it on first use. */
void moltflow_json_push_array_mt(lua_State *L);

#endif
