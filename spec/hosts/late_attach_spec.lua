-- Issue 24, finding 3: a host loop attached (or re-attached) while a call
-- waits for its answer is handed the sockets and the timer already live, so
-- the call ends at its answer, not at its timeout. The emulator delays the
-- answer; the calls' timeout (4 s) is far above it (1 s), and the specs
-- assert what ended the call, never how fast.
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"
local driver = require "spec.support.host_driver"

local has_luv, uv = pcall(require, "luv")
local has_adapter, adapter = pcall(require, "moltflow.loop.uv")

local DELAY, TIMEOUT = 1, 4

local function run_until(is_done) return driver.run_until(uv, is_done) end

-- A slow call spawned on `loop`, on the wire before any host is attached.
local function slow_call(loop)
  emu.reset()
  emu.fault{method = "GET", path = "/usage/current", delay = DELAY}
  local c = emu.client{retry = false, loop = loop, timeout = TIMEOUT}
  local outcome
  c:spawn("usage.current"):on_done(function(v, err) outcome = {value = v, err = v == nil and err or nil} end)
  -- spawn put it on the wire; polling lets libcurl finish sending it and use
  -- up its short timers: then the call only waits for the answer
  for _ = 1, 5 do loop:poll(0.05) end
  assert.is_nil(outcome)
  return c, function() return outcome end
end

local function assert_answered(outcome)
  assert.is_table(outcome, "the call did not end in 10 s")
  assert.is_nil(outcome.err and tostring(outcome.err)) -- not a timeout: the answer ended it
  assert.equal(5000, outcome.value.limit_messages)
  local log = emu.requests_for("GET", "/usage/current")
  assert.equal(1, #log)
  assert.is_true(log[1].fault) -- the answer really was delayed
end

describe("a host attached while a call is in flight", function()
  it("loop:watch hands the host the call's socket at once", function()
    local loop = admin.new_loop()
    local c = slow_call(loop)
    local told, timers = {}, {}
    loop:watch{socket = function(fd, what) told[#told + 1] = {fd = fd, what = what} end,
               timer = function(ms) timers[#timers + 1] = ms end}
    -- before any action: the socket waiting for the answer is known to the host
    assert.is_true(#told >= 1, "the host was told no socket")
    assert.is_number(told[1].fd)
    assert.equal("in", told[1].what)
    assert.is_true(#timers >= 1, "the host was given no timer")
    loop:watch(nil)
    c:close()
  end)

  if not (has_luv and has_adapter) then
    pending("lua-luv is not installed for " .. _VERSION .. " (apt-get install lua-luv)")
    return
  end

  it("moltflow.loop.uv.attach: the call ends with its answer", function()
    local loop = admin.new_loop()
    local c, outcome = slow_call(loop)
    local detach = adapter.attach(loop, uv)
    run_until(outcome)
    detach()
    uv.run("default")
    assert_answered(outcome())
    c:close()
  end)

  it("re-attached while the call waits: the call ends with its answer", function()
    local loop = admin.new_loop()
    local c, outcome = slow_call(loop)
    local detach = adapter.attach(loop, uv)
    uv.run("nowait") -- the first attachment sees the socket, then goes away
    detach()
    uv.run("nowait")
    loop:poll(0) -- polled meanwhile, as a host between attachments would
    detach = adapter.attach(loop, uv)
    run_until(outcome)
    detach()
    uv.run("default")
    assert_answered(outcome())
    c:close()
  end)
end)
