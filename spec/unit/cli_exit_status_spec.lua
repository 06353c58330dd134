-- moltflow-admin's exit status comes from the kind of the error
-- (moltflow.cli.failure), never from the text of its message: the SDK's
-- err.kind, the command's own kinds, and for a raised error where it was
-- raised (inside an SDK call: a value from the command line the SDK refused,
-- 2; anywhere else: 1). No server: the SDK refuses before any I/O, and the
-- network failures go to a loopback port nothing listens on.
local failure = require "moltflow.cli.failure"
local proc = require "spec.support.process"

local LAUNCHER = "bin/moltflow-admin"

local function raised(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "did not raise")
  return e
end

describe("moltflow.cli.failure", function()
  it("maps each kind to its exit status; any other kind exits 1", function()
    local want = {auth = 4, network = 5, timeout = 5, argument = 2, usage = 2, quota = 3, interrupted = 130,
                  http = 1, rate_limited = 1, decode = 1, store = 1, internal = 1}
    for kind, status in pairs(want) do assert.equal(status, failure.new(kind, "m"):exit_status(), kind) end
    assert.equal(1, failure.new(nil, "m"):exit_status())
    assert.equal(130, failure.signal(2):exit_status())
    assert.equal(131, failure.signal(3):exit_status())
  end)

  it("turns an SDK error into one line naming the call, its status from err.kind", function()
    local auth = failure.from_sdk{kind = "auth", status = 401, method = "GET", path = "/auth/me",
                                  message = "Not authenticated"}
    assert.equal(4, auth:exit_status())
    assert.equal("HTTP 401 on GET /auth/me: Not authenticated (log in again with 'moltflow-admin login', "
                 .. "or check the API key)", auth.message)
    local timeout = failure.from_sdk{kind = "timeout", method = "GET", path = "/usage/current", message = "slow"}
    assert.equal(5, timeout:exit_status())
    assert.equal("timeout error on GET /usage/current: slow", timeout.message)
    assert.equal(1, failure.from_sdk{kind = "http", status = 404, method = "GET", path = "/x"}:exit_status())
    assert.equal(1, failure.from_sdk{kind = "rate_limited", status = 429}:exit_status())
  end)

  it("check passes values through and ends the command on nil, err", function()
    assert.same({"v", "res"}, {failure.check("v", "res")})
    local f = raised(failure.check, nil, {kind = "network", method = "GET", path = "/p", message = "refused"})
    assert.is_true(failure.is(f))
    assert.equal(5, f:exit_status())
  end)

  it("a raise inside an SDK call is an argument error (2) whatever its text; elsewhere an internal one (1)", function()
    assert.same({1, 2}, {failure.call(function(a, b) return a, b end, 1, 2)})
    local f = raised(failure.call, function() error("no SDK prefix here") end)
    assert.is_true(failure.is(f))
    assert.equal(2, f:exit_status())
    assert.equal("error: no SDK prefix here", f.message) -- the source position is dropped
    local internal = failure.from_raise("x.lua:3: moltflow.new: reads like the SDK's", "internal")
    assert.equal(1, internal:exit_status())
    assert.equal("error: moltflow.new: reads like the SDK's", internal.message)
    -- a raised error that carries a kind keeps it; a failure passes through as it is
    assert.equal(5, raised(failure.call, function() error({kind = "network"}) end):exit_status())
    local quota = failure.new("quota", "over")
    assert.equal(quota, raised(failure.call, function() error(quota, 0) end))
  end)

  it("Ctrl-C (the interpreter's 'interrupted!') is an interruption wherever it is raised", function()
    local f = raised(failure.call, function() error("interrupted!") end)
    assert.equal(130, f:exit_status())
    assert.equal("interrupted", f.message)
    assert.equal(130, failure.from_raise("[C]: in ?: interrupted!", "internal"):exit_status())
  end)
end)

describe("moltflow-admin exit statuses", function()
  local config_dir, url

  before_each(function()
    config_dir = proc.tmpdir()
    url = ("http://127.0.0.1:%d/api/v2"):format(proc.free_port())
  end)
  after_each(function()
    os.execute("rm -rf " .. proc.quote(config_dir))
  end)

  local function admin(argv)
    local words = {proc.lua, LAUNCHER}
    for _, a in ipairs(argv) do words[#words + 1] = a end
    return proc.run(words, {env = {MOLTFLOW_CONFIG_DIR = config_dir, HOME = config_dir, LC_ALL = "C"}})
  end

  it("exits 2 when the SDK refuses a value from the command line, 5 when the same call cannot connect", function()
    local bad = admin{"--base-url", url, "--api-key", "mf_unused", "keys", "show", "../x"}
    assert.equal(2, bad.code, bad.stderr)
    assert.equal("moltflow-admin: error: moltflow: api_keys.get: 'id' must be a non-empty id without '.' or '..' "
                 .. "segments\n", bad.stderr)
    local net = admin{"--base-url", url, "--api-key", "mf_unused", "keys", "show", "key_x"}
    assert.equal(5, net.code, net.stderr)
    assert.matches("^moltflow%-admin: network error on GET /api%-keys/key_x: ", net.stderr)
  end)

  it("exits 2 for a --base-url the SDK refuses, on every command, logout too", function()
    for _, argv in ipairs{{"plans"}, {"whoami"}, {"logout"}, {"--api-key", "mf_unused", "whoami"}} do
      local words = {"--base-url", "ftp://127.0.0.1/api/v2"}
      for _, w in ipairs(argv) do words[#words + 1] = w end
      local r = admin(words)
      assert.equal(2, r.code, table.concat(argv, " "))
      assert.equal("", r.stdout)
      assert.equal("moltflow-admin: error: moltflow.new: field 'base_url' must start with https:// or http://\n",
                   r.stderr)
    end
  end)
end)
