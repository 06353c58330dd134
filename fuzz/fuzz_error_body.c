/* Error-body interpretation (response.c): JSON decoding plus the FastAPI
 * `detail` / validation-error reading, for every status class. The first byte
 * picks the status and the content type. */
#include "harness.h"

static int run(lua_State *L) {
  const fuzz_input *in = fuzz_arg(L);
  if (in->size < 1) return 0;
  static const long statuses[] = {200, 201, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503};
  static const char *const types[] = {"application/json", "text/html; charset=utf-8", NULL,
                                      "application/problem+json"};
  long status = statuses[in->data[0] % (sizeof statuses / sizeof *statuses)];
  const char *type = types[(in->data[0] >> 4) % 4];
  char headers[256];
  int hl = type ? snprintf(headers, sizeof headers, "HTTP/1.1 %ld X\r\nContent-Type: %s\r\n\r\n", status, type)
                : snprintf(headers, sizeof headers, "HTTP/1.1 %ld X\r\n\r\n", status);
  buffer scratch = {NULL, 0, 0};
  request r;
  fuzz_request(&r, "POST", "/api-keys");
  moltflow_response_push(L, &scratch, &r, status, headers, (size_t)hl, (const char *)in->data + 1, in->size - 1);
  if (lua_isnil(L, -2)) {
    /* every error has a string kind and message and prints */
    lua_getfield(L, -1, "kind");
    lua_getfield(L, -2, "message");
    if (!lua_isstring(L, -1) || !lua_isstring(L, -2)) abort();
    lua_pop(L, 2);
    if (!luaL_tolstring(L, -1, NULL)) abort();
  }
  moltflow_buffer_free(&scratch);
  moltflow_request_release(&r);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_run(run, data, size);
  return 0;
}
