-- Issue 24, finding 2: environment proxies and "plain http:// only to
-- loopback" (libcurl transport). Plain http carries the API key in clear, so
-- the first hop that carries the request must be loopback: a proxy that
-- libcurl takes from http_proxy / ALL_PROXY (or the `proxy` option) on another
-- host is refused once connected, before a byte of the request is sent;
-- no_proxy and a loopback proxy work as in curl. A real proxy
-- (spec/support/http_proxy_server.lua) on this machine's outside address;
-- each call runs in a child process, whose environment names the proxy.
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local http_proxy = require "spec.support.http_proxy"
local proc = require "spec.support.process"

local PROXY_VARS = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                    "no_proxy", "NO_PROXY"}

-- One GET /usage/current with the seed key in a child process whose
-- environment holds only the given proxy variables: {ok = bool, kind, message}.
local function call_with(env, client_opts)
  local code = ([[
local c = require("moltflow.admin").new{base_url = %q, api_key = %q, retry = false, proxy = %s}
local v, err = c:request("GET", "/usage/current")
io.write(require("dkjson").encode({ok = v ~= nil, kind = err and err.kind, message = err and err.message}))
]]):format(emu.start(), emu.seed.keys.all, client_opts and client_opts.proxy and ("%q"):format(client_opts.proxy)
           or "nil")
  local argv = {"env"}
  for _, name in ipairs(PROXY_VARS) do argv[#argv + 1] = "-u"; argv[#argv + 1] = name end
  for name, value in pairs(env) do argv[#argv + 1] = name .. "=" .. value end
  for _, w in ipairs{proc.lua, "-e", code} do argv[#argv + 1] = w end
  local r = proc.run(argv, {env = {LUA_PATH = "lua/?.lua;lua/?/init.lua;./?.lua;;", LUA_CPATH = proc.cpath .. ";;"}})
  assert.equal(0, r.code, r.stderr)
  return assert(dkjson.decode(r.stdout), r.stdout .. r.stderr)
end

local function usage_calls() return #emu.requests_for("GET", "/usage/current") end

describe("plain http:// to loopback and proxies (libcurl)", function()
  local outside = http_proxy.outside_address()
  local far, near
  setup(function()
    emu.start()
    if outside then far = http_proxy.start{host = outside} end
    near = http_proxy.start()
  end)
  teardown(function()
    if far then far:stop() end
    near:stop()
  end)

  local function it_outside(name, fn)
    if outside then return it(name, fn) end
    pending(name .. " (this machine has no address but loopback)")
  end

  local REFUSED = "refusing to send plain http:// through "

  for _, var in ipairs{"http_proxy", "ALL_PROXY", "all_proxy"} do
    it_outside(var .. " naming another host is refused before anything is sent to it", function()
      local before = usage_calls()
      local r = call_with({[var] = far.url})
      assert.is_false(r.ok)
      assert.equal("network", r.kind)
      assert.matches(REFUSED .. outside, r.message, 1, true)
      assert.matches("no_proxy", r.message, 1, true)
      assert.same({}, far:lines()) -- the proxy never read a request line, nor the key (none so far)
      assert.equal(before, usage_calls()) -- and no proxy's answer stood in for the API's
    end)
  end

  it_outside("the `proxy` option naming another host is refused the same way", function()
    local before = usage_calls()
    local r = call_with({}, {proxy = far.url})
    assert.is_false(r.ok)
    assert.matches(REFUSED .. outside, r.message, 1, true)
    assert.same({}, far:lines())
    assert.equal(before, usage_calls())
  end)

  it_outside("no_proxy listing the API's host goes direct, as curl does", function()
    local seen = #far:lines()
    for _, list in ipairs{"127.0.0.1", "localhost,127.0.0.1", "*"} do
      local before = usage_calls()
      local r = call_with({http_proxy = far.url, no_proxy = list})
      assert.is_true(r.ok, r.message)
      assert.equal(before + 1, usage_calls())
    end
    assert.equal(seen, #far:lines())
  end)

  it("a proxy on loopback carries it (the first hop is loopback)", function()
    local before = usage_calls()
    local r = call_with({http_proxy = near.url})
    assert.is_true(r.ok, r.message)
    assert.equal(before + 1, usage_calls())
    local lines = near:lines()
    assert.equal(1, #lines)
    assert.matches("^GET http://127%.0%.0%.1:%d+/api/v2/usage/current HTTP/1%.1$", lines[1].line)
  end)
end)
