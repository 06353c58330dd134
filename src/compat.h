/* Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT 2.1: every version difference lives here.
 *
 * The sources are written against the Lua 5.4 API. For older versions this
 * header supplies what they lack, under the 5.4 names (as macros onto static
 * inline mf_compat_* functions, so no symbol can clash with a host's own
 * compat layer). LuaJIT 2.1 reports 5.1 but already has part of the 5.2
 * auxiliary library (luaL_setfuncs, luaL_setmetatable, luaL_testudata,
 * luaL_newlib); MF_PUC_LUA51 marks the plain Lua 5.1 that has none of it.
 *
 * It also holds the two Lua helpers every module shares. A leaf: Lua headers only. */
#ifndef MOLTFLOW_COMPAT_H
#define MOLTFLOW_COMPAT_H

#include <stdarg.h>
#include <lua.h>
#include <lauxlib.h>

#define MOLTFLOW_VERSION "0.2.0"

#if LUA_VERSION_NUM < 502 && !defined(luaL_newlib)
#define MF_PUC_LUA51 1
#endif

/* ------------------------------------------------ Lua 5.1 (and LuaJIT) */
#if LUA_VERSION_NUM < 502

#ifndef LUA_OK
#define LUA_OK 0
#endif

static inline int mf_compat_absindex(lua_State *L, int i) {
  return (i > 0 || i <= LUA_REGISTRYINDEX) ? i : lua_gettop(L) + i + 1;
}
#define lua_absindex(L, i) mf_compat_absindex((L), (i))

#define lua_rawlen(L, i) lua_objlen((L), (i))
/* Without __len (5.1 has none for tables): the raw length. */
#define luaL_len(L, i) ((lua_Integer)lua_objlen((L), (i)))

#endif /* LUA_VERSION_NUM < 502 */

/* ------------------------------------------------ plain Lua 5.1 only */
#ifdef MF_PUC_LUA51

static inline void mf_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#define luaL_setfuncs(L, l, nup) mf_compat_setfuncs((L), (l), (nup))

static inline void mf_compat_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
#define luaL_setmetatable(L, tname) mf_compat_setmetatable((L), (tname))

static inline void *mf_compat_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}
#define luaL_testudata(L, i, tname) mf_compat_testudata((L), (i), (tname))

#endif /* MF_PUC_LUA51 */

/* ------------------------------------------------ before Lua 5.3 */
#if LUA_VERSION_NUM < 503
/* Every number is a float: none has the integer subtype. */
#define lua_isinteger(L, i) ((void)(L), (void)(i), 0)
#endif

/* ------------------------------------------------ before Lua 5.4 */
#if LUA_VERSION_NUM < 504
/* One user value at most (a table's environment under 5.1 and LuaJIT). */

static inline int mf_compat_getiuservalue(lua_State *L, int idx, int n) {
  (void)n;
#if LUA_VERSION_NUM < 502
  lua_getfenv(L, idx);
#else
  lua_getuservalue(L, idx);
#endif
  return lua_type(L, -1);
}
#define lua_getiuservalue(L, idx, n) mf_compat_getiuservalue((L), (idx), (n))

static inline int mf_compat_setiuservalue(lua_State *L, int idx, int n) {
  (void)n;
#if LUA_VERSION_NUM < 502
  return lua_setfenv(L, idx);
#else
  lua_setuservalue(L, idx);
  return 1;
#endif
}
#define lua_setiuservalue(L, idx, n) mf_compat_setiuservalue((L), (idx), (n))
#endif

/* ------------------------------------------------ the project's helpers */
#define mf_rawlen(L, i) lua_rawlen((L), (i))
#define mf_absindex(L, i) lua_absindex((L), (i))
#define mf_isinteger(L, i) lua_isinteger((L), (i))

/* Integers decoded from JSON: a real integer where the VM has one. */
static inline void mf_pushint(lua_State *L, long long v) {
#if LUA_VERSION_NUM >= 503
  lua_pushinteger(L, (lua_Integer)v);
#else
  lua_pushnumber(L, (lua_Number)v);
#endif
}

/* One Lua value attached to a full userdata (a table under 5.1 and LuaJIT). */
#define mf_setuservalue(L, idx) lua_setiuservalue((L), (idx), 1)
#define mf_getuservalue(L, idx) lua_getiuservalue((L), (idx), 1)

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
 * (and as __close when closable), tostring as __tostring. Protected: Lua code
 * gets the class name from getmetatable and cannot replace it, so it cannot
 * reach the finaliser to call it at a time of its choosing. */
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
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

#endif
