/* Layer 1. Tokens sealed at rest: AES-256-GCM through OpenSSL's EVP, a
 * random 96-bit nonce per seal, and a key id so that a reader holding several
 * keys (a seal key being rotated) knows which one to try.
 *
 *   sealed = "v1." kid "." base64url(nonce[12] | ciphertext | tag[16])
 *   kid    = the first 4 bytes of SHA-256("moltflow seal key id" | key), in hex
 *
 * The GCM additional data is "v1.<kid>." followed by the caller's aad, so the
 * version and key id cannot be swapped and a value sealed for one purpose
 * (aad) does not unseal for another. Every buffer that held the key or the
 * plaintext is wiped before it is freed (a userdata whose __gc cleanses it,
 * so a Lua error on the way out wipes it too). */
#include <stddef.h>
#include <string.h>
#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "seal.h"

#include "compat.h"

#define KEY_LEN 32
#define NONCE_LEN 12
#define TAG_LEN 16
#define KID_HEX 8
#define PREFIX_LEN (3 + KID_HEX + 1) /* "v1." kid "." */
#define SEAL_MAX_INPUT (16u << 20)

static const char SCRATCH_MT[] = "moltflow.seal.scratch";

typedef struct {
  size_t len;
  unsigned char data[1];
} scratch;

static int scratch_gc(lua_State *L) {
  scratch *s = luaL_checkudata(L, 1, SCRATCH_MT);
  OPENSSL_cleanse(s->data, s->len);
  s->len = 0;
  return 0;
}

/* A wiped-on-collection buffer of n bytes, left on the stack. */
static unsigned char *scratch_new(lua_State *L, size_t n) {
  scratch *s = lua_newuserdata(L, offsetof(scratch, data) + n + 1);
  s->len = n + 1;
  luaL_setmetatable(L, SCRATCH_MT);
  return s->data;
}

static void key_id(const unsigned char *key, char out[KID_HEX + 1]) {
  static const char label[] = "moltflow seal key id";
  static const char hex[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
           EVP_DigestUpdate(ctx, label, sizeof label - 1) && EVP_DigestUpdate(ctx, key, KEY_LEN) &&
           EVP_DigestFinal_ex(ctx, md, &mdlen);
  EVP_MD_CTX_free(ctx);
  if (!ok) memset(md, 0, sizeof md);
  for (int i = 0; i < KID_HEX / 2; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[KID_HEX] = '\0';
  OPENSSL_cleanse(md, sizeof md);
}

static const unsigned char *check_key(lua_State *L, const char *fn) {
  size_t n;
  const char *key = luaL_checklstring(L, 1, &n);
  if (n != KEY_LEN) luaL_error(L, "moltflow.%s: the key must be %d bytes", fn, KEY_LEN);
  return (const unsigned char *)key;
}

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const unsigned char *in, size_t n, char *out) {
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8) | in[i + 2];
    out[o++] = B64URL[(v >> 18) & 63];
    out[o++] = B64URL[(v >> 12) & 63];
    out[o++] = B64URL[(v >> 6) & 63];
    out[o++] = B64URL[v & 63];
  }
  if (n - i == 1) {
    unsigned long v = (unsigned long)in[i] << 16;
    out[o++] = B64URL[(v >> 18) & 63];
    out[o++] = B64URL[(v >> 12) & 63];
  } else if (n - i == 2) {
    unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8);
    out[o++] = B64URL[(v >> 18) & 63];
    out[o++] = B64URL[(v >> 12) & 63];
    out[o++] = B64URL[(v >> 6) & 63];
  }
  return o;
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/* Strict base64url without padding; returns the decoded length or -1. */
static long b64_decode(const char *in, size_t n, unsigned char *out) {
  if (n % 4 == 1) return -1;
  unsigned long acc = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_value((unsigned char)in[i]);
    if (v < 0) return -1;
    acc = ((acc << 6) | (unsigned long)v) & 0xFFFFFF;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)((acc >> bits) & 0xFF);
    }
  }
  if (acc & ((1UL << bits) - 1)) return -1; /* non-canonical trailing bits */
  return (long)o;
}

/* Runs AES-256-GCM one way; 1 on success (for decryption: the tag matched). */
static int gcm(int encrypt, const unsigned char *key, const unsigned char *nonce, const unsigned char *aad1,
               size_t aad1_len, const unsigned char *aad2, size_t aad2_len, const unsigned char *in, size_t n,
               unsigned char *out, unsigned char *tag) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int len = 0, written = 0, ok = ctx != NULL;
  ok = ok && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1;
  ok = ok && EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, encrypt) == 1;
  ok = ok && EVP_CipherUpdate(ctx, NULL, &len, aad1, (int)aad1_len) == 1;
  if (ok && aad2_len) ok = EVP_CipherUpdate(ctx, NULL, &len, aad2, (int)aad2_len) == 1;
  if (ok && n) ok = EVP_CipherUpdate(ctx, out, &written, in, (int)n) == 1;
  if (ok && !encrypt) ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1;
  ok = ok && EVP_CipherFinal_ex(ctx, out + written, &len) == 1;
  if (ok && encrypt) ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
  EVP_CIPHER_CTX_free(ctx); /* wipes the expanded key */
  return ok;
}

/* core.seal(key32, plaintext [, aad]): the sealed string. */
static int seal_seal(lua_State *L) {
  const unsigned char *key = check_key(L, "seal");
  size_t n, aad_len = 0;
  const char *plain = luaL_checklstring(L, 2, &n);
  const char *aad = luaL_optlstring(L, 3, "", &aad_len);
  if (n > SEAL_MAX_INPUT || aad_len > SEAL_MAX_INPUT) return luaL_error(L, "moltflow.seal: the input is too large");
  char head[PREFIX_LEN + 1];
  memcpy(head, "v1.", 3);
  key_id(key, head + 3);
  head[PREFIX_LEN - 1] = '.';
  head[PREFIX_LEN] = '\0';
  size_t raw_len = NONCE_LEN + n + TAG_LEN;
  size_t text_len = PREFIX_LEN + (raw_len + 2) / 3 * 4;
  unsigned char *raw = scratch_new(L, raw_len + text_len);
  char *text = (char *)raw + raw_len;
  if (RAND_bytes(raw, NONCE_LEN) != 1 ||
      !gcm(1, key, raw, (const unsigned char *)head, PREFIX_LEN, (const unsigned char *)aad, aad_len,
           (const unsigned char *)plain, n, raw + NONCE_LEN, raw + NONCE_LEN + n)) {
    lua_pushnil(L);
    lua_pushliteral(L, "OpenSSL could not seal");
    return 2;
  }
  memcpy(text, head, PREFIX_LEN);
  size_t out_len = PREFIX_LEN + b64_encode(raw, raw_len, text + PREFIX_LEN);
  lua_pushlstring(L, text, out_len);
  return 1;
}

/* Checks the frame of a sealed string: its kid (8 hex) and payload, or 0. */
static int parse_sealed(const char *s, size_t n, const char **payload, size_t *payload_len) {
  if (n < PREFIX_LEN || memcmp(s, "v1.", 3) != 0 || s[PREFIX_LEN - 1] != '.') return 0;
  for (int i = 3; i < 3 + KID_HEX; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
  }
  *payload = s + PREFIX_LEN;
  *payload_len = n - PREFIX_LEN;
  return 1;
}

static int fail(lua_State *L, const char *message) {
  lua_pushnil(L);
  lua_pushstring(L, message);
  return 2;
}

/* core.unseal(key32, sealed [, aad]): the plaintext, or nil and why. */
static int seal_unseal(lua_State *L) {
  const unsigned char *key = check_key(L, "unseal");
  size_t n, aad_len = 0;
  const char *sealed = luaL_checklstring(L, 2, &n);
  const char *aad = luaL_optlstring(L, 3, "", &aad_len);
  const char *payload;
  size_t payload_len;
  if (n > SEAL_MAX_INPUT || aad_len > SEAL_MAX_INPUT || !parse_sealed(sealed, n, &payload, &payload_len))
    return fail(L, "not a sealed value");
  char kid[KID_HEX + 1];
  key_id(key, kid);
  if (memcmp(sealed + 3, kid, KID_HEX) != 0) return fail(L, "sealed with another key");
  unsigned char *raw = scratch_new(L, payload_len); /* decoded (<= 3/4) then the plaintext after it */
  long raw_len = b64_decode(payload, payload_len, raw);
  if (raw_len < NONCE_LEN + TAG_LEN) return fail(L, "not a sealed value");
  size_t ct_len = (size_t)raw_len - NONCE_LEN - TAG_LEN;
  unsigned char *plain = scratch_new(L, ct_len);
  if (!gcm(0, key, raw, (const unsigned char *)sealed, PREFIX_LEN, (const unsigned char *)aad, aad_len,
           raw + NONCE_LEN, ct_len, plain, raw + NONCE_LEN + ct_len))
    return fail(L, "the sealed value does not authenticate (tampered, or another key)");
  lua_pushlstring(L, (const char *)plain, ct_len);
  return 1;
}

/* core.seal_key_id(key32): the key id a sealed value names. */
static int seal_key_id(lua_State *L) {
  const unsigned char *key = check_key(L, "seal_key_id");
  char kid[KID_HEX + 1];
  key_id(key, kid);
  lua_pushstring(L, kid);
  return 1;
}

void moltflow_seal_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"seal", seal_seal}, {"unseal", seal_unseal}, {"seal_key_id", seal_key_id}, {NULL, NULL}};
  if (luaL_newmetatable(L, SCRATCH_MT)) {
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "moltflow.seal.scratch");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, fns, 0);
}
