-- Issue 15: tokens and the rate budget shared by a fleet of processes, on
-- one host (admin.file_store, the CLI) and across hosts (admin.redis_store
-- on a real redis-server). Refresh tokens are single-use in the emulator: a
-- second refresh with a spent token is refused and logs that client out.
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"
local redis_server = require "spec.support.redis"
local admin = require "moltflow.admin"
local core = require "moltflow.core"

local quote, sh, slurp = proc.quote, proc.sh, proc.slurp
local OWNER = emu.seed.owner
local LUA = proc.lua -- the interpreter of this pass
local WORKER = emu.root .. "/spec/support/fleet_worker.lua"

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function count(list, value)
  local n = 0
  for _, v in ipairs(list) do if v == value then n = n + 1 end end
  return n
end

-- Waits (polling) until `ready()` is true; fails after `seconds`.
local function await(what, ready, seconds)
  local deadline = core.monotime() + (seconds or 30)
  while not ready() do
    if core.monotime() > deadline then error("timed out waiting for " .. what, 2) end
    core.sleep(0.01)
  end
end

-- cleanups of the test that runs (servers, fleets), run after it whatever happened
local defer, cleanup = proc.cleanups()
after_each(cleanup)

-- Starts one fleet_worker process per config, all at once; they wait for
-- `fleet.go` (see fleet:start()). fleet:wait() returns their outputs.
local function spawn(configs)
  local dir = proc.tmpdir()
  local fleet = {dir = dir, go = dir .. "/go", n = #configs}
  local parts = {}
  for i, cfg in ipairs(configs) do
    cfg.go = cfg.go or fleet.go
    if cfg.stop == true then cfg.stop = dir .. "/stop" end
    cfg.progress = dir .. "/progress." .. i
    write(dir .. "/cfg." .. i, dkjson.encode(cfg))
    parts[i] = ("%s %s %s %s 2>%s &"):format(LUA, quote(WORKER), quote(dir .. "/cfg." .. i),
                                           quote(dir .. "/out." .. i), quote(dir .. "/err." .. i))
  end
  local all = "(" .. table.concat(parts, " ") .. " wait; : >" .. quote(dir .. "/done") .. ")"
  assert(sh(all .. " </dev/null >/dev/null 2>&1 &"))
  function fleet.start() write(fleet.go, "") return core.time() end
  function fleet.stop() write(dir .. "/stop", "") end
  defer(function() -- a failed spec leaves no worker behind: stopped, or started and bounded by `calls`
    fleet.stop()
    if io.open(fleet.go) == nil then fleet.start() end
    if io.open(dir .. "/done") then sh("rm -rf " .. quote(dir)) end -- else the workers still use it
  end)
  function fleet.progress(i) return tonumber(slurp(dir .. "/progress." .. i)) or 0 end
  function fleet.wait()
    await("the fleet to finish", function() return io.open(dir .. "/done") ~= nil end, 60)
    local outs = {}
    for i = 1, #configs do
      local out = dkjson.decode(slurp(dir .. "/out." .. i))
      assert(out, "worker " .. i .. " wrote nothing: " .. slurp(dir .. "/err." .. i))
      outs[i] = out
    end
    return outs
  end
  return fleet
end

local function assert_all_ok(outs, what)
  for i, out in ipairs(outs) do
    assert.is_true(#out.statuses > 0, what .. " " .. i .. " made no call")
    assert.equal(#out.statuses, count(out.statuses, 200),
                 what .. " " .. i .. ": " .. dkjson.encode(out.statuses) .. " " .. dkjson.encode(out.warnings))
    assert.is_true(out.logged_in == true or out.logged_in == nil, what .. " " .. i .. " was logged out")
  end
end

-- A login saved in `store`, then made stale: the server's clock passes the
-- access token's expiry (30 min), and refreshes answer slowly (0.5 s).
local function stale_login(store, slow_refreshes)
  local c = admin.new{base_url = emu.url, token_store = store}
  assert(c.auth:login{email = OWNER.email, password = OWNER.password})
  c:close()
  emu.advance(1801)
  emu.fault{method = "POST", path = "/auth/refresh", delay = 0.5, times = slow_refreshes}
end

before_each(function()
  emu.reset()
end)

describe("admin.file_store: processes on one host", function()
  local dir
  before_each(function() dir = proc.tmpdir() end)
  after_each(function() sh("rm -rf " .. quote(dir)) end)

  it("four processes on a stale login: one refresh, none logged out, all calls succeed", function()
    local path = dir .. "/tokens.json"
    stale_login(admin.file_store(path), 4)
    local configs = {}
    for i = 1, 4 do configs[i] = {base_url = emu.url, file = path, calls = 3} end
    local fleet = spawn(configs)
    fleet.start()
    local outs = fleet.wait()
    assert_all_ok(outs, "process")
    assert.same({200}, emu.statuses_for("POST", "/auth/refresh"))
    for _, out in ipairs(outs) do assert.same({}, out.warnings) end
    -- the file holds the winner's pair, which works
    local c = admin.new{base_url = emu.url, token_store = admin.file_store(path)}
    assert(c.auth:me())
  end)

  it("three concurrent 'moltflow-admin whoami' on a stale login: one refresh, all succeed", function()
    local config_dir = dir .. "/config"
    local env = {"env", "-u", "MOLTFLOW_API_KEY", "-u", "MOLTFLOW_API_URL", "MOLTFLOW_CONFIG_DIR=" .. config_dir,
                 "HOME=" .. dir, "LC_ALL=C"}
    local function cli(words)
      local out = {}
      for i, w in ipairs(env) do out[i] = quote(w) end
      out[#out + 1] = quote(emu.root .. "/bin/moltflow-admin")
      out[#out + 1] = "--base-url " .. quote(emu.url)
      for _, w in ipairs(words) do out[#out + 1] = quote(w) end
      return table.concat(out, " ")
    end
    local login = proc.run({"sh", "-c", cli{"login", "--email", OWNER.email, "--password-stdin"}},
                           {stdin = OWNER.password .. "\n"})
    assert.equal(0, login.code, login.stderr)
    emu.advance(1801)
    emu.fault{method = "POST", path = "/auth/refresh", delay = 0.5, times = 3}
    local parts = {}
    for i = 1, 3 do
      parts[i] = ("%s >%s 2>&1; echo $? >%s &"):format(cli{"whoami"}, quote(dir .. "/out." .. i),
                                                        quote(dir .. "/rc." .. i))
      parts[i] = "(" .. parts[i]:gsub(" &$", "") .. ") &"
    end
    assert(sh(table.concat(parts, " ") .. " wait"))
    for i = 1, 3 do
      assert.equal("0", slurp(dir .. "/rc." .. i):gsub("%s+", ""), slurp(dir .. "/out." .. i))
      assert.matches(OWNER.email, slurp(dir .. "/out." .. i), 1, true)
    end
    assert.same({200}, emu.statuses_for("POST", "/auth/refresh"))
  end)
end)

describe("admin.redis_store", function()
  local server
  setup(function() server = redis_server.start() end)
  teardown(function() if server then server:stop() end end)
  before_each(function()
    if not server.pid then server:restart() end
    server:cli("FLUSHALL")
  end)

  it("checks its options before any I/O, naming the field; tostring and errors hold no password", function()
    assert.has_error(function() admin.redis_store() end, "moltflow.redis_store: expected a table of options")
    assert.has_error(function() admin.redis_store{url = 5} end, "moltflow.redis_store: field 'url' must be a string")
    assert.has_error(function() admin.redis_store{url = "http://x"} end,
                     "moltflow.redis_store: field 'url': the url must start with redis:// or rediss://")
    assert.has_error(function() admin.redis_store{url = server.url, prefix = 1} end,
                     "moltflow.redis_store: field 'prefix' must be a string")
    assert.has_error(function() admin.redis_store{url = server.url, timeout = 0} end,
                     "moltflow.redis_store: field 'timeout' must be a positive number")
    assert.has_error(function() admin.new{pace = {}} end,
                     "moltflow.new: field 'pace' must be true, false or a store with reserve and record "
                     .. "(admin.redis_store)")
    local secret = "pw-" .. core.sha256(core.random_bytes(8))
    local store = admin.redis_store{url = "redis://:" .. secret .. "@127.0.0.1:" .. server.port .. "/3",
                                    on_warning = function() end} -- (the failed load warns once)
    local t, err = store:load() -- this server has no password: AUTH is refused
    assert.is_nil(t)
    assert.equal("store", err.kind)
    assert.matches("AUTH refused", tostring(err), 1, true)
    for _, text in ipairs{tostring(err), tostring(store), dkjson.encode(err)} do
      assert.is_nil(text:find(secret, 1, true), text)
    end
  end)

  it("AUTH and SELECT: a password-protected server, database 5", function()
    local guarded = redis_server.start{password = "s3cret pass", db = 5}
    local store = admin.redis_store{url = guarded.url, password = "s3cret pass", prefix = "app:"}
    assert.is_true(store:save{access_token = "a", refresh_token = "r"})
    local saved = dkjson.decode(guarded:cli("-n", "5", "GET", "app:tokens"))
    assert.same({"a", "r"}, {saved.access_token, saved.refresh_token})
    assert.equal("r", store:load().refresh_token)
    guarded:stop()
  end)

  it("the lock: SET NX PX, released only by its owner; a killed owner's lock expires", function()
    local store = admin.redis_store{url = server.url}
    local h = store:try_lock(30)
    assert.is_string(h)
    assert.is_nil(store:try_lock(30))
    store:unlock("not-the-owner")
    assert.is_nil(store:try_lock(30))
    store:unlock(h)
    assert.is_string(store:try_lock(30))
    server:cli("DEL", "moltflow:tokens:lock")

    -- a process holding the lock is killed mid-refresh: the next refresh waits for the expiry
    local dir = proc.tmpdir()
    write(dir .. "/hold.lua", ([[
      local s = require("moltflow.admin").redis_store{url = %q}
      assert(s:try_lock(1.5))
      io.open(%q, "w"):close()
      while true do require("moltflow.core").sleep(1) end]]):format(server.url, dir .. "/locked"))
    local p = assert(io.popen(("%s %s >/dev/null 2>&1 & echo $!"):format(LUA, quote(dir .. "/hold.lua"))))
    local pid = p:read("*l")
    p:close()
    await("the lock holder", function() return io.open(dir .. "/locked") ~= nil end)
    assert(sh("kill -9 " .. pid))
    stale_login(store, 1) -- saved without the lock, which the killed process still holds
    local c = admin.new{base_url = emu.url, token_store = store}
    local me, err = c.auth:me()
    assert.is_table(me, tostring(err))
    assert.same({200}, emu.statuses_for("POST", "/auth/refresh"))
    sh("rm -rf " .. quote(dir))
  end)

  it("6 processes, two of them nginx workers, share one login: one refresh, every call succeeds", function()
    local ngx_fleet = require("spec.support.fleet_nginx")
    stale_login(admin.redis_store{url = server.url, prefix = "fleet:"}, 6)
    local configs = {}
    for i = 1, 4 do configs[i] = {base_url = emu.url, redis = server.url, prefix = "fleet:", calls = 3} end
    local fleet = spawn(configs)
    local nginx = ngx_fleet.start{base_url = emu.url, redis = server.url, prefix = "fleet:", calls = 3,
                                  go = fleet.go}
    defer(nginx.stop)
    fleet.start()
    local outs = fleet.wait()
    local ngx_outs = nginx.wait()
    assert.equal(2, #ngx_outs)
    assert_all_ok(outs, "process")
    assert_all_ok(ngx_outs, "nginx worker")
    assert.same({200}, emu.statuses_for("POST", "/auth/refresh"))
    assert.equal(18, count(emu.statuses_for("GET", "/auth/me"), 200))
  end)

  it("4 processes x 8 calls on one API key under 10 requests per 3 s: no 429, every window between the first"
     .. " and the last used in full", function()
    -- the acme tenant's plan allows 40 a minute: x 0.25 in 3 s windows
    emu.control("POST", "config", {rate_limit_scale = 0.25, rate_limit_window = 3})
    local configs = {}
    for i = 1, 4 do
      configs[i] = {base_url = emu.url, redis = server.url, api_key = emu.seed.keys.all, pace = true, calls = 8}
    end
    local fleet = spawn(configs)
    fleet.start()
    local outs = fleet.wait()
    emu.control("POST", "config", {rate_limit_scale = 1000, rate_limit_window = 60})
    assert_all_ok(outs, "process")
    local calls = emu.requests_for("GET", "/usage/current")
    assert.equal(32, #calls)
    -- The windows the server counted them in (its log's arrival times): none
    -- over the budget (no 429), and the fleet waits for no window it need
    -- not: each one between the first and the last serves all 10.
    local per_window, first, last = {}, math.huge, -math.huge
    for _, r in ipairs(calls) do
      assert.equal(200, r.status)
      local w = math.floor(r.at / 3)
      per_window[w] = (per_window[w] or 0) + 1
      first, last = math.min(first, w), math.max(last, w)
    end
    local counts = {}
    for w = first, last do counts[#counts + 1] = per_window[w] or 0 end
    print("\n  4 x 8 calls, 10 per 3 s: per window " .. table.concat(counts, ", "))
    for i, n in ipairs(counts) do
      assert.is_true(n <= 10, "window " .. i .. " served " .. n)
      if i > 1 and i < #counts then assert.equal(10, n, "window " .. i .. " of " .. table.concat(counts, ", ")) end
    end
  end)

  it("pace = store: a budget another client spent ends a call whose deadline comes first (rate_limited)", function()
    emu.control("POST", "config", {rate_limit_scale = 0.05}) -- acme: 40 x 0.05 = 2 a minute
    await("a minute with 5 s left", function() return 60 - core.time() % 60 > 5 end, 10)
    local store = admin.redis_store{url = server.url}
    local a = admin.new{base_url = emu.url, api_key = emu.seed.keys.all, pace = store}
    assert(a.usage:current())
    assert(a.usage:current())
    local b = admin.new{base_url = emu.url, api_key = emu.seed.keys.all, pace = store, retry = {max_elapsed = 1}}
    local v, err = b.usage:current()
    emu.control("POST", "config", {rate_limit_scale = 1000})
    assert.is_nil(v)
    assert.equal("rate_limited", err.kind)
    assert.is_true(err.retry_after > 1)
    -- what the budget says: nothing left until the minute's end
    assert.equal(0, err.rate_limit.remaining)
    assert.is_true(err.rate_limit.reset > core.time() and err.rate_limit.reset <= core.time() + 60,
                   tostring(err.rate_limit.reset))
    assert.same({200, 200}, emu.statuses_for("GET", "/usage/current")) -- b sent nothing
    -- pace = true is per client: b knows nothing of a's budget and gets the 429
    local c = admin.new{base_url = emu.url, api_key = emu.seed.keys.all, pace = true, retry = false}
    emu.control("POST", "config", {rate_limit_scale = 0.05})
    local _, cerr = c.usage:current()
    emu.control("POST", "config", {rate_limit_scale = 1000})
    assert.equal(429, cerr.status)
  end)

  it("Redis killed mid-run, then restarted: no crash, no lost tokens, one warning each; sharing resumes",
     function()
    stale_login(admin.redis_store{url = server.url}, 1)
    local c = admin.new{base_url = emu.url, token_store = admin.redis_store{url = server.url}}
    assert(c.auth:me()) -- refreshed once: the login in Redis is fresh
    local configs = {}
    for i = 1, 3 do
      configs[i] = {base_url = emu.url, redis = server.url, pace = true, stop = true, pause = 0.02}
    end
    local fleet = spawn(configs)
    fleet.start()
    local function after_calls(n)
      local marks = {}
      for i = 1, 3 do marks[i] = fleet.progress(i) + n end
      await(n .. " more calls each", function()
        for i = 1, 3 do if fleet.progress(i) < marks[i] then return false end end
        return true
      end)
    end
    after_calls(3)
    server:kill()
    after_calls(5) -- calls go on with local pacing
    server:restart() -- empty: no persistence
    emu.advance(1801) -- and the access token expires: one refresh, through Redis again
    await("a refresh", function() return #emu.requests_for("POST", "/auth/refresh") >= 2 end)
    after_calls(5)
    fleet.stop()
    local outs = fleet.wait()
    assert_all_ok(outs, "process")
    for i, out in ipairs(outs) do
      assert.equal(1, #out.warnings, "process " .. i .. ": " .. dkjson.encode(out.warnings))
      assert.matches("^pace: .*Redis", out.warnings[1])
    end
    assert.same({200, 200}, emu.statuses_for("POST", "/auth/refresh"))
    local saved = dkjson.decode(server:cli("GET", "moltflow:tokens"))
    assert.is_string(saved.refresh_token) -- the new pair is in Redis again
  end)

  it("a Redis that times out: calls go on locally after one timeout, one warning; sharing resumes", function()
    local store = admin.redis_store{url = server.url, timeout = 0.3, retry_after = 0.2}
    local warnings = {}
    local c = admin.new{base_url = emu.url, api_key = emu.seed.keys.all, pace = store,
                        on_hook_error = function(e) warnings[#warnings + 1] = e end}
    assert(c.usage:current())
    server:freeze()
    defer(function() server:thaw() end)
    for _ = 1, 5 do assert(c.usage:current()) end
    assert.equal(1, #warnings)
    assert.equal("pace", warnings[1].hook)
    assert.matches("timeout", warnings[1].message)
    server:thaw()
    await("the budget shared again", function()
      assert(c.usage:current())
      return server:cli("KEYS", "moltflow:rate:*") ~= "" and tonumber(server:cli("HGET",
        server:cli("KEYS", "moltflow:rate:*"), "remaining")) == c:rate_limit().remaining
    end)
    assert.equal(1, #warnings)
  end)

  it("a refresh while Redis is down: done locally, one warning; the new pair reaches Redis when it returns",
     function()
    local store = admin.redis_store{url = server.url, retry_after = 0.05}
    local warnings = {}
    local c = admin.new{base_url = emu.url, token_store = store,
                        on_hook_error = function(e) warnings[#warnings + 1] = e end}
    assert(c.auth:login{email = OWNER.email, password = OWNER.password})
    server:kill()
    local v, err = c.auth:refresh()
    assert.is_table(v, tostring(err))
    assert(c.auth:me())
    assert.equal(1, #warnings)
    assert.equal("token_store", warnings[1].hook)
    local held = c:tokens().refresh_token
    server:restart()
    await("Redis to be tried again", function() return store:try_lock(1) ~= nil end)
    assert.equal(held, dkjson.decode(server:cli("GET", "moltflow:tokens")).refresh_token)
    assert.same({200}, emu.statuses_for("POST", "/auth/refresh"))
  end)
end)
