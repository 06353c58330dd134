-- moltflow.async: batches, spawn/poll, host schedulers, against the emulator over HTTP.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"

local client = emu.client

local api_requests = emu.requests_for

local function poll_until_done(c, h)
  local rounds = 0
  while not h.done do
    c:poll(0.05)
    rounds = rounds + 1
    assert(rounds < 400, "the call never finished")
  end
end

describe("moltflow.async", function()
  before_each(function() emu.reset() end)

  describe("c:batch", function()
    it("returns results in the order of the calls, in both call forms", function()
      local c = client()
      local calls = {}
      for i = 1, 12 do
        if i % 2 == 0 then
          calls[i] = {"usage.history", {months = i}}
        else
          calls[i] = function() return c.usage:history{months = i} end
        end
      end
      local results = c:batch(calls, {concurrency = 4})
      assert.equal(12, #results)
      for i = 1, 12 do
        local v, res = results[i][1], results[i][2]
        assert.equal(i, #v.months, "call " .. i)
        assert.equal(200, res.status)
      end
      local log = api_requests("GET", "/usage/history")
      assert.equal(12, #log)
      local seen = {}
      for _, r in ipairs(log) do seen[r.query] = true end
      for i = 1, 12 do assert.is_true(seen["months=" .. i], "months=" .. i) end
    end)

    it("runs calls concurrently, at most `concurrency` at a time", function()
      -- Calls 1 and 2 (usage.history) sleep 0.6 s on the server; calls 3..5
      -- (usage.current) do not. api_calls counts each request after that
      -- sleep, so it shows the order calls finished in.
      local function run(concurrency)
        emu.reset()
        emu.fault{path = "/usage/history", delay = 0.6, times = 2}
        local c = client()
        local calls = {{"usage.history", {months = 1}}, {"usage.history", {months = 1}}}
        for i = 3, 5 do calls[i] = {"usage.current"} end
        local results = c:batch(calls, {concurrency = concurrency})
        local counts = {}
        for i = 1, 5 do
          local v = assert(results[i][1], tostring(results[i][2]))
          counts[i] = i <= 2 and v.months[1].api_calls or v.api_calls
        end
        assert.equal(2, #api_requests("GET", "/usage/history"))
        assert.equal(3, #api_requests("GET", "/usage/current"))
        return counts
      end
      -- all five in flight: the three fast ones finish before the delayed two
      local wide = run(8)
      assert.is_true(wide[1] >= 4 and wide[2] >= 4, "counts " .. table.concat(wide, ","))
      -- Two slots, both taken by the delayed calls: call j (j >= 3) starts only
      -- after j - 2 calls have answered, and each answered call was counted
      -- before its answer, so call j's count is at least j - 1. (Which delayed
      -- call the server counts first, and whether call 3 or the second delayed
      -- call comes next, depends on timing; this bound does not.) With a third
      -- call in flight, call 3 would be counted first, before both delayed ones.
      local narrow = run(2)
      for j = 3, 5 do
        assert.is_true(narrow[j] >= j - 1, "call " .. j .. " started early: counts " .. table.concat(narrow, ","))
      end
    end)

    it("gives each failed call its own nil, err in place", function()
      local c = client()
      local results = c:batch({
        {"usage.current"},
        {"api_keys.get", "key_does_not_exist"},
        {"usage.history", {months = 99}},
        function() return c.billing:plans() end,
      })
      assert.is_table(results[1][1])
      assert.is_nil(results[2][1])
      assert.equal(404, results[2][2].status)
      assert.equal("http", results[2][2].kind)
      assert.is_nil(results[3][1])
      assert.equal(422, results[3][2].status)
      assert.is_table(results[4][1].plans)
      assert.is_true(admin.is_error(results[2][2]))
    end)

    it("retries inside async calls exactly like blocking calls", function()
      emu.fault{method = "GET", path = "/usage/current", status = 503, retry_after = 0, times = 2}
      local c = client()
      local results = c:batch({{"usage.current"}, {"billing.plans"}})
      assert.equal(800, results[1][1].messages_sent)
      assert.is_table(results[2][1].plans)
      local log = api_requests("GET", "/usage/current")
      assert.equal(3, #log)
      assert.same({503, 503, 200}, {log[1].status, log[2].status, log[3].status})
    end)

    it("refreshes an expired access token once for all concurrent calls", function()
      local c = client{login = emu.seed.owner}
      emu.advance(1801) -- the server now rejects the access token
      local calls = {}
      for i = 1, 10 do calls[i] = {"usage.current"} end
      local results = c:batch(calls, {concurrency = 10})
      for i = 1, 10 do assert.equal(800, results[i][1] and results[i][1].messages_sent, tostring(results[i][2])) end
      assert.equal(1, #api_requests("POST", "/auth/refresh"))
      local rejected = 0
      for _, r in ipairs(api_requests("GET", "/usage/current")) do
        if r.status == 401 then rejected = rejected + 1 end
      end
      assert.is_true(rejected >= 1)
    end)

    it("drives several clients with admin.batch", function()
      local acme = client()
      local solo = client{api_key = emu.seed.keys.solo_all}
      local results = admin.batch({
        {acme, "usage.current"}, {solo, "usage.current"},
        function() return solo.usage:current() end, {acme, "usage.history", {months = 2}},
      }, {concurrency = 4})
      assert.equal(800, results[1][1].messages_sent)
      assert.equal(12, results[2][1].messages_sent)
      assert.equal(12, results[3][1].messages_sent)
      assert.equal(2, #results[4][1].months)
    end)

    it("raises on bad input before any I/O", function()
      local c = client()
      assert.has_error(function() c:batch("nope") end, "moltflow.batch: 'calls' must be a list")
      assert.has_error(function() c:batch({{"usage.current"}}, {concurrency = 0}) end,
        "moltflow.batch: field 'concurrency' must be an integer >= 1")
      assert.has_error(function() c:batch({{"usage.current"}, {"usage.nope"}}) end,
        "moltflow.batch: call 2: unknown method 'usage.nope'")
      assert.has_error(function() admin.batch({{"usage.current"}}) end,
        "moltflow.admin.batch: call 1: a table call needs a client first: {c, \"group.name\", ...}")
      assert.equal(0, #emu.requests())
    end)

    it("raises a Lua error from a call after cancelling the others", function()
      emu.fault{path = "/usage/current", delay = 2}
      local c = client()
      local ok, err = pcall(c.batch, c, {{"usage.current"}, function() error("boom") end})
      assert.is_false(ok)
      assert.matches("boom", err)
      assert.equal(0, c._core:running())
      -- the client still works
      assert.equal(800, c.usage:current().messages_sent)
    end)
  end)

  describe("spawn and poll", function()
    it("starts a call without waiting and completes it through poll", function()
      local c = client()
      local got
      local h = c:spawn("usage.history", {months = 3}):on_done(function(v) got = v end)
      assert.is_false(h.done)
      -- (it is already on the wire: spec/api/loop_spec.lua)
      poll_until_done(c, h)
      local v, res = h:result()
      assert.equal(3, #v.months)
      assert.equal(200, res.status)
      assert.equal(v, got)
      local h2 = c:spawn(function(n) return c.usage:daily{days = n} end, 5)
      poll_until_done(c, h2)
      assert.equal(5, #h2:result().days)
    end)

    it("never blocks longer than its timeout", function()
      emu.fault{path = "/usage/current", delay = 1.5}
      local c = client()
      local h = c:spawn("usage.current")
      local t0 = core.monotime()
      local left = c:poll(0.05)
      local took = core.monotime() - t0
      assert.equal(1, left)
      assert.is_false(h.done)
      assert.is_true(took < 0.5, "poll(0.05) took " .. took .. " s")
      t0 = core.monotime()
      c:poll(0)
      assert.is_true(core.monotime() - t0 < 0.2)
      assert.has_error(function() h:result() end,
        "moltflow.handle:result(): the call has not finished; poll first")
      poll_until_done(c, h)
      assert.equal(800, h:result().messages_sent)
    end)

    it("sleeps between retries without blocking poll", function()
      emu.fault{path = "/usage/current", status = 503, retry_after = 1}
      local c = client()
      local h = c:spawn("usage.current")
      local t0 = core.monotime()
      while #api_requests("GET", "/usage/current") < 1 do c:poll(0.01) end
      c:poll(0.05) -- the task is now sleeping one second before its retry
      assert.is_true(core.monotime() - t0 < 0.8)
      assert.is_false(h.done)
      poll_until_done(c, h)
      assert.equal(800, h:result().messages_sent)
      assert.equal(2, #api_requests("GET", "/usage/current"))
    end)

    it("cancels a call in flight", function()
      emu.fault{path = "/usage/current", delay = 2}
      local c = client()
      local h = c:spawn("usage.current")
      c:poll(0.1)
      assert.equal(1, c._core:running())
      h:cancel()
      assert.is_true(h.done)
      local v, err = h:result()
      assert.is_nil(v)
      assert.equal("canceled", err.kind)
      assert.equal(0, c._core:running())
      assert.equal(0, c:poll(0))
      assert.equal(800, c.usage:current().messages_sent)
    end)

    it("calls waiting for another call's refresh resume when it ends; one of them can be canceled", function()
      local c = client{login = emu.seed.owner}
      emu.advance(1801)
      emu.fault{method = "POST", path = "/auth/refresh", delay = 0.3, times = 1}
      local h1 = c:spawn("usage.current")
      c:poll(0.1) -- h1 got its 401 and refreshes (the answer takes 0.3 s)
      local h2, h3 = c:spawn("usage.current"), c:spawn("usage.current")
      c:poll(0.1) -- h2 and h3 got theirs too and wait for h1's refresh
      h3:cancel()
      assert.equal("canceled", select(2, h3:result()).kind)
      poll_until_done(c, h1)
      poll_until_done(c, h2)
      assert.equal(800, h1:result().messages_sent)
      assert.equal(800, h2:result().messages_sent)
      assert.equal(1, #api_requests("POST", "/auth/refresh"))
    end)

    it("finishes calls with kind 'closed' when the client is closed mid-flight", function()
      emu.fault{path = "/usage/current", delay = 2}
      local c = client()
      local h = c:spawn("usage.current")
      c:poll(0.1)
      c:close()
      assert.equal(0, c:poll(0.1))
      local v, err = h:result()
      assert.is_nil(v)
      assert.equal("closed", err.kind)
      assert.equal("/usage/current", err.path)
    end)

    it("finishes a spawned call whose request ended while a batch drove the client", function()
      emu.fault{path = "/usage/current", delay = 0.2}
      emu.fault{path = "/usage/history", delay = 0.6}
      local c = client()
      local h = c:spawn("usage.current")
      c:poll(0) -- starts its request
      local results = c:batch({{"usage.history", {months = 1}}})
      assert.is_table(results[1][1], tostring(results[1][2]))
      assert.equal(0, c._core:running()) -- the batch's polls saw the spawned request end
      assert.is_false(h.done)            -- spawned calls go on in c:poll only
      assert.equal(0, c:poll(0))
      assert.equal(800, h:result().messages_sent)
    end)

    it("raises a Lua error of a spawned call from poll", function()
      local c = client()
      c:spawn(function() error("spawned failure") end)
      assert.has_error(function() c:poll(0) end)
      assert.equal(0, c:poll(0))
    end)
  end)

  describe("a host's coroutine scheduler", function()
    it("makes calls inside host coroutines yield while they wait", function()
      emu.fault{path = "/usage/current", delay = 0.3}
      local c = client()
      c:set_scheduler(coroutine.yield)
      local co = coroutine.create(function() return c.usage:current() end)
      local yields, ok, v = 0
      repeat
        ok, v = coroutine.resume(co)
        assert(ok, v)
        yields = yields + 1
        if coroutine.status(co) ~= "dead" then core.sleep(0.005) end -- the host's frame
      until coroutine.status(co) == "dead"
      assert.is_true(yields > 5)
      assert.equal(800, v.messages_sent)
      -- without a scheduler the same call blocks: one resume finishes it
      c:set_scheduler(nil)
      co = coroutine.create(function() return c.usage:current() end)
      v = select(2, coroutine.resume(co))
      assert.equal("dead", coroutine.status(co))
      assert.equal(800, v.messages_sent)
    end)
  end)

  -- libcurl multi, a request collected mid-flight and a client closed with
  -- transfers running must be valgrind clean.
  local valgrind = os.getenv("MOLTFLOW_SKIP_VALGRIND") == nil and require("spec.support.process").reference_run
                   and io.open("/usr/bin/valgrind") ~= nil
  local it_valgrind = valgrind and it or pending
  it_valgrind("is valgrind clean when calls are cancelled, collected or closed mid-flight", function()
    emu.fault{path = "/usage/current", delay = 0.5, times = 10}
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
local admin = require "moltflow.admin"
local url, key = arg[1], arg[2]
local c = admin.new{base_url = url, api_key = key, pool = false} -- its loop object is c's alone
local h = c:spawn("usage.current")
c:poll(0.05)
h:cancel()
h = nil
c:spawn("usage.current")
c:poll(0.05)
c._loop, c._link.loop = nil, nil -- the task, its coroutine and request become garbage mid-flight
collectgarbage() collectgarbage()
assert(c._core:running() == 0, "the collected request still runs")
local d = admin.new{base_url = url, api_key = key}
d:spawn("usage.current") d:spawn("usage.history")
d:poll(0.05)
d:close()                   -- closed with transfers running
assert(d:poll(0) == 0)
local e = admin.new{base_url = url, api_key = key}
local r = e:batch({{"usage.current"}, {"billing.plans"}})
assert(r[1][1].messages_sent == 800 and r[2][1].plans)
e:spawn("usage.current")
e:poll(0.05)
e = nil                     -- client and running request collected together
collectgarbage() collectgarbage()
c:close()
print("done")
]])
    f:close()
    local log = os.tmpname()
    local cmd = ("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/5.4/?.so;;' "
      .. "valgrind -q --leak-check=full --keep-debuginfo=yes --suppressions=spec/support/valgrind.supp "
      .. "--errors-for-leak-kinds=definite --error-exitcode=9 "
      .. "--log-file=%s lua5.4 %s %s %s 2>&1"):format(log, script, emu.url, emu.seed.keys.all)
    local p = io.popen(cmd)
    local out = p:read("*a")
    local ok, _, code = p:close()
    local report = io.open(log):read("*a")
    os.remove(script)
    os.remove(log)
    assert.equal("done\n", out)
    assert.is_true(ok == true or ok == 0, "valgrind exit " .. tostring(code) .. "\n" .. report)
    assert.equal("", report)
  end)
end)
