/* Response-header parsing (response.c): header blocks (several, as curl
 * hands over 1xx and redirect blocks too), Retry-After as seconds or an
 * HTTP-date, X-RateLimit-*, X-Request-Id, Content-Type. */
#include <math.h>
#include "harness.h"

static int run(lua_State *L) {
  const fuzz_input *in = fuzz_arg(L);
  const char *h = (const char *)in->data;
  double wait = moltflow_response_retry_after(h, in->size, 1700000000.0);
  if (!(wait == -1 || (wait >= 0 && isfinite(wait)))) abort(); /* never negative, NaN or infinite */
  moltflow_response_push_headers(L, h, in->size);
  buffer scratch = {NULL, 0, 0};
  request r;
  fuzz_request(&r, "GET", "/usage/current");
  static const long statuses[] = {200, 204, 429, 503};
  static const char body[] = "{\"detail\":\"Too Many Requests\"}";
  for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++) {
    moltflow_response_push(L, &scratch, &r, statuses[i], h, in->size, body, sizeof body - 1);
    lua_settop(L, 2);
  }
  moltflow_buffer_free(&scratch);
  moltflow_request_release(&r);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_run(run, data, size);
  return 0;
}
