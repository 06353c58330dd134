/* The JSON codec: decode anything; whatever decodes must encode, and the
 * encoding must decode to an equal value (integers stay integers, arrays stay
 * arrays, null stays null). */
#include "harness.h"

static int equal(lua_State *L, int a, int b, int depth) {
  if (lua_type(L, a) != lua_type(L, b)) return 0;
  if (lua_type(L, a) != LUA_TTABLE) {
    if (lua_type(L, a) == LUA_TNUMBER && lua_isinteger(L, a) != lua_isinteger(L, b)) {
      /* an integral float (2^53 and above) may come back as an integer */
      lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
      return x == y;
    }
    return lua_rawequal(L, a, b);
  }
  if (depth > JSON_MAX_DEPTH + 1) return 0;
  luaL_checkstack(L, 6, "equal");
  int ma = lua_getmetatable(L, a), mb = lua_getmetatable(L, b);
  lua_pop(L, ma + mb);
  if (ma != mb) return 0;
  size_t na = 0, nb = 0;
  lua_pushnil(L);
  while (lua_next(L, a)) {
    na++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    int ok = equal(L, lua_gettop(L) - 1, lua_gettop(L), depth + 1);
    lua_pop(L, 2);
    if (!ok) {
      lua_pop(L, 1);
      return 0;
    }
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    nb++;
    lua_pop(L, 1);
  }
  return na == nb;
}

static int run(lua_State *L) {
  const fuzz_input *in = fuzz_arg(L);
  buffer scratch = {NULL, 0, 0}, out = {NULL, 0, 0}, again = {NULL, 0, 0};
  char err[256];
  int rc = moltflow_json_decode(L, (const char *)in->data, in->size, &scratch, err, sizeof err);
  if (rc == 0) {
    int v = lua_gettop(L);
    if (moltflow_json_encode(L, v, 0, &out, err, sizeof err)) {
      fprintf(stderr, "decoded value does not encode: %s\n", err);
      abort();
    }
    if (moltflow_json_decode(L, out.data ? out.data : "", out.len, &scratch, err, sizeof err)) {
      fprintf(stderr, "encoding does not decode: %s\n%.*s\n", err, (int)out.len, out.data);
      abort();
    }
    if (!equal(L, v, lua_gettop(L), 0)) {
      fprintf(stderr, "round trip changed the value: %.*s\n", (int)out.len, out.data);
      abort();
    }
    if (moltflow_json_encode(L, lua_gettop(L), 0, &again, err, sizeof err)) abort();
  }
  moltflow_buffer_free(&scratch);
  moltflow_buffer_free(&out);
  moltflow_buffer_free(&again);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_run(run, data, size);
  return 0;
}
