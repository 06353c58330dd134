-- The WAN harness of issue 12 (spec/support/tls_nginx.lua,
-- bench/delay_proxy.lua via spec/support/delay_proxy.lua): the access log
-- counts connections and handshakes right, HTTP/2 is offered only when asked
-- for, and the proxy passes every byte in order, adds its delay, and stops by
-- pid or when its owner dies.
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"
local tls_nginx = require "spec.support.tls_nginx"
local delay_proxy = require "spec.support.delay_proxy"

local function alive(pid)
  local stat = proc.slurp("/proc/" .. pid .. "/stat")
  return stat ~= "" and stat:match("%) (%a)") ~= "Z"
end

-- Waits up to 5 s for a process to be gone.
local function gone(pid)
  for _ = 1, 250 do
    if not alive(pid) then return true end
    os.execute("sleep 0.02")
  end
  return false
end

local function curl(args)
  local p = assert(io.popen("curl -s -o /dev/null -w '%{http_code} %{http_version}' " .. args))
  local out = p:read("*a")
  p:close()
  return out
end

describe("tls_nginx.parse_log", function()
  it("counts requests, distinct connections, and full or resumed handshakes per connection", function()
    local s = tls_nginx.parse_log(table.concat({
      "7 1 . TLSv1.3 HTTP/1.1 GET /api/v2/usage/current 200",
      "7 2 . TLSv1.3 HTTP/1.1 POST /api/v2/api-keys 201",
      "8 1 r TLSv1.3 HTTP/1.1 PATCH /api/v2/tenant/settings 200",
      "9 1 . TLSv1.3 HTTP/2.0 GET /api/v2/usage/current 200",
      "9 2 . TLSv1.3 HTTP/2.0 GET /api/v2/usage/current 200",
      "not a log line",
    }, "\n"))
    assert.are.equal(5, s.requests)
    assert.are.equal(3, s.connections)
    assert.are.equal(2, s.full)
    assert.are.equal(1, s.resumed)
    assert.are.same({["HTTP/1.1"] = 3, ["HTTP/2.0"] = 2}, s.protocols)
    assert.are.same({[200] = 4, [201] = 1}, s.statuses)
    assert.are.equal(2, s.by_connection["9"].requests)
  end)
end)

describe("the TLS nginx", function()
  local h1, h2
  setup(function()
    h1 = tls_nginx.start{emulator = true}
    h2 = tls_nginx.start{emulator = true, http2 = true}
  end)
  teardown(function()
    h1:stop()
    h2:stop()
  end)

  it("speaks HTTP/1.1 only unless http2 is asked for, and logs it", function()
    local ca = proc.quote(h1.ca)
    local m1, m2 = h1:mark(), h2:mark()
    assert.are.equal("200 1.1", curl("--http2 --cacert " .. ca .. " " .. h1.url .. "/billing/plans"))
    assert.are.equal("200 2", curl("--http2 --cacert " .. proc.quote(h2.ca) .. " " .. h2.url .. "/billing/plans"))
    assert.are.same({["HTTP/1.1"] = 1}, h1:summary(m1, 1).protocols)
    assert.are.same({["HTTP/2.0"] = 1}, h2:summary(m2, 1).protocols)
  end)

  it("serves the emulator: an SDK client with its certificate gets real answers", function()
    local mark = h1:mark()
    local c = admin.new{base_url = h1.url, api_key = emu.seed.keys.all, ca_file = h1.ca, retry = false}
    assert.are.equal(5000, assert(c.usage:current()).limit_messages)
    assert.are.equal(5000, assert(c.usage:current()).limit_messages)
    local s = h1:summary(mark, 2)
    assert.are.equal(2, s.requests)
    assert.are.equal(1, s.connections) -- GETs on one kept-alive connection
    assert.are.equal(1, s.full)
    c:close()
  end)

  it("stops by pid", function()
    local s = tls_nginx.start{emulator = true}
    local pid, prefix = s.pid, s.prefix
    assert.is_true(alive(pid))
    s:stop()
    assert.is_true(gone(pid))
    assert.is_nil(io.open(prefix .. "/nginx.conf"))
  end)
end)

describe("the delay proxy", function()
  if not delay_proxy.available() then
    pending("lua-luv is not installed for " .. delay_proxy.lua .. " (apt-get install lua-luv)")
    return
  end
  local server, proxy
  setup(function()
    server = tls_nginx.start{emulator = true}
    proxy = delay_proxy.start{target = server.port, delay_ms = 25}
  end)
  teardown(function()
    proxy:stop()
    server:stop()
  end)

  it("passes a TLS session through intact, a large request body included", function()
    local dir = proc.tmpdir()
    local numbers = {}
    for i = 1, 20000 do numbers[i] = ('"+1555%07d"'):format(i) end
    local f = assert(io.open(dir .. "/body.json", "w"))
    f:write('{"allowed_numbers":[', table.concat(numbers, ","), ']}')
    f:close()
    local mark = server:mark()
    local url = ("https://127.0.0.1:%d/api/v2/tenant/settings"):format(proxy.port)
    local out = curl(("-X PATCH --cacert %s -H 'X-API-Key: %s' -H 'Content-Type: application/json' " ..
                      "--data-binary @%s %s"):format(proc.quote(server.ca), emu.seed.keys.all,
                                                     proc.quote(dir .. "/body.json"), url))
    os.execute("rm -rf " .. proc.quote(dir))
    -- any reordered or lost byte would break TLS: nginx answered the PATCH
    local status = tonumber(out:match("^(%d+)"))
    assert.is_true(status >= 200 and status < 500, out)
    assert.are.same({[status] = 1}, server:summary(mark, 1).statuses)
  end)

  it("adds its one-way delay in each direction: a new connection's first answer takes 2 round trips", function()
    local c = admin.new{base_url = ("https://127.0.0.1:%d/api/v2"):format(proxy.port), api_key = emu.seed.keys.all,
                        ca_file = server.ca, retry = false}
    local core = require "moltflow.core"
    local t0 = core.monotime()
    assert.are.equal(5000, assert(c.usage:current()).limit_messages)
    -- TCP (emulated), the TLS 1.3 handshake, then the request: at least 3 x 50 ms
    assert.is_true(core.monotime() - t0 >= 0.15)
    c:close()
  end)

  it("stops by pid, and by itself when its owner is gone", function()
    local p = delay_proxy.start{target = server.port}
    assert.is_true(alive(p.pid))
    p:stop()
    assert.is_true(gone(p.pid))
    local owner = assert(io.popen("sleep 0.3 & echo $!")):read("*l")
    local orphan = delay_proxy.start{target = server.port, owner_pid = owner}
    assert.is_true(gone(orphan.pid))
    orphan:stop()
  end)
end)
