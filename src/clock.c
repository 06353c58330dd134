/* Layer 1: clocks and sleeping, the blocking defaults for retries, pacing
 * and deadlines. */
#include <errno.h>
#include <math.h>
#include <time.h>
#include <lauxlib.h>

#include "clock.h"

/* core.sleep(seconds) */
static int l_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  if (!(s > 0)) return 0;
  if (s > 1e9) s = 1e9; /* beyond time_t's range: undefined */
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

double moltflow_clock_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* core.time(): Unix time with sub-second precision. */
static int l_time(lua_State *L) {
  lua_pushnumber(L, (lua_Number)moltflow_clock_wall());
  return 1;
}

void moltflow_clock_open(lua_State *L) {
  lua_pushcfunction(L, l_sleep);
  lua_setfield(L, -2, "sleep");
  lua_pushcfunction(L, l_monotime);
  lua_setfield(L, -2, "monotime");
  lua_pushcfunction(L, l_time);
  lua_setfield(L, -2, "time");
}
