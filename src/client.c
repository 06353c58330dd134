/* Layer 4: the client userdata: options, secrets, lifetime and the Lua
 * methods. Created closed (all pointers NULL) so that the finaliser is safe
 * whatever step of new() fails. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>

#include "client.h"

#include "compat.h"
#include "http.h"
#include "loop_binding.h"
#include "request.h"
#include "response.h"
#include "token.h"

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
  double access_exp; /* the access token's exp claim, 0 when unknown */
  http *net;
  moltflow_loop *loop; /* net's: its reference keeps it */
  buffer scratch;
} client;

static char *dup_string(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static void free_secret(char **s) {
  if (*s) {
    moltflow_buffer_wipe(*s, strlen(*s));
    free(*s);
    *s = NULL;
  }
}

static void client_release(client *c) {
  if (c->closed) return;
  c->closed = 1;
  c->closing = 0;
  moltflow_http_free(c->net);
  c->net = NULL;
  c->loop = NULL;
  free_secret(&c->api_key);
  free_secret(&c->access_token);
  free_secret(&c->refresh_token);
  free(c->base_url);
  free(c->user_agent);
  free(c->ca_file);
  free(c->proxy);
  c->base_url = c->user_agent = c->ca_file = c->proxy = NULL;
  moltflow_buffer_free(&c->scratch);
}

static client *client_check(lua_State *L, int idx) {
  client *c = luaL_checkudata(L, idx, CLIENT_MT);
  if (c->closed || c->closing) mf_raise(L, "moltflow: the client is closed");
  return c;
}

/* Runs body(L) (the method's arguments unchanged) as a call on the client:
 * Lua code that runs inside it (finalisers at allocations, __index of an
 * argument table) finds the client in use. Its close() is deferred to the end
 * of the call, and other calls on it raise, so body may keep pointers into
 * the client's memory. Under lua_pcall, so that the call ends on errors too. */
static int client_call(lua_State *L, lua_CFunction body) {
  client *c = client_check(L, 1);
  if (c->busy)
    return mf_raise(L, "moltflow: the client is in use: called from a finaliser or metamethod "
                         "during one of its own calls");
  int n = lua_gettop(L);
  lua_pushvalue(L, 1); /* keeps the client alive below the call */
  lua_pushcfunction(L, body);
  lua_insert(L, 1);
  lua_insert(L, 1);
  c->busy = 1;
  int rc = lua_pcall(L, n, LUA_MULTRET, 0);
  c->busy = 0;
  if (c->closing) client_release(c);
  if (rc != 0) return lua_error(L);
  return lua_gettop(L) - 1;
}


/* ------------------------------------------------------------- options */

static const char *opt_string(lua_State *L, int opts, const char *name, size_t *n) {
  lua_getfield(L, opts, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    mf_raise(L, "moltflow.new: field '%s' must be a string", name);
  const char *s = lua_tolstring(L, -1, n);
  lua_pop(L, 1); /* still referenced by the options table */
  return s;
}

/* A number in [min, max]: the range keeps the conversions to long and size_t
 * defined. range names it for the message. */
static double opt_number(lua_State *L, int opts, const char *name, double dflt, double min, double max,
                         const char *range) {
  lua_getfield(L, opts, name);
  double v = dflt;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      mf_raise(L, "moltflow.new: field '%s' must be a number", name);
    v = (double)lua_tonumber(L, -1);
    if (!(v >= min && v <= max)) mf_raise(L, "moltflow.new: field '%s' must be %s", name, range);
  }
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int opts, const char *name) {
  lua_getfield(L, opts, name);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static char *opt_dup(lua_State *L, client *c, int opts, const char *name, int header) {
  size_t n;
  const char *s = opt_string(L, opts, name, &n);
  if (!s) return NULL;
  if (header && !moltflow_request_header_safe(s, n))
    mf_raise(L, "moltflow.new: field '%s' contains CR, LF or NUL", name);
  char *p = dup_string(s, n);
  if (!p) {
    client_release(c);
    mf_raise(L, "moltflow.new: out of memory");
  }
  return p;
}

/* The host name (before any ":port") is a loopback literal: "127.0.0.1.evil.test"
 * and "localhost.evil.test" are not. */
static int is_loopback(const char *host, size_t hl) {
  const char *end = memchr(host, host[0] == '[' ? ']' : ':', hl);
  size_t nl = end ? (size_t)(end - host) + (host[0] == '[') : hl;
  if (nl < hl && host[nl] != ':') return 0;
  if ((nl == 9 && !strncmp(host, "localhost", 9)) || (nl == 5 && !strncmp(host, "[::1]", 5))) return 1;
  if (nl < 5 || strncmp(host, "127.", 4)) return 0;
  for (size_t i = 4; i < nl; i++)
    if (!isdigit((unsigned char)host[i]) && host[i] != '.') return 0;
  return 1;
}

/* "http(s)://host[:port]/path" with no user info, query or fragment. Plain
 * http is for loopback only unless insecure_http is set. */
static void check_base_url(lua_State *L, const char *u, int insecure_http) {
  const char *host;
  int https = 0;
  if (!strncmp(u, "https://", 8)) {
    host = u + 8;
    https = 1;
  } else if (!strncmp(u, "http://", 7)) {
    host = u + 7;
  } else {
    mf_raise(L, "moltflow.new: field 'base_url' must start with https:// or http://");
    return;
  }
  size_t hl = strcspn(host, "/?#");
  if (memchr(host, '@', hl)) mf_raise(L, "moltflow.new: field 'base_url' must not carry user info");
  if (strpbrk(u, "?#")) mf_raise(L, "moltflow.new: field 'base_url' must not have a query or fragment");
  if (!moltflow_request_header_safe(u, strlen(u)) || strpbrk(u, " \t"))
    mf_raise(L, "moltflow.new: field 'base_url' contains white space or control characters");
  if (https || insecure_http) return;
  if (!is_loopback(host, hl))
    mf_raise(L, "moltflow.new: refusing plain http:// to a host that is not loopback; "
                  "use https:// (or set insecure_http = true)");
}

static int client_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  client *c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->closed = 1; /* until every resource is held */
  luaL_setmetatable(L, CLIENT_MT);

  size_t n;
  const char *base = opt_string(L, 1, "base_url", &n);
  if (!base) mf_raise(L, "moltflow.new: field 'base_url' is required");
  check_base_url(L, base, opt_bool(L, 1, "insecure_http"));
  while (n > 0 && base[n - 1] == '/') n--; /* paths bring their own slash */
  double timeout = opt_number(L, 1, "timeout", 30, 0.001, 1e6, "at least 0.001 and at most 1000000 (seconds)");
  double connect_timeout =
      opt_number(L, 1, "connect_timeout", 10, 0.001, 1e6, "at least 0.001 and at most 1000000 (seconds)");
  double max_bytes = opt_number(L, 1, "max_response_bytes", 8.0 * 1024 * 1024, 1, 1099511627776.0,
                                "at least 1 and at most 2^40 (bytes)");
  const char *version = opt_string(L, 1, "http_version", NULL);
  if (version && strcmp(version, "1.1") && strcmp(version, "2"))
    mf_raise(L, "moltflow.new: field 'http_version' must be \"1.1\" or \"2\"");
  int http1_only = version && !strcmp(version, "1.1");
  lua_getfield(L, 1, "loop");
  moltflow_loop *lp = moltflow_loop_test(L, -1);
  if (!lp && !lua_isnil(L, -1)) mf_raise(L, "moltflow.new: field 'loop' must be a loop (admin.new_loop())");
  lua_pop(L, 1);

  c->closed = 0;
  c->base_url = dup_string(base, n);
  c->base_len = n;
  c->timeout_ms = (long)(timeout * 1000);
  c->connect_timeout_ms = (long)(connect_timeout * 1000);
  c->max_response_bytes = (size_t)max_bytes;
  c->user_agent = opt_dup(L, c, 1, "user_agent", 1);
  c->ca_file = opt_dup(L, c, 1, "ca_file", 0);
  c->proxy = opt_dup(L, c, 1, "proxy", 0);
  c->api_key = opt_dup(L, c, 1, "api_key", 1);
  c->access_token = opt_dup(L, c, 1, "access_token", 1);
  c->refresh_token = opt_dup(L, c, 1, "refresh_token", 1);
  if (c->access_token)
    c->access_exp = moltflow_token_expiry(L, c->access_token, strlen(c->access_token), &c->scratch);
  http_options o = {c->timeout_ms, c->connect_timeout_ms, c->max_response_bytes, http1_only,
                    opt_bool(L, 1, "insecure_http"), c->user_agent, c->ca_file, c->proxy};
  /* a loop of its own unless given one: the http handle holds the reference */
  moltflow_loop *own = lp ? NULL : moltflow_loop_new(MOLTFLOW_DEFAULT_POOL_SIZE);
  c->loop = lp ? lp : own;
  if (!c->base_url || !c->loop || !(c->net = moltflow_http_new(&o, c->loop))) {
    moltflow_loop_release(own);
    client_release(c);
    return mf_raise(L, "moltflow.new: could not set up libcurl");
  }
  moltflow_loop_release(own); /* now held by c->net alone */
  return 1;
}

/* -------------------------------------------------------------- methods */

/* The one finaliser: __gc, __close and c:close(). Idempotent. */
static int client_finalise(lua_State *L) {
  client *c = luaL_checkudata(L, 1, CLIENT_MT);
  if (c->busy) c->closing = 1; /* released when the call in progress ends */
  else client_release(c);
  return 0;
}

static int client_tostring_body(lua_State *L) {
  client *c = luaL_checkudata(L, 1, CLIENT_MT);
  if (c->closed || c->closing) {
    lua_pushliteral(L, "moltflow.client (closed)");
  } else {
    lua_pushfstring(L, "moltflow.client (%s; credentials:%s%s%s%s)", c->base_url,
                    c->access_token ? " access token" : "", c->refresh_token ? " refresh token" : "",
                    c->api_key ? " api key" : "",
                    c->access_token || c->refresh_token || c->api_key ? "" : " none");
  }
  return 1;
}

static void set_secret(lua_State *L, char **slot, int idx, const char *what) {
  if (lua_isnoneornil(L, idx)) {
    free_secret(slot);
    return;
  }
  size_t n;
  if (lua_type(L, idx) != LUA_TSTRING) mf_raise(L, "moltflow: '%s' must be a string or nil", what);
  const char *s = lua_tolstring(L, idx, &n);
  if (n == 0) mf_raise(L, "moltflow: '%s' must not be empty", what);
  if (!moltflow_request_header_safe(s, n)) mf_raise(L, "moltflow: '%s' contains CR, LF or NUL", what);
  char *p = dup_string(s, n);
  if (!p) mf_raise(L, "moltflow: out of memory");
  free_secret(slot);
  *slot = p;
}

/* c:set_tokens(access, refresh): nil clears a token. */
static int client_set_tokens_body(lua_State *L) {
  client *c = client_check(L, 1);
  set_secret(L, &c->access_token, 2, "access_token");
  set_secret(L, &c->refresh_token, 3, "refresh_token");
  c->access_exp = c->access_token
                      ? moltflow_token_expiry(L, c->access_token, strlen(c->access_token), &c->scratch)
                      : 0;
  return 0;
}

static int client_set_api_key(lua_State *L) {
  client *c = client_check(L, 1);
  set_secret(L, &c->api_key, 2, "api_key");
  return 0;
}

/* c:tokens(): {access_token, refresh_token, expires_at} or nil. */
static int client_tokens_body(lua_State *L) {
  client *c = client_check(L, 1);
  if (!c->access_token && !c->refresh_token) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 3);
  if (c->access_token) {
    lua_pushstring(L, c->access_token);
    lua_setfield(L, -2, "access_token");
  }
  if (c->refresh_token) {
    lua_pushstring(L, c->refresh_token);
    lua_setfield(L, -2, "refresh_token");
  }
  if (c->access_exp > 0) {
    lua_pushnumber(L, c->access_exp);
    lua_setfield(L, -2, "expires_at");
  }
  return 1;
}

/* c:credentials(): which secrets are held (never their values) and when the
 * access token expires. */
static int client_credentials(lua_State *L) {
  client *c = client_check(L, 1);
  lua_pushboolean(L, c->access_token != NULL);
  lua_pushboolean(L, c->refresh_token != NULL);
  lua_pushboolean(L, c->api_key != NULL);
  if (c->access_exp > 0)
    lua_pushnumber(L, c->access_exp);
  else
    lua_pushnil(L);
  return 4;
}

static int client_is_closed(lua_State *L) {
  client *c = luaL_checkudata(L, 1, CLIENT_MT);
  lua_pushboolean(L, c->closed || c->closing);
  return 1;
}

/* The credential r is sent with; pushes nil, err and returns NULL in
 * *missing when r needs one that is not held. */
static credential credential_for(lua_State *L, const client *c, const request *r, int *pushed) {
  const char *missing;
  credential cred = moltflow_request_credential(r, c->access_token, c->api_key, &missing);
  *pushed = missing ? moltflow_response_push_error(L, r, "auth", missing, 0) : 0;
  return cred;
}

/* Pushes an http result: value, res or nil, err. */
/* Pushes an http result: value, res or nil, err. The transfer it points
 * into stays out of the loop's pool meanwhile (finalisers that run at the
 * allocations may start calls on other clients). */
static int push_result(lua_State *L, client *c, const request *r, http_result *res) {
  int n = res->kind ? moltflow_response_push_error(L, r, res->kind, res->message, res->connect_failed)
                    : moltflow_response_push(L, &c->scratch, r, res->status, res->headers, res->headers_len,
                                             res->body, res->body_len);
  moltflow_http_result_clear(res);
  return n;
}

static int client_send_body(lua_State *L) {
  client *c = client_check(L, 1);
  request *r = moltflow_request_check(L, 2);
  int pushed;
  credential cred = credential_for(L, c, r, &pushed);
  if (pushed) return pushed;
  http_result res;
  moltflow_http_perform(c->net, r, cred, &res);
  return push_result(L, c, r, &res);
}

/* c:start(req): req's key (req:key()), or nil, err. */
static int client_start_body(lua_State *L) {
  client *c = client_check(L, 1);
  request *r = moltflow_request_check(L, 2);
  if (r->runner) return mf_raise(L, "moltflow: the request is already running");
  int pushed;
  credential cred = credential_for(L, c, r, &pushed);
  if (pushed) return pushed;
  http_result res;
  if (moltflow_http_start(c->net, r, cred, &res)) return push_result(L, c, r, &res);
  lua_pushlightuserdata(L, r); /* its key, as poll reports it: no req:key() call */
  return 1;
}

/* c:poll(timeout, out): drives the client's loop -> an array of the keys of
 * the requests that finished on it, this client's and those of the other
 * clients on the same loop (the table out when given: a poll loop reuses
 * it, entries past the count are left as they were), and their count. It
 * waits only while nothing has finished yet. */
static int client_poll_body(lua_State *L) {
  client *c = client_check(L, 1);
  double timeout = luaL_optnumber(L, 2, 0);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  if (lua_istable(L, 3)) lua_pushvalue(L, 3);
  else lua_newtable(L);
  int out = lua_gettop(L), count = 0;
  moltflow_loop_drive(c->loop, timeout > 0 ? timeout : 0); /* NaN too */
  moltflow_loop_collect(L, c->loop, out, &count);
  lua_pushinteger(L, count);
  return 2;
}

/* A request started on another client is refused: its transfer is not ours. */
static request *own_request(lua_State *L, client *c, int idx) {
  request *r = moltflow_request_check(L, idx);
  if (r->runner && r->runner != c->net) mf_raise(L, "moltflow: the request is not running on this client");
  return r;
}

static int client_finish_body(lua_State *L) {
  client *c = client_check(L, 1);
  request *r = own_request(L, c, 2);
  if (!r->runner) return mf_raise(L, "moltflow: the request has not finished");
  http_result res;
  int rc = moltflow_http_finish(c->net, r, &res);
  if (rc < 0) return mf_raise(L, "moltflow: the request is not running on this client");
  if (rc > 0) return mf_raise(L, "moltflow: the request has not finished");
  return push_result(L, c, r, &res);
}

static int client_cancel_body(lua_State *L) {
  client *c = client_check(L, 1);
  request *r = own_request(L, c, 2);
  if (!r->runner) return 0; /* finished or never started */
  if (moltflow_http_cancel(c->net, r)) return mf_raise(L, "moltflow: the request is not running on this client");
  return 0;
}

static int client_running(lua_State *L) {
  client *c = client_check(L, 1);
  lua_pushinteger(L, moltflow_http_running(c->net));
  return 1;
}

/* request_headers' callback: a field of the table on top of the stack */
static int set_header(void *ud, const char *name, const char *prefix, const char *value) {
  lua_State *L = ud;
  lua_pushstring(L, prefix);
  lua_pushstring(L, value);
  lua_concat(L, 2);
  lua_setfield(L, -2, name);
  return 0;
}

/* c:wire(req): method, url, headers, body for a transport written in Lua
 * (OpenResty). The headers include the credential: never log them. */
static int client_wire_body(lua_State *L) {
  client *c = client_check(L, 1);
  request *r = moltflow_request_check(L, 2);
  int pushed;
  credential cred = credential_for(L, c, r, &pushed);
  if (pushed) return pushed;
  lua_pushstring(L, r->method);
  lua_pushlstring(L, r->url.data, r->url.len);
  lua_createtable(L, 0, 5);
  moltflow_request_headers(r, c->user_agent, cred, set_header, L);
  if (r->has_body)
    lua_pushlstring(L, r->body.data, r->body.len);
  else
    lua_pushnil(L);
  return 4;
}

/* c:read(req, status, raw_headers, body): the response half for a Lua
 * transport. */
static int client_read_body(lua_State *L) {
  client *c = client_check(L, 1);
  request *r = moltflow_request_check(L, 2);
  long status = (long)luaL_checkinteger(L, 3);
  size_t hl, bl;
  const char *h = luaL_optlstring(L, 4, "", &hl);
  const char *b = luaL_optlstring(L, 5, "", &bl);
  if (bl > c->max_response_bytes)
    return moltflow_response_push_error(L, r, "too_large", "response body exceeds max_response_bytes", 0);
  return moltflow_response_push(L, &c->scratch, r, status, h, hl, b, bl);
}

/* c:build(ep, ...): a request for the client's base URL. */
static int client_build_body(lua_State *L) {
  client *c = client_check(L, 1);
  return moltflow_request_build(L, c->base_url, c->base_len);
}

/* c:info(): non-secret settings, for tostring and diagnostics. */
static int client_info_body(lua_State *L) {
  client *c = client_check(L, 1);
  lua_createtable(L, 0, 6);
  lua_pushlstring(L, c->base_url, c->base_len);
  lua_setfield(L, -2, "base_url");
  lua_pushnumber(L, (lua_Number)c->timeout_ms / 1000);
  lua_setfield(L, -2, "timeout");
  lua_pushnumber(L, (lua_Number)c->connect_timeout_ms / 1000);
  lua_setfield(L, -2, "connect_timeout");
  lua_pushnumber(L, (lua_Number)c->max_response_bytes);
  lua_setfield(L, -2, "max_response_bytes");
  lua_pushstring(L, c->user_agent ? c->user_agent : MOLTFLOW_USER_AGENT);
  lua_setfield(L, -2, "user_agent");
  return 1;
}

/* The methods that read client memory across calls into Lua. */
static int client_tostring(lua_State *L) {
  client *c = luaL_checkudata(L, 1, CLIENT_MT);
  /* closed, or pinned by the call in progress: nothing can be freed meanwhile */
  if (c->closed || c->closing || c->busy) return client_tostring_body(L);
  return client_call(L, client_tostring_body);
}
static int client_set_tokens(lua_State *L) { return client_call(L, client_set_tokens_body); }
static int client_tokens(lua_State *L) { return client_call(L, client_tokens_body); }
static int client_send(lua_State *L) { return client_call(L, client_send_body); }
static int client_start(lua_State *L) { return client_call(L, client_start_body); }
static int client_poll(lua_State *L) { return client_call(L, client_poll_body); }
static int client_finish(lua_State *L) { return client_call(L, client_finish_body); }
static int client_cancel(lua_State *L) { return client_call(L, client_cancel_body); }
static int client_wire(lua_State *L) { return client_call(L, client_wire_body); }
static int client_read(lua_State *L) { return client_call(L, client_read_body); }
static int client_info(lua_State *L) { return client_call(L, client_info_body); }
static int client_build(lua_State *L) { return client_call(L, client_build_body); }

void moltflow_client_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"build", client_build},
      {"send", client_send},
      {"start", client_start},
      {"poll", client_poll},
      {"finish", client_finish},
      {"cancel", client_cancel},
      {"running", client_running},
      {"wire", client_wire},
      {"read", client_read},
      {"set_tokens", client_set_tokens},
      {"set_api_key", client_set_api_key},
      {"tokens", client_tokens},
      {"credentials", client_credentials},
      {"info", client_info},
      {"close", client_finalise},
      {"is_closed", client_is_closed},
      {NULL, NULL}};
  mf_class(L, CLIENT_MT, methods, client_finalise, 1, client_tostring);
  lua_pushcfunction(L, client_new);
  lua_setfield(L, -2, "new");
}
