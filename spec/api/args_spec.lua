-- Bad input raises before any I/O (the emulator's request log does not grow),
-- naming the method and the field; path ids can never reach another path;
-- base_url and api_key defaults come from the environment.
local emu = require "spec.support.emulator"
local admin = require "moltflow.admin"

local seed = emu.seed
local KEY = seed.keys.all

local function log_size() return #emu.requests() end

local function client(opts)
  opts = opts or {}
  opts.retry = false
  return emu.client(opts, {api_key = KEY})
end

-- Calls fn(...), expects it to raise a message containing every `want`
-- (plain text), and checks that nothing reached the server.
local function raises(want, fn, ...)
  local before = log_size()
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  assert.is_string(err)
  for _, w in ipairs(type(want) == "table" and want or {want}) do
    assert.truthy(err:find(w, 1, true), ("%q not in %q"):format(w, err))
  end
  assert.equal(before, log_size())
  return err
end

-- Runs a Lua snippet in a child interpreter (os.getenv cannot be set from
-- Lua), with `env` assignments; returns its stdout.
local function child(env, code)
  local lua = require("spec.support.process").lua
  local quoted = "'" .. code:gsub("'", "'\\''") .. "'"
  local p = assert(io.popen(("env -u MOLTFLOW_API_URL -u MOLTFLOW_API_KEY %s %s -e %s 2>&1")
    :format(env, lua, quoted)))
  local out = p:read("*a")
  p:close()
  return out
end

describe("argument errors", function()
  local c
  before_each(function()
    emu.reset()
    c = client()
  end)

  it("a missing required field names the method and the field", function()
    raises({"api_keys.create", "'name'", "required"}, c.api_keys.create, c.api_keys, {scopes = {"usage:read"}})
    raises({"api_keys.create", "'scopes'", "required"}, c.api_keys.create, c.api_keys, {name = "n"})
    raises({"auth.login", "'password'"}, c.auth.login, c.auth, {email = "a@b.test"})
    raises({"billing.checkout", "'billing_cycle'"}, c.billing.checkout, c.billing, {plan_id = "pro"})
    raises({"gdpr.contact_erasure", "'phone'"}, c.gdpr.contact_erasure, c.gdpr, {})
    raises({"auth.forgot_password", "'email'"}, c.auth.forgot_password, c.auth)
  end)

  it("a wrong type names the field, the expected and the given type", function()
    raises({"api_keys.create", "'name'", "string", "number"},
           c.api_keys.create, c.api_keys, {name = 1, scopes = {"usage:read"}})
    raises({"api_keys.create", "'expires_in_days'", "integer"},
           c.api_keys.create, c.api_keys, {name = "n", scopes = {"usage:read"}, expires_in_days = 1.5})
    raises({"api_keys.create", "'expires_in_days'", "integer"},
           c.api_keys.create, c.api_keys, {name = "n", scopes = {"usage:read"}, expires_in_days = "30"})
    raises({"api_keys.create", "'scopes'", "array of strings"},
           c.api_keys.create, c.api_keys, {name = "n", scopes = {1, 2}})
    raises({"api_keys.create", "'scopes'", "array"},
           c.api_keys.create, c.api_keys, {name = "n", scopes = {read = "usage"}})
    raises({"api_keys.create", "'scopes'"}, c.api_keys.create, c.api_keys, {name = "n", scopes = "usage:read"})
    raises({"usage.history", "'months'", "integer"}, c.usage.history, c.usage, {months = "3"})
    raises({"tenant.update_settings", "'require_approval'", "boolean"},
           c.tenant.update_settings, c.tenant, {require_approval = "yes"})
    raises({"auth.login", "'password'", "string"}, c.auth.login, c.auth, {email = "a@b.test", password = 12345678})
    raises({"usage.history", "table"}, c.usage.history, c.usage, 3)
  end)

  it("an integral float is an integer and goes out as one", function()
    assert(c.usage:history{months = 2.0})
    local log = emu.requests()
    assert.equal("months=2", log[#log].query)
  end)

  it("a path id must be a non-empty string", function()
    raises({"api_keys.get", "'id'", "string", "number"}, c.api_keys.get, c.api_keys, 42)
    raises({"api_keys.get", "'id'"}, c.api_keys.get, c.api_keys)
    raises({"api_keys.revoke", "'id'"}, c.api_keys.revoke, c.api_keys, nil)
    raises({"api_keys.rotate", "'id'", "table"}, c.api_keys.rotate, c.api_keys, {id = "x"})
    raises({"api_keys.get", "'id'", "non-empty"}, c.api_keys.get, c.api_keys, "")
  end)

  it("too many arguments", function()
    raises({"api_keys.get", "too many arguments"}, c.api_keys.get, c.api_keys, "a", {}, 3)
    raises({"usage.current", "too many arguments"}, c.usage.current, c.usage, {}, {})
    raises({"api_keys.create", "too many arguments"}, c.api_keys.create, c.api_keys,
           {name = "n", scopes = {"usage:read"}}, {})
  end)

  it("a dot call (c.api_keys.create{}) says to use ':'", function()
    raises({"api_keys.create", "c.api_keys:create"}, function()
      return c.api_keys.create{name = "n", scopes = {"usage:read"}}
    end)
    raises({"usage.current", "c.usage:current"}, function() return c.usage.current() end)
  end)

  it("a body that cannot be JSON names the field", function()
    raises({"users.update_me", "'extra'", "function"}, c.users.update_me, c.users, {extra = print})
    raises({"users.update_me", "UTF-8"}, c.users.update_me, c.users, {full_name = "bad \255 byte"})
  end)

  it("c:request checks its method, path and options", function()
    raises({"request", "'method'"}, c.request, c, "TRACE", "/usage/current")
    raises({"request", "'method'"}, c.request, c, "get", "/usage/current")
    raises({"request", "start with '/'"}, c.request, c, "GET", "usage/current")
    raises({"request", "'?'"}, c.request, c, "GET", "/usage/history?months=2")
    raises({"request", "'..'"}, c.request, c, "GET", "/api-keys/../billing/plans")
    raises({"request", "'opts'"}, c.request, c, "GET", "/usage/current", "months=2")
  end)

  it("admin.new refuses unknown options and wrong types", function()
    raises({"moltflow.new", "unknown option 'base_ulr'"}, admin.new, {base_ulr = emu.url})
    raises({"moltflow.new", "'timeout'", "number"}, admin.new, {base_url = emu.url, timeout = "3"})
    raises({"moltflow.new", "'on_tokens'", "function"}, admin.new, {base_url = emu.url, on_tokens = true})
    raises({"moltflow.new", "'timeout'", "at least 0.001"}, admin.new, {base_url = emu.url, timeout = 0})
    raises({"moltflow.new", "table"}, admin.new, "https://x.test")
    raises({"moltflow.new", "'base_url'"}, admin.new, {base_url = "ftp://x.test/api/v2"})
    raises({"moltflow.new", "'base_url'", "user info"}, admin.new, {base_url = "https://u:p@x.test/api/v2"})
  end)

  it("CR, LF or NUL in a value that becomes a header is refused, the secret not echoed", function()
    local evil = "mf_SecretPart\r\nX-Evil: 1"
    for _, field in ipairs{"api_key", "access_token", "refresh_token", "user_agent"} do
      for _, bad in ipairs{"mf_SecretPart\rx", "mf_SecretPart\nx", "mf_SecretPart\0x", evil} do
        local err = raises({"moltflow.new", "'" .. field .. "'", "CR, LF or NUL"},
                           admin.new, {base_url = emu.url, [field] = bad})
        assert.is_nil(err:find("SecretPart", 1, true))
      end
    end
    local err = raises({"access_token", "CR, LF or NUL"}, c.set_tokens, c, {access_token = evil})
    assert.is_nil(err:find("SecretPart", 1, true))
    raises({"refresh_token", "CR, LF or NUL"}, c.set_tokens, c, {refresh_token = "rt\n"})
    raises({"api_key", "CR, LF or NUL"}, c.set_api_key, c, "mf_\0")
    raises({"set_tokens", "table"}, c.set_tokens, c, "token")
    -- the client still works with its old key
    assert(c.usage:current())
  end)
end)

describe("path ids", function()
  local c
  before_each(function()
    emu.reset()
    c = client()
  end)

  local function last_request()
    local log = emu.requests()
    return log[#log]
  end

  it("'/', '?', '#', spaces and '%' are percent-encoded into one segment", function()
    local cases = {
      {"a b?c#d", "/api-keys/a%20b%3Fc%23d"},
      {"%2e%2e", "/api-keys/%252e%252e"},
      {"key?x=1&y=2", "/api-keys/key%3Fx%3D1%26y%3D2"},
      {"a/b", "/api-keys/a%2Fb"},
      {"ü", "/api-keys/%C3%BC"},
    }
    for _, case in ipairs(cases) do
      local id, sent = case[1], case[2]
      local v, err = c.api_keys:get(id)
      assert.is_nil(v)
      assert.equal(sent, err.path)
      assert.equal(404, err.status)
      local req = last_request()
      assert.equal("GET", req.method)
      assert.equal("", req.query) -- '?' never started a query
      -- the server decoded exactly one segment back to the id
      assert.equal("/api/v2/api-keys/" .. id, req.path)
    end
    -- an encoded id never reaches another route's handler
    local v, err = c.api_keys:get("key_acme_usage/rotate")
    assert.is_nil(v)
    assert.equal("/api-keys/key_acme_usage%2Frotate", err.path)
    assert.not_equal(200, err.status)
  end)

  it("ids with '.' or '..' segments are refused before any I/O", function()
    -- servers decode %2F and %2E before resolving dot segments, so no
    -- encoding could keep these inside /api-keys/
    for _, id in ipairs{".", "..", "../billing/plans", "x/../key_acme_usage", "a/./b", "../..",
                        "key/.."} do
      raises({"api_keys.get", "'id'", "'..'"}, c.api_keys.get, c.api_keys, id)
      raises({"api_keys.revoke", "'id'"}, c.api_keys.revoke, c.api_keys, id)
      raises({"api_keys.rotate", "'id'"}, c.api_keys.rotate, c.api_keys, id)
    end
    assert(c.api_keys:get("key_acme_usage")) -- nothing was revoked
    -- dots inside a segment are ordinary characters
    local _, err = c.api_keys:get("a..b")
    assert.equal("/api-keys/a..b", err.path)
    assert.equal("/api/v2/api-keys/a..b", last_request().path)
    assert.equal("API key not found (requested " .. emu.url .. "/api-keys/a..b)", err.message)
  end)
end)

describe("base_url", function()
  it("plain http:// is for loopback hosts only, unless insecure_http = true", function()
    for _, url in ipairs{"http://example.com/api/v2", "http://10.0.0.1:8080/api/v2",
                         "http://127.0.0.1.evil.test/api/v2", "http://localhost.evil.test/api/v2",
                         "http://127.evil.test/api/v2", "http://[::1].evil.test/api/v2"} do
      raises({"moltflow.new", "http://", "insecure_http"}, admin.new, {base_url = url})
      local c = admin.new{base_url = url, insecure_http = true}
      assert.equal(url, c:info().base_url)
      c:close()
    end
    for _, url in ipairs{"https://example.com/api/v2", "http://127.0.0.1:1/api/v2",
                         "http://localhost:8787/api/v2", "http://[::1]:8787/api/v2", "http://localhost/api/v2"} do
      assert.equal(url, admin.new{base_url = url}:info().base_url)
    end
    assert.equal("https://x.test/api/v2", admin.new{base_url = "https://x.test/api/v2///"}:info().base_url)
  end)

  it("defaults to production, or MOLTFLOW_API_URL's host + /api/v2", function()
    local code = [[local c = require("moltflow.admin").new{} io.write(c:info().base_url)]]
    assert.equal("https://apiv2.waiflow.app/api/v2", child("", code))
    assert.equal("https://api.example.test/api/v2", child("MOLTFLOW_API_URL=https://api.example.test", code))
    assert.equal("https://api.example.test:8443/api/v2",
                 child("MOLTFLOW_API_URL=https://api.example.test:8443/", code))
    assert.equal("https://apiv2.waiflow.app/api/v2", child("MOLTFLOW_API_URL=", code))
    -- with /api/v2 already (as the emulator prints it), with or without a trailing slash
    assert.equal("https://api.example.test/api/v2", child("MOLTFLOW_API_URL=https://api.example.test/api/v2", code))
    assert.equal("https://api.example.test/api/v2", child("MOLTFLOW_API_URL=https://api.example.test/api/v2/", code))
    -- base_url the same way
    assert.equal("https://x.test/api/v2", admin.new{base_url = "https://x.test/"}:info().base_url)
    assert.equal("https://x.test/proxy", admin.new{base_url = "https://x.test/proxy/"}:info().base_url)
    -- an explicit base_url wins
    assert.equal("https://mine.test/api/v2", child("MOLTFLOW_API_URL=https://api.example.test",
      [[io.write(require("moltflow.admin").new{base_url = "https://mine.test/api/v2"}:info().base_url)]]))
  end)

  it("admin.base_url(url) is the base URL admin.new would use, by the same rules", function()
    local code = [[local admin = require "moltflow.admin"
      io.write(admin.base_url(), " ", admin.base_url("https://x.test/"), " ", admin.base_url("https://x.test/proxy/"),
               " ", admin.new{}:info().base_url)]]
    assert.equal("https://apiv2.waiflow.app/api/v2 https://x.test/api/v2 https://x.test/proxy "
                 .. "https://apiv2.waiflow.app/api/v2", child("", code))
    assert.equal("https://api.example.test/api/v2 https://x.test/api/v2 https://x.test/proxy "
                 .. "https://api.example.test/api/v2", child("MOLTFLOW_API_URL=https://api.example.test/", code))
    assert.equal("https://apiv2.waiflow.app/api/v2", child("MOLTFLOW_API_URL=",
                                                           [[io.write(require("moltflow.admin").base_url())]]))
    raises({"moltflow.base_url", "'url'"}, admin.base_url, 42)
  end)

  it("MOLTFLOW_API_KEY is the default api_key, sent as X-API-Key", function()
    emu.reset()
    local code = [[
      local admin = require "moltflow.admin"
      local c = admin.new{base_url = os.getenv("EMU_URL"), retry = false}
      local v, err = c.usage:current()
      io.write(v and "ok" or tostring(err))]]
    local origin = emu.url:gsub("/api/v2$", "")
    local out = child(("EMU_URL=%s MOLTFLOW_API_KEY=%s"):format(emu.url, seed.keys.usage_only), code)
    assert.equal("ok", out)
    local log = emu.requests()
    assert.equal(seed.keys.usage_only, log[#log].headers["x-api-key"])
    -- empty means none
    out = child(("EMU_URL=%s MOLTFLOW_API_KEY="):format(emu.url), code)
    assert.equal("moltflow: auth GET /usage/current: no credentials: log in or set an API key", out)
    -- MOLTFLOW_API_URL is a host: the SDK adds /api/v2
    out = child(("MOLTFLOW_API_URL=%s MOLTFLOW_API_KEY=%s"):format(origin, KEY), [[
      local v, err = require("moltflow.admin").new{retry = false}.usage:current()
      io.write(v and "ok" or tostring(err))]])
    assert.equal("ok", out)
    assert.equal("/api/v2/usage/current", emu.requests()[#emu.requests()].path)
    -- the URL the emulator prints, /api/v2 included, exported as it is
    out = child(("MOLTFLOW_API_URL=%s MOLTFLOW_API_KEY=%s"):format(emu.url, KEY), [[
      local v, err = require("moltflow.admin").new{retry = false}.usage:current()
      io.write(v and "ok" or tostring(err))]])
    assert.equal("ok", out)
    assert.equal("/api/v2/usage/current", emu.requests()[#emu.requests()].path)
  end)
end)
