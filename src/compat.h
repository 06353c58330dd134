/* Lua 5.4 vs LuaJIT 2.1 (Lua 5.1 API): every version difference lives here,
 * with the two Lua helpers every module shares. A leaf: Lua headers only. */
#ifndef MOLTFLOW_COMPAT_H
#define MOLTFLOW_COMPAT_H

#include <stdarg.h>
#include <lua.h>
#include <lauxlib.h>

#define MOLTFLOW_VERSION "0.1.0"

#if LUA_VERSION_NUM < 502
#define mf_rawlen(L, i) lua_objlen((L), (i))
#define mf_absindex(L, i) \
  (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)
#define mf_isinteger(L, i) 0
#else
#define mf_rawlen(L, i) lua_rawlen((L), (i))
#define mf_absindex(L, i) lua_absindex((L), (i))
#endif

#if LUA_VERSION_NUM >= 503
#define mf_isinteger(L, i) lua_isinteger((L), (i))
#endif

/* Integers decoded from JSON: a real integer where the VM has one. */
static inline void mf_pushint(lua_State *L, long long v) {
#if LUA_VERSION_NUM >= 503
  lua_pushinteger(L, (lua_Integer)v);
#else
  lua_pushnumber(L, (lua_Number)v);
#endif
}

/* One Lua value attached to a full userdata (a table under LuaJIT). */
#if LUA_VERSION_NUM < 502
#define mf_setuservalue(L, idx) lua_setfenv((L), (idx))
#define mf_getuservalue(L, idx) lua_getfenv((L), (idx))
#elif LUA_VERSION_NUM < 504
#define mf_setuservalue(L, idx) lua_setuservalue((L), (idx))
#define mf_getuservalue(L, idx) lua_getuservalue((L), (idx))
#else
#define mf_setuservalue(L, idx) lua_setiuservalue((L), (idx), 1)
#define mf_getuservalue(L, idx) lua_getiuservalue((L), (idx), 1)
#endif

/* Raises a message without a source position (the caller's mistake is not
 * in C). */
static inline int mf_raise(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* Registers a userdata metatable: methods as __index, the finaliser as __gc
 * (and as __close when closable), tostring as __tostring. */
static inline void mf_class(lua_State *L, const char *name, const luaL_Reg *methods,
                            lua_CFunction finaliser, int closable, lua_CFunction tostring) {
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

#endif
