-- Memory safety of the C core (issue 11): numbers formatted into the query,
-- a client closed by Lua code that runs inside one of its calls, requests
-- handed to the wrong client, out-of-range options and keys, encoded dots in
-- raw paths. Under make check-sanitize each of these ran into ASan or UBSan.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"

local KEY = emu.seed.keys.all

local function client(opts)
  return emu.client(opts, {api_key = KEY, retry = false})
end

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.matches(pattern, tostring(err))
  return tostring(err)
end

-- The query the emulator received last, as name -> decoded value.
local function last_query()
  local log = emu.requests()
  local q = {}
  for name, value in log[#log].query:gmatch("([^&=]+)=([^&]*)") do
    q[name] = value:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return q, log[#log].query
end

describe("numbers in requests", function()
  before_each(function() emu.reset() end)

  it("integer fields take only exact integers within int64, raising before any I/O", function()
    local c = client()
    for _, v in ipairs{1e300, -1e300, 2^63, -2^63 * 2, 1.5, math.huge, -math.huge, 0/0} do
      local msg = raises("usage%.history: field 'months' must be an integer", c.usage.history, c.usage, {months = v})
      assert.is_nil(msg:find("e+300", 1, true))
    end
    assert.equal(0, #emu.requests())
    -- whole numbers, floats included, within range go out as integers
    c.usage:history{months = 3.0}
    assert.equal("3", last_query().months)
    c:request("GET", "/usage/history", {query = {months = -2^63}})
    assert.equal("-9223372036854775808", last_query().months)
  end)

  it("other query numbers go out in full and read back exactly", function()
    local c = client()
    local values = {huge = 1e300, tiny = -1e-300, tenth = 0.1, big = 2^63, third = 1 / 3, neg = -1e63}
    c:request("GET", "/usage/history", {query = values})
    local q, raw = last_query()
    assert.is_true(#raw < 300, raw) -- no stack bytes after the digits
    for name, v in pairs(values) do
      assert.matches("^[-+.%deE]+$", q[name])
      assert.equal(v, tonumber(q[name]), name)
    end
  end)

  it("non-finite query numbers raise, naming the field", function()
    local c = client()
    raises("query field 'x' must be a finite number", c.request, c, "GET", "/usage/history",
           {query = {x = math.huge}})
    raises("query field 'x' must be a finite number", c.request, c, "GET", "/usage/history",
           {query = {x = 0/0}})
    assert.equal(0, #emu.requests())
  end)

  it("numbers in a body are written so that they read back exactly", function()
    for _, v in ipairs{1e300, 2^63, -2^63, 2^60, 0.1, 1 / 3, -1e-300} do
      assert.equal(v, core.json_decode(core.json_encode{v = v}).v)
    end
  end)
end)

describe("a client closed by Lua code running inside its own call", function()
  local ep = core.endpoint{label = "usage.history", method = "GET", path = "/usage/history",
                           auth = "any", fields = "months:integer"}
  before_each(function() emu.reset() end)

  it("by __index on an argument table: the build ends, then the client is closed", function()
    local c = core.new{base_url = emu.url, api_key = KEY}
    local req = c:build(ep, setmetatable({}, {__index = function() c:close() end}))
    assert.is_true(c:is_closed())
    local _, path = req:info()
    assert.equal("/usage/history", path)
    raises("the client is closed", c.build, c, ep, {})
  end)

  -- Finalisers run at allocations; a GC that never pauses runs them inside the
  -- core's own allocations. Returns what call(c, prepare(c)) returned the
  -- time a finaliser closed c during the call.
  --
  -- Lua 5.4 steps its collector by hand instead: over a large heap (the specs
  -- before this one leave one) an incremental cycle rarely ends inside a
  -- call, so each try starts a cycle, arms the finalisers, runs the cycle to
  -- a few steps before its end and lets the call's allocations finish it.
  -- The tries sweep how many steps are left, so one ends inside the call
  -- whatever the heap's size.
  local function cycle_steps()
    collectgarbage("stop")
    repeat until collectgarbage("step", 0) -- the cycle under way ends
    local n = 0
    repeat n = n + 1 until collectgarbage("step", 0)
    return n
  end
  local pack = table.pack or function(...) return {n = select("#", ...), ...} end
  local function close_from_finaliser(call, prepare)
    local function setpause(p)
      if _VERSION ~= "Lua 5.4" then -- LuaJIT, 5.1 to 5.3
        collectgarbage("setpause", p)
        collectgarbage("setstepmul", p == 0 and 1000 or 200)
      else
        collectgarbage("incremental", p, 100, p == 0 and 0 or 13)
        collectgarbage("restart")
      end
    end
    setpause(0)
    local by_hand = _VERSION == "Lua 5.4"
    local steps = by_hand and cycle_steps()
    local ok, result = pcall(function()
      for try = 1, 3000 do
        local c = core.new{base_url = emu.url, api_key = KEY}
        local arg = prepare and prepare(c)
        local calling, closed_inside = false, false
        local function arm()
          local g = function() if calling then closed_inside = true; c:close() end end
          if newproxy then getmetatable(newproxy(true)).__gc = g
          else setmetatable({}, {__gc = g}) end
        end
        if by_hand then
          collectgarbage("stop")
          repeat until collectgarbage("step", 0) -- a new cycle starts
        end
        for _ = 1, 20 do arm() end
        if by_hand then
          for _ = 1, steps - 1 - try % 8 do
            if collectgarbage("step", 0) then break end -- the heap shrank: ended early, no matter
          end
          collectgarbage("restart")
        end
        calling = true
        -- the results' table is made after the call returns: `{call(c, arg)}` would
        -- allocate it first (Lua 5.1, LuaJIT), and a finaliser run by that
        -- allocation would close c before the call even started
        local r = pack(call(c, arg))
        calling = false
        if closed_inside then
          assert.is_true(c:is_closed())
          return r
        end
        c:close()
      end
      error("no finaliser ran inside the call in 3000 tries")
    end)
    setpause(200) -- the default
    collectgarbage("collect")
    assert(ok, result)
    return result
  end

  it("by a finaliser during c:send: the call returns its answer, then the client is closed", function()
    local r = close_from_finaliser(function(c, req) return c:send(req) end,
                                 function(c) return c:build(ep, {months = 24}) end)
    assert.is_table(r[1], tostring(r[2]))
    assert.equal(200, r[2].status)
  end)

  it("by a finaliser during c:read", function()
    local body = core.json_encode{months = core.json_decode("[" .. ("{\"m\":\"2026-01\\n\",\"n\":1},"):rep(200) .. "{}]")}
    local r = close_from_finaliser(function(c, req)
      return c:read(req, 200, "Content-Type: application/json\r\n", body)
    end, function(c) return c:build(ep, {}) end)
    assert.equal(201, #r[1].months)
  end)

  local function b64url(s)
    local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    local out = {}
    for i = 1, #s, 3 do
      local a, b, c = s:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local chars = c and 4 or b and 3 or 2
      for k = 1, chars do
        local idx = math.floor(n / 64 ^ (4 - k)) % 64
        out[#out + 1] = alphabet:sub(idx + 1, idx + 1)
      end
    end
    return table.concat(out)
  end

  -- Plain Lua 5.1 can still run such a finaliser between `calling = true` and
  -- the C call (seen twice in full-suite runs), which this harness cannot tell
  -- from a close inside the call: there the case is left to the other VMs.
  local it_not_51 = (_VERSION == "Lua 5.1" and not jit) and function(name) pending(name .. " (Lua 5.1: see above)") end or it
  it_not_51("by a finaliser during c:set_tokens (decoding the JWT's claims)", function()
    local claims = {exp = 4102444800}
    for i = 1, 200 do claims["c" .. i] = ("v\n"):rep(i) end -- escapes: decoded in the scratch buffer
    local jwt = "e30." .. b64url(core.json_encode(claims)) .. ".sig"
    assert.equal(4102444800, core.jwt_claims(jwt).exp)
    close_from_finaliser(function(c) return c:set_tokens(jwt, "refresh") end)
  end)
end)

describe("requests and their client", function()
  local ep = core.endpoint{label = "usage.current", method = "GET", path = "/usage/current", auth = "any"}

  it("a request running on one client cannot be finished or canceled through another", function()
    local a = core.new{base_url = emu.url, api_key = KEY}
    local b = core.new{base_url = emu.url, api_key = KEY}
    local req = a:build(ep)
    assert.is_not_nil(a:start(req))
    b:start(b:build(ep)) -- b has transfers of its own
    raises("not running on this client", b.cancel, b, req)
    raises("not running on this client", b.finish, b, req)
    local deadline = core.monotime() + 10
    local done = false
    repeat
      local keys, n = a:poll(0.1)
      for i = 1, n do if keys[i] == req:key() then done = true end end
    until done or core.monotime() > deadline
    assert.is_true(done)
    local v, res = a:finish(req)
    assert.is_table(v, tostring(res))
    a:close()
    b:close()
  end)
end)

describe("option ranges", function()
  it("timeouts and max_response_bytes out of range raise, naming the option", function()
    for name, values in pairs{timeout = {math.huge, 1e300, 0, -1, 0/0},
                              connect_timeout = {math.huge, 1e300, 0},
                              max_response_bytes = {math.huge, 1e300, 0, 2^64}} do
      for _, v in ipairs(values) do
        raises("field '" .. name .. "' must be", core.new, {base_url = emu.url, [name] = v})
        raises("field '" .. name .. "' must be", admin.new, {base_url = emu.url, [name] = v})
      end
    end
    assert.equal(86400, core.new{base_url = emu.url, timeout = 86400}:info().timeout)
  end)

  it("JSON keys that are huge or not whole numbers raise instead of overflowing a cast", function()
    local huge_int = math.maxinteger or 2^63
    for _, t in ipairs{{[1e300] = 1}, {[-1e300] = 1}, {[2^63] = 1}, {[huge_int] = 1}, {[1.5] = 1},
                       {[1] = 1, [1e300] = 2}} do
      raises("object keys must be strings", core.json_encode, t)
    end
    assert.equal("[1,2]", core.json_encode{1, 2})
  end)
end)

describe("raw paths", function()
  it("refuse percent-encoded dots and backslashes, as literal ones", function()
    local c = client()
    for _, p in ipairs{"/api-keys/%2e%2e/x", "/api-keys/%2E%2E/x", "/api-keys/.%2e/x", "/api-keys/%2e/x",
                       "/api-keys/%2e%2E", "/api-keys/x%2F..%2Fy", "/a%5cb", "/a%5Cb", "/a\\b"} do
      raises("request: path may not contain", c.request, c, "GET", p)
    end
    -- an encoded dot inside a name is no segment
    local _, err = c:request("GET", "/api-keys/a%2ejson")
    assert.equal(404, err.status)
  end)
end)

describe("messages with a bounded part", function()
  it("come out whole (no %.*s in lua_pushfstring)", function()
    raises("moltflow%.endpoint: x: field 'months' has no type", core.endpoint,
           {label = "x", method = "GET", path = "/", auth = "any", fields = "months"})
  end)
end)

describe("request headers, built once for every transport", function()
  local token_only = core.endpoint{label = "auth.me", method = "GET", path = "/auth/me", auth = "token"}
  local create = core.endpoint{label = "api_keys.create", method = "POST", path = "/api-keys", auth = "any",
                               fields = "name:string! scopes:array!"}

  it("a token-only call without a token fails alike through libcurl and c:wire", function()
    local c = core.new{base_url = emu.url, api_key = KEY}
    local req = c:build(token_only)
    local _, sent = c:send(req)
    local v, wired = c:wire(req)
    assert.is_nil(v)
    assert.equal("auth", sent.kind)
    assert.equal("this call needs a bearer token: log in first", sent.message)
    assert.equal(sent.message, wired.message)
    assert.equal(tostring(sent), tostring(wired))
  end)

  it("are the same headers that libcurl sends", function()
    emu.reset()
    local c = core.new{base_url = emu.url, api_key = KEY, user_agent = "agent/1"}
    local req = c:build(create, {name = "h", scopes = {"usage:read"}})
    assert(c:send(req))
    local recorded = emu.requests()[1].headers
    local _, _, headers = c:wire(req)
    local n = 0
    for name, value in pairs(headers) do
      n = n + 1
      assert.equal(value, recorded[name:lower()], name)
    end
    assert.equal(4, n) -- Accept, User-Agent, Content-Type, X-API-Key
  end)
end)

describe("error tables", function()
  it("core.new_error makes them as the core makes its own", function()
    local c = core.new{base_url = "http://127.0.0.1:" .. require("spec.support.process").free_port(), api_key = KEY}
    local _, own = c:send(c:build(core.endpoint{label = "x", method = "GET", path = "/x", auth = "any"}))
    local made = core.new_error{kind = own.kind, message = own.message, method = "GET", path = "/x",
                                connect_failed = true}
    assert.equal(core.error_mt, getmetatable(made))
    assert.equal(core.error_mt, getmetatable(own))
    assert.equal(tostring(own), tostring(made))
    for _, k in ipairs{"kind", "message", "method", "path", "attempts", "connect_failed"} do
      assert.equal(own[k], made[k], k)
    end
    raises("new_error: field 'kind' is required", core.new_error, {message = "m"})
    raises("new_error: field 'message' must be a string", core.new_error, {kind = "network", message = 1})
  end)
end)
