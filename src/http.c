/* Layer 3: the libcurl transport (see http.h). Callbacks never call into
 * Lua, and nothing here does, so no Lua error can longjmp across libcurl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

#include "http.h"
#include "loop.h"

#ifdef _WIN32
#error "POSIX only"
#endif
#include <pthread.h>

typedef struct {
  moltflow_job job;          /* first: CURLOPT_PRIVATE points to it */
  CURL *easy;                /* job.easy */
  const request *upload;     /* whose body the read callback feeds */
  size_t sent;               /* body bytes handed to libcurl */
  buffer body, headers;
  long status;
  int too_large;
  int hop_refused;           /* plain http whose first hop was not loopback: nothing sent */
  char hop_message[160];
  size_t max_bytes;
  struct curl_slist *header_list;
  int list_kind, list_body;  /* what header_list was built for */
  request *req;              /* the request it runs, NULL when free: the map */
  CURLU *url_handle;         /* the parsed URL of the last request (CURLOPT_CURLU) */
  buffer url_text;           /* its text; empty when CURLOPT_URL is used instead */
  char errbuf[CURL_ERROR_SIZE];
} transfer;

struct http {
  http_options opts;
  moltflow_loop *loop; /* every transfer runs on its multi handle */
  transfer *main;      /* blocking calls */
  transfer **pool;     /* non-blocking calls */
  int npool;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void moltflow_http_global_init(void) { pthread_once(&global_once, global_init); }

const char *moltflow_http_version(void) { return curl_version(); }

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  transfer *t = ud;
  size_t len = size * n;
  if (t->body.len + len > t->max_bytes) {
    t->too_large = 1;
    return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
  }
  return moltflow_buffer_append(&t->body, data, len) ? 0 : len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  transfer *t = ud;
  size_t len = size * n;
  if (t->headers.len + len > 64 * 1024) return 0; /* a header flood is an error */
  if (len > 15 && !strncasecmp(data, "content-length:", 15)) {
    /* refuse an announced oversized body before it arrives */
    double announced = strtod(data + 15, NULL);
    if (announced > (double)t->max_bytes) {
      t->too_large = 1;
      return 0;
    }
  }
  return moltflow_buffer_append(&t->headers, data, len) ? 0 : len;
}

/* The body goes through a read callback so that libcurl can never send it
 * twice: once any byte of it was handed over, a rewind (libcurl's silent
 * retry on a reused connection that died) is refused and the transfer fails
 * (CURLE_SEND_FAIL_REWIND, kind "network"). A request none of whose bytes
 * left may be rewound and sent on another connection. */
static size_t on_read(char *data, size_t size, size_t n, void *ud) {
  transfer *t = ud;
  size_t left = t->upload->body.len - t->sent, len = size * n;
  if (len > left) len = left;
  memcpy(data, t->upload->body.data + t->sent, len);
  t->sent += len;
  return len;
}

static int on_seek(void *ud, curl_off_t offset, int origin) {
  transfer *t = ud;
  return origin == SEEK_SET && offset == 0 && t->sent == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

/* Plain http:// carries the API key in clear, so it may go to loopback only
 * (client.c checks the URL). A proxy, the `proxy` option or libcurl's own
 * reading of http_proxy / ALL_PROXY (minus no_proxy), would carry it
 * further: the rule is checked on the first hop libcurl actually connected
 * to, once connected and before any byte of the request is sent. */
static int is_loopback_ip(const char *ip) {
  if (!ip) return 0;
  if (!strncmp(ip, "::ffff:", 7)) ip += 7; /* an IPv4-mapped IPv6 address */
  return !strcmp(ip, "::1") || !strncmp(ip, "127.", 4);
}

#if LIBCURL_VERSION_NUM >= 0x075000
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port) {
  transfer *t = ud;
  (void)conn_local_ip;
  (void)conn_local_port;
  if (strncmp(t->upload->url.data, "http://", 7) || is_loopback_ip(conn_primary_ip)) return CURL_PREREQFUNC_OK;
  t->hop_refused = 1;
  snprintf(t->hop_message, sizeof t->hop_message,
           "refusing to send plain http:// through %s port %d, which is not loopback (a proxy from "
           "http_proxy or ALL_PROXY? list the host in no_proxy); nothing was sent",
           conn_primary_ip ? conn_primary_ip : "?", conn_primary_port);
  return CURL_PREREQFUNC_ABORT;
}
#endif

static void free_header_list(transfer *t) {
  for (struct curl_slist *l = t->header_list; l; l = l->next) moltflow_buffer_wipe(l->data, strlen(l->data));
  curl_slist_free_all(t->header_list);
  t->header_list = NULL;
}

static void transfer_free(transfer *t) {
  if (!t) return;
  if (t->easy) curl_easy_cleanup(t->easy);
  curl_url_cleanup(t->url_handle);
  moltflow_buffer_free(&t->url_text);
  free_header_list(t);
  moltflow_buffer_free(&t->body);
  moltflow_buffer_free(&t->headers);
  free(t);
}

static transfer *transfer_new(const http_options *o, moltflow_loop *lp) {
  transfer *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  if (!(t->easy = t->job.easy = curl_easy_init())) {
    free(t);
    return NULL;
  }
  CURL *e = t->easy;
  t->max_bytes = o->max_response_bytes;
  int rc = 0;
  rc |= (int)curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  rc |= (int)curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  rc |= (int)curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
  rc |= (int)curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  rc |= (int)curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
  rc |= (int)curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  rc |= (int)curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)&t->job);
  rc |= (int)curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
  rc |= (int)curl_easy_setopt(e, CURLOPT_READDATA, t);
  rc |= (int)curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
  rc |= (int)curl_easy_setopt(e, CURLOPT_SEEKDATA, t);
  rc |= (int)curl_easy_setopt(e, CURLOPT_SHARE, moltflow_loop_share(lp));
  rc |= (int)curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
  rc |= (int)curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
  rc |= (int)curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* credentials never follow */
#if LIBCURL_VERSION_NUM >= 0x075500
  rc |= (int)curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  rc |= (int)curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  rc |= (int)curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  /* HTTP/2 when the server offers it over TLS (ALPN) */
  rc |= (int)curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                              o->http1_only ? (long)CURL_HTTP_VERSION_1_1 : (long)CURL_HTTP_VERSION_2TLS);
  if (o->ca_file) rc |= (int)curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
  if (o->proxy) rc |= (int)curl_easy_setopt(e, CURLOPT_PROXY, o->proxy);
  if (!o->insecure_http) {
#if LIBCURL_VERSION_NUM >= 0x075000
    rc |= (int)curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    rc |= (int)curl_easy_setopt(e, CURLOPT_PREREQDATA, t);
#else
#error "libcurl 7.80 or later is needed (CURLOPT_PREREQFUNCTION checks the first hop of plain http)"
#endif
  }
  if (rc) {
    transfer_free(t);
    return NULL;
  }
  return t;
}

http *moltflow_http_new(const http_options *o, moltflow_loop *lp) {
  moltflow_http_global_init();
  http *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->opts = *o;
  h->loop = lp;
  if (!(h->main = transfer_new(o, lp))) {
    free(h);
    return NULL;
  }
  moltflow_loop_retain(lp);
  return h;
}

/* request_headers' callback: one "Name: value" line on the list */
static int add_header(void *ud, const char *name, const char *prefix, const char *value) {
  struct curl_slist **l = ud;
  buffer line = {NULL, 0, 0};
  int failed = moltflow_buffer_puts(&line, name) || moltflow_buffer_puts(&line, ": ") ||
               moltflow_buffer_puts(&line, prefix) || moltflow_buffer_puts(&line, value) ||
               moltflow_buffer_cstr(&line);
  struct curl_slist *n = failed ? NULL : curl_slist_append(*l, line.data);
  moltflow_buffer_free(&line);
  if (!n) return -1;
  *l = n;
  return 0;
}

/* The credential's line is the last one: "X-API-Key: k" or "Authorization: Bearer t". */
static int list_has_secret(const transfer *t, credential cred) {
  if (cred.kind == CRED_NONE) return 1;
  const struct curl_slist *l = t->header_list;
  while (l->next) l = l->next;
  size_t skip = cred.kind == CRED_BEARER ? strlen("Authorization: Bearer ") : strlen("X-API-Key: ");
  return strlen(l->data) >= skip && !strcmp(l->data + skip, cred.secret);
}

/* The header list for one credential and body combination, rebuilt only when
 * either changed since the transfer last used it. */
static int prepare_headers(http *h, transfer *t, const request *r, credential cred) {
  if (t->header_list && t->list_kind == (int)cred.kind && t->list_body == r->has_body &&
      list_has_secret(t, cred))
    return 0;
  free_header_list(t);
  struct curl_slist *l = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
  int failed = !l || moltflow_request_headers(r, h->opts.user_agent, cred, add_header, &l);
  t->header_list = l;
  if (failed) {
    free_header_list(t);
    return -1;
  }
  t->list_kind = (int)cred.kind;
  t->list_body = r->has_body;
  return 0;
}

/* libcurl parses CURLOPT_URL again for every transfer, a tenth of the cost
 * of a request; a URL handle parsed once is reused while the transfer asks
 * for the same URL. A URL the parser refuses goes through CURLOPT_URL, so
 * that libcurl reports it as it always did. */
static int set_url(transfer *t, const request *r) {
  CURL *e = t->easy;
  if (t->url_text.len && t->url_text.len == r->url.len &&
      !memcmp(t->url_text.data, r->url.data, r->url.len))
    return 0;
  moltflow_buffer_clear(&t->url_text);
  if (!t->url_handle && !(t->url_handle = curl_url())) return -1;
  /* the flags libcurl itself parses CURLOPT_URL with */
  if (curl_url_set(t->url_handle, CURLUPART_URL, r->url.data,
                   CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
    return curl_easy_setopt(e, CURLOPT_CURLU, NULL) || curl_easy_setopt(e, CURLOPT_URL, r->url.data)
               ? -1 : 0;
  if (moltflow_buffer_append(&t->url_text, r->url.data, r->url.len)) return -1;
  return curl_easy_setopt(e, CURLOPT_CURLU, t->url_handle) ? -1 : 0;
}

static int setup(http *h, transfer *t, const request *r, credential cred) {
  CURL *e = t->easy;
  moltflow_buffer_clear(&t->body);
  moltflow_buffer_clear(&t->headers);
  t->status = 0;
  t->too_large = 0;
  t->hop_refused = 0;
  t->errbuf[0] = '\0';
  t->upload = r;
  t->sent = 0;
  if (prepare_headers(h, t, r, cred)) return -1;
  int rc = 0;
  rc |= set_url(t, r);
  rc |= (int)curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->header_list);
  if (!strcmp(r->method, "GET")) {
    rc |= (int)curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    rc |= (int)curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
  } else if (r->has_body && r->body.len > 0) {
    rc |= (int)curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL); /* the read callback feeds it */
    rc |= (int)curl_easy_setopt(e, CURLOPT_POST, 1L);
    rc |= (int)curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
    rc |= (int)curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(r->method, "POST") ? r->method : NULL);
  } else {
    rc |= (int)curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
    rc |= (int)curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    rc |= (int)curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(r->method, "POST") ? r->method : NULL);
  }
  /* libcurl silently sends a request again when a reused connection dies
   * before any answer. A body it can only send again by rewinding, which
   * on_seek refuses once it left; a request without body bytes it resends
   * without asking, so a body-less POST or PATCH gets a connection of its
   * own (a fresh connection is never retried). GET, PUT and DELETE may be
   * repeated. An endpoint marked `once` (an account deletion) always gets a
   * connection of its own, body or not, closed after its answer: nothing
   * else ever travels on it (SECURITY.md). */
  long fresh = r->once || (!(r->has_body && r->body.len > 0) &&
                           (!strcmp(r->method, "POST") || !strcmp(r->method, "PATCH")));
  rc |= (int)curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, fresh);
  rc |= (int)curl_easy_setopt(e, CURLOPT_FORBID_REUSE, (long)r->once);
  /* Over TLS, calls started together wait for a connection being set up
   * to learn whether it multiplexes (HTTP/2) rather than open their own.
   * Not over plain http: that never multiplexes, and libcurl would hold
   * the others until the first answer. */
  long pipewait = !h->opts.http1_only && r->url.len > 8 && !strncmp(r->url.data, "https://", 8);
  rc |= (int)curl_easy_setopt(e, CURLOPT_PIPEWAIT, pipewait);
  return rc ? -1 : 0;
}

static void fail(http_result *out, const char *kind, const char *message, int connect_failed) {
  memset(out, 0, sizeof *out);
  out->kind = kind;
  out->message = message;
  out->connect_failed = connect_failed;
}

/* An answer that is not HTTP (a status line with control bytes, a bare
 * binary reply taken for HTTP/0.9) stays kind "network": like a cut answer,
 * it says nothing of whether the server acted, and it is retried as one.
 * "decode" is kept for an HTTP answer whose body is not JSON (its status is
 * known). The message names the case, with libcurl's reason; should that
 * ever quote the bytes received, their control bytes come out as '?'. */
static void describe_malformed(transfer *t, CURLcode rc) {
  char reason[CURL_ERROR_SIZE - 96]; /* leaves room for the words around it */
  snprintf(reason, sizeof reason, "%.*s", (int)sizeof reason - 1, t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
  for (char *p = reason; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f) *p = '?';
  snprintf(t->errbuf, sizeof t->errbuf, "malformed answer, not HTTP (%s): the server may have acted on the request",
           reason);
}

static void result(transfer *t, CURLcode rc, http_result *out) {
  if (rc != CURLE_OK) {
    moltflow_buffer_clear(&t->body);
    /* the base URL's scheme is checked at moltflow.new, so at this point an
     * unsupported protocol is an answer libcurl took for HTTP/0.9 */
    if (rc == CURLE_WEIRD_SERVER_REPLY || rc == CURLE_UNSUPPORTED_PROTOCOL) describe_malformed(t, rc);
    const char *kind = t->too_large ? "too_large" : rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "network";
    const char *msg = t->too_large     ? "response body exceeds max_response_bytes"
                      : t->hop_refused ? t->hop_message
                      : rc == CURLE_SEND_FAIL_REWIND
                          ? "the connection closed before an answer, after the request was sent: "
                            "not sent again (the server may have acted on it)"
                          : (t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
    /* requests that certainly never reached the server may be retried even
     * when they are not idempotent */
    fail(out, kind, msg, rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                             rc == CURLE_COULDNT_RESOLVE_PROXY);
    return;
  }
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
  memset(out, 0, sizeof *out);
  out->status = t->status;
  out->headers = t->headers.data ? t->headers.data : "";
  out->headers_len = t->headers.len;
  out->body = t->body.data ? t->body.data : "";
  out->body_len = t->body.len;
  out->body_buffer = &t->body;
}

void moltflow_http_result_clear(http_result *res) {
  if (res->body_buffer) moltflow_buffer_clear(res->body_buffer);
  res->body_buffer = NULL;
}

void moltflow_http_perform(http *h, const request *r, credential cred, http_result *out) {
  transfer *t = h->main;
  if (setup(h, t, r, cred))
    fail(out, "network", "could not set up the request", 0);
  else
    result(t, moltflow_loop_run(h->loop, &t->job), out);
}

/* ------------------------------------------------------------ multi */

static transfer *find(const http *h, const request *r) {
  for (int i = 0; i < h->npool; i++)
    if (h->pool[i]->req == r) return h->pool[i];
  return NULL;
}

/* Frees t for another request; r no longer names a transport. */
static void detach(transfer *t) {
  t->req->runner = NULL;
  t->req->stop = NULL;
  t->req = NULL;
  t->upload = NULL;
}

static void stop_request(void *h, void *r) { moltflow_http_cancel(h, r); }

static transfer *acquire(http *h) {
  for (int i = 0; i < h->npool; i++)
    if (!h->pool[i]->req) return h->pool[i];
  transfer **p = realloc(h->pool, (size_t)(h->npool + 1) * sizeof *p);
  if (!p) return NULL;
  h->pool = p;
  transfer *t = transfer_new(&h->opts, h->loop);
  if (!t) return NULL;
  h->pool[h->npool++] = t;
  return t;
}

int moltflow_http_start(http *h, request *r, credential cred, http_result *out) {
  if (find(h, r)) {
    fail(out, "network", "the request is already running", 0);
    return -1;
  }
  transfer *t = acquire(h);
  if (!t || setup(h, t, r, cred)) {
    fail(out, "network", "could not set up the request", 0);
    return -1;
  }
  if (moltflow_loop_add(h->loop, &t->job)) {
    fail(out, "network", "could not start the request", 0);
    return -1;
  }
  t->req = r;
  r->runner = h;
  r->stop = stop_request;
  return 0;
}

const request *moltflow_http_job_request(const moltflow_job *job) {
  const transfer *t = (const transfer *)(const void *)job;
  return t->req;
}

int moltflow_http_finish(http *h, request *r, http_result *out) {
  transfer *t = find(h, r);
  if (!t) return -1;
  if (!t->job.done) return 1;
  moltflow_loop_remove(h->loop, &t->job); /* out of the finished queue, if there */
  result(t, t->job.result, out);
  detach(t); /* its buffers stay until its next request */
  return 0;
}

int moltflow_http_cancel(http *h, request *r) {
  transfer *t = find(h, r);
  if (!t) return -1;
  moltflow_loop_remove(h->loop, &t->job);
  moltflow_buffer_clear(&t->body);
  detach(t);
  return 0;
}

int moltflow_http_running(const http *h) {
  int n = 0;
  for (int i = 0; i < h->npool; i++)
    if (h->pool[i]->req && !h->pool[i]->job.done) n++;
  return n;
}

void moltflow_http_free(http *h) {
  if (!h) return;
  for (int i = 0; i < h->npool; i++) {
    transfer *t = h->pool[i];
    if (t->req) {
      moltflow_loop_remove(h->loop, &t->job);
      detach(t);
    }
    transfer_free(t);
  }
  free(h->pool);
  transfer_free(h->main);
  moltflow_loop_release(h->loop);
  free(h);
}
