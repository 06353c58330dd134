-- Issue 23: inside nginx the Redis store speaks TLS over cosockets
-- (sslhandshake with verification against lua_ssl_trusted_certificate and
-- the server name), as its ACL user: two workers share the login saved by a
-- process outside nginx (LuaSec).
local emu = require "spec.support.emulator"
local redis_server = require "spec.support.redis"
local fleet_nginx = require "spec.support.fleet_nginx"
local proc = require "spec.support.process"
local admin = require "moltflow.admin"

local OWNER = emu.seed.owner

describe("redis_store inside nginx over TLS", function()
  local server
  setup(function() server = redis_server.start{tls = true, users = {{name = "workers", password = "w pass"}}} end)
  teardown(function() server:stop() end)
  before_each(function()
    emu.reset()
    server:cli("FLUSHALL")
  end)

  local function login()
    local store = admin.redis_store{url = server.url, ca_file = server.ca_file, prefix = "tls:"}
    local c = admin.new{base_url = emu.url, token_store = store}
    assert(c.auth:login{email = OWNER.email, password = OWNER.password})
    c:close()
  end

  local function run_workers(trusted, server_name)
    local dir = proc.tmpdir()
    local go = dir .. "/go"
    proc.spit(go, "")
    -- nginx resolves names only with a `resolver`: the address, and the certificate's name to check
    local nginx = fleet_nginx.start{base_url = emu.url, redis = server.url:gsub("@localhost:", "@127.0.0.1:"),
                                    server_name = server_name or "localhost", prefix = "tls:", calls = 2, go = go,
                                    trusted_certificate = trusted}
    finally(function() nginx.stop() os.execute("rm -rf " .. proc.quote(dir)) end)
    return nginx.wait(), nginx.log()
  end

  it("the CA trusted: both workers use the shared login (4 calls, all 200)", function()
    login()
    local outs = run_workers(server.ca_file)
    for i, out in ipairs(outs) do assert.same({200, 200}, out.statuses, "worker " .. i) end
    assert.equal(4, #emu.requests_for("GET", "/auth/me"))
  end)

  it("another CA trusted: no tokens, the TLS failure logged once per worker, no password in the log", function()
    login()
    local outs, log = run_workers(server.other_ca_file)
    for i, out in ipairs(outs) do
      for _, status in ipairs(out.statuses) do assert.are_not.equal(200, status, "worker " .. i) end
    end
    assert.equal(0, #emu.requests_for("GET", "/auth/me"))
    local _, warned = log:gsub("could not be loaded[^\n]*TLS handshake failed", "")
    assert.equal(2, warned, log)
    assert.is_nil(log:find("w pass", 1, true))
    assert.is_nil(log:find("w%20pass", 1, true))
  end)

  it("the CA trusted, but a certificate for another name: refused", function()
    login()
    local outs, log = run_workers(server.ca_file, "redis.example.com")
    for i, out in ipairs(outs) do
      for _, status in ipairs(out.statuses) do assert.are_not.equal(200, status, "worker " .. i) end
    end
    local _, warned = log:gsub("could not be loaded[^\n]*TLS handshake failed", "")
    assert.equal(2, warned, log)
  end)
end)
