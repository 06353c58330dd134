/* A minimal C host embedding Lua 5.4 with the MoltFlow SDK linked in
 * statically: the C core (every src/ file) is compiled into this program and
 * registered with luaL_requiref, so `require "moltflow.core"` needs no
 * shared object. Lua runs on a counting allocator; the program reports the
 * peak heap and fails if anything is still allocated after lua_close.
 *
 * It also has a json_encode and a buffer_append of its own, as a game engine
 * might: the core's names carry a moltflow_ prefix, so both link.
 *
 *   moltflow-embed SCRIPT [ARGS...]    (LUA_PATH must reach lua/?.lua)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_moltflow_core(lua_State *L);

/* The host's own helpers, named as an engine might name them. They link
 * because the core's internal functions carry a moltflow_ prefix. */
int buffer_append(char *buf, size_t size, size_t *len, const char *s) {
  size_t n = strlen(s);
  if (*len + n >= size) return -1;
  memcpy(buf + *len, s, n + 1);
  *len += n;
  return 0;
}

int json_encode(char *out, size_t size, const char *key, int value) {
  size_t len = 0;
  char num[24];
  snprintf(num, sizeof num, "%d", value);
  return buffer_append(out, size, &len, "{\"") || buffer_append(out, size, &len, key) ||
         buffer_append(out, size, &len, "\":") || buffer_append(out, size, &len, num) ||
         buffer_append(out, size, &len, "}");
}

typedef struct {
  size_t in_use, peak, allocations;
} heap_stats;

static void *counting_alloc(void *ud, void *ptr, size_t old_size, size_t new_size) {
  heap_stats *h = ud;
  size_t old = ptr ? old_size : 0; /* without ptr, old_size is a type tag */
  if (new_size == 0) {
    free(ptr);
    h->in_use -= old;
    return NULL;
  }
  void *p = realloc(ptr, new_size);
  if (!p) return NULL;
  h->in_use = h->in_use - old + new_size;
  if (h->in_use > h->peak) h->peak = h->in_use;
  h->allocations++;
  return p;
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s SCRIPT [ARGS...]\n", argv[0]);
    return 2;
  }
  char hello[32];
  if (json_encode(hello, sizeof hello, "frames", 60) || strcmp(hello, "{\"frames\":60}")) return 1;
  heap_stats heap = {0, 0, 0};
  lua_State *L = lua_newstate(counting_alloc, &heap);
  if (!L) return 1;
  luaL_openlibs(L);
  luaL_requiref(L, "moltflow.core", luaopen_moltflow_core, 0);
  lua_pop(L, 1);

  lua_createtable(L, argc, 0); /* arg, as the lua interpreter sets it */
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");

  int status = EXIT_SUCCESS;
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, argv[1]) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    status = EXIT_FAILURE;
  } else {
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    if (lua_pcall(L, argc - 2, 0, 1) != LUA_OK) {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      status = EXIT_FAILURE;
    }
  }
  lua_close(L);
  printf("lua heap: peak %zu bytes, %zu allocations, %zu bytes in use after lua_close\n", heap.peak,
         heap.allocations, heap.in_use);
  if (heap.in_use != 0) status = EXIT_FAILURE;
  return status;
}
