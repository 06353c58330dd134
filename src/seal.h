/* Layer 1. Authenticated encryption of tokens at rest: AES-256-GCM (OpenSSL). */
#ifndef MOLTFLOW_SEAL_H
#define MOLTFLOW_SEAL_H

#include <lua.h>

void moltflow_seal_open(lua_State *L);

#endif
