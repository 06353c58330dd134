/* Layer 3: the libcurl transport (see http.h). Callbacks never call into
 * Lua, and nothing here does, so no Lua error can longjmp across libcurl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <curl/curl.h>

#include "http.h"
#include "loop.h"

#ifdef _WIN32
#error "POSIX only"
#endif
#include <pthread.h>

typedef struct http_pool http_pool;

typedef struct {
  moltflow_job job;          /* first: CURLOPT_PRIVATE points to it */
  CURL *easy;                /* job.easy */
  http_options opts;         /* what the easy handle is set up for; its own copies of the strings */
  int configured;            /* opts applied to the easy handle */
  int touched;               /* some client's options were set on it: reset before others */
  int stale;                 /* libcurl state to clear before its next request (see acquire) */
  const http *last_owner;    /* whom it ran for last */
  int url_set;               /* CURLOPT_CURLU points at url_handle */
  const http *owner;         /* the handle it runs for (non-blocking or blocking), NULL when free */
  int held;                  /* its result is being read: not free until moltflow_http_result_clear */
  const http *list_owner;    /* whose credential header_list holds */
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

/* The transfers of every client of a loop: easy handles and their buffers
 * belong to the loop, not to a client, and a free one serves whichever
 * client calls next. Kept by the loop (moltflow_loop_set_pool), freed with it. */
struct http_pool {
  transfer **all;
  int n;
  char **h1_origins; /* "https://host:port" that answered with HTTP/1.1 over TLS: no PIPEWAIT */
  int nh1;
};

/* A client's handle: its options and its loop; transfers come from the pool. */
struct http {
  http_options opts;
  moltflow_loop *loop; /* every transfer runs on its multi handle */
  http_pool *pool;     /* the loop's */
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
  free((char *)t->opts.user_agent);
  free((char *)t->opts.ca_file);
  free((char *)t->opts.proxy);
  free(t);
}

/* Every socket libcurl opens for a transfer is close-on-exec: a pooled
 * connection must not live on in a child the host spawns (os.execute,
 * io.popen), where it would outlast the client and hold the server's end
 * open. SOCK_CLOEXEC where the system has it (atomic against another
 * thread's fork), else FD_CLOEXEC just after. */
static curl_socket_t open_socket(void *unused, curlsocktype purpose, struct curl_sockaddr *a) {
  (void)unused;
  (void)purpose;
#ifdef SOCK_CLOEXEC
  return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
#else
  curl_socket_t fd = socket(a->family, a->socktype, a->protocol);
  if (fd != CURL_SOCKET_BAD && fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
    close(fd);
    return CURL_SOCKET_BAD;
  }
  return fd;
#endif
}

/* The options every transfer has, whoever it runs for. */
static int set_base_options(transfer *t, moltflow_loop *lp) {
  CURL *e = t->easy;
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
  rc |= (int)curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* credentials never follow */
#if LIBCURL_VERSION_NUM >= 0x075500
  rc |= (int)curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  rc |= (int)curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  rc |= (int)curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  rc |= (int)curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
  return rc;
}

static int same_string(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

static int same_options(const http_options *a, const http_options *b) {
  return a->timeout_ms == b->timeout_ms && a->connect_timeout_ms == b->connect_timeout_ms &&
         a->max_response_bytes == b->max_response_bytes && a->http1_only == b->http1_only &&
         same_string(a->user_agent, b->user_agent) && same_string(a->ca_file, b->ca_file) &&
         same_string(a->proxy, b->proxy) && a->insecure_http == b->insecure_http;
}

static char *copy_string(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

/* Sets t up for a client's options, unless it already is. A transfer that
 * served other options starts again from libcurl's defaults, so that no
 * CA file or proxy of another client stays behind. */
static int apply_options(transfer *t, const http_options *o, moltflow_loop *lp) {
  int same = t->configured && same_options(&t->opts, o);
  if (same && !t->stale) return 0;
  CURL *e = t->easy;
  if (t->touched) { /* set up before (perhaps halfway), for other options or stale */
    t->configured = 0;
    t->url_set = 0; /* the reset drops CURLOPT_CURLU; the parsed URL stays */
    curl_easy_reset(e);
    if (set_base_options(t, lp)) return -1;
    if (!same) free_header_list(t); /* built with another User-Agent */
  }
  t->stale = 0;
  free((char *)t->opts.user_agent);
  free((char *)t->opts.ca_file);
  free((char *)t->opts.proxy);
  memset(&t->opts, 0, sizeof t->opts);
  http_options copy = *o;
  copy.user_agent = copy_string(o->user_agent);
  copy.ca_file = copy_string(o->ca_file);
  copy.proxy = copy_string(o->proxy);
  if ((o->user_agent && !copy.user_agent) || (o->ca_file && !copy.ca_file) || (o->proxy && !copy.proxy)) {
    free((char *)copy.user_agent);
    free((char *)copy.ca_file);
    free((char *)copy.proxy);
    return -1;
  }
  t->max_bytes = o->max_response_bytes;
  t->touched = 1;
  int rc = 0;
  rc |= (int)curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
  rc |= (int)curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
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
  t->opts = copy;
  t->configured = !rc;
  return rc ? -1 : 0;
}

static transfer *transfer_new(moltflow_loop *lp) {
  transfer *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  if (!(t->easy = t->job.easy = curl_easy_init())) {
    free(t);
    return NULL;
  }
  if (set_base_options(t, lp)) {
    transfer_free(t);
    return NULL;
  }
  return t;
}

static void pool_free(void *ud) {
  http_pool *p = ud;
  for (int i = 0; i < p->n; i++) transfer_free(p->all[i]);
  for (int i = 0; i < p->nh1; i++) free(p->h1_origins[i]);
  free(p->all);
  free(p->h1_origins);
  free(p);
}

http *moltflow_http_new(const http_options *o, moltflow_loop *lp) {
  moltflow_http_global_init();
  http_pool *pool = moltflow_loop_pool(lp);
  if (!pool) {
    if (!(pool = calloc(1, sizeof *pool))) return NULL;
    moltflow_loop_set_pool(lp, pool, pool_free);
  }
  http *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->opts = *o;
  h->loop = lp;
  h->pool = pool;
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
      list_has_secret(t, cred)) {
    t->list_owner = h;
    return 0;
  }
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
  t->list_owner = h;
  return 0;
}

/* libcurl parses CURLOPT_URL again for every transfer, a tenth of the cost
 * of a request; a URL handle parsed once is reused while the transfer asks
 * for the same URL. A URL the parser refuses goes through CURLOPT_URL, so
 * that libcurl reports it as it always did. */
static int set_url(transfer *t, const request *r) {
  CURL *e = t->easy;
  if (t->url_text.len && t->url_text.len == r->url.len &&
      !memcmp(t->url_text.data, r->url.data, r->url.len)) {
    if (t->url_set) return 0;
    t->url_set = !curl_easy_setopt(e, CURLOPT_CURLU, t->url_handle);
    return t->url_set ? 0 : -1;
  }
  moltflow_buffer_clear(&t->url_text);
  t->url_set = 0;
  if (!t->url_handle && !(t->url_handle = curl_url())) return -1;
  /* the flags libcurl itself parses CURLOPT_URL with */
  if (curl_url_set(t->url_handle, CURLUPART_URL, r->url.data,
                   CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
    return curl_easy_setopt(e, CURLOPT_CURLU, NULL) || curl_easy_setopt(e, CURLOPT_URL, r->url.data)
               ? -1 : 0;
  if (moltflow_buffer_append(&t->url_text, r->url.data, r->url.len)) return -1;
  t->url_set = !curl_easy_setopt(e, CURLOPT_CURLU, t->url_handle);
  return t->url_set ? 0 : -1;
}

/* The length of "https://host:port" in an https URL, else 0. */
static size_t https_origin(const request *r) {
  if (r->url.len <= 8 || strncmp(r->url.data, "https://", 8)) return 0;
  const char *slash = memchr(r->url.data + 8, '/', r->url.len - 8);
  return slash ? (size_t)(slash - r->url.data) : r->url.len;
}

static int knows_http1(const http_pool *p, const char *origin, size_t n) {
  for (int i = 0; i < p->nh1; i++)
    if (strlen(p->h1_origins[i]) == n && !memcmp(p->h1_origins[i], origin, n)) return 1;
  return 0;
}

/* After an answer over TLS: remembers an origin that answered with HTTP/1.1
 * although HTTP/2 was offered (its ALPN chose 1.1), forgets one that
 * answered with HTTP/2. Bounded: a loop talks to a few hosts. */
#define MAX_HTTP1_ORIGINS 64
static void learn_protocol(http *h, transfer *t, const request *r) {
  size_t n = https_origin(r);
  if (!n || h->opts.http1_only) return;
  long version = 0;
  if (curl_easy_getinfo(t->easy, CURLINFO_HTTP_VERSION, &version) != CURLE_OK || !version) return;
  http_pool *p = h->pool;
  int http1 = version == CURL_HTTP_VERSION_1_0 || version == CURL_HTTP_VERSION_1_1;
  if (http1 == knows_http1(p, r->url.data, n)) return;
  if (!http1) {
    for (int i = 0; i < p->nh1; i++)
      if (strlen(p->h1_origins[i]) == n && !memcmp(p->h1_origins[i], r->url.data, n)) {
        free(p->h1_origins[i]);
        p->h1_origins[i] = p->h1_origins[--p->nh1];
        break;
      }
    return;
  }
  if (p->nh1 >= MAX_HTTP1_ORIGINS) return;
  char **grown = realloc(p->h1_origins, (size_t)(p->nh1 + 1) * sizeof *grown);
  if (!grown) return;
  p->h1_origins = grown;
  char *origin = malloc(n + 1);
  if (!origin) return;
  memcpy(origin, r->url.data, n);
  origin[n] = '\0';
  p->h1_origins[p->nh1++] = origin;
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
  if (apply_options(t, &h->opts, h->loop) || prepare_headers(h, t, r, cred)) return -1;
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
   * to learn whether it multiplexes (HTTP/2) rather than open their own;
   * not to a host that answered with HTTP/1.1 before (no wait of a round
   * trip for each batch). Not over plain http: that never multiplexes, and
   * libcurl would hold the others until the first answer. */
  size_t origin = https_origin(r);
  long pipewait = !h->opts.http1_only && origin && !knows_http1(h->pool, r->url.data, origin);
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

/* Fills out from t, which stays held (out of the pool) until the result was
 * read: its pointers are t's buffers and error text. */
static void result(http *h, transfer *t, const request *r, CURLcode rc, http_result *out) {
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
    t->stale = 1;
    out->transfer = t;
    t->held = 1;
    return;
  }
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
  long connects = 0;
  if (curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0) t->stale = 1;
  learn_protocol(h, t, r);
  memset(out, 0, sizeof *out);
  out->status = t->status;
  out->headers = t->headers.data ? t->headers.data : "";
  out->headers_len = t->headers.len;
  out->body = t->body.data ? t->body.data : "";
  out->body_len = t->body.len;
  out->transfer = t;
  t->held = 1;
}

/* A response buffer larger than this is given back when its transfer is:
 * one large answer does not pin memory in the pool. */
#define KEPT_BUFFER_BYTES (64 * 1024)

static void shrink(buffer *b) {
  if (b->cap > KEPT_BUFFER_BYTES) moltflow_buffer_free(b);
  else moltflow_buffer_clear(b);
}

void moltflow_http_result_clear(http_result *res) {
  transfer *t = res->transfer;
  res->transfer = NULL;
  if (!t) return;
  shrink(&t->body);
  shrink(&t->headers);
  t->held = 0;
  t->owner = NULL;
}

/* ------------------------------------------------------------ the pool */

static int is_free(const transfer *t) { return !t->owner && !t->held; }

/* libcurl 7.88 counts the silent resends of a request (a reused connection
 * that died first) per easy handle, across its transfers, and fails the
 * sixth ("Connection died, tried 5 times") however long ago the others
 * were; only curl_easy_reset clears the count. A transfer is reset before
 * it serves another client, and after a transfer that opened a connection
 * (which a resend does): a client's calls never inherit another's count. */
static void take(transfer *t, const http *h) {
  if (t->last_owner != h) t->stale = 1;
  t->owner = t->last_owner = h;
}

/* A free transfer, one set up for these options first; a new one when none
 * is free. Marked as h's. */
static transfer *acquire(http *h) {
  http_pool *p = h->pool;
  transfer *other = NULL;
  for (int i = 0; i < p->n; i++) {
    transfer *t = p->all[i];
    if (!is_free(t)) continue;
    if (t->configured && same_options(&t->opts, &h->opts)) {
      take(t, h);
      return t;
    }
    if (!other) other = t;
  }
  if (!other) {
    transfer **grown = realloc(p->all, (size_t)(p->n + 1) * sizeof *grown);
    if (!grown) return NULL;
    p->all = grown;
    if (!(other = transfer_new(h->loop))) return NULL;
    p->all[p->n++] = other;
  }
  take(other, h);
  return other;
}

static void release(transfer *t) {
  if (t->held) return; /* its result is being read: moltflow_http_result_clear frees it */
  shrink(&t->body);
  shrink(&t->headers);
  t->owner = NULL;
}

void moltflow_http_perform(http *h, const request *r, credential cred, http_result *out) {
  transfer *t = acquire(h);
  if (!t || setup(h, t, r, cred)) {
    fail(out, "network", "could not set up the request", 0);
    if (t) release(t);
    return;
  }
  CURLcode rc = moltflow_loop_run(h->loop, &t->job);
  t->upload = NULL;
  result(h, t, r, rc, out);
}

/* ------------------------------------------------------------ multi */

static transfer *find(const http *h, const request *r) {
  const http_pool *p = h->pool;
  for (int i = 0; i < p->n; i++)
    if (p->all[i]->req == r && p->all[i]->owner == h) return p->all[i];
  return NULL;
}

/* r no longer names a transport; t stays h's until its result was read. */
static void detach(transfer *t) {
  t->req->runner = NULL;
  t->req->stop = NULL;
  t->req = NULL;
  t->upload = NULL;
}

static void stop_request(void *h, void *r) { moltflow_http_cancel(h, r); }

int moltflow_http_start(http *h, request *r, credential cred, http_result *out) {
  if (find(h, r)) {
    fail(out, "network", "the request is already running", 0);
    return -1;
  }
  transfer *t = acquire(h);
  if (!t || setup(h, t, r, cred)) {
    fail(out, "network", "could not set up the request", 0);
    if (t) release(t);
    return -1;
  }
  if (moltflow_loop_add(h->loop, &t->job)) {
    fail(out, "network", "could not start the request", 0);
    release(t);
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
  result(h, t, r, t->job.result, out);
  detach(t);
  return 0;
}

int moltflow_http_cancel(http *h, request *r) {
  transfer *t = find(h, r);
  if (!t) return -1;
  moltflow_loop_remove(h->loop, &t->job);
  detach(t);
  release(t);
  return 0;
}

int moltflow_http_running(const http *h) {
  const http_pool *p = h->pool;
  int n = 0;
  for (int i = 0; i < p->n; i++)
    if (p->all[i]->owner == h && p->all[i]->req && !p->all[i]->job.done) n++;
  return n;
}

void moltflow_http_pool_stats(const moltflow_loop *lp, http_pool_stats *out) {
  const http_pool *p = moltflow_loop_pool(lp);
  memset(out, 0, sizeof *out);
  if (!p) return;
  out->transfers = p->n;
  for (int i = 0; i < p->n; i++) {
    out->in_use += !is_free(p->all[i]);
    out->credentials += p->all[i]->list_owner != NULL;
  }
  out->nhttp1 = p->nh1;
  out->http1_origins = (const char *const *)p->h1_origins;
}

/* Stops h's requests; its credential leaves the header lists of the pool. */
void moltflow_http_free(http *h) {
  if (!h) return;
  http_pool *p = h->pool;
  for (int i = 0; i < p->n; i++) {
    transfer *t = p->all[i];
    if (t->owner == h && t->req) {
      moltflow_loop_remove(h->loop, &t->job);
      detach(t);
      release(t);
    }
    if (t->list_owner == h) {
      free_header_list(t);
      t->list_owner = NULL;
    }
    if (t->last_owner == h) t->last_owner = NULL; /* a later handle at this address is another client */
  }
  moltflow_loop_release(h->loop);
  free(h);
}
