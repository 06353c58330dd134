/* Layer 2: reading a response (see response.h). No I/O happens here; curl
 * and Lua transports hand in what they received. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lauxlib.h>

#include "response.h"
#include "clock.h" /* core.time()'s clock: time(NULL) may read the coarse one, a second behind */

#include "compat.h"
#include "json.h"

static int name_is(const char *name, size_t n, const char *lower) {
  size_t l = strlen(lower);
  if (n != l) return 0;
  for (size_t i = 0; i < n; i++)
    if (tolower((unsigned char)name[i]) != lower[i]) return 0;
  return 1;
}

/* Calls fn for each "Name: value" line of the last header block (curl hands
 * over every block, 1xx and redirects included). */
typedef void (*header_fn)(void *ud, const char *name, size_t nl, const char *value, size_t vl);

static void each_header(const char *h, size_t n, header_fn fn, void *ud) {
  const char *end = h + n, *p = h, *block = h;
  /* find the start of the last block: the last line starting with "HTTP/" */
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    if (end - p >= 5 && !memcmp(p, "HTTP/", 5)) block = p;
    p = eol + 1;
  }
  for (p = block; p < end;) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *le = eol;
    if (le > p && le[-1] == '\r') le--;
    const char *colon = memchr(p, ':', (size_t)(le - p));
    if (colon && colon > p && !(le - p >= 5 && !memcmp(p, "HTTP/", 5))) {
      const char *v = colon + 1;
      while (v < le && (*v == ' ' || *v == '\t')) v++;
      const char *ve = le;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      fn(ud, p, (size_t)(colon - p), v, (size_t)(ve - v));
    }
    p = eol + 1;
  }
}

typedef struct {
  lua_State *L;
  int table;
} header_table;

static void put_header(void *ud, const char *name, size_t nl, const char *v, size_t vl) {
  header_table *ht = ud;
  lua_State *L = ht->L;
  char lower[128];
  if (nl >= sizeof lower) return; /* no header we care about is that long */
  for (size_t i = 0; i < nl; i++) lower[i] = (char)tolower((unsigned char)name[i]);
  lua_pushlstring(L, lower, nl);
  lua_pushvalue(L, -1);
  lua_rawget(L, ht->table);
  if (lua_isstring(L, -1)) { /* repeated header: join as HTTP allows */
    lua_pushliteral(L, ", ");
    lua_pushlstring(L, v, vl);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
    lua_pushlstring(L, v, vl);
  }
  lua_rawset(L, ht->table);
}

void moltflow_response_push_headers(lua_State *L, const char *h, size_t n) {
  lua_createtable(L, 0, 8);
  header_table ht = {L, lua_gettop(L)};
  each_header(h, n, put_header, &ht);
}

static int parse_number(const char *v, size_t n, double *out) {
  char tmp[64];
  if (n == 0 || n >= sizeof tmp) return 0;
  memcpy(tmp, v, n);
  tmp[n] = '\0';
  char *end;
  double d = strtod(tmp, &end);
  if (end == tmp || *end != '\0' || !isfinite(d)) return 0; /* "inf" is no number of seconds */
  *out = d;
  return 1;
}

/* Retry-After is delay-seconds or an HTTP-date (RFC 9110 10.2.3). Returns the
 * seconds to wait from now, or -1 when unreadable. */
double moltflow_response_retry_after(const char *v, size_t n, double now) {
  double d;
  if (parse_number(v, n, &d)) return d < 0 ? 0 : d;
  char tmp[64];
  if (n == 0 || n >= sizeof tmp) return -1;
  memcpy(tmp, v, n);
  tmp[n] = '\0';
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char wday[4], mon[4];
  int day, year, hh, mm, ss;
  if (sscanf(tmp, "%3s, %d %3s %d %d:%d:%d GMT", wday, &day, mon, &year, &hh, &mm, &ss) != 7)
    return -1;
  int m;
  for (m = 0; m < 12 && strcmp(mon, months[m]); m++) {}
  if (m == 12 || day < 1 || day > 31 || year < 1900 || year > 9999 || hh < 0 || hh > 23 ||
      mm < 0 || mm > 59 || ss < 0 || ss > 60)
    return -1;
  /* days from civil (Howard Hinnant), avoiding timegm's portability trouble */
  int y = year - (m + 1 <= 2);
  long era = (y >= 0 ? y : y - 399) / 400;
  long yoe = y - era * 400;
  long doy = (153 * ((m + 1) + ((m + 1) > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  double t = (double)(era * 146097 + doe - 719468) * 86400 + hh * 3600 + mm * 60 + ss;
  d = t - now;
  return d < 0 ? 0 : d;
}

typedef struct {
  double remaining, reset, retry_after, content_length;
  const char *request_id, *content_type;
  size_t request_id_len, content_type_len;
} known_headers;

static void note_header(void *ud, const char *name, size_t nl, const char *v, size_t vl) {
  known_headers *k = ud;
  switch (nl) { /* by length first: most headers are none of these */
    case 21:
      if (name_is(name, nl, "x-ratelimit-remaining")) parse_number(v, vl, &k->remaining);
      break;
    case 17:
      if (name_is(name, nl, "x-ratelimit-reset")) parse_number(v, vl, &k->reset);
      break;
    case 11:
      if (name_is(name, nl, "retry-after")) k->retry_after = moltflow_response_retry_after(v, vl, moltflow_clock_wall());
      break;
    case 12:
      if (name_is(name, nl, "x-request-id")) { k->request_id = v; k->request_id_len = vl; }
      else if (name_is(name, nl, "content-type")) { k->content_type = v; k->content_type_len = vl; }
      break;
    default:
      break;
  }
}

/* Header counts and Unix seconds are whole numbers: integers under Lua 5.4. */
static void push_count(lua_State *L, double v) {
  if (v == floor(v) && v < 9007199254740992.0)
    mf_pushint(L, (long long)v);
  else
    lua_pushnumber(L, v);
}

static void push_rate_limit(lua_State *L, const known_headers *k) {
  lua_createtable(L, 0, 2);
  if (k->remaining >= 0) {
    push_count(L, k->remaining);
    lua_setfield(L, -2, "remaining");
  }
  if (k->reset >= 0) {
    push_count(L, k->reset);
    lua_setfield(L, -2, "reset");
  }
}

static int is_json_type(const known_headers *k) {
  if (!k->content_type) return 1; /* absent: try anyway */
  size_t n = k->content_type_len;
  const char *t = k->content_type;
  for (size_t i = 0; i + 4 <= n; i++)
    if (t[i] == 'j' && !strncmp(t + i, "json", 4)) return 1;
  return 0;
}

static void set_common(lua_State *L, int t, const request *r, long status, const known_headers *k) {
  lua_pushinteger(L, status);
  lua_setfield(L, t, "status");
  if (k->request_id) {
    lua_pushlstring(L, k->request_id, k->request_id_len);
    lua_setfield(L, t, "request_id");
  }
  push_rate_limit(L, k);
  lua_setfield(L, t, "rate_limit");
  (void)r;
}

/* Every error table is made here: kind, message, method, path, attempts and
 * the moltflow.error metatable (its __tostring). Pushes it; nrec sizes it. */
static int new_error(lua_State *L, const char *kind, const char *message, const char *method,
                     const char *path, size_t path_len, int nrec) {
  lua_createtable(L, 0, nrec);
  int t = lua_gettop(L);
  lua_pushstring(L, kind);
  lua_setfield(L, t, "kind");
  lua_pushstring(L, message);
  lua_setfield(L, t, "message");
  if (method) {
    lua_pushstring(L, method);
    lua_setfield(L, t, "method");
  }
  if (path) {
    lua_pushlstring(L, path, path_len);
    lua_setfield(L, t, "path");
  }
  lua_pushinteger(L, 1);
  lua_setfield(L, t, "attempts");
  luaL_setmetatable(L, ERROR_MT);
  return t;
}

static int request_error(lua_State *L, const request *r, const char *kind, const char *message, int nrec) {
  return new_error(L, kind, message, r->method, r->path.data ? r->path.data : "", r->path.len, nrec);
}

int moltflow_response_push_error(lua_State *L, const request *r, const char *kind, const char *message,
                                 int connect_failed) {
  lua_pushnil(L);
  int t = request_error(L, r, kind, message, 8);
  if (connect_failed) {
    lua_pushboolean(L, 1);
    lua_setfield(L, t, "connect_failed");
  }
  return 2;
}

/* core.new_error{kind=, message=, status=, method=, path=, ...}: an error
 * of the SDK's shape for code outside the core (Lua transports, the token
 * refresh), made as the core makes its own. kind and message are required
 * strings; every other field is copied; attempts defaults to 1. */
static int l_new_error(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  static const char *const strings[] = {"kind", "message", "method", "path"};
  const char *v[4];
  size_t path_len = 0;
  for (int i = 0; i < 4; i++) {
    lua_getfield(L, 1, strings[i]);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
      mf_raise(L, "moltflow.new_error: field '%s' must be a string", strings[i]);
    if (i < 2 && lua_isnil(L, -1)) mf_raise(L, "moltflow.new_error: field '%s' is required", strings[i]);
    v[i] = i == 3 ? lua_tolstring(L, -1, &path_len) : lua_tostring(L, -1);
  }
  int t = new_error(L, v[0], v[1], v[2], v[3], path_len, 8);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, t);
  }
  return 1;
}

/* The field a FastAPI "loc" names: ["body", "scopes", 0] -> "scopes.0". */
static void push_loc(lua_State *L, int item) {
  lua_getfield(L, item, "loc");
  int loc = lua_gettop(L), parts = 0;
  size_t n = lua_istable(L, loc) ? mf_rawlen(L, loc) : 0;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, loc, (int)i);
    const char *s = lua_tostring(L, -1);
    int where = i == 1 && lua_type(L, -1) == LUA_TSTRING &&
                (!strcmp(s, "body") || !strcmp(s, "query") || !strcmp(s, "path"));
    if (!s || where || !lua_checkstack(L, 2)) {
      lua_pop(L, 1);
      continue;
    }
    if (parts++) {
      lua_pushliteral(L, ".");
      lua_insert(L, -2);
    }
  }
  lua_concat(L, parts ? parts * 2 - 1 : 0);
  lua_remove(L, loc);
}

static const char REDACTED[] = "REDACTED";

/* Replaces the values of secret-named keys in the table at idx, at any depth
 * (an echoed request body). With all set, every string or table value (a
 * secret field's ctx: numbers such as min_length are its limits, not it). */
static void redact_tree(lua_State *L, const request *r, int idx, int all, int depth) {
  if (depth > JSON_MAX_DEPTH || !lua_checkstack(L, 4)) return;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t n = 0;
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &n) : NULL;
    int t = lua_type(L, -1);
    if ((all && (t == LUA_TSTRING || t == LUA_TTABLE)) || (!all && k && moltflow_request_secret_name(r, k, n))) {
      lua_pushvalue(L, -2);
      lua_pushstring(L, REDACTED);
      lua_rawset(L, idx); /* assigning an existing key keeps lua_next valid */
    } else if (!all && t == LUA_TTABLE) {
      redact_tree(L, r, lua_gettop(L), 0, depth + 1);
    }
    lua_pop(L, 1);
  }
}

/* A validation error item may echo the input (pydantic 2: "input" and
 * "ctx"): for a secret field its value, else a body holding secret fields. */
static void redact_item(lua_State *L, const request *r, int item) {
  int secret = 0;
  lua_getfield(L, item, "loc");
  if (lua_istable(L, -1)) {
    size_t n = mf_rawlen(L, -1);
    for (size_t i = 1; i <= n && !secret; i++) {
      lua_rawgeti(L, -1, (int)i);
      size_t kl;
      const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &kl) : NULL;
      secret = k && moltflow_request_secret_name(r, k, kl);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  static const char *const echoes[] = {"input", "ctx"};
  for (int e = 0; e < 2; e++) {
    lua_getfield(L, item, echoes[e]);
    if (lua_istable(L, -1)) {
      redact_tree(L, r, lua_gettop(L), secret, 0);
    } else if (secret && !lua_isnil(L, -1)) {
      lua_pushstring(L, REDACTED);
      lua_setfield(L, item, echoes[e]);
    }
    lua_pop(L, 1);
  }
}

/* From {"detail": ...}: sets message, detail and validation_errors on t. */
static void interpret_detail(lua_State *L, const request *r, int t, int body, long status) {
  lua_getfield(L, body, "detail");
  int d = lua_gettop(L);
  lua_pushvalue(L, d);
  lua_setfield(L, t, "detail");
  if (lua_type(L, d) == LUA_TSTRING) {
    lua_setfield(L, t, "message");
    return;
  }
  if (!lua_istable(L, d)) {
    lua_pop(L, 1);
    lua_pushfstring(L, "HTTP %d", (int)status);
    lua_setfield(L, t, "message");
    return;
  }
  size_t n = mf_rawlen(L, d);
  lua_createtable(L, (int)n, 0);
  int list = lua_gettop(L), count = 0;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, d, (int)i);
    int item = lua_gettop(L);
    if (lua_istable(L, item)) {
      redact_item(L, r, item);
      lua_createtable(L, 0, 3);
      int v = lua_gettop(L);
      push_loc(L, item);
      lua_setfield(L, v, "field");
      lua_getfield(L, item, "msg");
      if (!lua_isstring(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "invalid");
      }
      lua_setfield(L, v, "message");
      lua_getfield(L, item, "type");
      lua_setfield(L, v, "type");
      lua_rawseti(L, list, ++count);
    }
    lua_settop(L, list);
  }
  /* the message: "field: msg; field: msg" */
  lua_pushliteral(L, "");
  for (int i = 1; i <= count; i++) {
    lua_rawgeti(L, list, i);
    int v = lua_gettop(L);
    lua_pushstring(L, i > 1 ? "; " : "");
    lua_getfield(L, v, "field");
    lua_pushstring(L, *lua_tostring(L, -1) ? ": " : "");
    lua_getfield(L, v, "message");
    lua_remove(L, v);
    lua_concat(L, 5);
  }
  lua_setfield(L, t, "message");
  lua_setfield(L, t, "validation_errors");
  lua_pop(L, 1); /* detail */
}

int moltflow_response_push(lua_State *L, buffer *scratch, const request *r, long status, const char *headers,
                  size_t hlen, const char *body, size_t blen) {
  known_headers k = {-1, -1, -1, -1, NULL, NULL, 0, 0};
  each_header(headers, hlen, note_header, &k);
  char err[160];
  int ok = status >= 200 && status < 300;
  if (ok) {
    if (status == 204 || blen == 0) {
      lua_pushboolean(L, 1);
    } else if (!is_json_type(&k)) {
      char msg[200];
      snprintf(msg, sizeof msg, "expected a JSON response, got Content-Type %.*s",
               (int)(k.content_type_len > 80 ? 80 : k.content_type_len), k.content_type);
      moltflow_response_push_error(L, r, "decode", msg, 0);
      set_common(L, lua_gettop(L), r, status, &k);
      return 2;
    } else if (moltflow_json_decode(L, body, blen, scratch, err, sizeof err)) {
      char msg[220];
      snprintf(msg, sizeof msg, "malformed JSON in the response: %s", err);
      moltflow_response_push_error(L, r, "decode", msg, 0);
      set_common(L, lua_gettop(L), r, status, &k);
      return 2;
    }
    lua_createtable(L, 0, 4);
    int res = lua_gettop(L);
    set_common(L, res, r, status, &k);
    /* res.headers is built on first use (response_index): most calls never
     * read it, and building it is a third of the cost of reading a response */
    luaL_setmetatable(L, RESPONSE_MT);
    lua_getfield(L, LUA_REGISTRYINDEX, RESPONSE_RAW_HEADERS);
    lua_pushvalue(L, res);
    lua_pushlstring(L, headers, hlen);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 2;
  }

  lua_pushnil(L);
  int t = request_error(L, r, status == 401 ? "auth" : "http", "", 14);
  set_common(L, t, r, status, &k);
  moltflow_response_push_headers(L, headers, hlen);
  lua_setfield(L, t, "headers");
  if (k.retry_after >= 0) {
    lua_pushnumber(L, k.retry_after);
    lua_setfield(L, t, "retry_after");
  }
  if (blen && is_json_type(&k) && !moltflow_json_decode(L, body, blen, scratch, err, sizeof err)) {
    int b = lua_gettop(L);
    if (lua_istable(L, b))
      interpret_detail(L, r, t, b, status);
    else {
      lua_pushfstring(L, "HTTP %d", (int)status);
      lua_setfield(L, t, "message");
    }
    lua_pop(L, 1);
  } else {
    /* An HTML page from a proxy, or nothing: say so briefly, never echo it. */
    lua_pushfstring(L, "HTTP %d%s", (int)status,
                    blen ? " with a non-JSON body" : "");
    lua_setfield(L, t, "message");
  }
  return 2;
}

static int error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "kind");
  lua_getfield(L, 1, "status");
  lua_getfield(L, 1, "method");
  lua_getfield(L, 1, "path");
  lua_getfield(L, 1, "message");
  const char *kind = luaL_optstring(L, 2, "error");
  const char *what = lua_isnumber(L, 3) && !strcmp(kind, "http") ? lua_tostring(L, 3) : kind;
  if (lua_isnumber(L, 3) && strcmp(kind, "http")) {
    lua_pushfstring(L, "%s %s", kind, lua_tostring(L, 3));
    what = lua_tostring(L, -1);
  }
  lua_pushfstring(L, "moltflow: %s %s %s: %s", what, luaL_optstring(L, 4, "?"),
                  luaL_optstring(L, 5, "?"), luaL_optstring(L, 6, ""));
  return 1;
}

/* __index of a successful res: builds res.headers from the raw header block
 * kept in the weak table (upvalue 1), stores it in res and forgets the block. */
static int response_index(lua_State *L) {
  if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "headers")) return 0;
  lua_pushvalue(L, 1);
  lua_rawget(L, lua_upvalueindex(1));
  size_t n;
  const char *raw = lua_tolstring(L, -1, &n);
  if (!raw) return 0;
  moltflow_response_push_headers(L, raw, n);
  lua_pushliteral(L, "headers");
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  lua_rawset(L, lua_upvalueindex(1));
  return 1;
}

void moltflow_response_open(lua_State *L) {
  lua_newtable(L); /* res -> raw header block, weak keys */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, RESPONSE_RAW_HEADERS);
  luaL_newmetatable(L, RESPONSE_MT);
  lua_insert(L, -2);
  lua_pushcclosure(L, response_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newmetatable(L, ERROR_MT);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "moltflow.error");
  lua_setfield(L, -2, "__name");
  lua_setfield(L, -2, "error_mt");
  lua_pushcfunction(L, l_new_error);
  lua_setfield(L, -2, "new_error");
}
