-- The SDK inside a libuv program (Debian lua-luv), as issue 13's luv host:
-- chained calls, a heartbeat timer while a slow answer is in flight, and the
-- CPU an idle loop costs. The numbers and issue 13's targets are printed; the
-- assertions are behaviour (every call done, right results, what the
-- emulator saw). spec/support/host_driver.lua says how the SDK is driven.
local emu = require "spec.support.emulator"
local driver = require "spec.support.host_driver"

local has_luv, uv = pcall(require, "luv")

local function report(line)
  io.stderr:write("\n  [luv, ", _VERSION, jit and " LuaJIT" or "", "] ", line)
end

local function run_until(is_done) return driver.run_until(uv, is_done) end

describe("the SDK in a luv program", function()
  if not has_luv then
    pending("lua-luv is not installed for " .. _VERSION .. " (apt-get install lua-luv)")
    return
  end

  for _, d in ipairs(driver.drivers) do
    describe("driven by " .. d.name, function()
      it("chains 20 calls, each started from the previous one's completion", function()
        emu.reset()
        local c = emu.client{retry = false}
        local detach = d.attach(uv, {c})
        local limits, t0, t1 = {}, uv.hrtime(), nil
        local function step(i)
          c:spawn("usage.current"):on_done(function(v, err)
            limits[i] = v and v.limit_messages or tostring(err)
            if i < 20 then step(i + 1) else t1 = uv.hrtime() end
          end)
        end
        step(1)
        assert.is_true(run_until(function() return t1 ~= nil end), "the chain did not finish in 10 s")
        detach()
        uv.run("default") -- lets the closed handles go
        for i = 1, 20 do assert.are.equal(5000, limits[i], "call " .. i) end
        assert.are.same(("200 "):rep(20), table.concat(emu.statuses_for("GET", "/usage/current"), " ") .. " ")
        report(driver.target("20 chained calls, total", (t1 - t0) / 1e6, 150, "ms"))
        c:close()
      end)

      it("keeps a 5 ms heartbeat going while a 200 ms answer is in flight", function()
        emu.reset()
        emu.fault{method = "GET", path = "/usage/current", delay = 0.2}
        local c = emu.client{retry = false}
        local detach = d.attach(uv, {c})
        local heartbeat = uv.new_timer()
        local last, max_gap, beats, value = uv.hrtime(), 0, 0, nil
        heartbeat:start(5, 5, function()
          local now = uv.hrtime()
          max_gap = math.max(max_gap, (now - last) / 1e6)
          last, beats = now, beats + 1
        end)
        c:spawn("usage.current"):on_done(function(v, err) value = v or err end)
        local finished = run_until(function() return value ~= nil end)
        heartbeat:stop()
        heartbeat:close()
        detach()
        uv.run("default")
        assert.is_true(finished, "the slow call did not finish in 10 s")
        assert.are.equal(5000, value.limit_messages)
        local log = emu.requests_for("GET", "/usage/current")
        assert.are.equal(1, #log)
        assert.is_true(log[1].fault) -- the answer really was delayed
        assert.is_true(beats > 0)
        -- the longest gap between two beats: 5 ms when nothing stalls the loop
        report(driver.target(("heartbeat's longest gap (%d beats)"):format(beats), max_gap, 25, "ms"))
        c:close()
      end)

      it("costs little CPU while idle once the calls are done", function()
        emu.reset()
        local c = emu.client{retry = false}
        local detach = d.attach(uv, {c})
        local value
        c:spawn("usage.current"):on_done(function(v, err) value = v or err end)
        assert.is_true(run_until(function() return value ~= nil end))
        assert.are.equal(5000, value.limit_messages)
        -- one idle second with the integration still attached, as a host
        -- leaves it between calls
        local cpu0, wall0 = driver.cpu_seconds(uv), uv.hrtime()
        local cpu, wall
        local second = uv.new_timer()
        second:start(1000, 0, function()
          cpu, wall = driver.cpu_seconds(uv) - cpu0, (uv.hrtime() - wall0) / 1e9
          second:close()
          detach()
        end)
        uv.run("default") -- returns once nothing is left: the second is over
        assert.is_number(cpu)
        report(driver.target("CPU per idle second", cpu / wall * 1000, 20, "ms"))
        c:close()
      end)
    end)
  end
end)
