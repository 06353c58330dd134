/* luaopen_moltflow_core: the C mechanism under lua/moltflow/admin.lua. */
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <time.h>
#include <lauxlib.h>

#include "compat.h"
#include "core.h"
#include "json.h"
#include "sys.h"

int core_raise(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

void core_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction finaliser,
                int closable, lua_CFunction tostring) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, finaliser);
  lua_setfield(L, -2, "__gc");
  if (closable) {
    lua_pushcfunction(L, finaliser);
    lua_setfield(L, -2, "__close");
  }
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

/* core.json_encode(v): a string, or raises. */
static int l_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  buffer out = {NULL, 0, 0};
  char err[256];
  int rc = json_encode(L, 1, 0, &out, err, sizeof err);
  if (!rc) lua_pushlstring(L, out.data ? out.data : "", out.len);
  buffer_free(&out);
  if (rc) return core_raise(L, "moltflow.json_encode: %s", err);
  return 1;
}

/* core.json_decode(s): the value, or nil and a message. */
static int l_json_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  buffer scratch = {NULL, 0, 0};
  char err[160];
  int rc = json_decode(L, s, n, &scratch, err, sizeof err);
  buffer_free(&scratch);
  if (rc) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* core.sleep(seconds): the blocking default for retries and pacing. */
static int l_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  if (!(s > 0)) return 0;
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
  return 0;
}

/* core.monotime(): seconds from a monotonic clock, for deadlines. */
static int l_monotime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.time(): Unix time with sub-second precision. */
static int l_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

int luaopen_moltflow_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"json_encode", l_json_encode}, {"json_decode", l_json_decode},
                                 {"sleep", l_sleep},             {"monotime", l_monotime},
                                 {"time", l_time},               {NULL, NULL}};
  http_global_init();
  luaL_newlib(L, fns);
  client_open(L);
  request_open(L);
  response_open(L);
  token_open(L);
  hash_open(L);
  moltflow_sys_open(L);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  json_push_array_mt(L);
  lua_setfield(L, -2, "array_mt");
  lua_pushliteral(L, MOLTFLOW_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, curl_version());
  lua_setfield(L, -2, "curl_version");
  return 1;
}
