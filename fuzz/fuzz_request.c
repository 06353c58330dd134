/* URL and path templating with percent-encoding (request.c). The input's
 * first 8 bytes are a number (any double: NaN, infinities, 1e300), the rest
 * is split on NUL bytes into a path parameter, a raw path and a query value.
 * Percent-encoding must leave only unreserved characters and %XX and decode
 * back to the input; a built path never gains a segment, query or fragment;
 * numbers in the query and the body read back exactly, or the build raises. */
#define FUZZ_LAYER2_ONLY /* request building alone: no client, no libcurl */
#include "harness.h"

static const char base_url[] = "http://127.0.0.1:1/api/v2";

/* build(ep, ...): what c:build does, without a client */
static int l_build(lua_State *L) {
  lua_pushnil(L); /* where the client would be */
  lua_insert(L, 1);
  return moltflow_request_build(L, base_url, sizeof base_url - 1);
}

/* body(req): the request's JSON body, or nil */
static int l_body(lua_State *L) {
  request *r = moltflow_request_check(L, 1);
  if (r->has_body) lua_pushlstring(L, r->body.data, r->body.len);
  else lua_pushnil(L);
  return 1;
}

static int unhex(int c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void check_encoding(const char *s, size_t n) {
  buffer out = {NULL, 0, 0};
  if (moltflow_request_percent_encode(&out, s, n)) abort();
  size_t j = 0;
  for (size_t i = 0; i < out.len; i++, j++) {
    char ch = out.data[i];
    if (ch == '%') {
      if (i + 2 >= out.len) abort();
      int hi = unhex(out.data[i + 1]), lo = unhex(out.data[i + 2]);
      if (hi < 0 || lo < 0) abort();
      ch = (char)(hi * 16 + lo);
      i += 2;
    } else if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~", ch) || !ch) {
      abort();
    }
    if (j >= n || s[j] != ch) abort();
  }
  if (j != n) abort();
  moltflow_buffer_free(&out);
}

static int run(lua_State *L) {
  const fuzz_input *in = fuzz_arg(L);
  const char *s = (const char *)in->data;
  size_t n = in->size;
  double num = 0;
  if (n >= sizeof num) {
    memcpy(&num, s, sizeof num);
    s += sizeof num;
    n -= sizeof num;
  }
  check_encoding(s, n);
  const char *part[3] = {"", "/", ""};
  size_t plen[3] = {0, 1, 0};
  size_t start = 0;
  for (int k = 0; k < 3 && start <= n; k++) {
    size_t i = start;
    while (i < n && s[i]) i++;
    part[k] = s + start;
    plen[k] = i - start;
    start = i + 1;
  }
  lua_getglobal(L, "fuzz_build");
  lua_pushlstring(L, part[0], plen[0]);
  lua_pushlstring(L, part[1], plen[1]);
  lua_pushlstring(L, part[2], plen[2]);
  lua_pushnumber(L, (lua_Number)num);
  lua_call(L, 4, 0);
  return 0;
}

/* Builds through the Lua API, as the SDK does: raising is fine (bad
 * arguments), producing a path that escapes its template is not. */
static const char *const script =
    "local ep = core.endpoint{label = 'api_keys.get', method = 'GET', path = '/api-keys/{id}/x',"
    "  auth = 'any', fields = 'months:integer q:string'}\n"
    "local raw = core.endpoint{label = 'request', method = 'POST', path = '/', auth = 'any', raw = true}\n"
    /* the last `name=` of the query: a raw path may hold `&n=` (and a
     * query) of its own, before what the builder appends */
    "local function query_number(p, name)\n"
    "  local q, v = p:match('%?(.*)$'), nil\n"
    "  for x in ('&' .. (q or '')):gmatch('&' .. name .. '=([^&]*)') do v = x end\n"
    "  return v and tonumber((v:gsub('%%2B', '+')))\n"
    "end\n"
    "local function whole(n) return n == math.floor(n) and n >= -2^63 and n < 2^63 end\n"
    "function fuzz_build(id, path, value, num)\n"
    "  local ok, req = pcall(build, ep, id, {q = value, months = num})\n"
    "  if ok then assert(whole(num), 'months accepted: ' .. tostring(num)) end\n"
    "  if ok then\n"
    "    local _, p = req:info()\n"
    "    assert(p:match('^/api%-keys/[^/?#]*/x%?[^?#]*$'), p)\n"
    "    assert(query_number(p, 'months') == num, p)\n"
    "  end\n"
    "  ok, req = pcall(build, raw, path, {query = {[value] = id, n = num}, body = {v = value, id = id, n = num}})\n"
    "  if ok then\n"
    "    local _, p = req:info()\n"
    "    assert(not p:find('#', 1, true) and not p:find('/../', 1, true), p)\n"
    "    if value ~= 'n' then assert(query_number(p, 'n') == num, p) end\n"
    "    assert(core.json_decode(body(req)).n == num, body(req))\n"
    "  end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    lua_State *L = fuzz_state();
    lua_register(L, "build", l_build);
    lua_register(L, "body", l_body);
    if (luaL_dostring(L, script)) {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      abort();
    }
    ready = 1;
  }
  fuzz_run(run, data, size);
  return 0;
}
