-- Issue 12: connections. Writes go over kept-alive connections and are still
-- never sent twice (a keep-alive server that misbehaves on cue); the clients
-- of a Lua state share one pool (connections, TLS sessions) on the default
-- loop; HTTP/2 when a TLS nginx offers it, and batched calls multiplex on
-- one connection. Connections and handshakes are nginx's own count.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"
local keepalive = require "spec.support.keepalive_server"
local tls_nginx = require "spec.support.tls_nginx"

local function requests(log, method, path)
  local out = {}
  for _, r in ipairs(log.requests) do
    if r.method == method and r.path == path then out[#out + 1] = r end
  end
  return out
end

-- Waits (up to 5 s) until the server has closed `n` connections in all.
local function await_closed(n)
  local deadline = core.monotime() + 5
  while keepalive.log().closed < n and core.monotime() < deadline do core.sleep(0.005) end
  return keepalive.log().closed >= n
end

describe("writes on kept-alive connections", function()
  local origin = keepalive.start()
  local function client() return emu.client{base_url = origin, api_key = "k", retry = false, pool = false} end

  it("a POST whose connection dies after the server read it is sent once and fails as `network`", function()
    local before = keepalive.log()
    local c = client()
    assert(c:request("GET", "/warm")) -- opens the connection the POST reuses
    local v, err = c:request("POST", "/drop", {body = {name = "once"}})
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.equal("POST", err.method)
    assert.equal(1, err.attempts)
    local log = keepalive.log()
    local posts = requests(log, "POST", "/drop")
    assert.equal(#requests(before, "POST", "/drop") + 1, #posts) -- exactly once
    local warm = requests(log, "GET", "/warm")
    assert.equal(warm[#warm].conn, posts[#posts].conn, "the POST reused the GET's connection")
    c:close()
  end)

  -- Without body bytes there is no rewind to refuse: libcurl would resend on
  -- a reused connection that died, so these go on a connection of their own.
  for _, method in ipairs{"POST", "PATCH"} do
    it("a body-less " .. method .. " whose connection dies is sent once, on a fresh connection", function()
      local before = keepalive.log()
      local c = client()
      assert(c:request("GET", "/warm"))
      local v, err = c:request(method, "/drop")
      assert.is_nil(v)
      assert.equal("network", err.kind)
      local log = keepalive.log()
      local sent = requests(log, method, "/drop")
      assert.equal(#requests(before, method, "/drop") + 1, #sent) -- exactly once
      local warm = requests(log, "GET", "/warm")
      assert.not_equal(warm[#warm].conn, sent[#sent].conn)
      c:close()
    end)
  end

  it("a POST after the server closed the idle kept-alive connection succeeds, sent once", function()
    local c = client()
    local closed = keepalive.log().closed
    assert(c:request("POST", "/close-idle", {body = {n = 1}}))
    assert.is_true(await_closed(closed + 1), "the server did not close the connection")
    local v, err = c:request("POST", "/second", {body = {n = 2}})
    assert.is_table(v, tostring(err))
    assert.equal(1, #requests(keepalive.log(), "POST", "/second"))
    c:close()
  end)

  it("GET, POST and PATCH share one kept-alive connection", function()
    local c = client()
    assert(c:request("GET", "/a"))
    assert(c:request("POST", "/b", {body = {x = 1}}))
    assert(c:request("PATCH", "/c", {body = {y = 2}}))
    assert(c:request("POST", "/d", {body = {z = 3}}))
    local log = keepalive.log()
    local conn = requests(log, "GET", "/a")[1].conn
    for _, r in ipairs{{"POST", "/b"}, {"PATCH", "/c"}, {"POST", "/d"}} do
      assert.equal(conn, requests(log, r[1], r[2])[1].conn, r[1] .. " " .. r[2])
    end
    c:close()
  end)
end)

describe("one pool per Lua state, over TLS", function()
  local h1, h2
  setup(function()
    emu.start()
    h1 = tls_nginx.start{emulator = true}
    h2 = tls_nginx.start{emulator = true, http2 = true}
  end)
  teardown(function()
    h1:stop()
    h2:stop()
  end)

  local function tenant(server, extra)
    return emu.client(extra, {base_url = server.url, ca_file = server.ca, retry = false})
  end

  it("a session of GET, POST and PATCH calls uses one connection (nginx's log)", function()
    local loop = admin.new_loop()
    local c = tenant(h1, {loop = loop})
    local mark = h1:mark()
    for i = 1, 3 do
      assert(c.usage:current())
      assert(c.api_keys:create{name = "session " .. i, scopes = {"usage:read"}})
      assert(c.tenant:update_settings{require_approval = i % 2 == 0})
    end
    local s = h1:summary(mark, 9)
    assert.equal(9, s.requests)
    assert.equal(1, s.connections)
    c:close()
  end)

  it("50 tenant clients x 2 rounds at concurrency 8 use at most 8 connections and 8 full handshakes", function()
    local loop = admin.new_loop()
    local clients, calls = {}, {}
    for i = 1, 50 do clients[i] = tenant(h1, {loop = loop}) end
    for _ = 1, 2 do
      for i = 1, 50 do calls[#calls + 1] = {clients[i], "usage.current"} end
    end
    local mark = h1:mark()
    local results = admin.batch(calls, {concurrency = 8})
    for i = 1, 100 do assert.is_table(results[i][1], tostring(results[i][2])) end
    local s = h1:summary(mark, 100)
    assert.equal(100, s.requests)
    assert.is_true(s.connections <= 8, "connections: " .. s.connections)
    assert.is_true(s.full <= 8, "full handshakes: " .. s.full)
    io.stderr:write(("\n  [pool] 50 clients x 2 at concurrency 8: %d connections, %d full, %d resumed handshakes")
                    :format(s.connections, s.full, s.resumed))
    for i = 1, 50 do clients[i]:close() end
  end)

  it("a client with pool = false keeps its own connections", function()
    local shared, own = tenant(h1), tenant(h1, {pool = false})
    assert.are_not.equal(shared._loop, own._loop)
    assert.equal(admin.loop(), shared._loop)
    local mark = h1:mark()
    assert(shared.usage:current())
    assert(own.usage:current())
    assert(shared.usage:current())
    assert(own.usage:current())
    assert.equal(2, h1:summary(mark, 4).connections)
    shared:close()
    own:close()
  end)

  it("a batch of 16 GETs multiplexes on one HTTP/2 connection", function()
    local c = tenant(h2, {loop = admin.new_loop()})
    local calls = {}
    for i = 1, 16 do calls[i] = {"usage.current"} end
    local mark = h2:mark()
    local results = c:batch(calls, {concurrency = 16})
    for i = 1, 16 do assert.is_table(results[i][1], tostring(results[i][2])) end
    local s = h2:summary(mark, 16)
    assert.equal(16, s.requests)
    assert.equal(1, s.connections)
    assert.equal(16, s.protocols["HTTP/2.0"])
    c:close()
  end)

  it("http_version = \"1.1\" stays on HTTP/1.1 where HTTP/2 is offered", function()
    local c = tenant(h2, {loop = admin.new_loop(), http_version = "1.1"})
    local mark = h2:mark()
    assert(c.usage:current())
    assert(c.api_keys:list())
    local s = h2:summary(mark, 2)
    assert.equal(2, s.protocols["HTTP/1.1"])
    c:close()
  end)

  it("the clients of a loop share its transfers: 100 tenants at concurrency 8 leave 8, on one HTTP/2 connection", function()
    local loop = admin.new_loop()
    local clients, calls = {}, {}
    for i = 1, 100 do
      clients[i] = tenant(h2, {loop = loop})
      calls[i] = {clients[i], "usage.current"}
    end
    assert.equal(0, loop:core_loop():stats().transfers) -- a client holds no transfer of its own
    local mark = h2:mark()
    local results = admin.batch(calls, {concurrency = 8})
    for i = 1, 100 do assert.is_table(results[i][1], tostring(results[i][2])) end
    for i = 1, 20 do assert(clients[i].usage:current()) end -- blocking calls take a free one
    local stats = loop:core_loop():stats()
    assert.equal(8, stats.transfers)
    assert.equal(0, stats.in_use)
    local s = h2:summary(mark, 120)
    assert.equal(120, s.requests)
    assert.equal(1, s.connections)
    for i = 1, 100 do clients[i]:close() end
    assert.equal(8, loop:core_loop():stats().transfers) -- the loop keeps them for its next clients
  end)

  it("a canceled call gives its transfer back: the next calls reuse it, none is left in use", function()
    emu.reset()
    local loop = admin.new_loop()
    local c = emu.client{loop = loop, retry = false}
    emu.fault{method = "GET", path = "/usage/current", delay = 2, times = 4}
    local handles = {}
    for i = 1, 4 do handles[i] = c:spawn("usage.current") end
    for _ = 1, 200 do -- until all four are on the wire
      c:poll(0.01)
      if #emu.requests_for("GET", "/usage/current") == 4 then break end
    end
    assert.equal(4, loop:core_loop():stats().in_use)
    for i = 1, 4 do handles[i]:cancel() end
    c:poll(0)
    local stats = loop:core_loop():stats()
    assert.equal(0, stats.in_use)
    assert.equal(4, stats.transfers)
    for i = 1, 4 do assert.equal("canceled", select(2, handles[i]:result()).kind) end
    emu.control("DELETE", "faults")
    local results = c:batch{{"usage.current"}, {"usage.current"}, {"usage.current"}, {"usage.current"}}
    for i = 1, 4 do assert.is_table(results[i][1], tostring(results[i][2])) end
    assert.equal(4, loop:core_loop():stats().transfers) -- reused, not four more
    c:close()
  end)

  it("clients of one loop with other settings each send their own: User-Agent, CA file", function()
    local loop = admin.new_loop()
    local a = tenant(h1, {loop = loop, user_agent = "agent-a"})
    local b = tenant(h1, {loop = loop, user_agent = "agent-b", ca_file = h2.ca}) -- h2's cert: h1 fails it
    local mark = h1:mark()
    for _ = 1, 2 do
      assert(a.usage:current())
      local v, err = b.usage:current()
      assert.is_nil(v)
      assert.equal("network", err.kind)
      local results = admin.batch({{a, "usage.current"}, {b, "usage.current"}, {a, "usage.current"}})
      assert.is_table(results[1][1])
      assert.is_nil(results[2][1])
      assert.equal("network", results[2][2].kind)
      assert.is_table(results[3][1])
    end
    assert.equal(6, h1:summary(mark, 6).requests) -- b's calls never reached the server
    local c = admin.new{base_url = emu.url, api_key = emu.seed.keys.all, retry = false, loop = loop,
                        user_agent = "agent-c"}
    local d = admin.new{base_url = emu.url, api_key = emu.seed.keys.all, retry = false, loop = loop,
                        user_agent = "agent-d"}
    emu.control("DELETE", "requests")
    for _ = 1, 2 do
      assert(c.usage:current())
      assert(d.usage:current())
      local results = admin.batch({{d, "usage.current"}, {c, "usage.current"}})
      assert.is_table(results[1][1])
      assert.is_table(results[2][1])
    end
    local agents = {}
    for _, r in ipairs(emu.requests_for("GET", "/usage/current")) do agents[#agents + 1] = r.headers["user-agent"] end
    assert.same({"agent-c", "agent-d", "agent-d", "agent-c", "agent-c", "agent-d", "agent-d", "agent-c"}, agents)
    for _, x in ipairs{a, b, c, d} do x:close() end
  end)

  it("a loop remembers an https origin that answered with HTTP/1.1, not one that answered with HTTP/2", function()
    local loop = admin.new_loop()
    assert.same({}, loop:core_loop():stats().http1_origins)
    assert(tenant(h2, {loop = loop}).usage:current())
    assert(tenant(h2, {loop = loop, http_version = "1.1"}).usage:current()) -- chose 1.1 itself
    assert.same({}, loop:core_loop():stats().http1_origins)
    -- (marked before the first call: nginx logs a request after answering it, so a mark taken
    -- after a call may come before that call's line)
    local mark = h1:mark()
    assert(tenant(h1, {loop = loop}).usage:current())
    assert.same({h1.origin}, loop:core_loop():stats().http1_origins)
    local c = tenant(h1, {loop = loop})
    local calls = {}
    for i = 1, 8 do calls[i] = {c, "usage.current"} end
    for _, r in ipairs(admin.batch(calls, {concurrency = 8})) do assert.is_table(r[1], tostring(r[2])) end
    assert.equal(9, h1:summary(mark, 9).requests)
    assert.same({h1.origin}, loop:core_loop():stats().http1_origins)
  end)

  it("http_version and loop are checked before any I/O", function()
    for _, bad in ipairs{"2.0", "1.0", "h2"} do
      local ok, err = pcall(admin.new, {base_url = h2.url, http_version = bad})
      assert.is_false(ok)
      assert.matches("http_version", err)
    end
    local ok, err = pcall(admin.new, {base_url = h2.url, loop = {}})
    assert.is_false(ok)
    assert.matches("'loop'", err)
    ok, err = pcall(admin.new_loop, {pool_size = 0})
    assert.is_false(ok)
    assert.matches("pool_size", err)
  end)
end)

describe("a loop's pooled transfers and the clients' credentials", function()
  it("a client's key leaves them when the client is closed or collected; another client's stays", function()
    local loop = admin.new_loop()
    local function held() return loop:core_loop():stats().credentials end
    local a, b = emu.client{loop = loop}, emu.client{loop = loop}
    assert(a.usage:current()) -- one transfer, whose headers hold a's key
    assert.equal(1, held())
    b:close() -- b's key is in none of them
    assert.equal(1, held())
    a:close()
    assert.equal(1, loop:core_loop():stats().transfers) -- kept for the loop's next clients
    assert.equal(0, held())
    local c = emu.client{loop = loop}
    assert(c.usage:current())
    assert.equal(1, held())
    c = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    assert.equal(0, held())
  end)
end)
