-- Issue 27: what a loop promises and no spec checked. A finished call is
-- reported while another is still held by the server (poll, batch, and
-- plain-HTTP calls started together each get a connection at once); a loop
-- watched after its calls started still ends them; clients of one loop
-- resume each other's TLS sessions; a finished handle's on_done and cancel.
-- Decided on the emulator's log and nginx's, never by a stopwatch: the slow
-- call is held by the server for HOLD seconds, and the fast one must have
-- finished while the log still shows the slow one unanswered.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"
local socket = require "socket"
local tls_nginx = require "spec.support.tls_nginx"

local HOLD = 3

-- The emulator's answer to the first logged request for method path: its
-- status, or false while the server still holds it (or nil if never logged).
local function answered(method, path)
  local r = emu.requests_for(method, path)[1]
  if not r then return nil end
  return r.status ~= nil and r.status or false
end

-- A host event loop on LuaSocket's select (as in loop_spec).
local function select_host(loop)
  local host = {read = {}, write = {}, timer_at = nil}
  local function wrap(fd) return {getfd = function() return fd end, fd = fd} end
  loop:watch{
    socket = function(fd, what)
      host.read[fd] = (what == "in" or what == "inout") and wrap(fd) or nil
      host.write[fd] = (what == "out" or what == "inout") and wrap(fd) or nil
    end,
    timer = function(ms) host.timer_at = ms >= 0 and core.monotime() + ms / 1000 or nil end,
  }
  function host.turn()
    local r, w = {}, {}
    for _, s in pairs(host.read) do r[#r + 1] = s end
    for _, s in pairs(host.write) do w[#w + 1] = s end
    local wait = host.timer_at and math.max(0, host.timer_at - core.monotime()) or 0.2
    local readable, writable = socket.select(r, w, wait)
    local ready = {}
    for _, s in ipairs(readable or {}) do ready[s.fd] = "in" end
    for _, s in ipairs(writable or {}) do ready[s.fd] = ready[s.fd] and "inout" or "out" end
    for fd, what in pairs(ready) do loop:action(fd, what) end
    if host.timer_at and core.monotime() >= host.timer_at then
      host.timer_at = nil
      loop:action()
    end
  end
  return host
end

describe("a finished call is reported while another is still running", function()
  before_each(function() emu.reset() end)

  it("poll runs a spawned call's on_done as soon as its answer is in, not when the others end", function()
    emu.fault{path = "/usage/history", delay = HOLD}
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop}
    local slow = c:spawn("usage.history", {months = 1})
    local fast = c:spawn("usage.current")
    local seen
    fast:on_done(function(v, res)
      seen = {value = v, res = res, slow_done = slow.done, slow_answered = answered("GET", "/usage/history")}
      slow:cancel()
    end)
    loop:poll(4 * HOLD) -- returns once both have ended (the slow one canceled from on_done)
    assert.is_table(seen, "the fast call was never reported")
    assert.equal(5000, seen.value.limit_messages, tostring(seen.res))
    assert.is_false(seen.slow_done)
    assert.is_false(seen.slow_answered, "the fast call was reported only after the server answered the slow one")
    local v, err = slow:result()
    assert.is_nil(v)
    assert.equal("canceled", err.kind)
    assert.equal(0, loop:running())
    c:close()
  end)

  it("c:poll(timeout) reports the fast call's handle done while the slow one is held", function()
    emu.fault{path = "/usage/history", delay = HOLD}
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop}
    local slow = c:spawn("usage.history", {months = 1})
    local fast = c:spawn("usage.current")
    local deadline = core.monotime() + 4 * HOLD
    while not fast.done and core.monotime() < deadline do c:poll(0.05) end
    assert.is_true(fast.done)
    assert.is_false(slow.done)
    assert.is_false(answered("GET", "/usage/history"))
    assert.equal(5000, (fast:result()).limit_messages)
    slow:cancel()
    c:close()
  end)

  -- Also the plain-HTTP PIPEWAIT check: with libcurl told to wait for the
  -- first connection to learn whether it multiplexes, the others would be
  -- held until the slow call's answer, and the fast calls would end after it.
  it("a batch goes on with its next calls while one is held; plain-HTTP calls started together do not wait for it",
     function()
    emu.fault{path = "/usage/history", delay = HOLD}
    local c = emu.client{retry = false, loop = admin.new_loop()}
    local during = {}
    local function fast(i)
      return function()
        local v, res = c.usage:current()
        during[i] = answered("GET", "/usage/history")
        return v, res
      end
    end
    -- three slots: the slow call and two fast ones start together; the
    -- third fast one takes the slot of the first fast one to end
    local results = c:batch({{"usage.history", {months = 1}}, fast(1), fast(2), fast(3)}, {concurrency = 3})
    for i = 1, 4 do assert.is_table(results[i][1], tostring(results[i][2])) end
    for i = 1, 3 do
      assert.is_false(during[i], "fast call " .. i .. " ended after the server answered the slow one")
    end
    assert.equal(200, answered("GET", "/usage/history"))
    assert.equal(3, #emu.requests_for("GET", "/usage/current"))
    c:close()
  end)

  it("spawned plain-HTTP calls are all on the wire while the first is held", function()
    emu.fault{path = "/usage/history", delay = HOLD}
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop}
    local handles = {c:spawn("usage.history", {months = 1})}
    for i = 2, 4 do handles[i] = c:spawn("usage.current") end
    local deadline = core.monotime() + 4 * HOLD
    while #emu.requests_for("GET", "/usage/current") < 3 and core.monotime() < deadline do loop:poll(0.02) end
    assert.equal(3, #emu.requests_for("GET", "/usage/current"))
    assert.is_false(answered("GET", "/usage/history"))
    for _, h in ipairs(handles) do h:cancel() end
    c:close()
  end)
end)

describe("poll's timeout", function()
  before_each(function() emu.reset() end)

  it("poll(0.1) returns while the server still holds the only call: it waits no longer than asked", function()
    emu.fault{path = "/usage/current", delay = HOLD}
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop}
    local h = c:spawn("usage.current")
    local deadline = core.monotime() + 10
    while #emu.requests_for("GET", "/usage/current") < 1 and core.monotime() < deadline do loop:poll(0.01) end
    for _ = 1, 3 do loop:poll(0.1) end
    assert.is_false(h.done)
    assert.is_false(answered("GET", "/usage/current"), "poll waited for the answer")
    h:cancel()
    c:close()
  end)
end)

describe("a loop watched after its calls started", function()
  before_each(function() emu.reset() end)

  it("ends a spawned call already in flight when loop:watch comes later", function()
    emu.fault{path = "/usage/current", delay = 0.3}
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop}
    local h = c:spawn("usage.current")
    local deadline = core.monotime() + 5
    while #emu.requests_for("GET", "/usage/current") < 1 and core.monotime() < deadline do core.sleep(0.01) end
    local host = select_host(loop) -- the call is on the wire already
    deadline = core.monotime() + 10
    while not h.done and core.monotime() < deadline do host.turn() end
    assert.is_true(h.done, "the call never ended: the late watch gave the host no socket and no timer")
    assert.equal(5000, (h:result()).limit_messages)
    loop:watch(nil)
    c:close()
  end)

  it("ends a spawned call a poll already drove when loop:watch comes later", function()
    -- the answer comes 1 s later, well inside the call's timeout of 8 s: a
    -- socket the host never heard of would leave the call to time out
    emu.fault{path = "/usage/current", delay = 1}
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop, timeout = 8}
    local h = c:spawn("usage.current")
    loop:poll(0.05) -- connected and sent: libcurl now waits on the socket
    assert.is_false(h.done)
    local host = select_host(loop)
    local deadline = core.monotime() + 20
    while not h.done and core.monotime() < deadline do host.turn() end
    assert.is_true(h.done, "the call never ended: the late watch gave the host no socket and no timer")
    local v, err = h:result()
    assert.is_table(v, tostring(err))
    assert.equal(5000, v.limit_messages)
    loop:watch(nil)
    c:close()
  end)

  it("ends a spawned call that has not reached the wire yet when loop:watch comes later", function()
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop}
    local h = c:spawn("usage.current")
    local host = select_host(loop)
    local deadline = core.monotime() + 10
    while not h.done and core.monotime() < deadline do host.turn() end
    assert.is_true(h.done)
    assert.equal(5000, (h:result()).limit_messages)
    loop:watch(nil)
    c:close()
  end)
end)

describe("a loop watched, then not", function()
  before_each(function() emu.reset() end)

  it("goes back to polling: loop:watch(nil), then spawned calls end through poll, the host hears nothing", function()
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop}
    local heard = 0
    loop:watch{socket = function() heard = heard + 1 end, timer = function() heard = heard + 1 end}
    local first = c:spawn("usage.current")
    local host_heard = heard
    assert.is_true(host_heard > 0)
    first:cancel()
    loop:watch(nil)
    heard = 0
    local h = c:spawn("usage.current")
    local deadline = core.monotime() + 10
    while not h.done and core.monotime() < deadline do loop:poll(0.05) end
    assert.is_true(h.done)
    assert.equal(5000, (h:result()).limit_messages)
    assert.equal(0, heard)
    c:close()
  end)
end)

describe("a finished handle", function()
  before_each(function() emu.reset() end)

  local function finished(c)
    local h = c:spawn("usage.current")
    local deadline = core.monotime() + 10
    while not h.done and core.monotime() < deadline do c:poll(0.05) end
    assert.is_true(h.done)
    return h
  end

  it("runs on_done at once with its results, and only that once", function()
    local c = emu.client{retry = false, loop = admin.new_loop()}
    local h = finished(c)
    local calls = {}
    assert.equal(h, h:on_done(function(v, res) calls[#calls + 1] = {v, res} end))
    assert.equal(1, #calls)
    assert.equal(5000, calls[1][1].limit_messages)
    assert.equal(200, calls[1][2].status)
    c:poll(0.05)
    assert.equal(1, #calls)
    c:close()
  end)

  it("on_done registered before the end runs once, when it ends", function()
    local c = emu.client{retry = false, loop = admin.new_loop()}
    local h = c:spawn("usage.current")
    local n = 0
    h:on_done(function() n = n + 1 end)
    assert.equal(0, n)
    local deadline = core.monotime() + 10
    while not h.done and core.monotime() < deadline do c:poll(0.05) end
    assert.equal(1, n)
    c:poll(0.05)
    assert.equal(1, n)
    c:close()
  end)

  it("ignores cancel: its results stay, nothing is sent, on_done does not run again", function()
    local c = emu.client{retry = false, loop = admin.new_loop()}
    local h = finished(c)
    local n = 0
    h:on_done(function() n = n + 1 end)
    local sent = #emu.requests()
    assert.is_nil(h:cancel())
    assert.is_true(h.done)
    local v, res = h:result()
    assert.equal(5000, v.limit_messages)
    assert.equal(200, res.status)
    assert.equal(1, n)
    assert.equal(sent, #emu.requests())
    assert.equal(0, c._loop:running())
    c:close()
  end)

  it("checks on_done's argument, also once finished", function()
    local c = emu.client{retry = false, loop = admin.new_loop()}
    local h = finished(c)
    assert.has_error(function() h:on_done("not a function") end, "moltflow.handle:on_done: expected a function")
    c:close()
  end)
end)

describe("TLS sessions on a loop", function()
  local server
  setup(function()
    emu.start()
    -- every answer closes its connection: each call needs a handshake
    server = tls_nginx.start{emulator = true, keepalive = false}
  end)
  teardown(function() server:stop() end)

  local function tenant(loop)
    return admin.new{base_url = server.url, ca_file = server.ca, api_key = emu.seed.keys.all, retry = false,
                     loop = loop}
  end

  it("a second client on the same loop resumes the first one's session (nginx's $ssl_session_reused)", function()
    local loop = admin.new_loop()
    local a = tenant(loop)
    local mark = server:mark()
    assert(a.usage:current())
    local b = tenant(loop)
    assert(b.usage:current())
    assert(b.usage:current())
    local s = server:summary(mark, 3)
    assert.equal(3, s.requests)
    assert.equal(3, s.connections)
    assert.equal(1, s.full)
    assert.equal(2, s.resumed)
    a:close()
    b:close()
  end)

  it("a spawned call resumes the session a blocking call of another client made", function()
    local loop = admin.new_loop()
    local a, b = tenant(loop), tenant(loop)
    local mark = server:mark()
    assert(a.usage:current())
    local h = b:spawn("usage.current")
    local deadline = core.monotime() + 10
    while not h.done and core.monotime() < deadline do loop:poll(0.05) end
    assert.is_table((h:result()))
    local s = server:summary(mark, 2)
    assert.equal(2, s.connections)
    assert.equal(1, s.resumed)
    a:close()
    b:close()
  end)

  it("clients on different loops keep their sessions apart", function()
    local a, b = tenant(admin.new_loop()), tenant(admin.new_loop())
    local mark = server:mark()
    assert(a.usage:current())
    assert(b.usage:current())
    local s = server:summary(mark, 2)
    assert.equal(2, s.full)
    a:close()
    b:close()
  end)
end)
