-- GDPR: account export (Art. 20), account deletion (Art. 17), contact erasure
-- and the gdpr:manage scope, over real HTTP against the emulator: what went
-- over the wire (the emulator's request log), what came back, what the
-- emulator holds afterwards.
local emu = require "spec.support.emulator"
local secrets = require "spec.support.secrets"
local admin = require "moltflow.admin"
local dkjson = require "dkjson"

local seed = emu.seed
local owner = seed.owner

local function key_client(key, opts)
  opts = opts or {}
  opts.api_key = key or seed.keys.all
  return emu.client(opts, {retry = false})
end

-- A client logged in as `user`, with no API key (whatever MOLTFLOW_API_KEY says).
local function login_client(user, opts)
  opts = opts or {}
  opts.login = {email = user.email, password = user.password}
  return emu.client(opts, {retry = false})
end

-- A new key of the seed owner's tenant with exactly these scopes.
local function scoped_key(name, scopes)
  local k = assert(key_client().api_keys:create{name = name, scopes = admin.array(scopes)})
  return k.raw_key
end

local function is_array(t) return getmetatable(t) == getmetatable(admin.array()) end

local function only(list)
  assert.equal(1, #list)
  return list[1]
end

describe("GDPR", function()
  before_each(function()
    local _, status = emu.reset()
    assert.equal(200, status)
  end)

  describe("c.gdpr:export()", function()
    it("sends GET /users/me/export and gets the tenant's real state, without secrets", function()
      local c = key_client()
      -- state the export must reflect: a described key, settings, a consent entry
      local made = assert(c.api_keys:create{name = "auditor", scopes = admin.array{"usage:read"},
                                            description = "for the DPO"})
      assert(c.tenant:update_settings{allowed_numbers = admin.array{"+5511988887777"}, ai_consent_enabled = true})

      local v, res = c.gdpr:export()
      assert.equal(200, res.status)
      local req = only(emu.requests_for("GET", "/users/me/export"))
      assert.equal("", req.query)
      assert.equal("", req.body)
      assert.equal(seed.keys.all, req.headers["x-api-key"])

      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", v.exported_at)
      assert.same({id = owner.id, email = owner.email, full_name = owner.full_name, role = "owner",
                   tenant_id = "t_acme", email_verified = true}, v.user)
      assert.same({id = "t_acme", name = "Acme"}, v.tenant)
      assert.equal("pro", v.subscription.plan_id)
      assert.equal(5000, v.subscription.limits.max_messages_per_month)
      assert.same({"+5511988887777"}, v.settings.allowed_numbers)
      assert.is_true(v.settings.ai_consent_enabled)
      assert.equal(800, v.usage.messages_sent)
      assert.equal(1, #v.consents)
      assert.equal("ai_processing", v.consents[1].consent_type)
      assert.equal("1.0", v.consents[1].version)

      -- every key of the tenant, none of them with a secret
      local stored = emu.control("GET", "api-keys")
      local by_id = {}
      for _, k in ipairs(v.api_keys) do by_id[k.id] = k end
      local acme = 0
      for _, k in ipairs(stored) do
        if k.tenant_id == "t_acme" then
          acme = acme + 1
          assert.is_table(by_id[k.id])
        end
      end
      assert.equal(acme, #v.api_keys)
      assert.equal("for the DPO", by_id[made.id].description)
      assert.is_nil(by_id["key_solo_all"]) -- another tenant's key
      local text = admin.json_encode(v)
      for _, k in ipairs(stored) do assert.is_nil(text:find(k.key_hash, 1, true)) end
      assert.is_nil(text:find("raw_key", 1, true))
      secrets.assert_clean(v, {all = seed.keys.all, usage = seed.keys.usage_only, made = made.raw_key,
                               password = owner.password})

      -- what the emulator does not model comes as empty arrays
      for _, name in ipairs{"sessions", "chats", "messages", "groups", "labels", "webhooks"} do
        assert.is_true(is_array(v[name]), name)
        assert.equal(0, #v[name], name)
      end
    end)

    it("works for a bearer token of any role", function()
      local v = assert(login_client(seed.member).gdpr:export())
      assert.equal(seed.member.id, v.user.id)
      assert.equal("t_acme", v.tenant.id)
    end)
  end)

  describe("c.gdpr:delete_account{current_password}", function()
    it("sends DELETE /users/me with a JSON body, then every token and key of the tenant gets 401", function()
      local stores, notified = {}, {}
      local store = {load = function() return nil end, save = function(_, t) stores[#stores + 1] = t or "nil" return true end}
      local c = login_client(owner, {token_store = store,
                                     on_tokens = function(t) notified[#notified + 1] = t or "nil" end})
      local tokens = c:tokens()
      local made = scoped_key("before-deletion", {"usage:read"})
      local other = login_client(seed.admin) -- another session of the same tenant
      local solo = key_client(seed.keys.solo_all) -- another tenant

      local v, res = c.gdpr:delete_account{current_password = owner.password}
      assert.same({detail = "Account deleted"}, v)
      assert.equal(200, res.status)
      local req = only(emu.requests_for("DELETE", "/users/me"))
      assert.equal("", req.query)
      assert.equal("application/json", req.headers["content-type"])
      assert.equal("Bearer " .. tokens.access_token, req.headers.authorization)
      assert.same({current_password = owner.password}, dkjson.decode(req.body))

      -- the client forgot its tokens, in its store and through on_tokens
      assert.is_nil(c:tokens())
      assert.equal("nil", stores[#stores])
      assert.equal("nil", notified[#notified])

      -- at once: the deleted session's tokens, another session's, every key of the tenant
      local function refused(client, call)
        local value, err = call(client)
        assert.is_nil(value)
        assert.equal(401, err.status)
      end
      local stale = admin.new{base_url = emu.url, retry = false}
      stale:set_api_key(nil)
      stale:set_tokens{access_token = tokens.access_token}
      refused(stale, function(x) return x.auth:me() end)
      refused(stale, function(x) return x:request("POST", "/auth/refresh", {auth = "none",
                                                  body = {refresh_token = tokens.refresh_token}}) end)
      other:set_tokens{access_token = other:tokens().access_token} -- no refresh: see the access token refused
      refused(other, function(x) return x.auth:me() end)
      refused(key_client(), function(x) return x.usage:current() end)
      refused(key_client(seed.keys.usage_only), function(x) return x.usage:current() end)
      refused(key_client(made), function(x) return x.usage:current() end)
      local relogin = admin.new{base_url = emu.url, retry = false}
      refused(relogin, function(x) return x.auth:login{email = owner.email, password = owner.password} end)

      -- the tenant and its rows are gone; another tenant is untouched
      for _, k in ipairs(emu.control("GET", "api-keys")) do assert.equal("t_solo", k.tenant_id) end
      assert(solo.usage:current())
    end)

    it("works with an API key holding gdpr:manage, which stops working at once", function()
      local key = scoped_key("dpo", {"gdpr:manage"})
      local c = key_client(key)
      assert(c.gdpr:export())
      assert.same({detail = "Account deleted"}, (c.gdpr:delete_account{current_password = owner.password}))
      assert.same({current_password = owner.password},
                  dkjson.decode(only(emu.requests_for("DELETE", "/users/me")).body))
      local v, err = c.gdpr:export()
      assert.is_nil(v)
      assert.equal(401, err.status)
      assert.equal("Invalid API key", err.message)
    end)

    it("a wrong password is 401, sent once, and the account and the client's tokens stay", function()
      local c = login_client(owner, {retry = true, sleep = function() error("no retry may wait") end})
      local tokens = c:tokens()
      local v, err = c.gdpr:delete_account{current_password = "wrong-" .. owner.password}
      assert.is_nil(v)
      assert.equal("auth", err.kind)
      assert.equal(401, err.status)
      assert.equal("Incorrect password", err.message)
      assert.equal(1, err.attempts)
      -- no refresh and replay: the 401 is about the password, not the token
      assert.same({401}, emu.statuses_for("DELETE", "/users/me"))
      assert.equal(0, #emu.requests_for("POST", "/auth/refresh"))
      assert.same(tokens, c:tokens())
      assert(c.auth:me())
      assert(key_client().usage:current())
    end)

    it("an admin or a member gets 403 even with the right password; nothing is deleted", function()
      for _, user in ipairs{seed.admin, seed.member} do
        local v, err = login_client(user).gdpr:delete_account{current_password = user.password}
        assert.is_nil(v)
        assert.equal(403, err.status)
        assert.equal("Insufficient role: " .. user.role, err.message)
      end
      assert(key_client().usage:current())
    end)

    it("the password is required: the SDK raises before any I/O, the emulator answers 422", function()
      local c = key_client()
      local ok, msg = pcall(c.gdpr.delete_account, c.gdpr, {})
      assert.is_false(ok)
      assert.matches("gdpr.delete_account: field 'current_password' is required", msg, 1, true)
      ok, msg = pcall(c.gdpr.delete_account, c.gdpr, {current_password = 12345678})
      assert.is_false(ok)
      assert.matches("field 'current_password' must be a string", msg, 1, true)
      assert.is_nil(msg:find("12345678", 1, true))
      assert.equal(0, #emu.requests_for("DELETE", "/users/me"))
      local _, err = c:request("DELETE", "/users/me", {body = {}})
      assert.equal(422, err.status)
      assert.equal("current_password", err.validation_errors[1].field)
      _, err = c:request("DELETE", "/users/me")
      assert.equal(422, err.status)
      assert(c.usage:current())
    end)

    it("is never retried: not on a 503, not on a dropped connection, though other DELETEs are", function()
      local waits = {}
      local c = key_client(nil, {retry = {max_attempts = 3, base_delay = 0},
                                 sleep = function(s) waits[#waits + 1] = s end})
      -- the same fault on an ordinary DELETE is retried: the policy is on
      local doomed = assert(c.api_keys:create{name = "doomed", scopes = admin.array{"usage:read"}})
      emu.fault{method = "DELETE", path = "/api-keys/" .. doomed.id, status = 503, times = 1}
      assert(c.api_keys:revoke(doomed.id))
      assert.same({503, 204}, emu.statuses_for("DELETE", "/api-keys/" .. doomed.id))
      waits = {}

      emu.fault{method = "DELETE", path = "/users/me", status = 503, times = 3}
      local v, err = c.gdpr:delete_account{current_password = owner.password}
      assert.is_nil(v)
      assert.equal(503, err.status)
      assert.equal(1, err.attempts)
      assert.same({503}, emu.statuses_for("DELETE", "/users/me"))
      emu.control("DELETE", "faults")

      emu.fault{method = "DELETE", path = "/users/me", drop = true, times = 3}
      v, err = c.gdpr:delete_account{current_password = owner.password}
      assert.is_nil(v)
      assert.equal("network", err.kind)
      assert.equal(1, err.attempts)
      assert.equal(2, #emu.requests_for("DELETE", "/users/me"))
      assert.same({}, waits)
      emu.control("DELETE", "faults")
      assert(c.usage:current()) -- the faults answered: the account is still there
    end)

    it("is never retried inside c:batch either", function()
      local c = key_client(nil, {retry = {max_attempts = 3, base_delay = 0}})
      emu.fault{method = "DELETE", path = "/users/me", status = 503, times = 3}
      local results = c:batch{{"gdpr.delete_account", {current_password = owner.password}}}
      assert.is_nil(results[1][1])
      assert.equal(503, results[1][2].status)
      assert.same({503}, emu.statuses_for("DELETE", "/users/me"))
    end)
  end)

  describe("the gdpr:manage scope", function()
    it("a key with only gdpr:manage passes the three GDPR calls' scope check, others get 403", function()
      local gdpr = key_client(scoped_key("gdpr-only", {"gdpr:manage"}))
      assert(gdpr.gdpr:contact_erasure{phone = "+5511988887777"})
      assert(gdpr.gdpr:export())
      local _, err = gdpr.users:me() -- account:manage is not gdpr:manage
      assert.equal(403, err.status)

      for _, scopes in ipairs{{"account:manage"}, {"usage:read", "settings:manage", "billing:manage"}} do
        local c = key_client(scoped_key("no-gdpr-" .. #scopes, scopes))
        for _, call in ipairs{
          function() return c.gdpr:contact_erasure{phone = "+5511988887777"} end,
          function() return c.gdpr:export() end,
          function() return c.gdpr:delete_account{current_password = owner.password} end,
        } do
          local v, e = call()
          assert.is_nil(v)
          assert.equal(403, e.status)
          assert.equal("Missing required scope: gdpr:manage", e.message)
        end
      end
      assert(key_client().usage:current()) -- nothing was deleted
    end)
  end)

  describe("contact erasure", function()
    it("accepts digits, +digits and @c.us chat ids, sent as given; one contact in any form", function()
      local c = key_client()
      local first = assert(c.gdpr:contact_erasure{phone = "972501234567"})
      assert.equal("972501234567", first.phone)
      assert.is_true(first.messages_deleted > 0)
      for _, phone in ipairs{"972501234567@c.us", "+972501234567"} do
        local v = assert(c.gdpr:contact_erasure{phone = phone, reason = "gdpr_request"})
        assert.equal(phone, v.phone)
        assert.equal(0, v.messages_deleted) -- the same contact: nothing left
      end
      local sent = {}
      for i, r in ipairs(emu.requests_for("POST", "/gdpr/contact-erasure")) do sent[i] = dkjson.decode(r.body).phone end
      assert.same({"972501234567", "972501234567@c.us", "+972501234567"}, sent)
    end)

    it("refuses other forms with 422 on body.phone", function()
      local c = key_client()
      for _, phone in ipairs{"12345", "+0123456789", "0501234567", "972501234567@g.us", "+972501234567@c.us",
                             "972-50-123-4567", "", "1234567890123456"} do
        local v, err = c.gdpr:contact_erasure{phone = phone}
        assert.is_nil(v, phone)
        assert.equal(422, err.status, phone)
        assert.equal("phone", err.validation_errors[1].field, phone)
        assert.equal("value_error.str.regex", err.validation_errors[1].type, phone)
      end
    end)
  end)

  describe("api_keys.create", function()
    it("sends an optional description, which comes back in the key object", function()
      local c = key_client()
      local k = assert(c.api_keys:create{name = "described", scopes = admin.array{"usage:read"},
                                         description = "CI for the billing team"})
      assert.same({name = "described", scopes = {"usage:read"}, description = "CI for the billing team"},
                  dkjson.decode(only(emu.requests_for("POST", "/api-keys")).body))
      assert.equal("CI for the billing team", k.description)
      assert.equal("CI for the billing team", assert(c.api_keys:get(k.id)).description)
      local plain = assert(c.api_keys:create{name = "plain", scopes = admin.array{"usage:read"}})
      assert.is_nil(plain.description)
      assert.has_error(function()
        c.api_keys:create{name = "x", scopes = admin.array{"usage:read"}, description = 1}
      end)
    end)
  end)

  describe("secrets", function()
    it("the password is in no error, hook, tostring() or raised message", function()
      local seen = {}
      local hooks = {on_request = function(info) seen[#seen + 1] = info end,
                     on_response = function(info) seen[#seen + 1] = info end}
      local wrong = "wrong-" .. owner.password
      local outputs = {}
      local function keep(...) for i = 1, select("#", ...) do outputs[#outputs + 1] = (select(i, ...)) end end

      local c = login_client(seed.member, {on_request = hooks.on_request, on_response = hooks.on_response})
      keep(c.gdpr:delete_account{current_password = seed.member.password})     -- 403
      local k = key_client(nil, hooks)
      keep(k.gdpr:delete_account{current_password = wrong})                    -- 401
      emu.fault{method = "DELETE", path = "/users/me", status = 503, body = '{"detail":"maintenance"}'}
      keep(k.gdpr:delete_account{current_password = owner.password})           -- 503
      emu.fault{method = "DELETE", path = "/users/me", drop = true}
      keep(k.gdpr:delete_account{current_password = owner.password})           -- network
      keep(k:request("DELETE", "/users/me", {body = {current_password = ""}})) -- 401 through c:request
      keep(select(2, pcall(k.gdpr.delete_account, k.gdpr, {current_password = {owner.password}})))
      keep(select(2, pcall(k.gdpr.delete_account, k.gdpr, owner.password)))
      keep(tostring(k), tostring(c), k:info())
      keep(k.gdpr:delete_account{current_password = owner.password})          -- 200

      assert.is_true(#seen >= 10)
      local clean = {password = owner.password, wrong = wrong, member = seed.member.password}
      secrets.assert_clean(outputs, clean)
      secrets.assert_clean(seen, clean)
      for _, o in ipairs(outputs) do
        if admin.is_error(o) then secrets.assert_clean(tostring(o), clean) end
      end
    end)
  end)
end)
