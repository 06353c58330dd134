/* Layer 1: base64url and JWT claims. The SDK never verifies signatures (it
 * has no key); it reads `exp` to refresh before the server would refuse the
 * token. */
#include <string.h>
#include <lauxlib.h>

#include "token.h"

#include "compat.h"
#include "json.h"

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-' || c == '+') return 62;
  if (c == '_' || c == '/') return 63;
  return -1;
}

/* Accepts base64url (and standard base64), with or without padding. */
int moltflow_token_base64url_decode(const char *in, size_t n, buffer *out) {
  while (n > 0 && in[n - 1] == '=') n--;
  if (n % 4 == 1) return -1;
  if (moltflow_buffer_reserve(out, n * 3 / 4 + 3)) return -1;
  unsigned long acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_value((unsigned char)in[i]);
    if (v < 0) return -1;
    acc = (acc << 6) | (unsigned long)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->data[out->len++] = (char)((acc >> bits) & 0xFF);
    }
  }
  if (acc & ((1UL << bits) - 1)) return -1; /* non-canonical trailing bits */
  return 0;
}

/* Pushes the claims table of a JWT, or nil and a message. */
static int push_claims(lua_State *L, const char *jwt, size_t n, buffer *scratch) {
  const char *dot1 = memchr(jwt, '.', n);
  const char *dot2 = dot1 ? memchr(dot1 + 1, '.', n - (size_t)(dot1 + 1 - jwt)) : NULL;
  if (!dot1 || !dot2) {
    lua_pushnil(L);
    lua_pushliteral(L, "not a JWT: expected three dot-separated parts");
    return 2;
  }
  buffer payload = {NULL, 0, 0};
  char err[160];
  int rc = moltflow_token_base64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &payload);
  if (rc) {
    moltflow_buffer_free(&payload);
    lua_pushnil(L);
    lua_pushliteral(L, "not a JWT: the payload is not base64url");
    return 2;
  }
  int top = lua_gettop(L);
  rc = moltflow_json_decode(L, payload.data ? payload.data : "", payload.len, scratch, err, sizeof err);
  moltflow_buffer_free(&payload);
  if (rc) {
    lua_pushnil(L);
    lua_pushfstring(L, "not a JWT: the payload is not JSON (%s)", err);
    return 2;
  }
  /* decoded arrays carry the array metatable; objects carry none */
  if (!lua_istable(L, -1) || lua_getmetatable(L, -1)) {
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushliteral(L, "not a JWT: the payload is not an object");
    return 2;
  }
  return 1;
}

double moltflow_token_expiry(lua_State *L, const char *jwt, size_t n, buffer *scratch) {
  int top = lua_gettop(L);
  double exp = 0;
  if (push_claims(L, jwt, n, scratch) == 1) {
    lua_getfield(L, -1, "exp");
    if (lua_type(L, -1) == LUA_TNUMBER) exp = (double)lua_tonumber(L, -1);
  }
  lua_settop(L, top);
  return exp;
}

/* core.jwt_claims(token): the payload, unverified. */
static int l_jwt_claims(lua_State *L) {
  size_t n;
  const char *t = luaL_checklstring(L, 1, &n);
  buffer scratch = {NULL, 0, 0};
  /* a Lua error in between would leak scratch; json_decode raises none but
   * memory errors, which the scratch buffer survives by being tiny and rare */
  int r = push_claims(L, t, n, &scratch);
  moltflow_buffer_free(&scratch);
  return r;
}

static int l_base64url_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  buffer out = {NULL, 0, 0};
  if (moltflow_token_base64url_decode(s, n, &out)) {
    moltflow_buffer_free(&out);
    lua_pushnil(L);
    lua_pushliteral(L, "invalid base64url");
    return 2;
  }
  lua_pushlstring(L, out.data ? out.data : "", out.len);
  moltflow_buffer_free(&out);
  return 1;
}

void moltflow_token_open(lua_State *L) {
  lua_pushcfunction(L, l_jwt_claims);
  lua_setfield(L, -2, "jwt_claims");
  lua_pushcfunction(L, l_base64url_decode);
  lua_setfield(L, -2, "base64url_decode");
}
