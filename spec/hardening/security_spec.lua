-- Security guarantees: TLS verification on by default, plain http only to
-- loopback, no header injection, and secrets never in errors, tostring(),
-- hooks or logs.
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"

local tls_nginx = require "spec.support.tls_nginx"

-- A private HTTPS nginx with a fresh self-signed certificate for 127.0.0.1,
-- proxying to the emulator. Stopped when the Lua state closes.
local tls = {}
function tls.start()
  tls.server = tls.server or tls_nginx.start{upstream = emu.url}
  tls.url, tls.ca = tls.server.url, tls.server.ca
  return tls.url
end

describe("TLS", function()
  setup(function() tls.start() end)

  it("is verified by default: a self-signed certificate is refused", function()
    -- the system bundle takes long to load under valgrind: only the certificate may decide
    local c = admin.new{base_url = tls.url, api_key = emu.seed.keys.all, retry = false,
                        connect_timeout = 120, timeout = 120}
    local v, err = c.usage:current()
    assert.is_nil(v)
    assert.are.equal("network", err.kind)
    assert.matches("certificate", err.message)
  end)

  it("accepts the certificate named by ca_file", function()
    emu.reset()
    local c = admin.new{base_url = tls.url, api_key = emu.seed.keys.all, ca_file = tls.ca, retry = false}
    local v = assert(c.usage:current())
    assert.are.equal(5000, v.limit_messages)
    -- and on the multi handle too
    local v2 = assert(c.billing:plans())
    assert.is_table(v2.plans)
  end)

  it("a ca_file that does not match is refused", function()
    -- the system bundle takes long to load under valgrind: only the certificate may decide
    local c = admin.new{base_url = tls.url, api_key = emu.seed.keys.all, retry = false,
                        ca_file = "/etc/ssl/certs/ca-certificates.crt", connect_timeout = 120, timeout = 120}
    local v, err = c.usage:current()
    assert.is_nil(v)
    assert.are.equal("network", err.kind)
  end)
end)

describe("plain http", function()
  it("is refused to a host that is not loopback, pointing to https", function()
    for _, url in ipairs{"http://api.example.test/api/v2", "http://10.0.0.1:8080/api/v2",
                         "http://127.0.0.1.evil.test/api/v2", "http://localhost.evil.test/api/v2"} do
      local ok, msg = pcall(admin.new, {base_url = url})
      assert.is_false(ok, url)
      assert.matches("use https://", msg)
    end
  end)

  it("is allowed to loopback, and elsewhere with insecure_http = true", function()
    assert.is_table(admin.new{base_url = "http://127.0.0.1:1/api/v2"})
    assert.is_table(admin.new{base_url = "http://localhost:1/api/v2"})
    assert.is_table(admin.new{base_url = "http://[::1]:1/api/v2"})
    assert.is_table(admin.new{base_url = "http://api.example.test/api/v2", insecure_http = true})
  end)

  it("refuses user info in the URL", function()
    assert.has_error(function() admin.new{base_url = "https://user:pw@api.example.test/api/v2"} end)
  end)
end)

describe("header values", function()
  local bad = {"a\rb", "a\nb", "a\0b", "key\r\nX-Injected: 1"}

  it("with CR, LF or NUL are refused in every option that becomes a header", function()
    for _, v in ipairs(bad) do
      for _, field in ipairs{"api_key", "access_token", "refresh_token", "user_agent"} do
        local ok, msg = pcall(admin.new, {base_url = emu.url, [field] = v})
        assert.is_false(ok, field)
        assert.matches("CR, LF or NUL", msg)
        assert.is_nil(msg:find(v, 1, true))
      end
    end
  end)

  it("with CR, LF or NUL are refused by set_api_key and set_tokens", function()
    local c = admin.new{base_url = emu.url}
    for _, v in ipairs(bad) do
      assert.has_error(function() c:set_api_key(v) end)
      assert.has_error(function() c:set_tokens{access_token = v} end)
      assert.has_error(function() c:set_tokens{access_token = "a.b.c", refresh_token = v} end)
    end
  end)

  it("never reach the wire through path parameters or queries", function()
    emu.reset()
    local c = admin.new{base_url = emu.url, api_key = emu.seed.keys.all, retry = false}
    local v, err = c.api_keys:get("x\r\nX-Injected: 1")
    assert.is_nil(v)
    assert.are.equal(404, err.status)
    v, err = c:request("GET", "/usage/history", {query = {months = "1\r\nX-Injected: 1"}})
    assert.is_nil(v)
    assert.are.equal(422, err.status) -- the value arrived whole, as a bad query value
    for _, r in ipairs(emu.requests()) do
      assert.is_nil(r.headers["x-injected"])
    end
    assert.has_error(function() c:request("GET", "/usage/current\r\nX-Injected: 1") end)
  end)
end)

describe("secrets", function()
  local assert_clean = require("spec.support.secrets").assert_clean

  it("a refresh answer without access_token is a decode error naming no token", function()
    emu.reset()
    local events = {}
    local function record(info) events[#events + 1] = info end
    local c = admin.new{base_url = emu.url, retry = false, timeout = 1, on_request = record, on_response = record}
    local owner = emu.seed.owner
    local login = assert(c.auth:login{email = owner.email, password = owner.password})
    emu.fault{method = "POST", path = "/auth/refresh", status = 200, body = '{"token_type":"bearer"}'}
    local v, err = c.auth:refresh()
    assert.is_nil(v)
    assert.equal("decode", err.kind)
    assert.equal(200, err.status)
    assert.equal("the refresh answer holds no access_token", err.message)
    assert.same({200}, emu.statuses_for("POST", "/auth/refresh"))
    local secrets = {refresh_token = login.refresh_token, access_token = login.access_token,
                     password = owner.password}
    assert_clean({err, tostring(err), events, tostring(c)}, secrets)
  end)

  it("never appear in errors, tostring(client), tostring(err) or hooks", function()
    emu.reset()
    local seen = {}
    local hooks = {
      on_request = function(info) seen[#seen + 1] = info end,
      on_response = function(info) seen[#seen + 1] = info end,
    }
    local function client(opts)
      local o = {base_url = emu.url, retry = false, timeout = 1}
      for k, v in pairs(hooks) do o[k] = v end
      for k, v in pairs(opts) do o[k] = v end
      return admin.new(o)
    end
    local owner = emu.seed.owner
    local secrets = {password = owner.password, api_key = emu.seed.keys.all}
    local outputs = {}
    local function keep(...) for i = 1, select("#", ...) do outputs[#outputs + 1] = (select(i, ...)) end end

    -- logging in: a wrong password (it must not be echoed), then the right one
    local c = client{}
    keep(c.auth:login{email = owner.email, password = "wrong-" .. owner.password})
    secrets.wrong_password = "wrong-" .. owner.password
    local login = assert(c.auth:login{email = owner.email, password = owner.password})
    secrets.access_token, secrets.refresh_token = login.access_token, login.refresh_token
    keep(tostring(c), c:info())

    -- a bearer client and a key client meeting errors of every kind
    local b = client{access_token = login.access_token, refresh_token = login.refresh_token}
    local k = client{api_key = emu.seed.keys.all}
    for _, x in ipairs{b, k} do
      keep(tostring(x), x:info())
      keep(x.api_keys:create{name = "", scopes = {"nope"}})            -- 422
      keep(x.api_keys:get("key_missing"))                              -- 404
      emu.fault{path = "/usage/current", malformed = true}
      keep(x.usage:current())                                          -- decode
      emu.fault{path = "/usage/current", drop = true}
      keep(x.usage:current())                                          -- network
      emu.fault{path = "/usage/current", delay = 2}
      keep(x.usage:current())                                          -- timeout
      emu.fault{path = "/usage/current", status = 500, body = '{"detail":"boom"}'}
      keep(x.usage:current())                                          -- http
    end
    keep(b.auth:set_password{password = "short"})                      -- 422 on a secret field
    secrets.short = "short-secret-value"
    keep(b.auth:set_password{password = secrets.short, extra = 1})
    -- argument errors raise before any I/O: their messages name fields, never values
    for _, f in ipairs{
      function() return k.auth:login{email = owner.email, password = 12345} end,
      function() return k.auth:reset_password{token = owner.password} end,
      function() return k.api_keys:create{name = owner.password, scopes = "x"} end,
    } do
      local ok, msg = pcall(f)
      assert.is_false(ok)
      keep(msg)
    end
    -- a new raw key, shown once in the value, never in a hook or an error
    local created = assert(k.api_keys:create{name = "leak-check", scopes = {"usage:read"}})
    secrets.raw_key = created.raw_key
    keep(k.api_keys:create{name = "leak-check", scopes = {"usage:read"}})   -- 409

    -- a unauthorised token-refresh path: an expired token, a spent refresh token
    emu.advance(1801)
    keep(b.usage:current())
    keep(tostring(b))

    assert.is_true(#seen > 20)
    assert_clean(outputs, secrets)
    assert_clean(seen, secrets)
    for _, o in ipairs(outputs) do
      if admin.is_error(o) then assert_clean(tostring(o), secrets) end
    end
  end)

  it("tostring(client) says which credentials are held, not their values", function()
    local c = admin.new{base_url = emu.url, api_key = emu.seed.keys.all}
    local s = tostring(c)
    assert.matches("api key", s)
    assert.is_nil(s:find(emu.seed.keys.all, 1, true))
    c:close()
    assert.matches("closed", tostring(c))
  end)
end)

describe("secrets in errors", function()
  local raw = require "spec.support.raw_server"

  local function strings(v, out, seen)
    out, seen = out or {}, seen or {}
    if type(v) == "table" and not seen[v] then
      seen[v] = true
      for k, x in pairs(v) do strings(k, out, seen); strings(x, out, seen) end
    elseif v ~= nil then
      out[#out + 1] = tostring(v)
    end
    return table.concat(out, "\n")
  end

  it("query values named like secrets are redacted in err.path and tostring(err)", function()
    emu.reset()
    local c = admin.new{base_url = emu.url, api_key = emu.seed.keys.all, retry = false}
    local secrets = {token = "tok-7f3a9", password = "pw-1c2d3", client_secret = "cs-99e1",
                     api_key = "ak-5b5b", code = "code-4242"}
    local query = {name = "visible-name"}
    for k, v in pairs(secrets) do query[k] = v end
    local v, err = c:request("GET", "/no-such-thing", {query = query})
    assert.is_nil(v)
    assert.equal(404, err.status)
    -- the server got the real values
    local sent = emu.requests()
    sent = sent[#sent].query
    for _, s in pairs(secrets) do assert.truthy(sent:find(s, 1, true)) end
    for _, text in ipairs{err.path, tostring(err), strings(err)} do
      for name, s in pairs(secrets) do
        assert.is_nil(text:find(s, 1, true), name .. " leaked: " .. text)
      end
      assert.truthy(text:find("name=visible-name", 1, true))
    end
    assert.truthy(err.path:find("token=REDACTED", 1, true))
  end)

  it("secret fields echoed by a FastAPI 422 (input, ctx) are redacted in err.detail", function()
    local c = admin.new{base_url = raw.start() .. "/api/v2", retry = false}
    local token, password = "reset-token-8c1f", "new-password-e5d2"
    local v, err = c.auth:reset_password{token = token, new_password = password}
    assert.is_nil(v)
    assert.equal(422, err.status)
    -- the raw server did echo them: the redaction is the SDK's
    assert.equal("string_too_short", err.detail[1].type)
    assert.equal("new_password", err.validation_errors[1].field)
    assert.equal(64, err.detail[1].ctx.min_length)
    local text = strings(err) .. tostring(err)
    assert.is_nil(text:find(token, 1, true), "token leaked: " .. text)
    assert.is_nil(text:find(password, 1, true), "password leaked: " .. text)
    assert.equal("REDACTED", err.detail[1].input)
    assert.equal("REDACTED", err.detail[2].input)
    assert.equal("REDACTED", err.detail[2].ctx.error)
    assert.equal("REDACTED", err.detail[3].input.new_password)
  end)
end)
