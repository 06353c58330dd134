-- Issue 13, items 1 and 2: one loop for all clients (admin.loop(),
-- admin.new_loop(), loop:poll, admin.poll, c:spawn starting at once) and
-- the event-driven interface (loop:watch / loop:action), driven here by a
-- host written with LuaSocket's select, as any host can.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"
local socket = require "socket"

-- Waits (up to 5 s) until the emulator has logged n requests for method path.
local function await_requests(method, path, n)
  local deadline = core.monotime() + 5
  while #emu.requests_for(method, path) < n and core.monotime() < deadline do core.sleep(0.005) end
  return #emu.requests_for(method, path)
end

describe("one loop for all clients", function()
  before_each(function() emu.reset() end)

  it("clients share admin.loop(); admin.poll drives every client's calls", function()
    local a, b = emu.client{retry = false}, emu.client{retry = false}
    assert.equal(admin.loop(), a._loop)
    assert.equal(admin.loop(), b._loop)
    local ha, hb = a:spawn("usage.current"), b:spawn("billing.plans")
    local deadline = core.monotime() + 10
    while admin.poll(0.05) > 0 and core.monotime() < deadline do end
    assert.is_true(ha.done and hb.done)
    assert.equal(5000, (ha:result()).limit_messages)
    assert.is_table((hb:result()).plans)
    a:close()
    b:close()
  end)

  it("c:poll drives the calls of the other clients on its loop too", function()
    local a, b = emu.client{retry = false}, emu.client{retry = false}
    local hb = b:spawn("usage.current")
    local deadline = core.monotime() + 10
    while not hb.done and core.monotime() < deadline do a:poll(0.05) end
    assert.is_true(hb.done)
    a:close()
    b:close()
  end)

  it("c:spawn puts the request on the wire before any poll", function()
    local c = emu.client{retry = false}
    local h = c:spawn("usage.current")
    assert.equal(1, await_requests("GET", "/usage/current", 1)) -- no poll yet
    assert.is_false(h.done)
    local deadline = core.monotime() + 10
    while not h.done and core.monotime() < deadline do c:poll(0.05) end
    assert.equal(5000, (h:result()).limit_messages)
    c:close()
  end)

  it("calls whose answers arrive together are all reported done", function()
    emu.fault{path = "/usage/current", delay = 0.3, times = 4}
    local c = emu.client{retry = false}
    local handles = {}
    for i = 1, 4 do handles[i] = c:spawn("usage.current") end
    local function count_done()
      local n = 0
      for _, h in ipairs(handles) do n = n + (h.done and 1 or 0) end
      return n
    end
    -- on the wire (the answers are held back by the delay) ...
    local deadline = core.monotime() + 10
    while #emu.requests_for("GET", "/usage/current") < 4 and core.monotime() < deadline do c:poll(0.005) end
    -- ... then all answered before the next poll reads any: libcurl finishes them in one go
    local function answered()
      local n = 0
      for _, status in ipairs(emu.statuses_for("GET", "/usage/current")) do n = n + (status == 200 and 1 or 0) end
      return n
    end
    while answered() < 4 and core.monotime() < deadline do core.sleep(0.01) end
    assert.equal(4, answered())
    while count_done() < 4 and core.monotime() < deadline do c:poll(0.05) end
    assert.equal(4, count_done())
    for _, h in ipairs(handles) do assert.equal(5000, (h:result()).limit_messages) end
    c:close()
  end)

  it("a new loop keeps its clients' calls apart from the default loop's", function()
    local loop = admin.new_loop{pool_size = 2}
    local c = emu.client{retry = false, loop = loop}
    assert.equal(loop, c._loop)
    local h = c:spawn("usage.current")
    local until_t = core.monotime() + 0.2
    while core.monotime() < until_t do admin.poll(0.01) end
    assert.is_false(h.done) -- the default loop does not drive it
    local deadline = core.monotime() + 10
    while not h.done and core.monotime() < deadline do loop:poll(0.05) end
    assert.is_true(h.done)
    c:close()
  end)

  it("closing a client ends its calls in flight with kind `closed`", function()
    emu.fault{path = "/usage/current", delay = 0.5}
    local c = emu.client{retry = false}
    local h = c:spawn("usage.current")
    c:close()
    assert.equal(0, admin.poll(0))
    local v, err = h:result()
    assert.is_nil(v)
    assert.equal("closed", err.kind)
  end)
end)

-- A host event loop on LuaSocket's select: `watch` records the sockets and
-- the timer the loop asks for; `run` waits on them and calls loop:action.
local function select_host(loop)
  local host = {read = {}, write = {}, timer_at = nil, watched = {}, timers = {}}
  local function wrap(fd) return {getfd = function() return fd end, fd = fd} end
  loop:watch{
    socket = function(fd, what)
      host.watched[#host.watched + 1] = what
      host.read[fd] = (what == "in" or what == "inout") and wrap(fd) or nil
      host.write[fd] = (what == "out" or what == "inout") and wrap(fd) or nil
    end,
    timer = function(ms)
      host.timers[#host.timers + 1] = ms
      host.timer_at = ms >= 0 and core.monotime() + ms / 1000 or nil
    end,
  }
  function host.count()
    local n = 0
    for _ in pairs(host.read) do n = n + 1 end
    for _ in pairs(host.write) do n = n + 1 end
    return n
  end
  -- one turn: wait for a socket or the timer, then act
  function host.turn()
    local r, w = {}, {}
    for _, s in pairs(host.read) do r[#r + 1] = s end
    for _, s in pairs(host.write) do w[#w + 1] = s end
    local wait = host.timer_at and math.max(0, host.timer_at - core.monotime()) or 1
    local readable, writable = socket.select(r, w, wait)
    local ready = {}
    for _, s in ipairs(readable or {}) do ready[s.fd] = "in" end
    for _, s in ipairs(writable or {}) do ready[s.fd] = ready[s.fd] and "inout" or "out" end
    local acted = false
    for fd, what in pairs(ready) do
      acted = true
      loop:action(fd, what)
    end
    if host.timer_at and core.monotime() >= host.timer_at then
      host.timer_at = nil
      acted = true
      loop:action()
    end
    return acted
  end
  return host
end

describe("loop:watch and loop:action", function()
  before_each(function() emu.reset() end)

  it("run a chain of calls from a select loop, and leave nothing to watch once done", function()
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop}
    local host = select_host(loop)
    local results, finished = {}, false
    local function step(i)
      c:spawn("usage.current"):on_done(function(v, err)
        results[i] = v and v.limit_messages or tostring(err)
        if i < 5 then step(i + 1) else finished = true end
      end)
    end
    step(1)
    assert.equal(0, #host.watched) -- no socket yet: libcurl asked for a timer
    assert.is_true(#host.timers > 0)
    local deadline = core.monotime() + 10
    while not finished and core.monotime() < deadline do host.turn() end
    assert.is_true(finished)
    assert.same({5000, 5000, 5000, 5000, 5000}, results)
    assert.equal(5, #emu.requests_for("GET", "/usage/current"))
    -- idle: once libcurl's last timer (if any) has fired, no socket is
    -- watched and no timer pending; the host is not woken again and again
    local turns = 0
    deadline = core.monotime() + 5
    while host.timer_at and core.monotime() < deadline do
      host.turn()
      turns = turns + 1
    end
    assert.is_true(turns <= 2, "the host was woken " .. turns .. " times with nothing in flight")
    assert.equal(0, host.count())
    assert.is_nil(host.timer_at)
    loop:watch(nil)
    c:close()
  end)

  it("a blocking call on a watched loop finishes, and the calls in flight still complete", function()
    emu.fault{path = "/billing/plans", delay = 0.2}
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop}
    local host = select_host(loop)
    local h = c:spawn("billing.plans")
    local v = assert(c.usage:current()) -- blocking, meanwhile the spawned call runs
    assert.equal(5000, v.limit_messages)
    local deadline = core.monotime() + 10
    while not h.done and core.monotime() < deadline do host.turn() end
    assert.is_true(h.done)
    assert.is_table((h:result()).plans)
    loop:watch(nil)
    c:close()
  end)

  it("checks its arguments", function()
    local loop = admin.new_loop()
    assert.has_error(function() loop:watch{socket = print} end)
    assert.has_error(function() loop:action("x", "in") end)
    assert.has_error(function() loop:action(3, "up") end)
    assert.has_error(function() admin.new_loop(5) end)
    assert.has_error(function() admin.poll("soon") end)
  end)
end)
