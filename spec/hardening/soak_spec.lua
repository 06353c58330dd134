-- Soak: many requests with a random mix of faults against the emulator, on
-- both transports of the C core (blocking and multi), with clients created
-- and closed along the way. Nothing crashes, every failure is an SDK error
-- of a known kind, and the resident set stays flat after warm-up.
--
-- SOAK_REQUESTS (default 3000: the short run of `make test`; `make soak`
-- sends 100000, with SOAK_ALONE=1: it runs alone already). SOAK_SEED fixes the random mix. SOAK_CHECK_RSS=0 skips the
-- RSS check (under valgrind or ASan, whose allocators hold freed memory).
--
-- Two measures, so that allocator slack is not taken for a leak:
-- * the Lua heap after full collections (collectgarbage "count") must not
--   grow: measured over 1500 requests after warm-up it moved -1..+1 kB under
--   Lua 5.4 and +6..+20 kB under LuaJIT; the limit is 64 kB (a leak of one
--   small table per request, about 95 bytes, grew it by 142 kB);
-- * RSS, which also holds C memory. Under Lua 5.4 it stayed flat (-60..0 kB).
--   Under LuaJIT it grew 28-1028 kB with no heap growth: LuaJIT's own
--   allocator keeps the pages the heap's high-water mark touched (the heap
--   peaked 0.7-7.3 MB above its warm-up size between collections), plus
--   machine code of new traces. The C core is the same on both, so its leaks
--   show under Lua 5.4 (and valgrind); LuaJIT gets 4x its worst measured
--   growth.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"

local REQUESTS = tonumber(os.getenv("SOAK_REQUESTS")) or 3000
local SEED = tonumber(os.getenv("SOAK_SEED")) or os.time()
local CHECK_RSS = os.getenv("SOAK_CHECK_RSS") ~= "0"
local KB = 1024
local HEAP_GROWTH_LIMIT_KB = 64
local RSS_GROWTH_LIMIT_KB = jit and 4096 or 1024

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local text = f:read("*a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+) kB"))
end

-- fault, expected kind (nil: success); weights add up to 100
local MIX = {
  {30, nil, nil},
  {10, {status = 503, body = '{"detail":"maintenance"}'}, "http"},
  {6, {status = 422,
        body = '{"detail":[{"loc":["body","name"],"msg":"field required","type":"value_error.missing"}]}'}, "http"},
  {6, {status = 502, content_type = "text/html", body = "<html><h1>502 Bad Gateway</h1></html>"}, "http"},
  {6, {retry_after = 1}, "http"},
  {6, {malformed = true}, "decode"},
  {6, {invalid_utf8 = true}, "decode"},
  {5, {status = 200, content_type = "text/plain", body = "OK"}, "decode"},
  -- libcurl replays a request once when a reused connection closes before any
  -- answer, so a drop may end in success (and consume two faults)
  {6, {drop = true}, "network", "ok"},
  {6, {truncate = true}, "network"},
  {6, {reset_mid_body = true}, "network"},
  {6, {oversize = 64 * KB}, "too_large"},
  {1, {delay = 0.3}, "timeout"},
}

local function pick()
  local r = math.random(100)
  for _, m in ipairs(MIX) do
    r = r - m[1]
    if r <= 0 then return m end
  end
  return MIX[1]
end

local TIMEOUT = 0.2

local function new_client()
  return emu.client{retry = false, timeout = TIMEOUT, max_response_bytes = 16 * KB}
end

local ep = core.endpoint{label = "request", method = "GET", path = "/", auth = "any", raw = true}

-- Up to four requests at once on the multi handle.
local function run_async(c, n)
  local reqs, results = {}, {}
  for i = 1, n do
    reqs[i] = c._core:build(ep, "/usage/current")
    assert(c._core:start(reqs[i]))
  end
  local left = n
  while left > 0 do
    for _ in ipairs(c._core:poll(0.5)) do left = left - 1 end
  end
  for i = 1, n do
    local v, err = c._core:finish(reqs[i])
    results[i] = {v, err}
  end
  return results
end

-- After a call that gave up (its deadline passed first): its request may not
-- have reached the emulator's handler yet, and would then take a fault of the
-- next batch, so that a call expecting its fault got a plain answer (a race
-- read off the code, not seen: the failures seen were the RSS check's, see
-- ALONE below). Waits until the emulator has answered every request sent since
-- the log was cleared (an entry gets its status when the handler answers,
-- after it took its fault), however slow the machine; then drops the faults
-- left over and the log.
local function settle(sent)
  local deadline = core.monotime() + 10
  while core.monotime() < deadline do
    local answered = 0
    for _, r in ipairs(emu.requests()) do if r.status ~= nil then answered = answered + 1 end end
    if answered >= sent then break end
    core.sleep(0.02)
  end
  emu.control("DELETE", "faults")
  emu.control("DELETE", "requests")
end

-- The RSS check needs a process of its own: after other specs in the same
-- process (a live heap of 6 MB instead of 1 MB, peaking at 16 MB between
-- collections) the allocator kept 1.4 MB more pages with the Lua heap flat,
-- and the check failed or passed by which specs ran first. So inside a
-- suite the spec runs this file again alone, in a child (SOAK_ALONE=1); the
-- passes without the RSS check (valgrind, ASan, Lua 5.1-5.3) run it here.
local ALONE = os.getenv("SOAK_ALONE") == "1"

describe("soak", function()
  if CHECK_RSS and not ALONE then
    it(("survives %d requests with random faults, RSS flat (in a process of its own)"):format(REQUESTS), function()
      local proc = require "spec.support.process"
      local r = proc.run({proc.lua, "/usr/bin/busted", "-o", "TAP", "spec/hardening/soak_spec.lua"},
                         {env = {SOAK_ALONE = "1", SOAK_SEED = tostring(SEED), SOAK_REQUESTS = tostring(REQUESTS)}})
      io.stderr:write(r.stderr)
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.matches("\nok 1 ", "\n" .. r.stdout)
    end)
    return
  end
  it(("survives %d requests with random faults, RSS flat"):format(REQUESTS), function()
    math.randomseed(SEED)
    emu.reset()
    emu.control("POST", "config", {rate_limit = false})
    local c = new_client()
    local done, kinds, warm_rss, peak, warm_heap, peak_heap = 0, {}, nil, 0, nil, 0
    local sent = 0 -- requests sent since the emulator's log was last cleared
    -- a short run inside the whole suite needs a longer warm-up (heaps still settling)
    local warmup = math.floor(REQUESTS >= 20000 and REQUESTS / 10 or REQUESTS / 2)
    -- A call whose deadline really passed may end as `timeout` whatever its
    -- fault: on a loaded machine the emulator can be that slow. Only then
    -- (less libcurl's early margin: woken by another transfer just before a
    -- deadline, it ends the call then, "after 200 milliseconds": measured
    -- 0.8 ms early from before the call started).
    local DEADLINE_PASSED = TIMEOUT - 0.005
    local function check(v, err, want, or_ok, started)
      if or_ok and v ~= nil then
        want = nil
      end
      if v == nil and admin.is_error(err) and err.kind == "timeout" and want ~= "timeout"
         and core.monotime() - started >= DEADLINE_PASSED then
        kinds.late = (kinds.late or 0) + 1
        done = done + 1
        return
      end
      if want == nil then
        assert(v ~= nil, "unexpected error: " .. tostring(err))
        assert.are.equal(5000, v.limit_messages)
      else
        assert(v == nil, "expected " .. want)
        assert(admin.is_error(err), tostring(err))
        assert.are.equal(want, err.kind, tostring(err))
        assert.is_string(tostring(err))
      end
      kinds[want or "ok"] = (kinds[want or "ok"] or 0) + 1
      done = done + 1
    end
    while done < REQUESTS do
      local m = pick()
      local fault, want, or_ok = m[2], m[3], m[4]
      local batch = math.min(REQUESTS - done, math.random(1, 4))
      local late_before = kinds.late
      if fault then
        fault.path, fault.times = "/usage/current", batch
        emu.fault(fault)
      end
      if math.random(4) == 1 then
        local started = core.monotime()
        for _, r in ipairs(run_async(c, batch)) do check(r[1], r[2], want, or_ok, started) end
      else
        for _ = 1, batch do
          local started = core.monotime()
          local v, err = c.usage:current()
          check(v, err, want, or_ok, started)
        end
      end
      sent = sent + batch
      if kinds.late ~= late_before then
        settle(sent)
        sent = 0
      elseif or_ok then
        emu.control("DELETE", "faults") -- a replayed drop consumed the next call's fault, or none did
      end
      if sent >= 500 then -- every call so far came back: the log is not needed; keep settle's reads short
        emu.control("DELETE", "requests")
        sent = 0
      end
      if math.random(200) == 1 then -- clients come and go
        c:close()
        c = new_client()
      end
      if done >= warmup and not warm_rss then
        -- twice, as at the end: objects with finalisers are freed by the second
        collectgarbage("collect")
        collectgarbage("collect")
        warm_rss = rss_kb()
        warm_heap = collectgarbage("count")
      elseif warm_rss then
        peak = math.max(peak, rss_kb())
        peak_heap = math.max(peak_heap, collectgarbage("count"))
      end
    end
    emu.control("DELETE", "faults")
    c:close()
    collectgarbage("collect")
    collectgarbage("collect")
    local final, final_heap = rss_kb(), collectgarbage("count")
    local msg = ("seed %d: %d requests %s; RSS after warm-up %d kB, at the end %d kB, peak %d kB; "
                 .. "Lua heap after warm-up %.0f kB, at the end %.0f kB, peak %.0f kB")
      :format(SEED, done, (function()
        local parts = {}
        for k, n in pairs(kinds) do parts[#parts + 1] = k .. "=" .. n end
        table.sort(parts)
        return table.concat(parts, " ")
      end)(), warm_rss, final, peak, warm_heap, final_heap, peak_heap)
    io.stderr:write(msg, "\n")
    assert.is_true(final_heap - warm_heap < HEAP_GROWTH_LIMIT_KB, msg)
    if CHECK_RSS then assert.is_true(final - warm_rss < RSS_GROWTH_LIMIT_KB, msg) end
  end)
end)
