-- The SDK inside OpenResty: one single-worker nginx serves the emulator and
-- examples/openresty (a location calling that emulator through the SDK). A
-- blocking transport would make the worker wait for itself: deadlock.
local dkjson = require "dkjson"
local http = require "spec.support.http"
local emu = require "spec.support.emulator"
local raw = require "spec.support.raw_server"

local sh = require("spec.support.process").quote

local function run(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

local root = run("realpath " .. sh(emu.root)):gsub("%s+$", "") -- the symlink below needs it absolute

-- The same nginx for every test of this file (the Lua and C of the SDK load once).
local prefix, origin
local function start()
  prefix = run("mktemp -d /tmp/moltflow-openresty.XXXXXX"):gsub("%s+$", "")
  assert(os.execute(("ln -s %s %s/openresty"):format(sh(root .. "/examples/openresty"), sh(prefix))))
  -- the example's locations, and one of this spec's for failures
  local conf = prefix .. "/server.conf"
  local f = assert(io.open(conf, "w"))
  f:write(("include %s;\n"):format(root .. "/examples/openresty/server.conf"), (([=[
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
]=]):gsub("@KEY@", emu.seed.keys.all)))
  f:close()
  local cmd = ("MOLTFLOW_EMULATOR_LUA_CPATH=%s %s --daemon --port 0 --prefix %s --no-rate-limit --quiet "
    .. "--http-conf %s --server-conf %s"):format(
    sh(root .. "/build/luajit/?.so"), sh(emu.launcher), sh(prefix),
    sh(root .. "/examples/openresty/http.conf"), sh(conf))
  local url = run(cmd):gsub("%s+$", "")
  assert(url:match("^http://"), "nginx did not start: " .. cmd)
  origin = url:gsub("/api/v2$", "")
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
  teardown(function()
    if prefix then
      run(("%s --stop --prefix %s --quiet; rm -rf %s"):format(sh(emu.launcher), sh(prefix), sh(prefix)))
    end
  end)
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
    assert.is_nil(log:match("%[error%]"), log)
  end)
end)
