-- Token lifecycle against the emulator: proactive and reactive refresh,
-- single flight, on_tokens, token stores. The emulator clock expires tokens
-- without waiting; its request log says what the server saw.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local dkjson = require "dkjson"
local http = require "spec.support.http"
local emu = require "spec.support.emulator"

local OWNER = emu.seed.owner

-- the statuses the server answered for method + path (after /api/v2), in order
local seen = emu.statuses_for

local function count(list, value)
  local n = 0
  for _, v in ipairs(list) do if v == value then n = n + 1 end end
  return n
end

-- A client that records every on_tokens call ("nil" for a nil argument).
local function client(opts)
  opts = opts or {}
  local log = {}
  opts.base_url = emu.url
  opts.on_tokens = function(t) log[#log + 1] = t == nil and "nil" or t end
  return emu.client(opts, {api_key = false, sleep = function() end}), log
end

local function login(c)
  local v, err = c.auth:login{email = OWNER.email, password = OWNER.password}
  assert(v, tostring(err))
  return v
end

-- Logs in with a token that, by the client's clock, expires in 10 s: the
-- emulator clock runs 1790 s behind while the token is issued, then catches up.
local function login_near_expiry(c)
  emu.advance(-1790)
  local v = login(c)
  emu.advance(1790)
  return v
end

-- Runs fns at once on client c, each in a coroutine whose I/O goes through
-- the core's multi handle (start/poll/finish) and yields while it waits:
-- the minimum an async host does (c._coio is the hook moltflow.async's
-- plain coroutines fall back to; an I/O gets the client's transport link,
-- `link.core`). Returns {value, res_or_err} per fn.
local function concurrently(c, fns)
  local done, results = {}, {}
  local io = {}
  function io.send(link, req)
    local ok, err = link.core:start(req)
    if not ok then return nil, err end
    local key = req:key()
    while not done[key] do coroutine.yield() end
    done[key] = nil
    return link.core:finish(req)
  end
  function io.sleep(s)
    local t = core.monotime() + s
    while core.monotime() < t do coroutine.yield() end
  end
  local cos = {}
  for i, fn in ipairs(fns) do
    cos[i] = coroutine.create(function() results[i] = {fn()} end)
    c._coio[cos[i]] = io
  end
  local alive = #cos
  while alive > 0 do
    alive = 0
    for _, co in ipairs(cos) do
      if coroutine.status(co) == "suspended" then
        local ok, e = coroutine.resume(co)
        if not ok then error(e, 0) end
      end
      if coroutine.status(co) ~= "dead" then alive = alive + 1 end
    end
    if alive > 0 then
      for _, key in ipairs(c._core:poll(0.01)) do done[key] = true end
    end
  end
  return results
end

local function pack(...) return {n = select("#", ...), ...} end

-- Runs fn under a watchdog: a call that hangs (today's bug) fails the spec
-- after `seconds` instead of hanging the suite. A count hook on this thread
-- checks the clock (LuaJIT runs no hooks in compiled code: JIT off meanwhile).
local function watchdog(seconds, fn)
  local limit = core.monotime() + seconds
  if jit then jit.off() jit.flush() end
  debug.sethook(function()
    if core.monotime() > limit then
      debug.sethook()
      error("watchdog: still waiting after " .. seconds .. " s", 2)
    end
  end, "", 1000)
  local results = pack(pcall(fn))
  debug.sethook()
  if jit then jit.on() end
  if not results[1] then error(results[2], 0) end
  return (table.unpack or unpack)(results, 2, results.n)
end

local function usage_calls(c, n)
  local fns = {}
  for i = 1, n do fns[i] = function() return c.usage:current() end end
  return fns
end

describe("tokens against the emulator", function()
  before_each(function() emu.reset() end)

  describe("proactive refresh", function()
    it("a token with less than the skew left is renewed before the call: no 401", function()
      local c, log = client()
      local first = login_near_expiry(c)
      local v, res = c.usage:current()
      assert.is_table(v, tostring(res))
      assert.same({200}, seen("POST", "/auth/refresh"))
      assert.same({200}, seen("GET", "/usage/current"))
      assert.equal(2, #log) -- login, refresh
      assert.are_not.equal(first.access_token, c:tokens().access_token)
      assert.equal(c:tokens().access_token, log[2].access_token)
      -- the renewed token has 30 minutes: the next call goes straight out
      assert.is_table((c.usage:current()))
      assert.equal(1, #seen("POST", "/auth/refresh"))
    end)

    it("a fresh token is not renewed; refresh_skew widens the margin", function()
      local c = client()
      login(c)
      assert.is_table((c.usage:current()))
      assert.same({}, seen("POST", "/auth/refresh"))

      local c2 = client{refresh_skew = 1800 + 5}
      login(c2)
      assert.is_table((c2.usage:current()))
      assert.same({200}, seen("POST", "/auth/refresh"))
    end)

    it("clocks that disagree by more than the skew do not make every call refresh", function()
      local c = client()
      emu.advance(-1790) -- the server's clock stays 1790 s behind the client's
      login(c)
      assert.is_table((c.usage:current()))
      assert.is_table((c.usage:current()))
      assert.same({200}, seen("POST", "/auth/refresh"))
      assert.same({200, 200}, seen("GET", "/usage/current"))
    end)

    it("a refresh token alone: the client refreshes before the first call", function()
      local c0 = client()
      local t = login(c0)
      local c = client{refresh_token = t.refresh_token}
      local v, res = c.usage:current()
      assert.is_table(v, tostring(res))
      assert.same({200}, seen("POST", "/auth/refresh"))
      assert.same({200}, seen("GET", "/usage/current"))
    end)
  end)

  describe("reactive refresh", function()
    it("a 401 renews once and replays once", function()
      local c, log = client()
      login(c)
      emu.advance(1801) -- the access token expired by the server's clock only
      local v, res = c.usage:current()
      assert.is_table(v, tostring(res))
      assert.equal(200, res.status)
      assert.same({401, 200}, seen("GET", "/usage/current"))
      assert.same({200}, seen("POST", "/auth/refresh"))
      assert.equal(2, #log)
    end)

    it("never loops: a replay that gets 401 again returns it", function()
      local c = client()
      login(c)
      emu.fault{method = "GET", path = "/usage/current", status = 401, times = 10}
      local v, err = c.usage:current()
      assert.is_nil(v)
      assert.equal(401, err.status)
      assert.equal("auth", err.kind)
      assert.equal(2, err.attempts)
      assert.same({401, 401}, seen("GET", "/usage/current"))
      assert.same({200}, seen("POST", "/auth/refresh"))
      assert.is_table(c:tokens()) -- the refresh itself worked
    end)

    it("a refused refresh (spent token): the original 401, tokens cleared, on_tokens(nil) once", function()
      local c, log = client()
      local t = login(c)
      -- someone else spends the refresh token
      local res = http.request{method = "POST", url = emu.url .. "/auth/refresh",
                               headers = {["Content-Type"] = "application/json"},
                               body = dkjson.encode{refresh_token = t.refresh_token}}
      assert.equal(200, res.status)
      emu.advance(1801)
      local v, err = c.usage:current()
      assert.is_nil(v)
      assert.equal(401, err.status)
      assert.equal("auth", err.kind)
      assert.equal("/usage/current", err.path)
      assert.equal(1, err.attempts)
      assert.is_nil(c:tokens())
      assert.equal(t.refresh_token, log[1].refresh_token)
      assert.equal("nil", log[2])
      assert.equal(2, #log)
      assert.same({401}, seen("GET", "/usage/current"))
      assert.same({200, 401}, seen("POST", "/auth/refresh"))
      -- no credentials now: the next call fails before any I/O
      local before = #emu.requests()
      local _, err2 = c.usage:current()
      assert.equal("auth", err2.kind)
      assert.is_nil(err2.status)
      assert.equal(before, #emu.requests())
    end)

    it("a failed refresh (injected 503): the original 401 and the tokens are cleared", function()
      local c, log = client()
      login(c)
      emu.advance(1801)
      emu.fault{method = "POST", path = "/auth/refresh", status = 503, times = 5}
      local v, err = c.usage:current()
      assert.is_nil(v)
      assert.equal(401, err.status)
      assert.equal("/usage/current", err.path)
      assert.is_nil(c:tokens())
      assert.equal("nil", log[#log])
      assert.equal(2, #log)
      assert.same({503}, seen("POST", "/auth/refresh")) -- a POST: not retried on 503
    end)

    it("an API key client does not refresh on 401", function()
      local c = client{api_key = "mf_NotAKeyAtAll0000000000000000000000000000"}
      local _, err = c.usage:current()
      assert.equal(401, err.status)
      assert.equal(1, err.attempts)
      assert.same({}, seen("POST", "/auth/refresh"))
    end)
  end)

  describe("single flight", function()
    for _, n in ipairs{2, 5, 8} do
      it(("%d concurrent calls near expiry: exactly one POST /auth/refresh"):format(n), function()
        local c, log = client()
        login_near_expiry(c)
        local results = concurrently(c, usage_calls(c, n))
        for i = 1, n do assert.is_table(results[i][1], tostring(results[i][2])) end
        assert.same({200}, seen("POST", "/auth/refresh"))
        assert.equal(n, count(seen("GET", "/usage/current"), 200))
        assert.equal(0, count(seen("GET", "/usage/current"), 401))
        assert.equal(2, #log)
      end)
    end

    it("8 concurrent calls that all get a 401: one refresh, 8 replays", function()
      local c, log = client()
      login(c)
      emu.advance(1801)
      local results = concurrently(c, usage_calls(c, 8))
      for i = 1, 8 do assert.is_table(results[i][1], tostring(results[i][2])) end
      assert.same({200}, seen("POST", "/auth/refresh"))
      local gets = seen("GET", "/usage/current")
      assert.equal(8, count(gets, 200))
      assert.is_true(count(gets, 401) >= 1)
      assert.equal(2, #log)
    end)

    it("concurrent calls whose refresh is refused: one refresh, all get their 401, one on_tokens(nil)", function()
      local c, log = client()
      login(c)
      emu.advance(1801)
      emu.fault{method = "POST", path = "/auth/refresh", status = 401, times = 5}
      local results = concurrently(c, usage_calls(c, 4))
      for i = 1, 4 do
        assert.is_nil(results[i][1])
        assert.equal(401, results[i][2].status)
      end
      assert.same({401}, seen("POST", "/auth/refresh"))
      assert.same({"nil"}, {log[2]})
      assert.equal(2, #log)
    end)

    it("with c:batch (moltflow.async): exactly one POST /auth/refresh", function()
      local c = client()
      for _, n in ipairs{2, 8} do
        emu.reset()
        login_near_expiry(c)
        local results = c:batch(usage_calls(c, n))
        for i = 1, n do assert.is_table(results[i][1], tostring(results[i][2])) end
        assert.same({200}, seen("POST", "/auth/refresh"))

        emu.reset()
        login(c)
        emu.advance(1801)
        results = c:batch(usage_calls(c, n))
        for i = 1, n do assert.is_table(results[i][1], tostring(results[i][2])) end
        assert.same({200}, seen("POST", "/auth/refresh"))
      end
    end)
  end)

  describe("waiting for a refresh in flight", function()
    it("a blocking call while a spawned call refreshes drives it and returns", function()
      local c, log = client()
      login_near_expiry(c)
      local h = c:spawn("usage.current")
      c:poll(0) -- the spawned call's refresh is in flight now
      assert.is_false(h.done)
      local v, err = watchdog(10, function() return c.usage:current() end)
      assert.is_table(v, tostring(err))
      while not h.done do c:poll(1) end
      assert.is_table((h:result()))
      assert.same({200}, seen("POST", "/auth/refresh"))
      assert.same({200, 200}, seen("GET", "/usage/current"))
      assert.equal(2, #log)
    end)

    it("a blocking call from a completion callback (poll is running it) drives the refresh in flight and returns",
       function()
      -- the callback runs inside c:poll: the outer poll cannot drive the
      -- refresh until the callback returns, so the blocking call must
      local c, log = client{timeout = 2, retry = false}
      login_near_expiry(c)
      emu.fault{method = "POST", path = "/auth/refresh", delay = 0.3}
      local h = c:spawn("usage.current") -- its refresh goes on the wire
      local yielder = c:spawn(function() for _ = 1, 3 do coroutine.yield() end end)
      local inner
      yielder:on_done(function() inner = {c.usage:current()} end)
      watchdog(10, function()
        while not (h.done and yielder.done) do c:poll(0.01) end
      end)
      assert.is_table(inner[1], tostring(inner[2]))
      assert.equal(5000, inner[1].limit_messages)
      assert.is_table((h:result()))
      assert.same({200}, seen("POST", "/auth/refresh"))
      assert.same({200, 200}, seen("GET", "/usage/current"))
      assert.equal(2, #log) -- login, refresh
    end)

    it("a waiter gives up at its deadline when the owner is gone; after the refresh's deadline the next call takes over",
       function()
      -- the longest this client's refresh can take: connect 1 s + timeout 1 s + a margin of 2 s
      local c, log = client{timeout = 1, connect_timeout = 1, retry = false}
      local t = login_near_expiry(c)
      c:set_scheduler(coroutine.yield)
      local co = coroutine.create(function() return c.usage:current() end)
      local ok, what = coroutine.resume(co)
      assert.is_true(ok, tostring(what))
      assert.equal("io", what.kind)
      -- the refresh reaches the server, but its coroutine is never resumed again
      for _ = 1, 100 do
        if #seen("POST", "/auth/refresh") == 1 then break end
        c:poll(0.02)
      end
      assert.same({200}, seen("POST", "/auth/refresh"))
      co = nil -- luacheck: ignore
      collectgarbage()
      local started = core.monotime()
      local v, err = watchdog(10, function() return c.usage:current() end)
      assert.is_nil(v)
      assert.equal("timeout", err.kind)
      assert.matches("token refresh", tostring(err), 1, true)
      assert.is_true(core.monotime() - started >= 0.9) -- its deadline: timeout = 1 s
      assert.same({}, seen("GET", "/usage/current"))
      assert.equal(t.refresh_token, c:tokens().refresh_token)
      -- calls keep timing out until the abandoned refresh's own deadline;
      -- then one takes over. The dropped one spent the refresh token, so the
      -- server refuses it: the login is gone, said once through on_tokens(nil).
      local last
      watchdog(15, function()
        repeat last = {c.usage:current()} until last[2].kind ~= "timeout"
      end)
      assert.is_nil(last[1])
      assert.equal("auth", last[2].kind, tostring(last[2]))
      assert.same({200, 401}, seen("POST", "/auth/refresh"))
      assert.same({}, seen("GET", "/usage/current"))
      assert.is_nil(c:tokens())
      assert.same({"nil"}, {log[#log]})
    end)
  end)

  describe("on_tokens", function()
    it("runs after login, magic-link verify, refresh and logout (nil)", function()
      local c, log = client()
      local t = login(c)
      assert.equal(t.access_token, log[1].access_token)
      assert.equal(t.refresh_token, log[1].refresh_token)
      assert.is_number(log[1].expires_at)

      local r = assert(c.auth:refresh())
      assert.equal(r.access_token, log[2].access_token)
      assert.equal(r.refresh_token, log[2].refresh_token)

      assert(c.auth:logout())
      assert.equal("nil", log[3])
      assert.is_nil(c:tokens())
      -- the server revoked the session: the old access token fails
      local res = http.request{method = "GET", url = emu.url .. "/auth/me",
                               headers = {Authorization = "Bearer " .. r.access_token}}
      assert.equal(401, res.status)

      assert(c.auth:magic_link_request{email = emu.seed.magic.email})
      local outbox = emu.control("GET", "outbox")
      local m = assert(c.auth:magic_link_verify{token = outbox[#outbox].token})
      assert.equal(m.access_token, log[4].access_token)
      assert.equal(4, #log)
    end)

    it("logout sends the refresh token in use after a proactive refresh", function()
      local c, log = client()
      login_near_expiry(c)
      assert(c.auth:logout())
      local reqs = emu.requests()
      local last = reqs[#reqs]
      assert.equal("/api/v2/auth/logout", last.path)
      assert.equal(200, last.status)
      assert.same({200}, seen("POST", "/auth/refresh"))
      assert.equal(log[2].refresh_token, dkjson.decode(last.body).refresh_token)
      assert.same({"nil"}, {log[3]})
    end)
  end)

  describe("token stores", function()
    local dir
    before_each(function()
      dir = assert(io.popen("mktemp -d /tmp/moltflow-tokens.XXXXXX")):read("*l")
    end)
    after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

    local function mode(path)
      return assert(io.popen("stat -c %a '" .. path .. "'")):read("*l")
    end

    it("the file store writes mode 0600 and survives a new client", function()
      local path = dir .. "/tokens.json"
      -- a file already there with looser permissions is replaced
      local f = assert(io.open(path, "w"))
      f:write("{}")
      f:close()
      os.execute("chmod 644 '" .. path .. "'")
      local c = client{token_store = admin.file_store(path)}
      local t = login(c)
      assert.equal("600", mode(path))
      local saved = dkjson.decode(assert(io.open(path)):read("*a"))
      assert.equal(t.access_token, saved.access_token)
      assert.equal(t.refresh_token, saved.refresh_token)

      local c2 = client{token_store = admin.file_store(path)}
      assert.equal(t.access_token, c2:tokens().access_token)
      local v, res = c2.usage:current()
      assert.is_table(v, tostring(res))
      assert.same({"POST"}, {emu.requests()[1].method}) -- one login only
      assert.equal(2, #emu.requests())

      -- a refresh rewrites it, still 0600; logout removes it
      assert(c2.auth:refresh())
      assert.equal("600", mode(path))
      assert.equal(c2:tokens().refresh_token, dkjson.decode(assert(io.open(path)):read("*a")).refresh_token)
      assert(c2.auth:logout())
      assert.is_nil(io.open(path))
      assert.is_nil(client{token_store = admin.file_store(path)}:tokens())
    end)

    it("the memory store is shared by the clients given it", function()
      local store = admin.memory_store()
      local c = client{token_store = store}
      local t = login(c)
      assert.equal(t.refresh_token, store:load().refresh_token)
      local c2 = client{token_store = store}
      assert.equal(t.access_token, c2:tokens().access_token)
      assert.is_table((c2.usage:current()))
    end)

    it("forget_tokens clears memory and store and calls on_tokens(nil), without a request", function()
      local store = admin.memory_store()
      local c, log = client{token_store = store}
      login(c)
      local before = #emu.requests()
      c:forget_tokens()
      assert.is_nil(c:tokens())
      assert.is_nil(store:load())
      assert.same({"nil"}, {log[2]})
      assert.equal(before, #emu.requests())
      -- also when nothing is held: the store is cleared all the same
      store:save({access_token = "a.b.c", refresh_token = "rt_left"})
      c:forget_tokens()
      assert.is_nil(store:load())
      assert.same({"nil"}, {log[3]})
    end)

    it("explicit tokens win over the store; a bad store raises", function()
      local store = admin.memory_store()
      store:save({access_token = "stored.access.token", refresh_token = "rt_stored"})
      local c = client{token_store = store, refresh_token = "rt_given"}
      assert.equal("rt_given", c:tokens().refresh_token)
      assert.has_error(function() admin.new{token_store = {load = true}} end,
        "moltflow.new: field 'token_store' needs load and save functions")
      assert.has_error(function() admin.new{token_store = {}, access_token = "x.y.z"} end,
        "moltflow.new: field 'token_store' needs load and save functions")
      assert.has_error(function() admin.file_store(42) end, "moltflow.file_store: 'path' must be a string")
      assert.has_error(function() admin.new{token_store = {load = print, save = print, try_lock = print}} end,
        "moltflow.new: field 'token_store' needs both try_lock and unlock, or neither")
    end)

    it("refuses a store whose save is not a method (a pre-0.2.0 store), before any I/O", function()
      local old_style = {load = function() return nil end, save = function(tokens) return tokens end}
      if _VERSION == "Lua 5.1" and not jit then
        pending("Lua 5.1 cannot tell a function's parameter count")
        return
      end
      assert.has_error(function() admin.new{token_store = old_style} end,
        "moltflow.new: field 'token_store' must define save as a method, save(self, tokens): stores are called with ':'")
      local method_style = {load = function() return nil end, save = function(_, tokens) return tokens ~= nil end}
      assert.is_truthy(admin.new{token_store = method_style, base_url = "http://127.0.0.1:9/api/v2"})
    end)
  end)
end)

-- Inside nginx: two clients of one worker share the tokens through a
-- lua_shared_dict. Their refresh is single-flight across them only through
-- the store's lock (each client has its own flight), so this is what two
-- workers see. This nginx only hosts the SDK; the API is the spec emulator.
local sh = require("spec.support.process").quote
local describe_ngx = jit and pending or describe -- one nginx run is enough: under Lua 5.4

describe_ngx("tokens in nginx (admin.shdict_store)", function()
  local prefix, origin
  local function run(cmd)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    return (out:gsub("%s+$", ""))
  end

  setup(function()
    local root = run("realpath " .. sh(emu.root))
    prefix = run("mktemp -d /tmp/moltflow-shdict.XXXXXX")
    local conf = prefix .. "/server.conf"
    local f = assert(io.open(conf, "w"))
    f:write([=[
location = /t/login {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local c = admin.new{base_url = ngx.unescape_uri(ngx.var.arg_base), token_store = admin.shdict_store("moltflow_tokens")}
        local v, err = c.auth:login{email = ngx.unescape_uri(ngx.var.arg_email),
                                 password = ngx.unescape_uri(ngx.var.arg_password)}
        ngx.say(admin.json_encode({ok = v ~= nil, err = err and tostring(err)}))
    }
}
location = /t/same {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local c = admin.new{base_url = ngx.unescape_uri(ngx.var.arg_base), token_store = admin.shdict_store("moltflow_tokens")}
        local threads, out = {}, {}
        for i = 1, 5 do threads[i] = ngx.thread.spawn(function() return c.auth:me() end) end
        for i = 1, 5 do
            local _, v, err = ngx.thread.wait(threads[i])
            out[i] = v and v.email or tostring(err)
        end
        ngx.say(admin.json_encode(out))
    }
}
location = /t/two {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        -- lock_timeout was the lock's TTL before: 1 s here (10 s by default) against a
        -- refresh that may take 3 s (30 s by default); it no longer decides the TTL
        local store = admin.shdict_store("moltflow_tokens", {lock_timeout = 1})
        local out = {}
        local function call(i)
            local c = admin.new{base_url = ngx.unescape_uri(ngx.var.arg_base), token_store = store, timeout = 3, retry = false}
            local v, err = c.auth:me()
            out["client" .. i] = v and v.email or tostring(err)
        end
        local a = ngx.thread.spawn(call, 1)
        local b = ngx.thread.spawn(call, 2)
        ngx.sleep(0.5) -- a refresh holds the lock now: how long will it last?
        out.lock_ttl = ngx.shared.moltflow_tokens:ttl("moltflow:tokens:refresh-lock")
        ngx.thread.wait(a)
        ngx.thread.wait(b)
        ngx.say(admin.json_encode(out))
    }
}
]=])
    f:close()
    local cmd = ("MOLTFLOW_EMULATOR_LUA_CPATH=%s %s --daemon --port 0 --prefix %s --no-rate-limit --quiet "
      .. "--http-conf %s --server-conf %s"):format(
      sh(root .. "/build/luajit/?.so"), sh(emu.launcher), sh(prefix),
      sh(root .. "/examples/openresty/http.conf"), sh(conf))
    local url = run(cmd)
    assert(url:match("^http://"), "nginx did not start: " .. cmd)
    origin = url:gsub("/api/v2$", "")
  end)
  teardown(function()
    if prefix then run(("%s --stop --prefix %s --quiet; rm -rf %s"):format(sh(emu.launcher), sh(prefix), sh(prefix))) end
  end)
  before_each(function() emu.reset() end)

  local function get(path, query)
    local parts = {}
    for k, v in pairs(query) do parts[#parts + 1] = k .. "=" .. v:gsub("[^%w%-_.~]", function(ch)
      return ("%%%02X"):format(ch:byte())
    end) end
    local res = assert(http.request{method = "GET", url = origin .. path .. "?" .. table.concat(parts, "&")})
    if res.status ~= 200 then
      local log = io.open(prefix .. "/error.log")
      error(("GET %s: %d\n%s"):format(path, res.status, log and log:read("*a") or ""), 2)
    end
    return dkjson.decode(res.body)
  end

  it("one client, five light threads: one refresh; the others wait on it (a semaphore) and replay", function()
    assert.is_true(get("/t/login", {base = emu.url, email = OWNER.email, password = OWNER.password}).ok)
    emu.advance(1801)
    emu.fault{method = "POST", path = "/auth/refresh", delay = 0.5, times = 1}
    local out = get("/t/same", {base = emu.url})
    for i = 1, 5 do assert.equal(OWNER.email, out[i]) end
    assert.same({200}, seen("POST", "/auth/refresh"))
    assert.equal(5, count(seen("GET", "/auth/me"), 200))
  end)

  it("the lock outlives a slow refresh: exactly one refresh, both clients keep the login", function()
    assert.is_true(get("/t/login", {base = emu.url, email = OWNER.email, password = OWNER.password}).ok)
    emu.advance(1801) -- the access token expired by the server's clock: both clients get a 401
    emu.fault{method = "POST", path = "/auth/refresh", delay = 2, times = 1}
    local out = get("/t/two", {base = emu.url})
    assert.same({OWNER.email, OWNER.email}, {out.client1, out.client2})
    assert.same({200}, seen("POST", "/auth/refresh"))
    -- the invariant: the lock lasts longer than the refresh can (timeout 3 s)
    assert.is_number(out.lock_ttl)
    assert.is_true(out.lock_ttl > 3, tostring(out.lock_ttl))
    local gets = seen("GET", "/auth/me")
    assert.same({2, 2}, {count(gets, 401), count(gets, 200)})
  end)
end)
