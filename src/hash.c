/* Layer 1. Digests for key fingerprints and webhook signatures, from OpenSSL's
 * libcrypto: no hand-written cryptography. */
#include <string.h>
#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "hash.h"

#include "compat.h"

static void push_hex(lua_State *L, const unsigned char *d, size_t n) {
  static const char hex[] = "0123456789abcdef";
  char out[2 * EVP_MAX_MD_SIZE];
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  lua_pushlstring(L, out, 2 * n);
  OPENSSL_cleanse(out, sizeof out); /* an HMAC of a webhook secret */
}

/* core.sha256(s): lower-case hex. */
static int hash_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!EVP_Digest(s, n, md, &len, EVP_sha256(), NULL)) return luaL_error(L, "moltflow.sha256: OpenSSL failed");
  push_hex(L, md, len);
  return 1;
}

/* core.hmac_sha256(key, msg): lower-case hex. */
static int hash_hmac_sha256(lua_State *L) {
  size_t kn, mn;
  const char *k = luaL_checklstring(L, 1, &kn);
  const char *m = luaL_checklstring(L, 2, &mn);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), k, (int)kn, (const unsigned char *)m, mn, md, &len))
    return luaL_error(L, "moltflow.hmac_sha256: OpenSSL failed");
  push_hex(L, md, len);
  OPENSSL_cleanse(md, sizeof md);
  return 1;
}

/* core.equal(a, b): compares in time that depends only on the lengths. */
static int hash_equal(lua_State *L) {
  size_t an, bn;
  const char *a = luaL_checklstring(L, 1, &an);
  const char *b = luaL_checklstring(L, 2, &bn);
  lua_pushboolean(L, an == bn && CRYPTO_memcmp(a, b, an) == 0);
  return 1;
}

/* core.random_bytes(n) from the OpenSSL CSPRNG. */
static int hash_random_bytes(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 4096, 1, "between 0 and 4096");
  unsigned char buf[4096];
  if (RAND_bytes(buf, (int)n) != 1) return luaL_error(L, "moltflow.random_bytes: OpenSSL failed");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  OPENSSL_cleanse(buf, (size_t)n);
  return 1;
}

void moltflow_hash_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"sha256", hash_sha256},
                                 {"hmac_sha256", hash_hmac_sha256},
                                 {"equal", hash_equal},
                                 {"random_bytes", hash_random_bytes},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
