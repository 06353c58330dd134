/* luaopen_moltflow_core: the C mechanism under lua/moltflow/admin.lua.
 *
 * The modules form layers; each uses only the layers below it (and its own
 * layer's leaves), and includes only their headers (docs/architecture.md):
 *   5. core.c      luaopen only
 *   4. client.c    the client: options, secrets, the Lua methods
 *   4. loop_binding.c  the loop userdata (core.loop_new)
 *   3. http.c      libcurl only: transfers, the map from requests to them
 *      loop.c      libcurl only: the multi and share handles clients share
 *   2. request.c   endpoints, request building, the headers for every transport
 *      response.c  response reading and the error tables (no I/O)
 *   1. buffer.c json.c token.c hash.c seal.c clock.c sys.c, compat.h: leaves */
#include <lauxlib.h>

#include "client.h"
#include "clock.h"
#include "compat.h"
#include "hash.h"
#include "http.h"
#include "json.h"
#include "loop_binding.h"
#include "request.h"
#include "response.h"
#include "seal.h"
#include "sys.h"
#include "token.h"

/* The only symbol core.so exports. */
__attribute__((visibility("default"))) int luaopen_moltflow_core(lua_State *L) {
  moltflow_http_global_init();
  lua_newtable(L);
  moltflow_client_open(L);
  moltflow_loop_open(L);
  moltflow_request_open(L);
  moltflow_response_open(L);
  moltflow_json_open(L);
  moltflow_token_open(L);
  moltflow_hash_open(L);
  moltflow_seal_open(L);
  moltflow_clock_open(L);
  moltflow_sys_open(L);
  lua_pushliteral(L, MOLTFLOW_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, moltflow_http_version());
  lua_setfield(L, -2, "curl_version");
  return 1;
}
