-- The SDK side of `make bench`. Prints "key value" lines.
--   sdk.lua seq URL N           sequential c.billing:subscription(), one connection
--                               (also prints cpu_us: this process's CPU time per call)
--   sdk.lua batch URL N C       c:batch of N calls with C in flight
--   sdk.lua core URL N C        the same through the core's start/poll/finish, no coroutines
--   sdk.lua rss URL             RSS after 10,000 and after 100,000 calls
--   sdk.lua startup N           mean time of require "moltflow.admin" in a fresh state
--   sdk.lua calls URL N         N calls and nothing else (for callgrind)
-- URL is the base URL (http://127.0.0.1:PORT/api/v2); the key is the emulator's seed key.
local mode, url = arg[1], arg[2]
local KEY = "mf_AcmeAllu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOO"
local clock = os.clock

local function now()
  return require("moltflow.core").monotime()
end

local function client()
  local admin = require "moltflow.admin"
  return admin.new{base_url = url, api_key = KEY, retry = false}
end

local function check(v, r)
  if v == nil then error(tostring(r)) end
  if v.plan_id ~= "pro" then error("unexpected body") end
end

-- One round of `conc` calls opens the connections; then n calls are timed.
local function timed_rps(run, n, conc)
  run(conc)
  local t0 = now()
  run(n)
  print(("rps %.1f"):format(n / (now() - t0)))
end

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local kib
  for line in f:lines() do
    kib = kib or tonumber(line:match("^VmRSS:%s*(%d+)"))
  end
  f:close()
  return kib
end

if mode == "seq" or mode == "calls" then
  local n = tonumber(arg[3])
  local c = client()
  local billing = c.billing
  check(billing:subscription()) -- opens the connection
  local t0, cpu0 = now(), clock()
  for _ = 1, n do check(billing:subscription()) end
  local dt, cpu = now() - t0, clock() - cpu0
  if mode == "seq" then print(("rps %.1f\ncpu_us %.2f"):format(n / dt, cpu / n * 1e6)) end
  c:close()
elseif mode == "batch" then
  local n, conc = tonumber(arg[3]), tonumber(arg[4])
  local c = client()
  local function run(count)
    local calls, call = {}, {"billing.subscription"}
    for i = 1, count do calls[i] = call end
    local results = c:batch(calls, {concurrency = conc})
    for i = 1, count do check(results[i][1], results[i][2]) end
  end
  timed_rps(run, n, conc)
  c:close()
elseif mode == "core" then
  -- The core's multi path driven directly (build, start, poll, finish): what
  -- c:batch costs without its coroutine layer.
  local n, conc = tonumber(arg[3]), tonumber(arg[4])
  local c = client()
  local cc = c._core
  local ep = require("moltflow.core").endpoint{label = "billing.subscription", method = "GET",
                                                path = "/billing/subscription", auth = "any"}
  local function run(count)
    local started, done, inflight = 0, 0, {}
    local function start_one()
      started = started + 1
      local req = cc:build(ep)
      assert(cc:start(req))
      inflight[req:key()] = req
    end
    while started < count and started < conc do start_one() end
    while done < count do
      local keys = cc:poll(1)
      for i = 1, #keys do
        local req = inflight[keys[i]]
        inflight[keys[i]] = nil
        check(cc:finish(req))
        done = done + 1
        if started < count then start_one() end
      end
    end
  end
  timed_rps(run, n, conc)
  c:close()
elseif mode == "rss" then
  local c = client()
  local billing = c.billing
  local done = 0
  for _, mark in ipairs{10000, 100000} do
    while done < mark do
      check(billing:subscription())
      done = done + 1
    end
    collectgarbage("collect")
    print(("rss_%d %d"):format(mark, rss_kib()))
    print(("lua_kib_%d %.0f"):format(mark, collectgarbage("count")))
  end
  c:close()
elseif mode == "startup" then
  local n = tonumber(arg[2])
  local total = 0
  for _ = 1, n do
    for k in pairs(package.loaded) do
      if k:match("^moltflow") then package.loaded[k] = nil end
    end
    local t0 = clock()
    require "moltflow.admin"
    total = total + (clock() - t0)
  end
  print(("startup_ms %.3f"):format(total / n * 1000))
else
  error("usage: sdk.lua seq|batch|core|rss|calls ...")
end
