/* Shared by the libFuzzer targets: one Lua 5.4 state per process with
 * moltflow.core (or its layer 2 only) loaded, and a protected call so that a Lua error (out of
 * memory) in the code under test ends the input, not the fuzzer. */
#ifndef MOLTFLOW_FUZZ_HARNESS_H
#define MOLTFLOW_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>

#include "../src/json.h"
#include "../src/request.h"
#include "../src/response.h"

/* A target that defines FUZZ_LAYER2_ONLY gets the request and response
 * layers without the client and libcurl (the Makefile links it without them). */
#ifdef FUZZ_LAYER2_ONLY
static int fuzz_open(lua_State *L) {
  lua_newtable(L);
  moltflow_json_open(L);
  moltflow_request_open(L);
  moltflow_response_open(L);
  return 1;
}
#else
int luaopen_moltflow_core(lua_State *L);
#define fuzz_open luaopen_moltflow_core
#endif

typedef struct {
  const uint8_t *data;
  size_t size;
} fuzz_input;

static inline lua_State *fuzz_state(void) {
  static lua_State *L;
  if (!L) {
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "moltflow.core", fuzz_open, 0);
    lua_setglobal(L, "core");
  }
  return L;
}

/* Runs fn(L) with the input as a light userdata at index 1. */
static inline void fuzz_run(lua_CFunction fn, const uint8_t *data, size_t size) {
  static unsigned runs;
  lua_State *L = fuzz_state();
  fuzz_input in = {data, size};
  lua_settop(L, 0);
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, &in);
  int rc = lua_pcall(L, 1, 0, 0);
  if (rc != LUA_OK && rc != LUA_ERRMEM) { /* the code under test raises nothing else */
    fprintf(stderr, "Lua error: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  if (++runs % 256 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
}

static inline const fuzz_input *fuzz_arg(lua_State *L) { return lua_touserdata(L, 1); }

/* A request as c:build would leave it, for the response readers. */
static inline void fuzz_request(request *r, const char *method, const char *path) {
  memset(r, 0, sizeof *r);
  strcpy(r->method, method);
  if (moltflow_buffer_puts(&r->path, path) || moltflow_buffer_cstr(&r->path)) abort();
}

#endif
