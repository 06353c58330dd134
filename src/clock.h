/* Layer 1. Clocks and sleeping: core.sleep, core.monotime, core.time. */
#ifndef MOLTFLOW_CLOCK_H
#define MOLTFLOW_CLOCK_H

#include <lua.h>

/* Unix time with sub-second precision (CLOCK_REALTIME): core.time(), and the
 * "now" a Retry-After date is measured from. */
double moltflow_clock_wall(void);

void moltflow_clock_open(lua_State *L);

#endif
