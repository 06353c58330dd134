/* Layer 1. Digests, HMAC, constant-time compare and randomness (OpenSSL). */
#ifndef MOLTFLOW_HASH_H
#define MOLTFLOW_HASH_H

#include <lua.h>

void moltflow_hash_open(lua_State *L);

#endif
