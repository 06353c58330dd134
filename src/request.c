/* Layer 2: endpoints and request building (see request.h). No I/O happens
 * here, so every transport (curl easy and multi, OpenResty) shares it. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>

#include "request.h"

#include "compat.h"
#include "json.h"

int moltflow_request_header_safe(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  return 1;
}

/* RFC 3986 unreserved characters pass; everything else is %XX, so a path
 * parameter can never add a segment, a query or a fragment. */
int moltflow_request_percent_encode(buffer *out, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  if (moltflow_buffer_reserve(out, n * 3)) return -1;
  char *d = out->data + out->len;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
        ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      *d++ = (char)ch;
    } else {
      *d++ = '%';
      *d++ = hex[ch >> 4];
      *d++ = hex[ch & 15];
    }
  }
  out->len = (size_t)(d - out->data);
  return 0;
}

static void oom(lua_State *L) { mf_raise(L, "moltflow: out of memory"); }

/* ------------------------------------------------------------ endpoints */

static const struct {
  const char *name;
  enum field_type type;
} field_types[] = {{"string", FIELD_STRING},   {"secret", FIELD_SECRET}, {"integer", FIELD_INTEGER},
                   {"number", FIELD_NUMBER},   {"boolean", FIELD_BOOLEAN}, {"array", FIELD_ARRAY},
                   {"table", FIELD_TABLE},     {"any", FIELD_ANY}};

static const char *type_name(enum field_type t) {
  switch (t) {
    case FIELD_STRING: case FIELD_SECRET: return "a string";
    case FIELD_INTEGER: return "an integer";
    case FIELD_NUMBER: return "a number";
    case FIELD_BOOLEAN: return "a boolean";
    case FIELD_ARRAY: return "an array of strings";
    case FIELD_TABLE: return "a table";
    default: return "a value";
  }
}

static void endpoint_release(endpoint *ep) {
  free(ep->label);
  free(ep->path);
  for (int i = 0; i < ep->nparams; i++) free(ep->params[i]);
  free(ep->params);
  for (int i = 0; i < ep->nfields; i++) free(ep->fields[i].name);
  free(ep->fields);
  memset(ep, 0, sizeof *ep);
}

static int endpoint_gc(lua_State *L) {
  endpoint_release(luaL_checkudata(L, 1, ENDPOINT_MT));
  return 0;
}

endpoint *moltflow_endpoint_check(lua_State *L, int idx) { return luaL_checkudata(L, idx, ENDPOINT_MT); }

static char *xstrndup(lua_State *L, const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p) mf_raise(L, "moltflow: out of memory");
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static const char *spec_string(lua_State *L, const char *key) {
  lua_getfield(L, 1, key);
  const char *s = lua_tostring(L, -1);
  if (!s) mf_raise(L, "moltflow.endpoint: '%s' must be a string", key);
  lua_pop(L, 1);
  return s;
}

/* core.endpoint{label=, method=, path=, auth="none"|"any"|"token",
 *               fields="name:string! scopes:array! expires_in_days:integer",
 *               body=true (fields in a JSON body even on GET/DELETE), once=true} */
static int endpoint_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  endpoint *ep = lua_newuserdata(L, sizeof *ep);
  memset(ep, 0, sizeof *ep);
  luaL_setmetatable(L, ENDPOINT_MT);

  const char *label = spec_string(L, "label"), *method = spec_string(L, "method");
  const char *path = spec_string(L, "path"), *auth = spec_string(L, "auth");
  lua_getfield(L, 1, "fields");
  const char *fields = lua_isnil(L, -1) ? "" : luaL_checkstring(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "raw");
  ep->raw = lua_toboolean(L, -1);
  lua_pop(L, 1);

  if (strlen(method) >= sizeof ep->method) mf_raise(L, "moltflow.endpoint: bad method '%s'", method);
  strcpy(ep->method, method);
  lua_getfield(L, 1, "body");
  ep->fields_in_query = !lua_toboolean(L, -1) && (!strcmp(method, "GET") || !strcmp(method, "DELETE"));
  lua_getfield(L, 1, "once");
  ep->once = lua_toboolean(L, -1);
  lua_pop(L, 2);
  if (!strcmp(auth, "none")) ep->auth = AUTH_NONE;
  else if (!strcmp(auth, "any")) ep->auth = AUTH_ANY;
  else if (!strcmp(auth, "token")) ep->auth = AUTH_TOKEN;
  else mf_raise(L, "moltflow.endpoint: %s: bad auth '%s'", label, auth);
  ep->label = xstrndup(L, label, strlen(label));
  ep->path = xstrndup(L, path, strlen(path));

  for (const char *p = path; (p = strchr(p, '{')); p++) ep->nparams++;
  ep->params = calloc((size_t)ep->nparams + 1, sizeof *ep->params);
  if (!ep->params) mf_raise(L, "moltflow: out of memory");
  int i = 0;
  for (const char *p = path; (p = strchr(p, '{')); p++) {
    const char *e = strchr(p, '}');
    if (!e) mf_raise(L, "moltflow.endpoint: %s: unclosed '{' in path", label);
    ep->params[i++] = xstrndup(L, p + 1, (size_t)(e - p - 1));
  }

  /* fields: whitespace-separated "name:type" words, "!" marks required */
  int nwords = 0;
  for (const char *p = fields; *p;) {
    while (*p == ' ') p++;
    if (!*p) break;
    nwords++;
    while (*p && *p != ' ') p++;
  }
  ep->fields = calloc((size_t)nwords + 1, sizeof *ep->fields);
  if (!ep->fields) mf_raise(L, "moltflow: out of memory");
  lua_newtable(L); /* names of array fields: the JSON encoder's hints */
  for (const char *p = fields; *p;) {
    while (*p == ' ') p++;
    if (!*p) break;
    size_t wl = strcspn(p, " ");
    const char *colon = memchr(p, ':', wl);
    if (!colon) {
      lua_pushlstring(L, p, wl); /* lua_pushfstring has no %.*s */
      mf_raise(L, "moltflow.endpoint: %s: field '%s' has no type", label, lua_tostring(L, -1));
    }
    endpoint_field *f = &ep->fields[ep->nfields];
    f->name = xstrndup(L, p, (size_t)(colon - p));
    ep->nfields++;
    size_t tl = wl - (size_t)(colon + 1 - p);
    if (tl > 0 && colon[tl] == '!') {
      f->required = 1;
      tl--;
    }
    size_t t;
    for (t = 0; t < sizeof field_types / sizeof *field_types; t++)
      if (strlen(field_types[t].name) == tl && !strncmp(field_types[t].name, colon + 1, tl)) break;
    if (t == sizeof field_types / sizeof *field_types)
      mf_raise(L, "moltflow.endpoint: %s: field '%s' has an unknown type", label, f->name);
    f->type = field_types[t].type;
    if (f->type == FIELD_ARRAY) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, f->name);
    }
    p += wl;
  }
  mf_setuservalue(L, 2);
  return 1;
}

static int endpoint_tostring(lua_State *L) {
  endpoint *ep = moltflow_endpoint_check(L, 1);
  lua_pushfstring(L, "moltflow.endpoint (%s: %s %s)", ep->label ? ep->label : "?", ep->method,
                  ep->path ? ep->path : "?");
  return 1;
}

/* ep:describe(): {label, method, path, auth, body, once, params = {...},
 * fields = {{name, type, required}}},
 * for generated docs and the CLI. */
static int endpoint_describe(lua_State *L) {
  endpoint *ep = moltflow_endpoint_check(L, 1);
  static const char *const auths[] = {"none", "any", "token"};
  lua_createtable(L, 0, 6);
  lua_pushstring(L, ep->label);
  lua_setfield(L, -2, "label");
  lua_pushstring(L, ep->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, ep->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, auths[ep->auth]);
  lua_setfield(L, -2, "auth");
  lua_pushboolean(L, !ep->fields_in_query);
  lua_setfield(L, -2, "body");
  lua_pushboolean(L, ep->once);
  lua_setfield(L, -2, "once");
  lua_createtable(L, ep->nparams, 0);
  for (int i = 0; i < ep->nparams; i++) {
    lua_pushstring(L, ep->params[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "params");
  lua_createtable(L, ep->nfields, 0);
  for (int i = 0; i < ep->nfields; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, ep->fields[i].name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, field_types[ep->fields[i].type].name);
    lua_setfield(L, -2, "type");
    lua_pushboolean(L, ep->fields[i].required);
    lua_setfield(L, -2, "required");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "fields");
  return 1;
}

/* ------------------------------------------------------------- requests */

void moltflow_request_release(request *r) {
  moltflow_buffer_free(&r->url);
  moltflow_buffer_free(&r->path);
  moltflow_buffer_free(&r->body);
  moltflow_buffer_free(&r->secrets);
}

request *moltflow_request_check(lua_State *L, int idx) { return luaL_checkudata(L, idx, REQUEST_MT); }

static int request_gc(lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  if (r->stop) r->stop(r->runner, r); /* collected mid-flight: its transfer stops */
  moltflow_request_release(r);
  return 0;
}

static int request_tostring(lua_State *L) {
  request *r = luaL_checkudata(L, 1, REQUEST_MT);
  lua_pushfstring(L, "moltflow.request (%s %s)", r->method, r->path.data ? r->path.data : "");
  return 1;
}

/* req:key(): a light userdata naming the request, as c:poll() reports it. */
static int request_key(lua_State *L) {
  lua_pushlightuserdata(L, moltflow_request_check(L, 1));
  return 1;
}

/* req:info(): method, path (relative, query included) and whether the
 * endpoint is `once` (a transport must not send it twice). */
static int request_info(lua_State *L) {
  request *r = moltflow_request_check(L, 1);
  lua_pushstring(L, r->method);
  lua_pushlstring(L, r->path.data, r->path.len);
  lua_pushboolean(L, r->once);
  return 3;
}


/* An exact integer within int64: floats too (LuaJIT has no other), but not
 * 1e300, which is whole but no integer the server could read. */
static int is_int64(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  if (mf_isinteger(L, idx)) return 1;
  double d = (double)lua_tonumber(L, idx);
  return d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0;
}

static int is_string_array(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  size_t n = mf_rawlen(L, idx), count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    count++;
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 2);
      return 0;
    }
    lua_pop(L, 1);
  }
  return count == n;
}

static int type_ok(lua_State *L, int idx, enum field_type t) {
  switch (t) {
    case FIELD_STRING: case FIELD_SECRET: return lua_type(L, idx) == LUA_TSTRING;
    case FIELD_INTEGER: return is_int64(L, idx);
    case FIELD_NUMBER: return lua_type(L, idx) == LUA_TNUMBER;
    case FIELD_BOOLEAN: return lua_type(L, idx) == LUA_TBOOLEAN;
    case FIELD_ARRAY: return is_string_array(L, idx) || moltflow_json_is_empty_array(L, idx);
    case FIELD_TABLE: return lua_type(L, idx) == LUA_TTABLE;
    default: return 1;
  }
}

static void check_fields(lua_State *L, const endpoint *ep, int args) {
  for (int i = 0; i < ep->nfields; i++) {
    const endpoint_field *f = &ep->fields[i];
    if (args) lua_getfield(L, args, f->name); else lua_pushnil(L);
    int top = lua_gettop(L);
    if (lua_isnil(L, top)) {
      if (f->required) mf_raise(L, "moltflow: %s: field '%s' is required", ep->label, f->name);
    } else if (!(lua_type(L, top) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, top) && !f->required) &&
               !type_ok(L, top, f->type)) {
      mf_raise(L, "moltflow: %s: field '%s' must be %s (got %s)", ep->label, f->name,
                 type_name(f->type), luaL_typename(L, top));
    }
    lua_pop(L, 1);
  }
}

/* Query names that mark a secret: their values never reach errors or hooks. */
static int secret_name(const char *k, size_t n) {
  static const char *const words[] = {"token", "password", "secret", "key", "code"};
  char lower[64];
  if (n >= sizeof lower) n = sizeof lower - 1;
  for (size_t i = 0; i < n; i++) lower[i] = (char)tolower((unsigned char)k[i]);
  lower[n] = '\0';
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (strstr(lower, words[i])) return 1;
  return 0;
}

int moltflow_request_secret_name(const request *r, const char *k, size_t n) {
  if (secret_name(k, n)) return 1;
  for (size_t at = 0; r->secrets.data && at < r->secrets.len; at += strlen(r->secrets.data + at) + 1)
    if (strlen(r->secrets.data + at) == n && !memcmp(r->secrets.data + at, k, n)) return 1;
  return 0;
}

/* Appends "name=value" to the URL, and to the shown path with the value
 * redacted when the name marks a secret. */
static void append_query_value(lua_State *L, const endpoint *ep, request *r, int idx, const char *key,
                               size_t kl) {
  char tmp[JSON_NUMBER_SIZE];
  size_t n;
  const char *s;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &n);
      break;
    case LUA_TBOOLEAN:
      s = lua_toboolean(L, idx) ? "true" : "false";
      n = strlen(s);
      break;
    case LUA_TNUMBER:
      n = moltflow_json_format_number(L, idx, tmp);
      if (!n) mf_raise(L, "moltflow: %s: query field '%s' must be a finite number", ep->label, key);
      s = tmp;
      break;
    default:
      mf_raise(L, "moltflow: %s: query field '%s' must be a string, number or boolean", ep->label, key);
      return;
  }
  if (moltflow_request_percent_encode(&r->url, s, n)) oom(L);
  if (moltflow_request_secret_name(r, key, kl)) {
    if (moltflow_buffer_puts(&r->path, "REDACTED")) oom(L);
  } else if (moltflow_request_percent_encode(&r->path, s, n)) {
    oom(L);
  }
}

static void append_query(lua_State *L, const endpoint *ep, request *r, int args) {
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, args)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      mf_raise(L, "moltflow: %s: query keys must be strings", ep->label);
    size_t kl;
    const char *k = lua_tolstring(L, -2, &kl);
    if (!(lua_type(L, -1) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, -1))) {
      for (int shown = 0; shown < 2; shown++) {
        buffer *b = shown ? &r->path : &r->url;
        if (moltflow_buffer_putc(b, first ? '?' : '&') || moltflow_request_percent_encode(b, k, kl) || moltflow_buffer_putc(b, '='))
          oom(L);
      }
      append_query_value(L, ep, r, lua_gettop(L), k, kl);
      first = 0;
    }
    lua_pop(L, 1);
  }
}

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Refuses what could leave the path: controls, '?', '#', backslashes and dot
 * segments, also percent-encoded (servers decode %2E, %2F and %5C before they
 * resolve dot segments). */
static void check_raw_path(lua_State *L, const char *p, size_t n) {
  if (n == 0 || p[0] != '/') mf_raise(L, "moltflow: request: path must start with '/'");
  buffer d = {NULL, 0, 0}; /* p with %2E, %2F and %5C decoded */
  int bad = 0;
  for (size_t i = 0; i < n && !bad; i++) {
    unsigned char ch = (unsigned char)p[i];
    if (ch <= 0x20 || ch >= 0x7F || ch == '?' || ch == '#') bad = 1;
    if (ch == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
      int v = hexval(p[i + 1]) * 16 + hexval(p[i + 2]);
      if (v == '.' || v == '/' || v == '\\') {
        ch = (unsigned char)v;
        i += 2;
      }
    }
    if (ch == '\\') bad = 1;
    if (moltflow_buffer_putc(&d, (char)ch)) bad = 2;
  }
  int dots = !bad && !moltflow_buffer_cstr(&d) &&
             (strstr(d.data, "/../") || strstr(d.data, "/./") ||
              (d.len >= 3 && !strcmp(d.data + d.len - 3, "/..")) || (d.len >= 2 && !strcmp(d.data + d.len - 2, "/.")));
  moltflow_buffer_free(&d);
  if (bad == 2) oom(L);
  if (bad)
    mf_raise(L, "moltflow: request: path may not contain spaces, controls, '?', '#' or '\\' "
                  "(pass a query table instead)");
  if (dots) mf_raise(L, "moltflow: request: path may not contain '.' or '..' segments");
}

/* Servers decode %2F and %2E before resolving dot segments (nginx, Starlette),
 * so percent-encoding alone cannot keep "../x" inside its own path. */
static int has_dot_segment(const char *s, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != '/') continue;
    size_t len = i - start;
    if ((len == 1 && s[start] == '.') || (len == 2 && s[start] == '.' && s[start + 1] == '.'))
      return 1;
    start = i + 1;
  }
  return 0;
}

int moltflow_request_build(lua_State *L, const char *base_url, size_t base_len) {
  endpoint *ep = moltflow_endpoint_check(L, 2);
  request *r = lua_newuserdata(L, sizeof *r);
  memset(r, 0, sizeof *r);
  luaL_setmetatable(L, REQUEST_MT);
  int req_idx = lua_gettop(L);
  memcpy(r->method, ep->method, sizeof r->method);
  r->auth = ep->auth;
  r->once = ep->once;
  for (int i = 0; i < ep->nfields; i++) /* NUL-separated names of the secret fields */
    if (ep->fields[i].type == FIELD_SECRET && moltflow_buffer_append(&r->secrets, ep->fields[i].name, strlen(ep->fields[i].name) + 1))
      oom(L);

  int args = 0, body_idx = 0, query_idx = 0;
  if (ep->raw) {
    size_t pl;
    /* the request userdata sits above the arguments: an omitted one is not it */
    if (req_idx == 3 || lua_type(L, 3) != LUA_TSTRING)
      mf_raise(L, "moltflow: request: 'path' must be a string");
    const char *p = lua_tolstring(L, 3, &pl);
    check_raw_path(L, p, pl);
    if (moltflow_buffer_append(&r->path, p, pl)) oom(L);
    if (req_idx > 4 && !lua_isnil(L, 4)) {
      luaL_checktype(L, 4, LUA_TTABLE);
      lua_getfield(L, 4, "query");
      if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        query_idx = lua_gettop(L);
      }
      lua_getfield(L, 4, "body");
      if (!lua_isnil(L, -1)) body_idx = lua_gettop(L);
    }
  } else {
    int nargs = req_idx - 3; /* arguments after client and endpoint */
    if (nargs < ep->nparams)
      mf_raise(L, "moltflow: %s: missing argument '%s'", ep->label, ep->params[nargs]);
    const char *t = ep->path;
    for (int i = 0; i < ep->nparams; i++) {
      const char *open = strchr(t, '{');
      if (moltflow_buffer_append(&r->path, t, (size_t)(open - t))) oom(L);
      int idx = 3 + i;
      if (lua_type(L, idx) != LUA_TSTRING)
        mf_raise(L, "moltflow: %s: '%s' must be a string (got %s)", ep->label, ep->params[i],
                   luaL_typename(L, idx));
      size_t n;
      const char *v = lua_tolstring(L, idx, &n);
      if (n == 0 || has_dot_segment(v, n))
        mf_raise(L, "moltflow: %s: '%s' must be a non-empty id without '.' or '..' segments",
                   ep->label, ep->params[i]);
      if (moltflow_request_percent_encode(&r->path, v, n)) oom(L);
      t = strchr(open, '}') + 1;
    }
    if (moltflow_buffer_puts(&r->path, t)) oom(L);
    int fi = 3 + ep->nparams;
    if (nargs > ep->nparams + 1)
      mf_raise(L, "moltflow: %s: too many arguments", ep->label);
    if (nargs == ep->nparams + 1 && !lua_isnil(L, fi)) {
      if (lua_type(L, fi) != LUA_TTABLE)
        mf_raise(L, "moltflow: %s: expected a table of fields (got %s)", ep->label,
                   luaL_typename(L, fi));
      args = fi;
    }
    check_fields(L, ep, args);
    if (args) {
      if (ep->fields_in_query) query_idx = args; else body_idx = args;
    }
  }
  if (moltflow_buffer_append(&r->url, base_url, base_len) || moltflow_buffer_append(&r->url, r->path.data, r->path.len))
    oom(L);
  if (query_idx) append_query(L, ep, r, query_idx);
  if (moltflow_buffer_cstr(&r->url) || moltflow_buffer_cstr(&r->path)) oom(L);
  if (body_idx) {
    char err[256];
    mf_getuservalue(L, 2); /* the array hints */
    int hints = lua_istable(L, -1) ? lua_gettop(L) : 0;
    if (moltflow_json_encode(L, body_idx, hints, &r->body, err, sizeof err))
      mf_raise(L, "moltflow: %s: %s", ep->label, err);
    r->has_body = 1;
  }
  lua_settop(L, req_idx);
  return 1;
}

/* ------------------------------------------------------------- headers */

credential moltflow_request_credential(const request *r, const char *access_token, const char *api_key,
                              const char **missing) {
  credential c = {CRED_NONE, NULL};
  *missing = NULL;
  if (r->auth == AUTH_NONE) return c;
  if (access_token) {
    c.kind = CRED_BEARER;
    c.secret = access_token;
  } else if (r->auth == AUTH_ANY && api_key) {
    c.kind = CRED_KEY;
    c.secret = api_key;
  } else {
    *missing = r->auth == AUTH_TOKEN ? "this call needs a bearer token: log in first"
                                     : "no credentials: log in or set an API key";
  }
  return c;
}

int moltflow_request_headers(const request *r, const char *user_agent, credential cred, request_header_fn fn,
                    void *ud) {
  int rc = fn(ud, "Accept", "", "application/json");
  if (!rc) rc = fn(ud, "User-Agent", "", user_agent ? user_agent : MOLTFLOW_USER_AGENT);
  if (!rc && r->has_body) rc = fn(ud, "Content-Type", "", "application/json");
  /* the credential last: the libcurl transport finds it there */
  if (!rc && cred.kind == CRED_BEARER) rc = fn(ud, "Authorization", "Bearer ", cred.secret);
  if (!rc && cred.kind == CRED_KEY) rc = fn(ud, "X-API-Key", "", cred.secret);
  return rc;
}

void moltflow_request_open(lua_State *L) {
  static const luaL_Reg ep_methods[] = {{"describe", endpoint_describe}, {NULL, NULL}};
  static const luaL_Reg req_methods[] = {{"info", request_info}, {"key", request_key}, {NULL, NULL}};
  mf_class(L, ENDPOINT_MT, ep_methods, endpoint_gc, 0, endpoint_tostring);
  mf_class(L, REQUEST_MT, req_methods, request_gc, 0, request_tostring);
  lua_pushcfunction(L, endpoint_new);
  lua_setfield(L, -2, "endpoint");
}
