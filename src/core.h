/* Shared types of the moltflow.core C module. One concern per file:
 *   client.c   the client userdata: options, secrets, lifetime, Lua methods
 *   request.c  endpoints and request building (no I/O)
 *   response.c response reading: headers, results, errors (no I/O)
 *   http.c     the libcurl transport, blocking (easy) and non-blocking (multi)
 *   token.c    base64url and JWT claims
 *   hash.c     OpenSSL digests, HMAC, constant-time compare, randomness
 *   json.c     the JSON codec
 *   core.c     luaopen_moltflow_core */
#ifndef MOLTFLOW_CORE_H
#define MOLTFLOW_CORE_H

#include <stddef.h>
#include <curl/curl.h>
#include <lua.h>
#include <lauxlib.h>

#include "buffer.h"

#define MOLTFLOW_VERSION "0.1.0"
#define CLIENT_MT "moltflow.client"
#define ENDPOINT_MT "moltflow.endpoint"
#define REQUEST_MT "moltflow.request"
#define ERROR_MT "moltflow.error"
#define RESPONSE_MT "moltflow.response"
#define RESPONSE_RAW_HEADERS "moltflow.response.raw_headers" /* registry: res -> raw header block */

enum auth_mode { AUTH_NONE, AUTH_ANY, AUTH_TOKEN };
enum credential { CRED_NONE, CRED_BEARER, CRED_KEY };

enum field_type {
  FIELD_STRING, FIELD_SECRET, FIELD_INTEGER, FIELD_NUMBER, FIELD_BOOLEAN,
  FIELD_ARRAY, /* of strings; sent as [] even when empty */
  FIELD_TABLE, FIELD_ANY
};

typedef struct {
  char *name;
  enum field_type type;
  int required;
} endpoint_field;

typedef struct {
  char *label;       /* "api_keys.create", used in messages */
  char method[8];
  char *path;        /* template, "/api-keys/{id}" */
  enum auth_mode auth;
  int nparams;       /* {placeholders} in path: positional arguments */
  char **params;
  int nfields;
  endpoint_field *fields;
  int fields_in_query; /* GET and DELETE send their fields as a query */
  int raw;             /* c:request(): the path is literal */
} endpoint;

typedef struct transfer transfer;

typedef struct {
  char method[8];
  enum auth_mode auth;
  buffer url;   /* absolute */
  buffer path;  /* relative to the base URL, query included, secret query values
                 * REDACTED: for errors and hooks */
  buffer body;
  buffer secrets; /* NUL-separated names of the endpoint's secret fields */
  int has_body;
  transfer *xfer; /* set while the request runs on the multi handle */
} request;

struct transfer {
  CURL *easy;
  buffer body, headers;
  long status;
  int too_large;
  size_t max_bytes;
  struct curl_slist *header_list;
  enum credential list_cred; /* what header_list was built for */
  int list_body;
  unsigned list_gen;
  request *req;              /* non-NULL while on the multi handle */
  void *owner;               /* the client whose multi handle runs it */
  CURLU *url_handle;         /* the parsed URL of the last request (CURLOPT_CURLU) */
  buffer url_text;           /* its text; empty when CURLOPT_URL is used instead */
  char errbuf[CURL_ERROR_SIZE];
};

typedef struct {
  int closed;
  int busy;    /* a method is running: Lua code inside it cannot release the client */
  int closing; /* close() was called during that method: released when it ends */
  char *base_url;
  size_t base_len;
  char *user_agent, *ca_file, *proxy;
  long timeout_ms, connect_timeout_ms;
  size_t max_response_bytes;
  char *api_key, *access_token, *refresh_token;
  double access_exp;     /* the access token's exp claim, 0 when unknown */
  unsigned secrets_gen;  /* bumped whenever a secret changes */
  transfer *main;        /* blocking calls */
  CURLM *multi;
  transfer **pool;       /* non-blocking calls */
  int npool, nrunning;
  buffer scratch;
} client;

/* core.c: raises a message without a source position (the caller's
 * mistake is not in C). */
int core_raise(lua_State *L, const char *fmt, ...);
/* Registers a userdata metatable: methods as __index, the finaliser as __gc
 * (and as __close when closable), tostring as __tostring. */
void core_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction finaliser,
                int closable, lua_CFunction tostring);

/* client.c */
client *client_check(lua_State *L, int idx); /* raises when closed */
void client_open(lua_State *L);
enum credential client_credential(const client *c, enum auth_mode auth);

/* request.c */
void request_open(lua_State *L);
endpoint *endpoint_check(lua_State *L, int idx);
request *request_check(lua_State *L, int idx);
/* c:build(ep, ...): pushes a request userdata; raises on bad arguments. */
int request_build(lua_State *L);
int request_percent_encode(buffer *out, const char *s, size_t n);
/* Refuses CR, LF and NUL: they would split or cut a header. */
int request_header_safe(const char *s, size_t n);
void request_release(request *r);
/* A field or query name whose values are secrets: named like one (token,
 * password, secret, key, code) or typed secret by the request's endpoint. */
int request_secret_name(const request *r, const char *name, size_t n);

/* response.c */
void response_open(lua_State *L);
/* Pushes value, res or nil, err; returns 2. */
int response_push(lua_State *L, client *c, const request *r, long status, const char *headers,
                  size_t hlen, const char *body, size_t blen);
/* Pushes nil, err for a failure before or without an HTTP answer; returns 2. */
int response_push_error(lua_State *L, const request *r, const char *kind, const char *message,
                        int connect_failed);
/* Pushes a lower-case header table parsed from raw header lines. */
void response_push_headers(lua_State *L, const char *h, size_t n);
double response_retry_after(const char *v, size_t n, double now);

/* http.c */
void http_global_init(void);
transfer *http_transfer_new(void);
void http_transfer_free(transfer *t);
int http_configure(client *c, transfer *t);
/* Blocking: performs r on c->main and pushes the result; returns 2. */
int http_perform(lua_State *L, client *c, request *r);
int http_start(lua_State *L, client *c, request *r); /* pushes r's key (req:key()) or nil, err */
/* pushes an array of the finished requests' keys (the table at index out, when
 * not 0) and their count */
int http_poll(lua_State *L, client *c, double timeout, int out);
int http_finish(lua_State *L, client *c, request *r);
void http_cancel(client *c, request *r);
void http_close(client *c);
struct curl_slist *http_headers(const client *c, enum credential cred, int has_body);

/* token.c */
void token_open(lua_State *L);
int token_base64url_decode(const char *in, size_t n, buffer *out);
/* The access token's exp claim, or 0 when it has none or is not a JWT. */
double token_expiry(lua_State *L, const char *jwt, size_t n, buffer *scratch);

/* hash.c */
void hash_open(lua_State *L);

#endif
