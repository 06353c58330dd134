/* Layer 1. Clocks and sleeping: core.sleep, core.monotime, core.time. */
#ifndef MOLTFLOW_CLOCK_H
#define MOLTFLOW_CLOCK_H

#include <lua.h>

void moltflow_clock_open(lua_State *L);

#endif
