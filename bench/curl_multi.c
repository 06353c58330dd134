/* The concurrent limit: C libcurl easy handles under one multi handle, each
 * re-added as soon as it finishes, until N requests have completed.
 *   curl_multi URL N CONCURRENCY [API_KEY [USER_AGENT]]  ->  prints "rps <requests per second>" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>

typedef struct {
  CURL *easy;
  char data[64 * 1024];
  size_t len;
} slot;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  slot *s = ud;
  size_t len = size * n;
  if (s->len + len > sizeof s->data) return 0;
  memcpy(s->data + s->len, p, len);
  s->len += len;
  return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs n requests with conc in flight; returns 0 when all answered 200. */
static int run(CURLM *m, slot *slots, int conc, long n) {
  long started = 0, done = 0;
  for (int i = 0; i < conc && started < n; i++, started++) {
    slots[i].len = 0;
    curl_multi_add_handle(m, slots[i].easy);
  }
  while (done < n) {
    int still;
    curl_multi_perform(m, &still);
    CURLMsg *msg;
    int left;
    int finished = 0;
    while ((msg = curl_multi_info_read(m, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      slot *s;
      long status = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      if (msg->data.result != CURLE_OK || status != 200) {
        fprintf(stderr, "curl_multi: %s, HTTP %ld\n", curl_easy_strerror(msg->data.result), status);
        return 1;
      }
      curl_multi_remove_handle(m, s->easy);
      done++;
      finished++;
      if (started < n) {
        started++;
        s->len = 0;
        curl_multi_add_handle(m, s->easy);
      }
    }
    if (!finished) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: curl_multi URL N CONCURRENCY [API_KEY [USER_AGENT]]\n");
    return 2;
  }
  long n = atol(argv[2]);
  int conc = atoi(argv[3]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  char key[512];
  snprintf(key, sizeof key, "X-API-Key: %s", argc > 4 ? argv[4] : "none");
  struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
  h = curl_slist_append(h, "Expect:");
  h = curl_slist_append(h, key);
  CURLM *m = curl_multi_init();
  slot *slots = calloc((size_t)conc, sizeof *slots);
  for (int i = 0; i < conc; i++) {
    CURL *e = slots[i].easy = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, argv[1]);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_USERAGENT, argc > 5 ? argv[5] : "curl_multi");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &slots[i]);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)&slots[i]);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  }
  /* a first round opens the connections */
  if (run(m, slots, conc, conc)) return 1;
  double t0 = now();
  if (run(m, slots, conc, n)) return 1;
  double dt = now() - t0;
  printf("rps %.1f\n", (double)n / dt);
  for (int i = 0; i < conc; i++) curl_easy_cleanup(slots[i].easy);
  free(slots);
  curl_multi_cleanup(m);
  curl_slist_free_all(h);
  curl_global_cleanup();
  return 0;
}
