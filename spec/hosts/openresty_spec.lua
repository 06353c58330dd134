-- The SDK inside OpenResty: one single-worker nginx serves the emulator and
-- examples/openresty (a location calling that emulator through the SDK). A
-- blocking transport would make the worker wait for itself: deadlock.
local dkjson = require "dkjson"
local http = require "spec.support.http"
local emu = require "spec.support.emulator"
local raw = require "spec.support.raw_server"
local keepalive = require "spec.support.keepalive_server"

local sh = require("spec.support.process").quote
local proc_slurp = require("spec.support.process").slurp

local function run(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

local root = run("realpath " .. sh(emu.root)):gsub("%s+$", "") -- the symlink below needs it absolute

-- An nginx serving the emulator, examples/openresty and `locations` (text
-- for server {}; @KEY@ stands for the seed key), with `http_extra` (text for
-- http {}) after the example's http.conf. Returns its prefix and origin.
local function launch(locations, http_extra)
  local dir = run("mktemp -d /tmp/moltflow-openresty.XXXXXX"):gsub("%s+$", "")
  assert(os.execute(("ln -s %s %s/openresty"):format(sh(root .. "/examples/openresty"), sh(dir))))
  local conf = dir .. "/server.conf"
  local f = assert(io.open(conf, "w"))
  f:write(("include %s;\n"):format(root .. "/examples/openresty/server.conf"),
          (locations:gsub("@KEY@", emu.seed.keys.all)))
  f:close()
  local http_conf = dir .. "/http.conf"
  f = assert(io.open(http_conf, "w"))
  f:write(("include %s;\n"):format(root .. "/examples/openresty/http.conf"), http_extra or "")
  f:close()
  local cmd = ("MOLTFLOW_EMULATOR_LUA_CPATH=%s %s --daemon --port 0 --prefix %s --no-rate-limit --quiet "
    .. "--http-conf %s --server-conf %s"):format(
    sh(root .. "/build/luajit/?.so"), sh(emu.launcher), sh(dir), sh(http_conf), sh(conf))
  local url = run(cmd):gsub("%s+$", "")
  assert(url:match("^http://"), "nginx did not start: " .. cmd)
  return dir, (url:gsub("/api/v2$", ""))
end

local function stop(dir)
  if dir then run(("%s --stop --prefix %s --quiet; rm -rf %s"):format(sh(emu.launcher), sh(dir), sh(dir))) end
end

-- The same nginx for every test of the first block (the Lua and C of the SDK load once).
local prefix, origin
local function start()
  -- the example's locations, and this spec's for failures
  prefix, origin = launch([=[
location = /t/errors {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local base = "http://127.0.0.1:" .. ngx.var.server_port .. "/api/v2"
        local key = "@KEY@"
        local function kinds(v, e)
            if v then return {ok = true} end
            return {kind = e.kind, status = e.status, connect_failed = e.connect_failed,
                    attempts = e.attempts, text = tostring(e)}
        end
        local out = {}
        local c = admin.new{base_url = base, api_key = key, timeout = 0.3, retry = false}
        out.timeout = kinds(c.usage:current())          -- the spec delays it by 1 s
        out.drop = kinds(c.billing:plans())              -- the spec drops it
        out.status = kinds(c.api_keys:get("key_missing"))
        local down = admin.new{base_url = "http://127.0.0.1:1/api/v2", api_key = key, retry = false}
        out.refused = kinds(down.usage:current())
        -- the Redis client on cosockets, nothing listening: the same kind
        local redis_v, redis_err = require("moltflow.redis").new{host = "127.0.0.1", port = 1, timeout = 0.5}:call("PING")
        out.redis_refused = {kind = redis_v == nil and redis_err.kind or "answered"}
        local r = admin.new{base_url = base, api_key = key, retry = {base_delay = 0.01}}
        local v, res = r.usage:history{months = 2}      -- the spec fails it twice with a 503
        out.retried = {months = v and #v.months, status = res.status}
        ngx.say(admin.json_encode(out))
    }
}
location = /t/gdpr {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local c = admin.new{base_url = "http://127.0.0.1:" .. ngx.var.server_port .. "/api/v2", api_key = "@KEY@",
                            retry = {base_delay = 0.01}}
        local v, err = c.gdpr:delete_account{current_password = ngx.var.arg_password} -- the spec fails it: 503
        local out = {failed = {status = err and err.status, attempts = err and err.attempts}}
        v, err = c.gdpr:delete_account{current_password = ngx.var.arg_password}
        out.deleted = v or {status = err.status}
        ngx.say(admin.json_encode(out))
    }
}
location = /t/raw {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local a = ngx.req.get_uri_args()
        local function call(path)
            local c = admin.new{base_url = a.origin, api_key = "@KEY@", retry = false,
                                timeout = tonumber(a.timeout) or 1,
                                max_response_bytes = tonumber(a.max) or nil}
            ngx.update_time()
            local t0 = ngx.now()
            local v, e = c:request("GET", path)
            ngx.update_time()
            return {value = v, kind = e and e.kind, message = e and e.message, elapsed = ngx.now() - t0}
        end
        -- `then`: a second client's request right after, on the same pool
        ngx.say(admin.json_encode{first = call(a.path), second = a["then"] and call(a["then"]) or nil})
    }
}
location = /t/batch {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local c = admin.new{base_url = "http://127.0.0.1:" .. ngx.var.server_port .. "/api/v2", api_key = "@KEY@"}
        local calls = {}
        for i = 1, 12 do calls[i] = {"usage.history", {months = i}} end
        calls[13] = {"api_keys.get", "key_missing"}
        local months = {}
        for i, r in ipairs(c:batch(calls, {concurrency = 4})) do
            months[i] = r[1] and #r[1].months or r[2].status
        end
        ngx.say(admin.json_encode(months))
    }
}
location = /t/pool {
    content_by_lua_block {
        -- `threads` calls at once, `rounds` times, on one client with pool_size = `size`
        local admin = require "moltflow.admin"
        local a = ngx.req.get_uri_args()
        if a.check then -- admin.new's messages for bad sizes
            local out = {}
            for _, bad in ipairs{0, 2.5, 5000, "8"} do
                local ok, err = pcall(admin.new, {base_url = a.origin, api_key = "@KEY@", pool_size = bad})
                out[#out + 1] = ok and "accepted" or tostring(err)
            end
            return ngx.say(admin.json_encode(out))
        end
        local c = admin.new{base_url = a.origin, api_key = "@KEY@", retry = false, pool_size = tonumber(a.size)}
        local failed = 0
        for round = 1, tonumber(a.rounds) do
            local threads = {}
            for i = 1, tonumber(a.threads) do
                threads[i] = ngx.thread.spawn(function()
                    return c:request("GET", ("/%s/%d/%d"):format(a.tag, round, i))
                end)
            end
            for _, t in ipairs(threads) do
                local _, v = ngx.thread.wait(t)
                if not v then failed = failed + 1 end
            end
        end
        ngx.say(admin.json_encode{failed = failed})
    }
}
]=])
end

local function get(path)
  local res, err = http.request({method = "GET", url = origin .. path})
  assert(res, err)
  return res.status, dkjson.decode(res.body)
end

local function control(method, path, body)
  local token = assert(io.open(prefix .. "/control-token")):read("*l")
  local res = assert(http.request({method = method, url = origin .. "/_emulator/" .. path,
    headers = {["Content-Type"] = "application/json", ["X-Emulator-Token"] = token},
    body = body and dkjson.encode(body)}))
  return dkjson.decode(res.body or "")
end

local function count_requests(method, path)
  local n = 0
  for _, r in ipairs(control("GET", "requests?raw=1")) do
    if r.method == method and r.path == "/api/v2" .. path then n = n + 1 end
  end
  return n
end

local describe_ngx = jit and pending or describe -- one nginx run is enough: under Lua 5.4

describe_ngx("OpenResty (examples/openresty)", function()
  setup(start)
  teardown(function() stop(prefix) end)
  before_each(function() control("POST", "reset") end)

  it("calls the emulator of the same worker through the cosocket transport", function()
    local status, body = get("/sdk/usage?i=4")
    assert.equal(200, status)
    assert.same({i = 4, tenant = "acme", months = 5, messages_sent = 800, transport = "ngx"}, body)
    status, body = get("/sdk/usage?i=7")
    assert.equal(200, status)
    assert.same({i = 7, tenant = "solo", months = 8, messages_sent = 12, transport = "ngx"}, body)
  end)

  it("answers 300 requests, 250 at a time, each with its own correct data", function()
    local out, ok = run(("seq 300 | xargs -P 250 -I{} curl -s -m 60 '%s/sdk/usage?i={}'"):format(origin))
    assert.is_truthy(ok)
    local seen, n = {}, 0
    for line in out:gmatch("[^\n]+") do
      local b = dkjson.decode(line)
      assert.is_table(b, line)
      assert.equal(b.i % 2 == 0 and "acme" or "solo", b.tenant, line)
      assert.equal(b.i % 24 + 1, b.months, line)
      assert.equal(b.tenant == "acme" and 800 or 12, b.messages_sent, line)
      assert.equal("ngx", b.transport, line)
      assert.is_nil(seen[b.i], "answered twice: " .. line)
      seen[b.i] = true
      n = n + 1
    end
    assert.equal(300, n)
    -- two SDK calls per answer reached the emulator
    assert.equal(300, count_requests("GET", "/usage/current"))
    assert.equal(300, count_requests("GET", "/usage/history"))
  end)

  it("refreshes shared tokens once for many clients at once (lua_shared_dict store)", function()
    assert.equal(200, (get("/sdk/login")))
    control("POST", "clock", {advance = 1801}) -- every access token is expired now
    local status, body = get("/sdk/me?n=20")
    assert.equal(200, status, dkjson.encode(body))
    assert.equal(20, #body.emails)
    for _, e in ipairs(body.emails) do assert.equal("owner@acme.test", e) end
    assert.equal(1, count_requests("POST", "/auth/refresh"))
    -- and the next clients start from the refreshed tokens
    status = get("/sdk/me?n=5")
    assert.equal(200, status)
    assert.equal(1, count_requests("POST", "/auth/refresh"))
  end)

  it("reports failures with the same error kinds as libcurl", function()
    control("POST", "faults", {path = "/usage/current", delay = 1})
    -- twice: a drop on a kept-alive connection is retried once on a new one, as libcurl does
    control("POST", "faults", {path = "/billing/plans", drop = true, times = 2})
    control("POST", "faults", {path = "/usage/history", status = 503, times = 2})
    local status, out = get("/t/errors")
    assert.equal(200, status)
    assert.equal("timeout", out.timeout.kind)
    assert.equal("network", out.drop.kind, dkjson.encode(out.drop))
    assert.same({"http", 404}, {out.status.kind, out.status.status})
    assert.same({"network", true}, {out.refused.kind, out.refused.connect_failed})
    assert.equal("network", out.redis_refused.kind)
    assert.same({months = 2, status = 200}, out.retried)
    assert.equal(3, count_requests("GET", "/usage/history"))
    for _, e in pairs(out) do
      assert.is_nil(e.text and e.text:find(emu.seed.keys.all, 1, true), "the key leaked into an error")
    end
  end)

  it("sends the account deletion's JSON body on DELETE through cosockets, once despite a 503", function()
    control("POST", "faults", {method = "DELETE", path = "/users/me", status = 503})
    local status, out = get("/t/gdpr?password=" .. emu.seed.owner.password)
    assert.equal(200, status)
    assert.same({failed = {status = 503, attempts = 1}, deleted = {detail = "Account deleted"}}, out)
    local sent = {}
    for _, r in ipairs(control("GET", "requests?raw=1")) do
      if r.method == "DELETE" and r.path == "/api/v2/users/me" then sent[#sent + 1] = r end
    end
    assert.equal(2, #sent)
    assert.equal("application/json", sent[2].headers["content-type"])
    assert.same({current_password = emu.seed.owner.password}, dkjson.decode(sent[2].body))
  end)

  it("runs c:batch on light threads in a handler, results in order", function()
    local status, months = get("/t/batch")
    assert.equal(200, status)
    assert.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 404}, months)
    assert.equal(12, count_requests("GET", "/usage/history"))
  end)

  -- The keep-alive server numbers its connections: what the pool kept, and what it closed.
  local function pool_run(tag, size, threads, rounds)
    local origin_ka = keepalive.start()
    local status, out = get(("/t/pool?origin=%s&tag=%s&size=%d&threads=%d&rounds=%d")
                            :format(origin_ka, tag, size, threads, rounds))
    assert.equal(200, status)
    assert.equal(0, out.failed)
    local by_round = {}
    for _, r in ipairs(keepalive.log().requests) do
      local t, round = r.path:match("^/([%w-]+)/(%d+)/%d+$")
      if t == tag then
        round = tonumber(round)
        by_round[round] = by_round[round] or {}
        by_round[round][r.conn] = true
      end
    end
    local used, new_after_first = {}, 0
    for round = 1, rounds do
      for conn in pairs(by_round[round] or {}) do
        if not used[conn] and round > 1 then new_after_first = new_after_first + 1 end
        used[conn] = true
      end
    end
    local n = 0
    for _ in pairs(used) do n = n + 1 end
    return n, new_after_first
  end

  it("keeps pool_size connections per worker: 8 calls at once reuse 8, a pool of 3 reopens the rest", function()
    local used, reopened = pool_run("pool-8", 8, 8, 4)
    assert.is_true(used <= 8, "connections: " .. used)
    assert.equal(0, reopened) -- no churn: rounds 2 to 4 ran on round 1's connections
    used, reopened = pool_run("pool-3", 3, 8, 3)
    assert.is_true(reopened >= 2 * (8 - 3) - 2, "new connections after round 1: " .. reopened)
    assert.is_true(used > 8)
  end)

  it("checks pool_size at admin.new, before any I/O", function()
    local status, out = get("/t/pool?origin=http://127.0.0.1:1&check=1")
    assert.equal(200, status)
    for i = 1, 3 do assert.matches("moltflow.new: field 'pool_size' must be an integer from 1 to 4096", out[i], 1, true) end
    assert.matches("moltflow.new: field 'pool_size' must be a number", out[4], 1, true)
  end)

  -- The raw server's misbehaving answers, through the ngx transport.
  local function raw_call(path, opts)
    opts = opts or {}
    local q = ("/t/raw?origin=%s&path=%s&timeout=%s"):format(raw.start(), path, opts.timeout or 1)
    if opts.max then q = q .. "&max=" .. opts.max end
    if opts["then"] then q = q .. "&then=" .. opts["then"] end
    local status, out = get(q)
    assert.equal(200, status)
    return out.first, out.second
  end

  -- timeout = 1: a call that hung on a held connection would end as a timeout
  it("gives each raw response of the table its documented kind", function()
    for _, case in ipairs(raw.cases) do
      local r = raw_call("/raw/" .. case.name)
      if case.kind then
        assert.equal(case.kind, r.kind, case.name .. ": " .. tostring(r.message))
      else
        assert.same(case.body, r.value, case.name .. ": " .. tostring(r.message))
      end
    end
  end)

  it("skips 103 Early Hints and never hands a leftover answer to the next caller", function()
    local first, second = raw_call("/raw/early-hints", {["then"] = "/json"})
    assert.same({early = true}, first.value)
    assert.same({ok = true}, second.value)
    first, second = raw_call("/raw/smuggled", {["then"] = "/json"})
    assert.same({ok = true}, first.value)
    assert.same({ok = true}, second.value, "the second caller got the smuggled answer")
  end)

  it("keeps timeout a deadline for the whole attempt against a trickling server", function()
    for _, path in ipairs({"/trickle", "/trickle-head"}) do
      local r = raw_call(path, {timeout = 1})
      assert.equal("timeout", r.kind, path .. ": " .. tostring(r.message))
      assert.is_true(r.elapsed < 2.5, path .. " took " .. r.elapsed .. " s")
    end
  end)

  it("bounds unframed bodies and header lines by max_response_bytes as they arrive", function()
    for _, path in ipairs({"/huge-unframed", "/huge-header"}) do
      raw.clear()
      local r = raw_call(path, {max = 1024 * 1024, timeout = 10})
      assert.equal("too_large", r.kind, path .. ": " .. tostring(r.message))
      local sent = raw.log()[1].sent
      assert.is_true(sent < 16 * 1024 * 1024, path .. ": the server got " .. sent .. " bytes out of 64 MiB")
    end
  end)

  it("logs no Lua error", function()
    local log = io.open(prefix .. "/error.log"):read("*a")
    -- The raw server closes a connection it held once another arrives or more
    -- bytes come: when the next call takes that connection from the pool just
    -- then, nginx itself logs the reset, and the transport sends the GET again
    -- on a new connection (the cases above check the results). Not a Lua error.
    log = log:gsub("[^\n]*%[error%][^\n]*recv%(%) failed %(104: Connection reset by peer%)[^\n]*\n?", "")
    assert.is_nil(log:match("%[error%]"), log)
  end)
end)

-- Issue 12 item 4 and issue 13 items 5 and 6: the cosocket transport's
-- kept-alive writes, TLS sessions and proxy, calls from phases without
-- cosockets, and Debian's lua-cjson, in an nginx of their own (it needs
-- the TLS server's CA in lua_ssl_trusted_certificate). `tls` is a TLS nginx
-- in front of the spec emulator; its access log counts connections and
-- resumed handshakes.
describe_ngx("OpenResty: kept-alive writes, TLS sessions, proxy, phases, cjson", function()
  local tls_nginx = require "spec.support.tls_nginx"
  local http_proxy = require "spec.support.http_proxy"
  local PROXY_AUTH = "agent:p@ss word"
  local dir, base, tls, proxy, untrusted, far

  setup(function()
    emu.start()
    tls = tls_nginx.start{upstream = emu.url}
    untrusted = tls_nginx.start{upstream = emu.url} -- a certificate of its own, not in lua_ssl_trusted_certificate
    proxy = http_proxy.start{auth = PROXY_AUTH}
    -- a proxy on this machine's outside address: not loopback (issue 24)
    local outside = http_proxy.outside_address()
    if outside then far = http_proxy.start{host = outside} end
    -- the proxy URL carries the credential percent-encoded, as libcurl reads it
    local proxy_url = ("http://%s@127.0.0.1:%d"):format(PROXY_AUTH:gsub("[@ ]", {["@"] = "%40", [" "] = "%20"}),
                                                       proxy.port)
    dir, base = launch(([=[
# the server drops idle kept-alive connections after 300 ms here
location /short/ {
    keepalive_timeout 300ms;
    rewrite ^/short(/.*)$ $1 break;
    content_by_lua_block { require("moltflow.emulator").content() }
}
location = /t/session {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local c = admin.new{base_url = "@TLS@", api_key = "@KEY@", retry = false}
        local failed = {}
        for i = 1, 10 do
            local calls = {
                function() return c.usage:current() end,
                function() return c.api_keys:create{name = "k" .. i, scopes = admin.array{"usage:read"}} end,
                function() return c.tenant:update_settings{require_approval = i % 2 == 0} end,
            }
            for j, call in ipairs(calls) do
                local v, err = call()
                if not v then failed[#failed + 1] = i .. "." .. j .. ": " .. tostring(err) end
            end
        end
        ngx.say(admin.json_encode({failed = failed}))
    }
}
location = /t/untrusted {
    content_by_lua_block {
        -- the sockets this worker holds (a failed handshake must not keep one until the request ends)
        local function sockets()
            local p = io.popen("ls -l /proc/" .. ngx.worker.pid() .. "/fd")
            local n = 0
            for line in p:lines() do if line:find("socket:", 1, true) then n = n + 1 end end
            p:close()
            return n
        end
        local admin = require "moltflow.admin"
        local c = admin.new{base_url = "@UNTRUSTED@", api_key = "@KEY@", retry = false}
        local before = sockets()
        local v, err = c.usage:current()
        local kept = sockets() - before
        ngx.say(admin.json_encode(v and {ok = true} or {kind = err.kind, message = err.message,
                                                       connect_failed = err.connect_failed, sockets_kept = kept}))
    }
}
location = /t/once {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local c = admin.new{base_url = "@TLS@", api_key = "@KEY@", retry = false}
        local v, err = c.gdpr:delete_account{current_password = "not-the-password"}
        ngx.say(admin.json_encode({status = err and err.status, kind = err and err.kind}))
    }
}
location = /t/writes {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local a = ngx.req.get_uri_args()
        local c = admin.new{base_url = "http://127.0.0.1:" .. ngx.var.server_port .. (a.short and "/short" or "")
                                       .. "/api/v2", api_key = "@KEY@", retry = false}
        local function call(f)
            local v, err = f()
            return v and {ok = true} or {kind = err.kind, message = err.message}
        end
        local out = {}
        out.warm = call(function() return c.usage:current() end)
        out.first = call(function() return c.api_keys:create{name = "w1", scopes = admin.array{"usage:read"}} end)
        if a.pause then ngx.sleep(tonumber(a.pause)) end
        out.second = call(function() return c.api_keys:create{name = "w2", scopes = admin.array{"usage:read"}} end)
        ngx.say(admin.json_encode(out))
    }
}
location = /t/proxy {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local out = {}
        local bases = {http = "http://127.0.0.1:" .. ngx.var.server_port .. "/api/v2", https = "@TLS@"}
        for _, scheme in ipairs({"http", "https"}) do
            local c = admin.new{base_url = bases[scheme], api_key = "@KEY@", retry = false, proxy = "@PROXY@"}
            local v, err = c.usage:current()
            local v2, err2 = c.tenant:update_settings{require_approval = true}
            out[scheme] = {get = v and v.messages_sent or tostring(err),
                           patch = v2 and v2.require_approval or tostring(err2)}
        end
        local function refused(opts)
            opts.base_url, opts.api_key = "@TLS@", "@KEY@"
            local ok, err = pcall(admin.new, opts)
            return ok and "accepted" or err
        end
        -- plain http through a proxy that is not on loopback: refused before
        -- anything is sent; https through it: TLS end to end, allowed
        if "@FAR@" ~= "" then
            out.far = {}
            for _, scheme in ipairs({"http", "https"}) do
                local c = admin.new{base_url = bases[scheme], api_key = "@KEY@", retry = false, proxy = "@FAR@"}
                local v, err = c.usage:current()
                out.far[scheme] = v and v.messages_sent or {kind = err.kind, message = err.message}
            end
        end
        out.ca_file = refused{ca_file = "/etc/ssl/certs/ca-certificates.crt"}
        out.socks = refused{proxy = "socks5://127.0.0.1:1080"}
        ngx.say(admin.json_encode(out))
    }
}
location = /t/log-phase {
    content_by_lua_block { ngx.say("ok") }
    log_by_lua_block {
        local admin = require "moltflow.admin"
        local opts = {base_url = "@EMU@", api_key = "@KEY@", retry = false}
        if ngx.var.arg_strict == "1" then opts.blocking = false end
        local c = admin.new(opts)
        local v, err = c.usage:current()
        ngx.log(ngx.WARN, "moltflow-spec: log-phase call: ", v and "ok" or tostring(err))
    }
}
location = /t/cjson {
    content_by_lua_block {
        local cjson = require "cjson"
        local admin = require "moltflow.admin"
        local c = admin.new{base_url = "http://127.0.0.1:" .. ngx.var.server_port .. "/api/v2", api_key = "@KEY@"}
        local settings = assert(c.tenant:update_settings{allowed_numbers = admin.array()})
        assert(c.tenant:update_settings{allowed_numbers = settings.allowed_numbers})
        assert(c:request("PATCH", "/tenant/settings", {body = {allowed_numbers = settings.allowed_numbers}}))
        ngx.say(cjson.encode({
            null_shared = admin.null == cjson.null and cjson.null == ngx.null,
            version = cjson._VERSION, has_array_mt = cjson.array_mt ~= nil,
            sdk = admin.json_encode(settings.allowed_numbers),
            cjson = cjson.encode(settings.allowed_numbers),
        }))
    }
}
]=]):gsub("@(%u+)@", {TLS = tls.url, UNTRUSTED = untrusted.url, PROXY = proxy_url, EMU = emu.url,
                          FAR = far and far.url or ""}),
      -- TLS 1.3 too (0.10.23 offers only up to 1.2 by default): its tickets
      -- arrive after the handshake, which session resumption must handle
      ("lua_ssl_trusted_certificate %s;\nlua_ssl_verify_depth 2;\nlua_ssl_protocols TLSv1.2 TLSv1.3;\n"):format(tls.ca))
  end)
  teardown(function()
    stop(dir)
    if tls then tls:stop() end
    if untrusted then untrusted:stop() end
    if proxy then proxy:stop() end
    if far then far:stop() end
  end)
  before_each(function()
    emu.reset()
    local token = assert(io.open(dir .. "/control-token")):read("*l")
    local res = assert(http.request({method = "POST", url = base .. "/_emulator/reset",
                                     headers = {["X-Emulator-Token"] = token, ["Content-Type"] = "application/json"}}))
    assert.equal(200, res.status, res.body)
  end)

  local function fetch(path)
    local res = assert(http.request({method = "GET", url = base .. path}))
    assert.equal(200, res.status, res.body)
    return dkjson.decode(res.body)
  end
  -- this nginx's own emulator (the /t/writes and /t/cjson target)
  local function own_requests(method, path)
    local token = assert(io.open(dir .. "/control-token")):read("*l")
    local res = assert(http.request({method = "GET", url = base .. "/_emulator/requests?raw=1",
                                     headers = {["X-Emulator-Token"] = token}}))
    local out = {}
    for _, r in ipairs(dkjson.decode(res.body)) do
      if r.method == method and r.path == "/api/v2" .. path then out[#out + 1] = r end
    end
    return out
  end
  local function own_fault(spec)
    local token = assert(io.open(dir .. "/control-token")):read("*l")
    assert(http.request({method = "POST", url = base .. "/_emulator/faults", body = dkjson.encode(spec),
                         headers = {["X-Emulator-Token"] = token, ["Content-Type"] = "application/json"}}))
  end
  -- waits (up to 10 s) until error.log has `n` lines matching `pattern`
  local function log_lines(pattern, n)
    local found = {}
    for _ = 1, 500 do
      found = {}
      for line in proc_slurp(dir .. "/error.log"):gmatch("[^\n]+") do
        if line:find(pattern, 1, true) then found[#found + 1] = line end
      end
      if #found >= n then break end
      os.execute("sleep 0.02")
    end
    return found
  end

  it("runs 10 x (GET, POST, PATCH) over TLS on at most 2 connections, and a fresh one resumes TLS", function()
    local mark = tls:mark()
    assert.same({failed = {}}, fetch("/t/session"))
    local s = tls:summary(mark, 30)
    assert.equal(30, s.requests)
    local session_connections = s.connections
    assert.is_true(session_connections <= 2, session_connections .. " connections")
    assert.equal(10, #emu.requests_for("POST", "/api-keys"))
    assert.equal(10, #emu.requests_for("PATCH", "/tenant/settings"))
    -- a `once` endpoint takes a new connection: its handshake resumes this worker's session
    mark = tls:mark()
    local out = fetch("/t/once")
    assert.same({kind = "auth", status = 401}, out)
    s = tls:summary(mark, 1)
    assert.same({requests = 1, connections = 1, full = 0, resumed = 1},
                {requests = s.requests, connections = s.connections, full = s.full, resumed = s.resumed})
    print(("\n  ngx session over TLS: 30 requests on %d connection(s); a fresh connection resumed TLS: %s")
      :format(session_connections, tostring(s.resumed == 1)))
  end)

  it("fails a certificate it cannot verify as a network error, before sending anything", function()
    local out = fetch("/t/untrusted")
    assert.equal("network", out.kind)
    assert.matches("TLS handshake with 127%.0%.0%.1 failed", out.message)
    assert.is_true(out.connect_failed)
    assert.equal(0, out.sockets_kept) -- closed at once, not when the request ends
    assert.equal(0, #emu.requests_for("GET", "/usage/current"))
  end)

  it("never sends a POST twice when the server closes a kept-alive connection after reading it", function()
    own_fault({method = "POST", path = "/api-keys", drop = true})
    local out = fetch("/t/writes")
    assert.same({ok = true}, out.warm)
    assert.equal("network", out.first.kind, dkjson.encode(out.first))
    assert.matches("never sent twice", out.first.message)
    -- once, although the connection was a kept-alive one (the GET's)
    assert.equal(2, #own_requests("POST", "/api-keys"))
    assert.equal(444, own_requests("POST", "/api-keys")[1].status)
    assert.same({ok = true}, out.second)
  end)

  it("sends a POST once on a new connection when the server dropped the idle one", function()
    local out = fetch("/t/writes?short=1&pause=1")
    assert.same({warm = {ok = true}, first = {ok = true}, second = {ok = true}}, out)
    assert.equal(2, #own_requests("POST", "/api-keys"))
  end)

  it("honours proxy (CONNECT for https, the absolute form for http) and refuses ca_file", function()
    local out = fetch("/t/proxy")
    assert.same({get = 800, patch = true}, out.http)
    assert.same({get = 800, patch = true}, out.https)
    local lines = proxy:lines()
    local seen = {}
    for _, l in ipairs(lines) do seen[#seen + 1] = l.status .. " " .. l.line end
    assert.same({("200 GET %s/api/v2/usage/current HTTP/1.1"):format(base),
                 ("200 CONNECT 127.0.0.1:%d HTTP/1.1"):format(tls.port)}, seen)
    assert.matches("lua_ssl_trusted_certificate", out.ca_file)
    assert.matches("^moltflow.new: ", out.ca_file)
    assert.matches("only http:// proxies", out.socks)
    assert.is_nil(dkjson.encode(out):find("p@ss", 1, true))
  end)

  it("refuses plain http through a proxy that is not on loopback, before sending anything (issue 24)", function()
    if not far then return pending("this machine has no address but loopback") end
    local out = fetch("/t/proxy")
    assert.equal("network", out.far.http.kind)
    assert.matches("refusing to send plain http:// through the proxy " .. far.url:match("//(.*)$")
                   .. ", which is not loopback", out.far.http.message, 1, true)
    assert.equal(800, out.far.https) -- CONNECT: the TLS inside is end to end
    -- the http calls never reached it (each fetch of /t/proxy makes one), the https ones tunnelled
    local lines = far:lines()
    assert.is_true(#lines >= 1)
    for _, l in ipairs(lines) do assert.matches("^CONNECT ", l.line) end
  end)

  it("warns once per worker about calls from the log phase, and raises with blocking = false", function()
    for _ = 1, 3 do fetch("/t/log-phase") end
    assert.equal(3, #log_lines("moltflow-spec: log-phase call: ok", 3))
    local warnings = log_lines("blocks this worker", 1)
    assert.equal(1, #warnings)
    assert.matches("%[warn%]", warnings[1])
    assert.matches("'log' phase", warnings[1])
    assert.equal(3, #emu.requests_for("GET", "/usage/current"))
    fetch("/t/log-phase?strict=1")
    local raised = log_lines("cannot call the API in nginx's 'log' phase", 1)
    assert.equal(1, #raised)
    assert.matches("blocking = false", raised[1])
    assert.equal(3, #emu.requests_for("GET", "/usage/current")) -- nothing sent
    assert.equal(1, #log_lines("blocks this worker", 1))
  end)

  it("works with Debian's lua-cjson: shared null, decoded arrays re-sent as []", function()
    local out = fetch("/t/cjson")
    assert.same({null_shared = true, version = "2.1.0", has_array_mt = false, sdk = "[]", cjson = "{}"}, out)
    local sent = own_requests("PATCH", "/tenant/settings")
    assert.equal(3, #sent)
    for _, r in ipairs(sent) do assert.matches('"allowed_numbers":%[%]', r.body) end
  end)
end)
