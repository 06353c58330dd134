/* A game-style C host: a frame loop that drives MoltFlow calls without ever
 * waiting for the network. The C core (every src/ file) is compiled into this
 * program and registered before any require; the Lua modules are found
 * through package.path, set here from C. Each frame the host calls
 * c:poll(0) once (only what is ready, no waiting), then looks at its handles
 * and prints the results of the calls that finished.
 *
 *   moltflow-frame LUA_DIR [CA_FILE]
 *
 * LUA_DIR holds moltflow/admin.lua (a checkout's lua/, or an install's
 * share/lua/5.4). The server and key come from $MOLTFLOW_API_URL and
 * $MOLTFLOW_API_KEY, as for any client; CA_FILE is the client's ca_file.
 * The last line reports the CPU time spent inside poll(0): over TLS the
 * first handshake is done there (see README.md in this directory).
 *
 * Build: `make embed`, whose cc line examples/embed/README.md quotes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_moltflow_core(lua_State *L);

#define FRAME_NS 16666667L /* 60 frames a second */
#define MAX_FRAMES 1800    /* 30 s: the calls' own timeouts end them first */

/* The calls this host makes at once, and what it prints of each result. */
typedef struct {
  const char *call;   /* "group.name" for c:spawn */
  int months;         /* an argument table {months = N} when > 0 */
  const char *field;  /* a number field of the value to print, or NULL */
  const char *list;   /* a list field of the value to count, or NULL */
  int handle;         /* registry reference of the handle */
  int reported;
  int failed;         /* h:result() raised */
} call;

static double cpu_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Runs the function on the stack with nargs arguments; prints the Lua error
 * and returns 0 when it raised. */
static int call_lua(lua_State *L, int nargs, int nresults) {
  if (lua_pcall(L, nargs, nresults, 0) == LUA_OK) return 1;
  fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
  lua_pop(L, 1);
  return 0;
}

/* package.path from C: this directory's modules only, and no C modules from
 * disk (the core is linked in). */
static void set_paths(lua_State *L, const char *dir) {
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", dir, dir);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, "");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
}

/* c = require("moltflow.admin").new{ca_file = ca_file}; leaves c on the stack. */
static int new_client(lua_State *L, const char *ca_file) {
  lua_getglobal(L, "require");
  lua_pushstring(L, "moltflow.admin");
  if (!call_lua(L, 1, 1)) return 0;
  lua_getfield(L, -1, "new");
  lua_remove(L, -2);
  lua_createtable(L, 0, 1);
  if (ca_file) {
    lua_pushstring(L, ca_file);
    lua_setfield(L, -2, "ca_file");
  }
  return call_lua(L, 1, 1);
}

/* h = c:spawn(call[, {months = N}]), kept in the registry. c at index client. */
static int spawn(lua_State *L, int client, call *k) {
  lua_getfield(L, client, "spawn");
  lua_pushvalue(L, client);
  lua_pushstring(L, k->call);
  int nargs = 2;
  if (k->months > 0) {
    lua_createtable(L, 0, 1);
    lua_pushinteger(L, k->months);
    lua_setfield(L, -2, "months");
    nargs++;
  }
  if (!call_lua(L, nargs, 1)) return 0;
  k->handle = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* Prints the call's result once it is done; returns whether it is. */
static int report(lua_State *L, call *k) {
  if (k->reported) return 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, k->handle);
  lua_getfield(L, -1, "done");
  int done = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!done) {
    lua_pop(L, 1);
    return 0;
  }
  lua_getfield(L, -1, "result"); /* value, res = h:result() */
  lua_insert(L, -2);
  if (!call_lua(L, 1, 2)) {
    luaL_unref(L, LUA_REGISTRYINDEX, k->handle);
    k->failed = 1;
    return k->reported = 1;
  }
  if (lua_isnil(L, -2)) {
    printf("%s: failed: %s\n", k->call, luaL_tolstring(L, -1, NULL));
    lua_pop(L, 1);
  } else if (k->field) {
    lua_getfield(L, -2, k->field);
    printf("%s: %s %lld\n", k->call, k->field, (long long)lua_tointeger(L, -1));
    lua_pop(L, 1);
  } else {
    lua_getfield(L, -2, k->list);
    printf("%s: %lld %s\n", k->call, (long long)luaL_len(L, -1), k->list);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  luaL_unref(L, LUA_REGISTRYINDEX, k->handle);
  return k->reported = 1;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s LUA_DIR [CA_FILE]\n", argv[0]);
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) return 1;
  luaL_openlibs(L);
  luaL_requiref(L, "moltflow.core", luaopen_moltflow_core, 0); /* before any require */
  lua_pop(L, 1);
  set_paths(L, argv[1]);

  call calls[] = {
      {"usage.current", 0, "total_messages", NULL, LUA_NOREF, 0, 0},
      {"usage.history", 3, NULL, "months", LUA_NOREF, 0, 0},
      {"billing.plans", 0, NULL, "plans", LUA_NOREF, 0, 0},
  };
  const int ncalls = (int)(sizeof calls / sizeof calls[0]);
  int status = EXIT_FAILURE;
  if (!new_client(L, argc == 3 ? argv[2] : NULL)) goto done;
  int client = lua_gettop(L);
  for (int i = 0; i < ncalls; i++)
    if (!spawn(L, client, &calls[i])) goto done;

  double poll_max = 0, poll_total = 0;
  int frames = 0, finished = 0;
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  while (finished < ncalls && frames < MAX_FRAMES) {
    frames++;
    /* the frame's work: input, physics, drawing ... then the network, once */
    double t0 = cpu_ms();
    lua_getfield(L, client, "poll");
    lua_pushvalue(L, client);
    lua_pushnumber(L, 0); /* 0: only what is ready, no waiting */
    if (!call_lua(L, 2, 1)) goto done;
    lua_pop(L, 1); /* the number of calls still running */
    double spent = cpu_ms() - t0;
    poll_total += spent;
    if (spent > poll_max) poll_max = spent;
    finished = 0;
    for (int i = 0; i < ncalls; i++) finished += report(L, &calls[i]);
    /* wait for the next frame (a game waits for vsync here) */
    next.tv_nsec += FRAME_NS;
    if (next.tv_nsec >= 1000000000L) {
      next.tv_sec++;
      next.tv_nsec -= 1000000000L;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
  }
  printf("frames: %d\n", frames);
  printf("poll(0) CPU: %.2f ms at most in one frame, %.2f ms in all\n", poll_max, poll_total);
  status = finished == ncalls ? EXIT_SUCCESS : EXIT_FAILURE;
  for (int i = 0; i < ncalls; i++)
    if (calls[i].failed) status = EXIT_FAILURE;

done:
  lua_close(L); /* closes the client too */
  return status;
}
