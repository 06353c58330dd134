/* Layer 4: the loop userdata. Everything that calls Lua (the host's watch
 * functions) runs here, after libcurl returned: libcurl's callbacks only
 * record into the loop (layer 3). */
#include <string.h>
#include <lauxlib.h>

#include "loop_binding.h"

#include "compat.h"
#include "http.h"

typedef struct {
  moltflow_loop *lp; /* NULL once closed */
  int busy;          /* a method runs: Lua code inside it cannot free the loop */
  int closing;       /* finalised while busy: released when the method ends */
} loop_ud;

moltflow_loop *moltflow_loop_test(lua_State *L, int idx) {
  loop_ud *u = luaL_testudata(L, idx, LOOP_MT);
  if (!u) return NULL;
  if (!u->lp || u->closing) mf_raise(L, "moltflow: the loop is closed");
  return u->lp;
}

static void loop_release(loop_ud *u) {
  if (!u->lp) return;
  moltflow_loop_watch(u->lp, 0);
  moltflow_loop_release(u->lp);
  u->lp = NULL;
  u->closing = 0;
}

/* Runs body(L) (the method's arguments unchanged) with the loop pinned, as
 * client_call does for a client: Lua code inside it (the host's watch
 * functions, finalisers run by its allocations) may finalise the loop and
 * close its last client, and the loop is then released when body returns,
 * never under it. Under lua_pcall, so that it is released on errors too. */
static int loop_call(lua_State *L, lua_CFunction body) {
  loop_ud *u = luaL_checkudata(L, 1, LOOP_MT);
  if (!u->lp || u->closing) return mf_raise(L, "moltflow: the loop is closed");
  if (u->busy) return body(L); /* a method called from a watch function: already pinned */
  int n = lua_gettop(L);
  lua_pushvalue(L, 1); /* keeps the userdata alive below the call */
  lua_pushcfunction(L, body);
  lua_insert(L, 1);
  lua_insert(L, 1);
  u->busy = 1;
  int rc = lua_pcall(L, n, LUA_MULTRET, 0);
  u->busy = 0;
  if (u->closing) loop_release(u);
  if (rc != 0) return lua_error(L);
  return lua_gettop(L) - 1;
}

static moltflow_loop *loop_check(lua_State *L) {
  moltflow_loop *lp = moltflow_loop_test(L, 1);
  if (!lp) luaL_checkudata(L, 1, LOOP_MT); /* raises the usual message */
  return lp;
}

/* core.loop_new{pool_size = n} */
static int loop_new(lua_State *L) {
  double pool = MOLTFLOW_DEFAULT_POOL_SIZE;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "pool_size");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER) mf_raise(L, "moltflow.new_loop: field 'pool_size' must be a number");
      pool = lua_tonumber(L, -1);
      if (!(pool >= 1 && pool <= 1024 && pool == (double)(long)pool))
        mf_raise(L, "moltflow.new_loop: field 'pool_size' must be an integer from 1 to 1024");
    }
    lua_pop(L, 1);
  }
  loop_ud *u = lua_newuserdata(L, sizeof *u);
  memset(u, 0, sizeof *u);
  luaL_setmetatable(L, LOOP_MT);
  lua_newtable(L); /* the watch functions: socket, timer */
  mf_setuservalue(L, -2);
  if (!(u->lp = moltflow_loop_new((long)pool))) return mf_raise(L, "moltflow.new_loop: could not set up libcurl");
  return 1;
}

/* Its clients keep the C loop alive (a reference each) until they close. */
static int loop_gc(lua_State *L) {
  loop_ud *u = luaL_checkudata(L, 1, LOOP_MT);
  if (u->busy) u->closing = 1;
  else loop_release(u);
  return 0;
}

static int loop_tostring(lua_State *L) {
  loop_ud *u = luaL_checkudata(L, 1, LOOP_MT);
  if (u->lp && !u->closing) lua_pushfstring(L, "moltflow.loop (%d running)", moltflow_loop_running(u->lp));
  else lua_pushliteral(L, "moltflow.loop (closed)");
  return 1;
}

/* loop:stats() -> {transfers, in_use, credentials, http1_origins = {...}}:
 * the pool of easy handles its clients share (credentials: how many hold a
 * live client's key or token in their headers), and the https origins known
 * to speak HTTP/1.1 only (calls to them do not wait to learn whether they
 * multiplex). */
static int loop_stats(lua_State *L) {
  moltflow_loop *lp = loop_check(L);
  http_pool_stats st;
  moltflow_http_pool_stats(lp, &st);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, st.transfers);
  lua_setfield(L, -2, "transfers");
  lua_pushinteger(L, st.in_use);
  lua_setfield(L, -2, "in_use");
  lua_pushinteger(L, st.credentials);
  lua_setfield(L, -2, "credentials");
  lua_createtable(L, st.nhttp1, 0);
  for (int i = 0; i < st.nhttp1; i++) {
    lua_pushstring(L, st.http1_origins[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "http1_origins");
  return 1;
}

void moltflow_loop_collect(lua_State *L, moltflow_loop *lp, int idx, int *count) {
  moltflow_job *job;
  while ((job = moltflow_loop_next_done(lp))) {
    const request *r = moltflow_http_job_request(job);
    lua_pushlightuserdata(L, (void *)r);
    lua_rawseti(L, idx, ++*count);
  }
}

/* Tells the host's watch functions what libcurl asked for, oldest first. */
static int loop_flush_body(lua_State *L) {
  moltflow_loop *lp = loop_check(L);
  const loop_ud *u = lua_touserdata(L, 1);
  mf_getuservalue(L, 1);
  int fns = lua_gettop(L);
  moltflow_socket_event ev;
  while (moltflow_loop_socket_events(lp, &ev, 1)) {
    lua_getfield(L, fns, "socket");
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushinteger(L, (lua_Integer)ev.fd);
    lua_pushstring(L, ev.what);
    lua_call(L, 2, 0);
    if (u->closing) return 0; /* finalised by the host: nothing more to tell */
  }
  long ms;
  if (moltflow_loop_timer_pending(lp, &ms)) {
    lua_getfield(L, fns, "timer");
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
    } else {
      lua_pushinteger(L, (lua_Integer)ms);
      lua_call(L, 1, 0);
    }
  }
  return 0;
}

/* Pushes the out table (arg idx, or a new one) and the finished keys. */
static int push_done(lua_State *L, moltflow_loop *lp, int idx) {
  if (!lua_isnoneornil(L, idx)) luaL_checktype(L, idx, LUA_TTABLE);
  if (lua_istable(L, idx)) lua_pushvalue(L, idx);
  else lua_newtable(L);
  int out = lua_gettop(L), count = 0;
  moltflow_loop_collect(L, lp, out, &count);
  lua_pushinteger(L, count);
  return 2;
}

/* lp:poll(timeout, out): drives every transfer for at most timeout seconds
 * (waiting only while none has finished) -> keys of the finished requests
 * (in out when given), their count. */
static int loop_poll_body(lua_State *L) {
  moltflow_loop *lp = loop_check(L);
  double timeout = luaL_optnumber(L, 2, 0);
  moltflow_loop_drive(lp, timeout > 0 ? timeout : 0); /* NaN too */
  return push_done(L, lp, 3);
}

/* lp:collect(out): the keys finished so far, without driving. */
static int loop_collect_body(lua_State *L) { return push_done(L, loop_check(L), 2); }

/* lp:action(fd, what): fd is ready ("in", "out", "inout"); lp:action(): the
 * timer fired. */
static int loop_action_body(lua_State *L) {
  moltflow_loop *lp = loop_check(L);
  if (lua_isnoneornil(L, 2)) {
    moltflow_loop_action(lp, CURL_SOCKET_TIMEOUT, 0);
    return 0;
  }
  lua_Integer fd = luaL_checkinteger(L, 2);
  static const char *const whats[] = {"in", "out", "inout", NULL};
  static const int masks[] = {CURL_CSELECT_IN, CURL_CSELECT_OUT, CURL_CSELECT_IN | CURL_CSELECT_OUT};
  int mask = lua_isnoneornil(L, 3) ? 0 : masks[luaL_checkoption(L, 3, NULL, whats)];
  if (fd < 0 || fd > 0x7fffffff) return mf_raise(L, "moltflow: loop:action: 'fd' must be a file descriptor");
  moltflow_loop_action(lp, (curl_socket_t)fd, mask);
  return 0;
}

/* lp:watch(socket_fn, timer_fn), or lp:watch() to go back to polling. */
static int loop_watch_body(lua_State *L) {
  moltflow_loop *lp = loop_check(L);
  int on = !lua_isnoneornil(L, 2) || !lua_isnoneornil(L, 3);
  if (on) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_checktype(L, 3, LUA_TFUNCTION);
  }
  mf_getuservalue(L, 1);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "socket");
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "timer");
  if (moltflow_loop_watch(lp, on)) return mf_raise(L, "moltflow: loop:watch: libcurl refused the callbacks");
  return 0;
}

static int loop_running_body(lua_State *L) {
  lua_pushinteger(L, moltflow_loop_running(loop_check(L)));
  return 1;
}

static int loop_flush(lua_State *L) { return loop_call(L, loop_flush_body); }
static int loop_poll(lua_State *L) { return loop_call(L, loop_poll_body); }
static int loop_collect(lua_State *L) { return loop_call(L, loop_collect_body); }
static int loop_action(lua_State *L) { return loop_call(L, loop_action_body); }
static int loop_watch(lua_State *L) { return loop_call(L, loop_watch_body); }
static int loop_running(lua_State *L) { return loop_call(L, loop_running_body); }

void moltflow_loop_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"poll", loop_poll},       {"collect", loop_collect},
                                     {"action", loop_action},   {"watch", loop_watch},
                                     {"flush", loop_flush},     {"running", loop_running},
                                     {"stats", loop_stats},
                                     {NULL, NULL}};
  mf_class(L, LOOP_MT, methods, loop_gc, 0, loop_tostring);
  lua_pushcfunction(L, loop_new);
  lua_setfield(L, -2, "loop_new");
}
