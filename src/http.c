/* The libcurl transport. Blocking calls run on the client's own easy handle,
 * so connections are kept alive; non-blocking calls run on a pool of easy
 * handles under one multi handle. Callbacks never call into Lua, so no Lua
 * error can longjmp across libcurl. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <lauxlib.h>

#include "compat.h"
#include "core.h"

#ifdef _WIN32
#error "POSIX only"
#endif
#include <pthread.h>

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void http_global_init(void) { pthread_once(&global_once, global_init); }

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  transfer *t = ud;
  size_t len = size * n;
  if (t->body.len + len > t->max_bytes) {
    t->too_large = 1;
    return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
  }
  return buffer_append(&t->body, data, len) ? 0 : len;
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
  return buffer_append(&t->headers, data, len) ? 0 : len;
}

transfer *http_transfer_new(void) {
  http_global_init();
  transfer *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  if (!(t->easy = curl_easy_init())) {
    free(t);
    return NULL;
  }
  return t;
}

static void free_header_list(transfer *t) {
  for (struct curl_slist *l = t->header_list; l; l = l->next) buffer_wipe(l->data, strlen(l->data));
  curl_slist_free_all(t->header_list);
  t->header_list = NULL;
}

void http_transfer_free(transfer *t) {
  if (!t) return;
  if (t->easy) curl_easy_cleanup(t->easy);
  curl_url_cleanup(t->url_handle);
  buffer_free(&t->url_text);
  free_header_list(t);
  buffer_free(&t->body);
  buffer_free(&t->headers);
  free(t);
}

int http_configure(client *c, transfer *t) {
  CURL *e = t->easy;
  t->max_bytes = c->max_response_bytes;
  t->owner = c;
  int rc = 0;
  rc |= (int)curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  rc |= (int)curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  rc |= (int)curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
  rc |= (int)curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  rc |= (int)curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
  rc |= (int)curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  rc |= (int)curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)t);
  rc |= (int)curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
  rc |= (int)curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
  rc |= (int)curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* credentials never follow */
#if LIBCURL_VERSION_NUM >= 0x075500
  rc |= (int)curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  rc |= (int)curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  rc |= (int)curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  rc |= (int)curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  rc |= (int)curl_easy_setopt(e, CURLOPT_USERAGENT,
                               c->user_agent ? c->user_agent : "moltflow-lua/" MOLTFLOW_VERSION);
  if (c->ca_file) rc |= (int)curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
  if (c->proxy) rc |= (int)curl_easy_setopt(e, CURLOPT_PROXY, c->proxy);
  return rc ? -1 : 0;
}

static struct curl_slist *append(struct curl_slist *l, const char *s, int *failed) {
  struct curl_slist *n = curl_slist_append(l, s);
  if (!n) *failed = 1;
  return n ? n : l;
}

/* The header list for one credential and body combination, rebuilt only when
 * it or a secret changed since the transfer last used it. */
static int prepare_headers(client *c, transfer *t, enum credential cred, int has_body) {
  if (t->header_list && t->list_cred == cred && t->list_body == has_body &&
      t->list_gen == c->secrets_gen)
    return 0;
  free_header_list(t);
  int failed = 0;
  struct curl_slist *l = append(NULL, "Accept: application/json", &failed);
  l = append(l, "Expect:", &failed); /* no 100-continue round trip */
  if (has_body) l = append(l, "Content-Type: application/json", &failed);
  if (cred != CRED_NONE) {
    const char *prefix = cred == CRED_BEARER ? "Authorization: Bearer " : "X-API-Key: ";
    const char *secret = cred == CRED_BEARER ? c->access_token : c->api_key;
    buffer line = {NULL, 0, 0};
    if (buffer_puts(&line, prefix) || buffer_puts(&line, secret) || buffer_cstr(&line))
      failed = 1;
    else
      l = append(l, line.data, &failed);
    buffer_free(&line);
  }
  t->header_list = l;
  if (failed) {
    free_header_list(t);
    return -1;
  }
  t->list_cred = cred;
  t->list_body = has_body;
  t->list_gen = c->secrets_gen;
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
  buffer_clear(&t->url_text);
  if (!t->url_handle && !(t->url_handle = curl_url())) return -1;
  /* the flags libcurl itself parses CURLOPT_URL with */
  if (curl_url_set(t->url_handle, CURLUPART_URL, r->url.data,
                   CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
    return curl_easy_setopt(e, CURLOPT_CURLU, NULL) || curl_easy_setopt(e, CURLOPT_URL, r->url.data)
               ? -1 : 0;
  if (buffer_append(&t->url_text, r->url.data, r->url.len)) return -1;
  return curl_easy_setopt(e, CURLOPT_CURLU, t->url_handle) ? -1 : 0;
}

static int setup(client *c, transfer *t, request *r) {
  CURL *e = t->easy;
  buffer_clear(&t->body);
  buffer_clear(&t->headers);
  t->status = 0;
  t->too_large = 0;
  t->errbuf[0] = '\0';
  if (prepare_headers(c, t, client_credential(c, r->auth), r->has_body)) return -1;
  int rc = 0;
  rc |= set_url(t, r);
  rc |= (int)curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->header_list);
  if (!strcmp(r->method, "GET")) {
    rc |= (int)curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    rc |= (int)curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
  } else {
    rc |= (int)curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)r->body.len);
    rc |= (int)curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->has_body ? r->body.data : "");
    rc |= (int)curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(r->method, "POST") ? r->method : NULL);
  }
  /* libcurl silently sends a request again when a reused connection dies
   * before any answer; a POST or PATCH could then act twice, so it gets a
   * connection of its own (GET, PUT and DELETE keep reusing), and so does
   * an endpoint marked `once` (account deletion). */
  long once = r->once || !strcmp(r->method, "POST") || !strcmp(r->method, "PATCH");
  rc |= (int)curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, once);
  return rc ? -1 : 0;
}

/* Requests that certainly never reached the server may be retried even when
 * they are not idempotent. */
static int never_sent(CURLcode rc) {
  return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
         rc == CURLE_COULDNT_RESOLVE_PROXY;
}

static int push_result(lua_State *L, client *c, request *r, transfer *t, CURLcode rc) {
  if (rc == CURLE_OK) {
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    int n = response_push(L, c, r, t->status, t->headers.data, t->headers.len, t->body.data,
                          t->body.len);
    buffer_clear(&t->body); /* may hold tokens or a raw key */
    return n;
  }
  buffer_clear(&t->body);
  const char *kind = "network";
  if (t->too_large) kind = "too_large";
  else if (rc == CURLE_OPERATION_TIMEDOUT) kind = "timeout";
  const char *msg = t->too_large ? "response body exceeds max_response_bytes"
                                 : (t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
  return response_push_error(L, r, kind, msg, never_sent(rc));
}

static int no_credentials(lua_State *L, client *c, request *r) {
  if (r->auth != AUTH_NONE && client_credential(c, r->auth) == CRED_NONE) {
    response_push_error(L, r, "auth",
                        r->auth == AUTH_TOKEN ? "this call needs a bearer token: log in first"
                                              : "no credentials: log in or set an API key",
                        0);
    return 1;
  }
  return 0;
}

int http_perform(lua_State *L, client *c, request *r) {
  if (r->xfer) return luaL_error(L, "moltflow: the request is already running");
  if (no_credentials(L, c, r)) return 2;
  transfer *t = c->main;
  if (setup(c, t, r)) return response_push_error(L, r, "network", "could not set up the request", 0);
  CURLcode rc = curl_easy_perform(t->easy);
  return push_result(L, c, r, t, rc);
}

/* ------------------------------------------------------------ multi */

static transfer *acquire(client *c) {
  for (int i = 0; i < c->npool; i++)
    if (!c->pool[i]->req) return c->pool[i];
  transfer **p = realloc(c->pool, (size_t)(c->npool + 1) * sizeof *p);
  if (!p) return NULL;
  c->pool = p;
  transfer *t = http_transfer_new();
  if (!t || http_configure(c, t)) {
    http_transfer_free(t);
    return NULL;
  }
  c->pool[c->npool++] = t;
  return t;
}

int http_start(lua_State *L, client *c, request *r) {
  if (r->xfer) return luaL_error(L, "moltflow: the request is already running");
  if (no_credentials(L, c, r)) return 2;
  if (!c->multi && !(c->multi = curl_multi_init()))
    return response_push_error(L, r, "network", "could not create a curl multi handle", 0);
  transfer *t = acquire(c);
  if (!t || setup(c, t, r))
    return response_push_error(L, r, "network", "could not set up the request", 0);
  if (curl_multi_add_handle(c->multi, t->easy) != CURLM_OK)
    return response_push_error(L, r, "network", "could not start the request", 0);
  t->req = r;
  t->status = -1; /* running */
  r->xfer = t;
  c->nrunning++;
  lua_pushlightuserdata(L, r); /* its key, as poll reports it: no req:key() call */
  return 1;
}

/* Drives every running transfer for at most timeout seconds and pushes an
 * array of the keys of the requests that finished, and their count. The
 * array is the table at index out when there is one (a poll loop reuses it;
 * entries past the count are left as they were), else a new table. It waits
 * only while nothing has finished yet, and curl_multi_poll returns at the
 * first socket activity, so the caller's loop (not this function) waits for
 * completion. */
int http_poll(lua_State *L, client *c, double timeout, int out) {
  if (out) lua_pushvalue(L, out);
  else lua_newtable(L);
  int done = 0;
  if (!c->multi || c->nrunning == 0) {
    lua_pushinteger(L, done);
    return 2;
  }
  int still;
  curl_multi_perform(c->multi, &still);
  if (still == c->nrunning && timeout > 0) {
    /* round down: waiting a little less is fine, a little longer is not */
    int wait_ms = timeout >= 86400 ? 86400 * 1000 : (int)(timeout * 1000);
    if (wait_ms > 0) curl_multi_poll(c->multi, NULL, 0, wait_ms, NULL);
    curl_multi_perform(c->multi, &still);
  }
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(c->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    char *priv = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
    transfer *t = (transfer *)(void *)priv;
    if (!t || !t->req) continue;
    t->status = (long)m->data.result; /* the CURLcode until finish() reads it */
    curl_multi_remove_handle(c->multi, t->easy);
    c->nrunning--;
    /* Lua maps the key back to its request (req:key()) */
    lua_pushlightuserdata(L, t->req);
    lua_rawseti(L, -2, ++done);
  }
  lua_pushinteger(L, done);
  return 2;
}

int http_finish(lua_State *L, client *c, request *r) {
  transfer *t = r->xfer;
  if (!t || t->status < 0) return luaL_error(L, "moltflow: the request has not finished");
  CURLcode rc = (CURLcode)t->status;
  int n = push_result(L, c, r, t, rc);
  t->req = NULL;
  r->xfer = NULL;
  return n;
}

void http_cancel(client *c, request *r) {
  transfer *t = r->xfer;
  if (!t) return;
  if (t->status < 0 && c->multi) {
    curl_multi_remove_handle(c->multi, t->easy);
    c->nrunning--;
  }
  buffer_clear(&t->body);
  t->req = NULL;
  r->xfer = NULL;
}

void http_close(client *c) {
  for (int i = 0; i < c->npool; i++) {
    transfer *t = c->pool[i];
    if (t->req) http_cancel(c, t->req);
    http_transfer_free(t);
  }
  free(c->pool);
  c->pool = NULL;
  c->npool = c->nrunning = 0;
  if (c->multi) curl_multi_cleanup(c->multi);
  c->multi = NULL;
  http_transfer_free(c->main);
  c->main = NULL;
}
