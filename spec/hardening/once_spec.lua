-- Issue 24, finding 8: an endpoint marked `once` (c.gdpr:delete_account)
-- goes out on a connection of its own under libcurl, as SECURITY.md says:
-- never on a kept-alive one (whose death would leave libcurl to resend it or
-- not), and that connection is not reused afterwards. nginx's access log
-- ($connection) tells which connection carried each request.
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"
local tls_nginx = require "spec.support.tls_nginx"

local seed = emu.seed

-- The requests nginx logged since `mark`, in order: {conn, method, uri, status}.
local function logged(server, mark, expect)
  server:summary(mark, expect) -- waits until they are all written
  local f = assert(io.open(server.log, "rb"))
  f:seek("set", mark)
  local text = f:read("*a")
  f:close()
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local conn, method, uri, status = line:match("^(%d+) %d+ %S+ %S+ %S+ (%S+) (%S+) (%d+)$")
    if conn then out[#out + 1] = {conn = conn, method = method, uri = uri, status = tonumber(status)} end
  end
  return out
end

describe("`once` under libcurl", function()
  local server
  setup(function()
    emu.start()
    server = tls_nginx.start{emulator = true} -- HTTP/1.1: a connection carries one request at a time
  end)
  teardown(function() server:stop() end)

  it("gdpr:delete_account gets a connection of its own, never reused after", function()
    local loop = admin.new_loop()
    local function client(opts)
      opts.base_url, opts.ca_file, opts.retry, opts.loop = server.url, server.ca, false, loop
      return admin.new(opts)
    end
    local c = client{}
    c:set_api_key(nil)
    local before_login = server:mark()
    assert(c.auth:login{email = seed.owner.email, password = seed.owner.password})
    -- nginx logs a request after its answer left: wait for the login's line,
    -- so that it is not taken for one of the calls below
    server:summary(before_login, 1)
    local mark = server:mark()
    assert(c.usage:current())
    assert(c.usage:current()) -- a kept-alive connection is there to be reused
    assert(c.gdpr:delete_account{current_password = seed.owner.password})
    local solo = client{api_key = seed.keys.solo_all} -- another tenant, on the same loop
    assert(solo.usage:current())
    local log = logged(server, mark, 4)
    assert.equal(4, #log)
    local get1, get2, delete, after = log[1], log[2], log[3], log[4]
    assert.equal(get1.conn, get2.conn) -- kept alive: ordinary calls reuse
    assert.same({"DELETE", "/api/v2/users/me", 200}, {delete.method, delete.uri, delete.status})
    assert.are_not.equal(get1.conn, delete.conn) -- not the kept-alive connection
    assert.are_not.equal(delete.conn, after.conn) -- and not kept for the next call
    c:close()
    solo:close()
  end)
end)
