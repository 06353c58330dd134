/* Layer 1. base64url and JWT claims (read, never verified: the SDK has no key). */
#ifndef MOLTFLOW_TOKEN_H
#define MOLTFLOW_TOKEN_H

#include <stddef.h>
#include <lua.h>

#include "buffer.h"

void moltflow_token_open(lua_State *L); /* core.jwt_claims, core.base64url_decode */
int moltflow_token_base64url_decode(const char *in, size_t n, buffer *out);
/* The JWT's exp claim, or 0 when it has none or is not a JWT. */
double moltflow_token_expiry(lua_State *L, const char *jwt, size_t n, buffer *scratch);

#endif
