/* The transport's limit: one libcurl easy handle, one kept-alive connection,
 * the same request headers as the SDK, the body collected and not decoded.
 *   curl_loop URL N [API_KEY [USER_AGENT]]  ->  prints "rps <requests per second>" and
 *   "cpu_us <CPU time of this process per request>" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>

typedef struct {
  char data[64 * 1024];
  size_t len;
} sink;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  sink *s = ud;
  size_t len = size * n;
  if (s->len + len > sizeof s->data) return 0;
  memcpy(s->data + s->len, p, len);
  s->len += len;
  return len;
}

static double now(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: curl_loop URL N [API_KEY [USER_AGENT]]\n");
    return 2;
  }
  long n = atol(argv[2]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *e = curl_easy_init();
  static sink body, headers;
  char key[512];
  snprintf(key, sizeof key, "X-API-Key: %s", argc > 3 ? argv[3] : "none");
  struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
  h = curl_slist_append(h, "Expect:");
  h = curl_slist_append(h, key);
  curl_easy_setopt(e, CURLOPT_URL, argv[1]);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(e, CURLOPT_USERAGENT, argc > 4 ? argv[4] : "curl_loop");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &headers);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  double t0 = 0, cpu0 = 0;
  for (long i = -1; i < n; i++) {
    if (i == 0) { /* request -1 opens the connection */
      t0 = now(CLOCK_MONOTONIC);
      cpu0 = now(CLOCK_PROCESS_CPUTIME_ID);
    }
    body.len = headers.len = 0;
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
      fprintf(stderr, "curl_loop: %s, HTTP %ld\n", curl_easy_strerror(rc), status);
      return 1;
    }
  }
  double dt = now(CLOCK_MONOTONIC) - t0, cpu = now(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
  printf("rps %.1f\ncpu_us %.2f\n", (double)n / dt, cpu / (double)n * 1e6);
  curl_slist_free_all(h);
  curl_easy_cleanup(e);
  curl_global_cleanup();
  return 0;
}
