/* A minimal Lua 5.4 interpreter for `make check-sanitize`: built with the
 * ASan and UBSan runtimes, so that the instrumented moltflow core can be
 * loaded without LD_PRELOAD (which every child process, nginx included,
 * would inherit). Usage: MOLTFLOW_ASAN_CPATH='build/asan/?.so' asan_lua script.lua [args...] */
#include <stdio.h>
#include <stdlib.h>
#include <lauxlib.h>
#include <lualib.h>

/* lua_close() unloads C modules; libcurl's and OpenSSL's one-time global
 * allocations would then look leaked, and their stacks could not be named.
 * Keeping every library loaded until the process exits avoids both. */
int dlclose(void *handle) {
  (void)handle;
  return 0;
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua [args...]\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  /* The instrumented core for this process only: LUA_CPATH stays the plain
   * build's, for the lua5.4 child processes some specs run. */
  const char *cpath = getenv("MOLTFLOW_ASAN_CPATH");
  if (cpath) { /* prepended to package.cpath */
    lua_getglobal(L, "package");
    lua_pushstring(L, cpath);
    lua_pushliteral(L, ";");
    lua_getfield(L, -3, "cpath");
    lua_concat(L, 3);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
  }
  lua_createtable(L, argc, 1); /* arg[-1] = interpreter, arg[0] = script */
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  int status = luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) {
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    status = lua_pcall(L, argc - 2, 0, 1);
  }
  if (status != LUA_OK) fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
