/* Layer 2. Endpoints and request building: validating arguments, templating
 * the path, encoding the query and the JSON body, and the request's headers
 * for every transport. No I/O, no client, no libcurl. */
#ifndef MOLTFLOW_REQUEST_H
#define MOLTFLOW_REQUEST_H

#include <stddef.h>
#include <lua.h>

#include "buffer.h"
#include "compat.h"

#define ENDPOINT_MT "moltflow.endpoint"
#define REQUEST_MT "moltflow.request"

enum auth_mode { AUTH_NONE, AUTH_ANY, AUTH_TOKEN };

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
  int fields_in_query; /* GET and DELETE send their fields as a query, unless body = true */
  int once;            /* sent at most once: on a connection of its own (libcurl never resends it) */
  int raw;             /* c:request(): the path is literal */
} endpoint;

typedef struct {
  char method[8];
  enum auth_mode auth;
  buffer url;     /* absolute */
  buffer path;    /* relative to the base URL, query included, secret query values
                   * REDACTED: for errors and hooks */
  buffer body;
  int has_body;
  int once;       /* the endpoint's `once` */
  buffer secrets; /* NUL-separated names of the endpoint's secret fields */
  /* Set by the transport while the request runs on it (layer 3): the
   * finaliser of a request collected mid-flight calls stop(r). */
  void *runner;
  void (*stop)(void *runner, void *r);
} request;

/* The credential a request is sent with. */
typedef struct {
  enum { CRED_NONE, CRED_BEARER, CRED_KEY } kind;
  const char *secret; /* the access token or the API key */
} credential;

void moltflow_request_open(lua_State *L); /* core.endpoint, the two classes */
endpoint *moltflow_endpoint_check(lua_State *L, int idx);
request *moltflow_request_check(lua_State *L, int idx);

/* c:build(ep, param..., fields) and c:build(raw_ep, path, {query=, body=}):
 * the endpoint at index 2, its arguments after it. Pushes a request userdata;
 * raises on bad arguments. */
int moltflow_request_build(lua_State *L, const char *base_url, size_t base_len);

int moltflow_request_percent_encode(buffer *out, const char *s, size_t n);
/* Refuses CR, LF and NUL: they would split or cut a header. */
int moltflow_request_header_safe(const char *s, size_t n);
void moltflow_request_release(request *r);
/* A field or query name whose values are secrets: named like one (token,
 * password, secret, key, code) or typed secret by the request's endpoint. */
int moltflow_request_secret_name(const request *r, const char *name, size_t n);

/* The credential r is sent with, from those held (NULL when not held). When
 * r needs one that is not held, returns CRED_NONE and sets *missing to the
 * message of the auth error. */
credential moltflow_request_credential(const request *r, const char *access_token, const char *api_key,
                                       const char **missing);

/* The headers of r for every transport (libcurl and c:wire): Accept,
 * User-Agent, Content-Type when it has a body, and the credential's header.
 * fn gets each as name, then the value in two parts (a prefix such as
 * "Bearer " and the rest). Returns the first non-zero fn result, else 0. */
typedef int (*request_header_fn)(void *ud, const char *name, const char *prefix, const char *value);
int moltflow_request_headers(const request *r, const char *user_agent, credential cred,
                             request_header_fn fn, void *ud);

#define MOLTFLOW_USER_AGENT "moltflow-lua/" MOLTFLOW_VERSION

#endif
