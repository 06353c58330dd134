/* Layer 4. The client userdata: options, secrets, lifetime and the Lua
 * methods, over request building (2), response reading (2) and http (3). */
#ifndef MOLTFLOW_CLIENT_H
#define MOLTFLOW_CLIENT_H

#include <lua.h>

#define CLIENT_MT "moltflow.client"

void moltflow_client_open(lua_State *L); /* core.new and the client class */

#endif
