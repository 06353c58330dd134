-- Faults on the wire: the emulator's fault injection and a raw misbehaving
-- server on loopback. Every fault ends in its documented err.kind, within the
-- timeout, with no crash; credentials never follow a redirect.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"

local KEY = emu.seed.keys.all
local MARGIN = 1.5 -- seconds over the timeout that a failure may take (slow CI, valgrind)

local proc = require "spec.support.process"

local raw = require "spec.support.raw_server" -- a misbehaving server on loopback

-- A port nothing listens on: bound, then closed.
local closed_port = proc.free_port

local function client(opts)
  return emu.client(opts, {api_key = KEY, retry = false, timeout = 2, connect_timeout = 2})
end

-- Runs fn(c) and returns its results plus the elapsed seconds.
local function timed(fn)
  local t0 = core.monotime()
  local v, err = fn()
  return v, err, core.monotime() - t0
end

-- The same request through the multi handle (c:start/poll/finish), so both
-- transports of the C core meet every fault.
local function run_async(c, method, path)
  local ep = core.endpoint{label = "request", method = method, path = "/", auth = "any", raw = true}
  local req = c._core:build(ep, path)
  assert(c._core:start(req))
  local deadline = core.monotime() + 30
  while core.monotime() < deadline do
    local done = c._core:poll(0.2)
    if #done > 0 then return c._core:finish(req) end
  end
  error("the async request never finished")
end

local function assert_error(v, err, kind, elapsed, timeout)
  assert.is_nil(v)
  assert.is_true(admin.is_error(err), "expected an SDK error, got " .. tostring(err))
  assert.are.equal(kind, err.kind, tostring(err))
  assert.is_string(err.message)
  assert.is_true(elapsed < (timeout or 2) + MARGIN, ("took %.2f s"):format(elapsed))
  assert.is_nil(tostring(err):find(KEY, 1, true))
end

describe("faults from the emulator", function()
  before_each(function()
    emu.reset()
    emu.control("POST", "config", {rate_limit = false})
  end)

  local function fault_then(spec, kind, opts)
    opts = opts or {}
    spec.path = spec.path or "/usage/current"
    local _, status = emu.fault(spec)
    assert.are.equal(201, status)
    local c = client(opts.client)
    local v, err, elapsed = timed(function() return c.usage:current() end)
    assert_error(v, err, kind, elapsed, opts.client and opts.client.timeout)
    -- and once more through the multi handle
    spec.times = 1
    emu.fault(spec)
    v, err, elapsed = timed(function() return run_async(c, "GET", "/usage/current") end)
    assert_error(v, err, kind, elapsed, opts.client and opts.client.timeout)
    c:close()
    return err
  end

  it("a dropped connection is a network error", function()
    fault_then({drop = true}, "network")
  end)

  it("a truncated body is a network error", function()
    fault_then({truncate = true}, "network")
  end)

  it("a chunked body cut in the middle is a network error", function()
    fault_then({reset_mid_body = true}, "network")
  end)

  it("malformed JSON is a decode error that does not echo the body", function()
    local err = fault_then({malformed = true}, "decode")
    assert.matches("malformed JSON", err.message)
    assert.are.equal(200, err.status)
  end)

  it("invalid UTF-8 is a decode error", function()
    local err = fault_then({invalid_utf8 = true}, "decode")
    assert.matches("UTF%-8", err.message)
  end)

  it("a body over max_response_bytes is too_large", function()
    fault_then({oversize = 64 * 1024}, "too_large", {client = {max_response_bytes = 4096}})
  end)

  it("a trickle slower than the timeout is a timeout, on time", function()
    fault_then({trickle = 20}, "timeout", {client = {timeout = 1}})
  end)

  it("a delay longer than the timeout is a timeout, on time", function()
    fault_then({delay = 3}, "timeout", {client = {timeout = 1}})
  end)

  it("an HTML 502 page is an http error that never echoes the page", function()
    local err = fault_then({status = 502, content_type = "text/html",
                            body = "<html><body><h1>502 Bad Gateway</h1></body></html>"}, "http")
    assert.are.equal(502, err.status)
    assert.is_nil(err.message:find("<", 1, true))
    assert.are.equal("HTTP 502 with a non-JSON body", err.message)
  end)

  it("a 200 with the wrong content type is a decode error", function()
    local err = fault_then({status = 200, content_type = "text/plain", body = "OK"}, "decode")
    assert.matches("text/plain", err.message)
  end)

  it("a JSON error body gives its detail", function()
    local err = fault_then({status = 503, body = '{"detail":"maintenance"}'}, "http")
    assert.are.equal("maintenance", err.message)
  end)
end)

describe("faults from a raw server", function()
  local origin
  setup(function() origin = raw.start() end)

  local function raw_client(opts)
    opts = opts or {}
    opts.base_url = opts.base_url or origin
    return client(opts)
  end

  local function both(c, path, kind, timeout)
    local v, err, elapsed = timed(function() return c:request("GET", path) end)
    assert_error(v, err, kind, elapsed, timeout)
    local v2, err2, elapsed2 = timed(function() return run_async(c, "GET", path) end)
    assert_error(v2, err2, kind, elapsed2, timeout)
    return err, err2
  end

  it("answers properly when asked to (the control case)", function()
    local c = raw_client()
    local v = assert(c:request("GET", "/json"))
    assert.is_true(v.ok)
  end)

  it("a refused connection is a network error marked connect_failed", function()
    local c = raw_client{base_url = "http://127.0.0.1:" .. closed_port()}
    local err, err2 = both(c, "/json", "network")
    assert.is_true(err.connect_failed)
    assert.is_true(err2.connect_failed)
  end)

  it("a reset in the middle of the body is a network error", function()
    local err = both(raw_client(), "/reset-mid-body", "network")
    assert.is_nil(err.connect_failed)
  end)

  it("a body shorter than its Content-Length is a network error", function()
    both(raw_client(), "/truncated", "network")
  end)

  it("a trickle slower than the timeout is a timeout, on time", function()
    both(raw_client{timeout = 1}, "/trickle", "timeout", 1)
  end)

  it("a 20 MiB body over max_response_bytes is too_large, announced or not", function()
    -- the default limit: 8 MiB. A generous timeout: the kind is the point, and under valgrind
    -- reading 8 MiB took longer than the default 2 s (a timeout at 8,040,376 bytes)
    local c = raw_client{timeout = 30}
    both(c, "/huge", "too_large", 30)
    both(c, "/huge-chunked", "too_large", 30)
  end)

  it("an HTML 502 from a proxy is an http error", function()
    local err = both(raw_client(), "/html-502", "http")
    assert.are.equal(502, err.status)
    assert.is_nil(err.message:find("Bad Gateway", 1, true))
  end)

  it("a 200 text/plain is a decode error", function()
    both(raw_client(), "/wrong-type", "decode")
  end)

  it("a 502 is retried for a GET, then reported with its attempts", function()
    local sleeps = {}
    local c = raw_client{retry = {max_attempts = 3, base_delay = 0.01, max_delay = 0.02},
                         sleep = function(s) sleeps[#sleeps + 1] = s end}
    raw.clear()
    local v, err = c:request("GET", "/html-502")
    assert.is_nil(v)
    assert.are.equal(3, err.attempts)
    assert.are.equal(3, #raw.log())
    -- two waits, each full-jitter backoff below its cap (0.01, then 0.02)
    assert.are.equal(2, #sleeps)
    assert.is_true(sleeps[1] >= 0 and sleeps[1] < 0.01, tostring(sleeps[1]))
    assert.is_true(sleeps[2] >= 0 and sleeps[2] < 0.02, tostring(sleeps[2]))
  end)
end)

describe("redirects", function()
  before_each(function()
    emu.reset()
    raw.start()
    raw.clear()
  end)

  it("are not followed: credentials never reach another origin", function()
    local target = raw.start() .. "/json"
    emu.fault{path = "/usage/current", redirect = target, times = 2}
    local c = client()
    local v, err = c.usage:current()
    assert.is_nil(v)
    assert.are.equal("http", err.kind)
    assert.are.equal(302, err.status)
    v, err = run_async(c, "GET", "/usage/current")
    assert.is_nil(v)
    assert.are.equal(302, err.status)
    assert.are.same({}, raw.log()) -- the other origin received nothing
    -- while the emulator did receive the key, twice
    local seen = 0
    for _, r in ipairs(emu.requests()) do
      if r.path == "/api/v2/usage/current" and r.headers["x-api-key"] == KEY then seen = seen + 1 end
    end
    assert.are.equal(2, seen)
  end)

  it("with a bearer token neither", function()
    local login = assert(client{api_key = false}.auth:login{email = emu.seed.owner.email,
                                                        password = emu.seed.owner.password})
    emu.fault{path = "/auth/me", redirect = raw.start() .. "/json"}
    local c = client{api_key = false, access_token = login.access_token}
    local v, err = c.auth:me()
    assert.is_nil(v)
    assert.are.equal(302, err.status)
    assert.are.same({}, raw.log())
  end)
end)
