/* Layer 4. The loop userdata (core.loop_new): the Lua methods over a loop
 * (layer 3), which clients are attached to (core.new{loop = ...}). */
#ifndef MOLTFLOW_LOOP_BINDING_H
#define MOLTFLOW_LOOP_BINDING_H

#include <lua.h>

#include "loop.h"

#define LOOP_MT "moltflow.loop"
#define MOLTFLOW_DEFAULT_POOL_SIZE 8

void moltflow_loop_open(lua_State *L); /* core.loop_new and the loop class */
/* The loop at idx, or NULL when idx is not a loop (raises when it is closed). */
moltflow_loop *moltflow_loop_test(lua_State *L, int idx);
/* Pushes the keys (lightuserdata) of the requests that finished on lp
 * into the table at idx from *count + 1 on, counting them. */
void moltflow_loop_collect(lua_State *L, moltflow_loop *lp, int idx, int *count);

#endif
