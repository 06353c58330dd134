-- examples/love in LÖVE 11.4 (Debian love), headless: under xvfb-run when it
-- is installed, else without a window (MOLTFLOW_LOVE_NOWINDOW=1, SDL's dummy
-- drivers). The game spawns calls, one of them answered 2 s late, polls once
-- per frame and writes what it measured. Asserts the calls' results and what
-- the emulator saw; prints the mean poll cost per frame and the longest frame
-- while calls were in flight, against issue 13's targets.
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"
local driver = require "spec.support.host_driver"

local has_love = proc.sh("command -v love >/dev/null 2>&1")
local has_xvfb = proc.sh("command -v xvfb-run >/dev/null 2>&1")
local has_core = io.open(emu.root .. "/build/luajit/moltflow/core.so") ~= nil

describe("examples/love in LÖVE", function()
  if not has_love then
    pending("love is not installed (apt-get install love)")
    return
  end
  if not has_core then
    pending("build/luajit/moltflow/core.so is missing (make LUA=luajit)")
    return
  end

  it("completes its calls, a 2 s delayed one included, polling once per frame", function()
    emu.reset()
    emu.fault{method = "GET", path = "/billing/plans", delay = 2}
    local dir = proc.tmpdir()
    local out = dir .. "/result.json"
    local root = emu.root
    local argv = {"timeout", "60", "love", root .. "/examples/love"}
    if has_xvfb then argv = {"timeout", "60", "xvfb-run", "-a", "love", root .. "/examples/love"} end
    local r = proc.run(argv, {env = {
      LUA_PATH = ("%s/lua/?.lua;%s/lua/?/init.lua;;"):format(root, root),
      LUA_CPATH = root .. "/build/luajit/?.so;;",
      MOLTFLOW_API_URL = emu.url:gsub("/api/v2$", ""), MOLTFLOW_API_KEY = emu.seed.keys.all,
      MOLTFLOW_LOVE_RESULT = out, MOLTFLOW_LOVE_NOWINDOW = has_xvfb and "0" or "1",
      SDL_AUDIODRIVER = "dummy", SDL_VIDEODRIVER = not has_xvfb and "dummy" or nil,
      HOME = dir, XDG_DATA_HOME = dir,
    }})
    local result = dkjson.decode(proc.slurp(out))
    os.execute("rm -rf " .. proc.quote(dir))
    assert.is_table(result, "no result from love (exit " .. tostring(r.code) .. "): " .. r.stderr .. r.stdout)
    assert.are.same({ok = true, summary = 5000}, result.results.usage)
    assert.are.same({ok = true, summary = "pro"}, result.results.subscription)
    assert.are.same({ok = true, summary = 3}, result.results.history)
    assert.is_true(result.results.plans.ok)
    assert.is_true(result.results.plans.summary > 0)
    assert.are.equal(10, result.refreshes)
    assert.are.equal(10, #emu.requests_for("GET", "/usage/current"))
    local plans = emu.requests_for("GET", "/billing/plans")
    assert.are.equal(1, #plans)
    assert.is_true(plans[1].fault) -- it really was answered 2 s late
    -- a 2 s answer spans many frames: the game never waited for it
    assert.is_true(result.in_flight_frames > 10)
    io.stderr:write(("\n  [love, %s] %d frames, %d with calls in flight\n"):format(
      result.window and "xvfb window" or "no window", result.frames, result.in_flight_frames))
    io.stderr:write("  [love] ", driver.target("mean poll cost per frame", result.poll_ms_mean, 0.1, "ms", 4), "\n")
    io.stderr:write(("  [love] longest poll: %.2f ms\n"):format(result.poll_ms_max))
    io.stderr:write("  [love] ",
                    driver.target("longest frame while calls were in flight", result.frame_ms_max, 20, "ms"),
                    (" (frame %d; median %.2f ms, p99 %.2f ms)"):format(result.frame_max_at, result.frame_ms_p50,
                                                                        result.frame_ms_p99))
  end)
end)
