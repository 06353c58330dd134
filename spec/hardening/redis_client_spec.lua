-- Issue 23 (and issue 24, finding 10): the RESP client of the Redis stores
-- is bounded. A hostile server (spec/support/hostile_redis.lua) cannot hold a
-- call past its one deadline, grow memory past the reply bounds, or raise a
-- Lua error: every failure is nil and an error with a kind.
local core = require "moltflow.core"
local redis = require "moltflow.redis"
local hostile_redis = require "spec.support.hostile_redis"

describe("moltflow.redis against a hostile server", function()
  local server
  setup(function() server = hostile_redis.start() end)
  teardown(function() server.stop() end)

  local function call(mode, opts)
    opts = opts or {}
    opts.host, opts.port = "127.0.0.1", server.port
    opts.timeout = opts.timeout or 5 -- the deadline cases pass their own 0.5 s
    local conn = redis.new(opts)
    local started = core.monotime()
    local v, err = conn:call("GET", mode)
    conn:close()
    return v, err, core.monotime() - started
  end

  it("answers a well-formed reply, also one that comes a byte at a time", function()
    assert.equal("ok", (call("ok", {timeout = 5}))) -- a loaded machine may take more than 0.5 s
    assert.same({"abc", 42, "OK", false}, (call("bytewise", {timeout = 5})))
  end)

  for _, mode in ipairs{"trickle", "trickle-line", "trickle-array"} do
    it(mode .. ": one deadline for the whole reply, however slowly the bytes come", function()
      local v, err, took = call(mode, {timeout = 0.5})
      assert.is_nil(v)
      assert.equal("timeout", err.kind)
      -- a byte every 50 ms, or an element every 200 ms: a timeout per read would wait a minute or more
      print(("\n  %s: ended after %.2f s (timeout 0.5 s)"):format(mode, took))
      assert.is_true(took < 3, ("%.2f s"):format(took))
    end)
  end

  local bounded = {
    {"huge-bulk", "too_large", "max_bulk"},
    {"huge-array", "too_large", "max_array"},
    {"long-line", "too_large", "max_line"},
    {"wide-reply", "too_large", "max_reply"},
    {"deep", "too_large", "max_depth"},
  }
  for _, case in ipairs(bounded) do
    local mode, kind, bound = case[1], case[2], case[3]
    it(mode .. ": refused (" .. bound .. "), memory bounded", function()
      collectgarbage()
      local before = collectgarbage("count")
      -- a timeout far above the time the reply takes: under valgrind on a loaded
      -- machine the wide reply took over 5 s, and ended as a timeout instead
      local v, err = call(mode, {timeout = 30})
      local grown = (collectgarbage("count") - before) / 1024 -- MiB, garbage included: the peak's bound
      assert.is_nil(v)
      assert.equal(kind, err.kind, tostring(err))
      assert.matches(bound, err.message, 1, true)
      print(("\n  %s: refused, Lua heap grew %.1f MiB"):format(mode, grown))
      assert.is_true(grown < 64, ("%.1f MiB"):format(grown))
    end)
  end

  it("bounds are options: a smaller max_bulk refuses what the default takes", function()
    local v, err = call("ok", {max_bulk = 1, timeout = 5})
    assert.is_nil(v)
    assert.equal("too_large", err.kind)
  end)

  for _, mode in ipairs{"inf-bulk", "inf-array", "nan-bulk", "negative-bulk", "float-array", "inf-integer",
                        "overflow-bulk", "extra", "unknown-type"} do
    it(mode .. ": nil and a protocol error, never a Lua error", function()
      local ok, v, err = pcall(call, mode, {timeout = 5})
      assert.is_true(ok, tostring(v))
      assert.is_nil(v)
      assert.equal("protocol", err.kind, tostring(err))
      assert.matches("^moltflow.redis: Redis at 127.0.0.1:%d+: ", tostring(err))
    end)
  end

  it("close-mid: a connection closed mid-reply is a network error", function()
    local v, err = call("close-mid")
    assert.is_nil(v)
    assert.equal("network", err.kind)
  end)

  it("a Redis error reply is kind 'server' and the connection stays usable", function()
    local conn = redis.new{host = "127.0.0.1", port = server.port}
    local v, err = conn:call("GET", "no-such-mode")
    assert.is_nil(v)
    assert.equal("server", err.kind)
    assert.equal("ok", conn:call("GET", "ok"))
    conn:close()
  end)

  it("nothing listening: a network error, not a Lua error", function()
    local port = tonumber(require("spec.support.process").free_port())
    local v, err = redis.new{host = "127.0.0.1", port = port}:call("PING")
    assert.is_nil(v)
    assert.equal("network", err.kind)
  end)
end)

describe("moltflow.redis options and urls", function()
  it("parses redis:// and rediss:// with an ACL user, percent-encoded secrets, IPv6", function()
    assert.same({host = "h", port = 6380, db = 2, tls = true, username = "app", password = "p@:/ w"},
                redis.parse_url("rediss://app:p%40%3A%2F%20w@h:6380/2"))
    assert.same({host = "::1", port = 6379, db = 0, tls = false, password = "pw"},
                redis.parse_url("redis://:pw@[::1]"))
    assert.same({host = "h", port = 6379, db = 0, tls = false, password = "pw"}, redis.parse_url("redis://pw@h"))
    assert.is_nil(redis.parse_url("http://h"))
    assert.is_nil(redis.parse_url("redis://h:port"))
  end)

  it("refuses malformed options before any I/O, naming the field", function()
    assert.has_error(function() redis.new{host = "h", port = 1, timeout = -1} end,
                     "moltflow.redis: field 'timeout' must be a positive number")
    assert.has_error(function() redis.new{host = "h", port = 1, max_bulk = "x"} end,
                     "moltflow.redis: field 'max_bulk' must be a positive number")
    assert.has_error(function() redis.new{host = "h", port = 1, password = 5} end,
                     "moltflow.redis: field 'password' must be a string")
  end)
end)
