/* base64url decoding and JWT claims (token.c). */
#include "harness.h"
#include "../src/token.h"

static int run(lua_State *L) {
  const fuzz_input *in = fuzz_arg(L);
  const char *s = (const char *)in->data;
  buffer out = {NULL, 0, 0}, scratch = {NULL, 0, 0};
  if (moltflow_token_base64url_decode(s, in->size, &out) == 0 && out.len > in->size * 3 / 4 + 2) abort();
  moltflow_buffer_free(&out);
  double exp = moltflow_token_expiry(L, s, in->size, &scratch);
  (void)exp;
  moltflow_buffer_free(&scratch);
  /* the Lua face of the same code */
  lua_getglobal(L, "core");
  lua_getfield(L, -1, "jwt_claims");
  lua_pushlstring(L, s, in->size);
  lua_call(L, 1, 2);
  lua_getfield(L, -3, "base64url_decode");
  lua_pushlstring(L, s, in->size);
  lua_call(L, 1, 2);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_run(run, data, size);
  return 0;
}
