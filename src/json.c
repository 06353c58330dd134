/* Layer 1: the JSON codec (see json.h). */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>

#include "compat.h"

void moltflow_json_push_array_mt(lua_State *L) {
  if (luaL_newmetatable(L, JSON_ARRAY_MT)) {
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__name");
  }
}

/* lua-cjson's sentinels, when a cjson module is loaded in this Lua state
 * (package.loaded.cjson, else package.loaded["cjson.safe"]): the OpenResty
 * fork has array_mt and empty_array_mt (tables) and empty_array (a light
 * userdata); the original 2.1.0 has none. Looked up at each call, with raw
 * reads only: the core keeps no state of its own, and cjson may be loaded
 * after moltflow. Pushes CJSON_SLOTS values, nil where absent. */
#define CJSON_SLOTS 3 /* array_mt, empty_array_mt, empty_array */
#define ARRAY_MARKS 3 /* metatables that make a table an array: ours, array_mt, empty_array_mt */
static void push_cjson_sentinels(lua_State *L) {
  static const char *const modules[] = {"cjson", "cjson.safe"};
  static const char *const fields[CJSON_SLOTS] = {"array_mt", "empty_array_mt", "empty_array"};
  static const int types[CJSON_SLOTS] = {LUA_TTABLE, LUA_TTABLE, LUA_TLIGHTUSERDATA};
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  int loaded = lua_gettop(L), found = 0;
  if (lua_istable(L, loaded)) {
    for (size_t i = 0; i < sizeof modules / sizeof *modules && !found; i++) {
      lua_pushstring(L, modules[i]);
      lua_rawget(L, loaded);
      found = lua_istable(L, -1);
      if (!found) lua_pop(L, 1);
    }
  }
  for (int i = 0; i < CJSON_SLOTS; i++) {
    if (!found) {
      lua_pushnil(L);
      continue;
    }
    lua_pushstring(L, fields[i]);
    lua_rawget(L, loaded + 1);
    if (lua_type(L, -1) != types[i] || (types[i] == LUA_TLIGHTUSERDATA && !lua_touserdata(L, -1))) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
  }
  lua_remove(L, loaded); /* and the module under the sentinels */
  if (found) lua_remove(L, loaded);
}

int moltflow_json_is_empty_array(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TLIGHTUSERDATA || !lua_touserdata(L, idx)) return 0;
  idx = mf_absindex(L, idx);
  push_cjson_sentinels(L);
  int is = lua_rawequal(L, idx, -1);
  lua_pop(L, CJSON_SLOTS);
  return is;
}

/* The metatable decoded arrays get: cjson's array_mt when the loaded cjson
 * has one (so that cjson.encode also writes them as arrays), else ours. */
static void push_decode_array_mt(lua_State *L) {
  push_cjson_sentinels(L);
  lua_pop(L, CJSON_SLOTS - 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    moltflow_json_push_array_mt(L);
  }
}

/* ---------------------------------------------------------------- encoder */

typedef struct {
  lua_State *L;
  buffer *out;
  char *err;
  size_t err_size;
  const char *field; /* top-level field being encoded, for messages */
  int failed;
  int marks; /* stack index of our array metatable, followed by the cjson sentinels */
} encoder;

static int enc_fail(encoder *e, const char *what) {
  if (!e->failed) {
    if (e->field)
      snprintf(e->err, e->err_size, "field '%s': %s", e->field, what);
    else
      snprintf(e->err, e->err_size, "%s", what);
  }
  e->failed = 1;
  return -1;
}

static int enc_oom(encoder *e) { return enc_fail(e, "out of memory"); }

static size_t utf8_seq(const unsigned char *p, const unsigned char *end);

static int enc_string(encoder *e, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  buffer *o = e->out;
  if (moltflow_buffer_reserve(o, n + 2)) return enc_oom(e);
  o->data[o->len++] = '"';
  size_t run = 0; /* bytes copied verbatim in one go */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x80) { /* the peer's decoder would refuse the whole body */
      size_t len = utf8_seq((const unsigned char *)s + i, (const unsigned char *)s + n);
      if (!len) return enc_fail(e, "invalid UTF-8 in a string");
      i += len - 1;
      continue;
    }
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    if (moltflow_buffer_append(o, s + run, i - run)) return enc_oom(e);
    run = i + 1;
    char esc[7] = {'\\', 0};
    size_t k = 2;
    switch (c) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      case '\b': esc[1] = 'b'; break;
      case '\f': esc[1] = 'f'; break;
      default:
        memcpy(esc + 1, "u00", 3);
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        k = 6;
    }
    if (moltflow_buffer_append(o, esc, k)) return enc_oom(e);
  }
  if (moltflow_buffer_append(o, s + run, n - run) || moltflow_buffer_putc(o, '"')) return enc_oom(e);
  return 0;
}

size_t moltflow_json_format_double(double d, char *buf) {
  if (!isfinite(d)) return 0;
  int n;
  /* whole numbers within int64 as integers (all LuaJIT numbers are floats) */
  if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
    n = snprintf(buf, JSON_NUMBER_SIZE, "%lld", (long long)d);
  } else {
    /* the shortest of 15, 16 and 17 significant digits that reads back as d */
    for (int digits = 15; digits <= 17; digits++) {
      n = snprintf(buf, JSON_NUMBER_SIZE, "%.*g", digits, d);
      if (strtod(buf, NULL) == d) break;
    }
  }
  return n > 0 && n < JSON_NUMBER_SIZE ? (size_t)n : 0;
}

size_t moltflow_json_format_number(lua_State *L, int idx, char *buf) {
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, idx)) {
    int n = snprintf(buf, JSON_NUMBER_SIZE, "%lld", (long long)lua_tointeger(L, idx));
    return n > 0 && n < JSON_NUMBER_SIZE ? (size_t)n : 0;
  }
#endif
  return moltflow_json_format_double((double)lua_tonumber(L, idx), buf);
}

static int enc_number(encoder *e, int idx) {
  char tmp[JSON_NUMBER_SIZE];
  size_t n = moltflow_json_format_number(e->L, idx, tmp);
  if (!n) return enc_fail(e, "cannot encode NaN or infinity");
  if (moltflow_buffer_append(e->out, tmp, n)) return enc_oom(e);
  return 0;
}

static int enc_value(encoder *e, int idx, int depth, int force_array);

/* A table is an array when marked, when hinted, or when its keys are exactly
 * 1..n with n > 0. Returns n, or -1 when it is an object. */
static long long table_array_length(lua_State *L, int idx, int marked) {
  long long n = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 1);
      return marked ? -2 : -1;
    }
    double k = (double)lua_tonumber(L, -1);
    /* no array has 2^53 entries: larger keys make an object, before any cast */
    if (!(k >= 1 && k < 9007199254740992.0) || k != floor(k)) {
      lua_pop(L, 1);
      return marked ? -2 : -1;
    }
    if (k > max) max = (long long)k;
    n++;
  }
  if (n == 0) return marked ? 0 : -1;
  return max == n ? n : (marked ? -2 : -1);
}

static int enc_table(encoder *e, int idx, int depth, int force_array) {
  lua_State *L = e->L;
  if (depth > JSON_MAX_DEPTH) return enc_fail(e, "nested too deeply (or a cycle)");
  if (!lua_checkstack(L, 6)) return enc_fail(e, "stack overflow");
  int marked = force_array;
  if (!marked && lua_getmetatable(L, idx)) { /* ours, cjson's array_mt or empty_array_mt */
    for (int i = 0; i < ARRAY_MARKS && !marked; i++) marked = lua_rawequal(L, -1, e->marks + i);
    lua_pop(L, 1);
  }
  long long n = table_array_length(L, idx, marked);
  if (n == -2) return enc_fail(e, "an array may only have keys 1..n");
  if (n >= 0) {
    if (moltflow_buffer_putc(e->out, '[')) return enc_oom(e);
    for (long long i = 1; i <= n; i++) {
      if (i > 1 && moltflow_buffer_putc(e->out, ',')) return enc_oom(e);
      lua_rawgeti(L, idx, (int)i);
      int rc = enc_value(e, lua_gettop(L), depth + 1, 0);
      lua_pop(L, 1);
      if (rc) return rc;
    }
    return moltflow_buffer_putc(e->out, ']') ? enc_oom(e) : 0;
  }
  if (moltflow_buffer_putc(e->out, '{')) return enc_oom(e);
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return enc_fail(e, "object keys must be strings");
    }
    size_t kl;
    const char *k = lua_tolstring(L, -2, &kl);
    if (!first && moltflow_buffer_putc(e->out, ',')) return enc_oom(e);
    first = 0;
    if (enc_string(e, k, kl) || moltflow_buffer_putc(e->out, ':')) {
      lua_pop(L, 2);
      return -1;
    }
    int rc = enc_value(e, lua_gettop(L), depth + 1, 0);
    lua_pop(L, 1);
    if (rc) {
      lua_pop(L, 1);
      return rc;
    }
  }
  return moltflow_buffer_putc(e->out, '}') ? enc_oom(e) : 0;
}

static int enc_value(encoder *e, int idx, int depth, int force_array) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return moltflow_buffer_puts(e->out, "null") ? enc_oom(e) : 0;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL)
        return moltflow_buffer_puts(e->out, "null") ? enc_oom(e) : 0;
      if (lua_rawequal(L, idx, e->marks + ARRAY_MARKS)) /* cjson.empty_array */
        return moltflow_buffer_puts(e->out, "[]") ? enc_oom(e) : 0;
      return enc_fail(e, "cannot encode a light userdata");
    case LUA_TBOOLEAN:
      return moltflow_buffer_puts(e->out, lua_toboolean(L, idx) ? "true" : "false") ? enc_oom(e) : 0;
    case LUA_TNUMBER:
      return enc_number(e, idx);
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      return enc_string(e, s, n);
    }
    case LUA_TTABLE:
      return enc_table(e, idx, depth, force_array);
    default: {
      char what[64];
      snprintf(what, sizeof what, "cannot encode a %s", luaL_typename(L, idx));
      return enc_fail(e, what);
    }
  }
}

int moltflow_json_encode(lua_State *L, int idx, int hints, buffer *out, char *err, size_t err_size) {
  encoder e = {L, out, err, err_size, NULL, 0, 0};
  idx = mf_absindex(L, idx);
  if (hints) hints = mf_absindex(L, hints);
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 6 + 1 + CJSON_SLOTS)) return enc_fail(&e, "stack overflow");
  moltflow_json_push_array_mt(L);
  e.marks = lua_gettop(L);
  push_cjson_sentinels(L);
  if (lua_type(L, idx) != LUA_TTABLE || !hints) {
    int rc = enc_value(&e, idx, 0, 0);
    lua_settop(L, top);
    return rc;
  }
  /* A top-level object: encoded here so that hinted fields become arrays and
   * messages can name the field. */
  if (moltflow_buffer_putc(out, '{')) {
    lua_settop(L, top);
    return enc_oom(&e);
  }
  int first = 1, rc = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      rc = enc_fail(&e, "object keys must be strings");
      break;
    }
    size_t kl;
    const char *k = lua_tolstring(L, -2, &kl);
    e.field = k;
    lua_pushvalue(L, -2);
    lua_rawget(L, hints);
    int force = lua_toboolean(L, -1) && lua_type(L, -2) == LUA_TTABLE;
    lua_pop(L, 1);
    if ((!first && moltflow_buffer_putc(out, ',')) || enc_string(&e, k, kl) || moltflow_buffer_putc(out, ':')) {
      rc = e.failed ? -1 : enc_oom(&e);
      break;
    }
    first = 0;
    if ((rc = enc_value(&e, lua_gettop(L), 1, force))) break;
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  if (rc) return rc;
  return moltflow_buffer_putc(out, '}') ? enc_oom(&e) : 0;
}

/* ---------------------------------------------------------------- decoder */

typedef struct {
  lua_State *L;
  const unsigned char *p, *end, *start;
  buffer *scratch; /* unescaped strings */
  char *err;
  size_t err_size;
  int array_mt; /* stack index */
} decoder;

static int dec_fail(decoder *d, const char *what) {
  snprintf(d->err, d->err_size, "%s at byte %ld", what, (long)(d->p - d->start));
  return -1;
}

static void skip_ws(decoder *d) {
  while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
    d->p++;
}

static int dec_value(decoder *d, int depth);

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static long read_hex4(decoder *d) {
  if (d->end - d->p < 4) return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(d->p[i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  d->p += 4;
  return v;
}

static int put_utf8(buffer *b, unsigned long cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) { u[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
  else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
  }
  return moltflow_buffer_append(b, u, n);
}

/* Length of the valid UTF-8 sequence at p, or 0 (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  size_t n;
  unsigned long cp, min;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; min = 0x80; }
  else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; min = 0x800; }
  else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; min = 0x10000; }
  else return 0;
  if ((size_t)(end - p) < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

/* Bytes a string may hold without a closer look: printable ASCII except '"'
 * and '\\'. Control characters, escapes and UTF-8 take the slow path. */
static const unsigned char plain_byte[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static int dec_string(decoder *d) {
  d->p++; /* opening quote */
  const unsigned char *run = d->p;
  moltflow_buffer_clear(d->scratch);
  int escaped = 0;
  while (d->p < d->end) {
    while (d->p < d->end && plain_byte[*d->p]) d->p++;
    if (d->p >= d->end) break;
    unsigned c = *d->p;
    if (c == '"') {
      if (!escaped) {
        lua_pushlstring(d->L, (const char *)run, (size_t)(d->p - run));
      } else {
        if (moltflow_buffer_append(d->scratch, run, (size_t)(d->p - run))) return dec_fail(d, "out of memory");
        lua_pushlstring(d->L, d->scratch->data, d->scratch->len);
      }
      d->p++;
      return 0;
    }
    if (c < 0x20) return dec_fail(d, "control character in string");
    if (c >= 0x80) {
      size_t n = utf8_seq(d->p, d->end);
      if (!n) return dec_fail(d, "invalid UTF-8 in string");
      d->p += n;
      continue;
    }
    if (c != '\\') {
      d->p++;
      continue;
    }
    escaped = 1;
    if (moltflow_buffer_append(d->scratch, run, (size_t)(d->p - run))) return dec_fail(d, "out of memory");
    d->p++;
    if (d->p >= d->end) break;
    char out = 0;
    switch (*d->p++) {
      case '"': out = '"'; break;
      case '\\': out = '\\'; break;
      case '/': out = '/'; break;
      case 'b': out = '\b'; break;
      case 'f': out = '\f'; break;
      case 'n': out = '\n'; break;
      case 'r': out = '\r'; break;
      case 't': out = '\t'; break;
      case 'u': {
        long cp = read_hex4(d);
        if (cp < 0) return dec_fail(d, "bad \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u')
            return dec_fail(d, "unpaired surrogate");
          d->p += 2;
          long lo = read_hex4(d);
          if (lo < 0xDC00 || lo > 0xDFFF) return dec_fail(d, "unpaired surrogate");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return dec_fail(d, "unpaired surrogate");
        }
        if (put_utf8(d->scratch, (unsigned long)cp)) return dec_fail(d, "out of memory");
        run = d->p;
        continue;
      }
      default:
        return dec_fail(d, "bad escape");
    }
    if (moltflow_buffer_putc(d->scratch, out)) return dec_fail(d, "out of memory");
    run = d->p;
  }
  return dec_fail(d, "unterminated string");
}

static int dec_number(decoder *d) {
  const unsigned char *s = d->p;
  int is_float = 0;
  if (d->p < d->end && *d->p == '-') d->p++;
  if (d->p >= d->end) return dec_fail(d, "bad number");
  if (*d->p == '0') {
    d->p++;
  } else if (*d->p >= '1' && *d->p <= '9') {
    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') d->p++;
  } else {
    return dec_fail(d, "bad number");
  }
  if (d->p < d->end && *d->p == '.') {
    is_float = 1;
    d->p++;
    if (d->p >= d->end || *d->p < '0' || *d->p > '9') return dec_fail(d, "bad number");
    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') d->p++;
  }
  if (d->p < d->end && (*d->p == 'e' || *d->p == 'E')) {
    is_float = 1;
    d->p++;
    if (d->p < d->end && (*d->p == '+' || *d->p == '-')) d->p++;
    if (d->p >= d->end || *d->p < '0' || *d->p > '9') return dec_fail(d, "bad number");
    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') d->p++;
  }
  size_t n = (size_t)(d->p - s);
  if (!is_float && n <= 18) { /* at most 18 digits: fits a long long, no strtoll */
    long long v = 0;
    for (const unsigned char *q = s + (*s == '-'); q < d->p; q++) v = v * 10 + (*q - '0');
    mf_pushint(d->L, *s == '-' ? -v : v);
    return 0;
  }
  char tmp[64], *text = tmp;
  if (n < sizeof tmp) {
    memcpy(tmp, s, n);
    tmp[n] = '\0';
  } else { /* an absurd literal, whole, so that its exponent still counts */
    moltflow_buffer_clear(d->scratch);
    if (moltflow_buffer_append(d->scratch, s, n) || moltflow_buffer_cstr(d->scratch)) return dec_fail(d, "out of memory");
    text = d->scratch->data;
  }
  if (!is_float) {
    char *endp;
    errno = 0;
    long long v = strtoll(text, &endp, 10);
    if (errno != ERANGE) { /* LLONG_MAX itself is an integer too */
      mf_pushint(d->L, v);
      return 0;
    }
  }
  double v = strtod(text, NULL);
  /* 1e400 would be infinity, which no JSON encoder can send back */
  if (!isfinite(v)) return dec_fail(d, "number out of range");
  lua_pushnumber(d->L, (lua_Number)v);
  return 0;
}

static int dec_literal(decoder *d, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n)) return dec_fail(d, "unexpected character");
  d->p += n;
  return 0;
}

/* Members wait on the Lua stack until the container closes and then go into
 * a table created at its final size, so that no table is rehashed while it
 * grows. A long container moves them every PENDING_MAX members, which bounds
 * the stack to about 2 * PENDING_MAX slots per level of nesting. */
#define PENDING_MAX 32

/* Moves the pending members above the table (created at base + 1 on the
 * first call, sized for count members) into it; count includes them. */
static void dec_store(decoder *d, int base, int is_array, int count, int pending) {
  lua_State *L = d->L;
  int t = base + 1;
  if (lua_gettop(L) == base + (is_array ? 1 : 2) * pending) { /* no table yet */
    lua_createtable(L, is_array ? count : 0, is_array ? 0 : count);
    if (is_array) {
      lua_pushvalue(L, d->array_mt);
      lua_setmetatable(L, -2);
    }
    lua_insert(L, t);
  }
  for (int k = 0; k < pending; k++) {
    if (is_array) {
      lua_pushvalue(L, t + 1 + k);
      lua_rawseti(L, t, count - pending + k + 1);
    } else { /* in document order: a repeated key keeps its last value */
      lua_pushvalue(L, t + 1 + 2 * k);
      lua_pushvalue(L, t + 2 + 2 * k);
      lua_rawset(L, t);
    }
  }
  lua_settop(L, t);
}

static int dec_container(decoder *d, int depth, int is_array) {
  lua_State *L = d->L;
  if (depth > JSON_MAX_DEPTH) return dec_fail(d, "nested too deeply");
  char close = is_array ? ']' : '}';
  int base = lua_gettop(L), count = 0, pending = 0;
  d->p++;
  skip_ws(d);
  if (d->p < d->end && *d->p == close) {
    d->p++;
    dec_store(d, base, is_array, 0, 0);
    return 0;
  }
  for (;;) {
    if (!lua_checkstack(L, 6)) return dec_fail(d, "stack overflow");
    skip_ws(d);
    if (!is_array) {
      if (d->p >= d->end || *d->p != '"') return dec_fail(d, "expected a string key");
      if (dec_string(d)) return -1;
      skip_ws(d);
      if (d->p >= d->end || *d->p != ':') return dec_fail(d, "expected ':'");
      d->p++;
    }
    if (dec_value(d, depth + 1)) return -1;
    count++;
    if (++pending == PENDING_MAX) {
      dec_store(d, base, is_array, count, pending);
      pending = 0;
    }
    skip_ws(d);
    if (d->p >= d->end) return dec_fail(d, "unterminated container");
    if (*d->p == ',') {
      d->p++;
      continue;
    }
    if (*d->p == close) {
      d->p++;
      dec_store(d, base, is_array, count, pending);
      return 0;
    }
    return dec_fail(d, "expected ',' or a closing bracket");
  }
}

static int dec_value(decoder *d, int depth) {
  skip_ws(d);
  if (d->p >= d->end) return dec_fail(d, "unexpected end of input");
  switch (*d->p) {
    case '{': return dec_container(d, depth, 0);
    case '[': return dec_container(d, depth, 1);
    case '"': return dec_string(d);
    case 't': if (dec_literal(d, "true")) return -1; lua_pushboolean(d->L, 1); return 0;
    case 'f': if (dec_literal(d, "false")) return -1; lua_pushboolean(d->L, 0); return 0;
    case 'n': if (dec_literal(d, "null")) return -1; lua_pushlightuserdata(d->L, NULL); return 0;
    default:
      if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) return dec_number(d);
      return dec_fail(d, "unexpected character");
  }
}

int moltflow_json_decode(lua_State *L, const char *s, size_t len, buffer *scratch, char *err,
                size_t err_size) {
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8 + CJSON_SLOTS)) {
    snprintf(err, err_size, "stack overflow");
    return -1;
  }
  push_decode_array_mt(L);
  decoder d = {L, (const unsigned char *)s, (const unsigned char *)s + len,
               (const unsigned char *)s, scratch, err, err_size, lua_gettop(L)};
  int rc = dec_value(&d, 0);
  if (!rc) {
    skip_ws(&d);
    if (d.p != d.end) rc = dec_fail(&d, "trailing characters");
  }
  moltflow_buffer_clear(scratch);
  if (rc) {
    lua_settop(L, top);
    return -1;
  }
  lua_remove(L, top + 1); /* the metatable */
  return 0;
}

/* ------------------------------------------------------------ Lua */

/* core.json_encode(v): a string, or raises. */
static int l_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  buffer out = {NULL, 0, 0};
  char err[256];
  int rc = moltflow_json_encode(L, 1, 0, &out, err, sizeof err);
  if (!rc) lua_pushlstring(L, out.data ? out.data : "", out.len);
  moltflow_buffer_free(&out);
  if (rc) return mf_raise(L, "moltflow.json_encode: %s", err);
  return 1;
}

/* core.json_array([t]): t (or a new table) marked as an array, with the
 * metatable decoded arrays get. */
static int l_json_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  push_decode_array_mt(L);
  lua_setmetatable(L, 1);
  return 1;
}

/* core.json_decode(s): the value, or nil and a message. */
static int l_json_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  buffer scratch = {NULL, 0, 0};
  char err[160];
  int rc = moltflow_json_decode(L, s, n, &scratch, err, sizeof err);
  moltflow_buffer_free(&scratch);
  if (rc) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

void moltflow_json_open(lua_State *L) {
  lua_pushcfunction(L, l_json_encode);
  lua_setfield(L, -2, "json_encode");
  lua_pushcfunction(L, l_json_decode);
  lua_setfield(L, -2, "json_decode");
  lua_pushcfunction(L, l_json_array);
  lua_setfield(L, -2, "json_array");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  moltflow_json_push_array_mt(L);
  lua_setfield(L, -2, "array_mt");
}
