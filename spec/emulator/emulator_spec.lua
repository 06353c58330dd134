-- Specs of the emulator's own rules, every one checked over real HTTP.
-- Run from the repository root: lua5.4 /usr/bin/busted spec/emulator/emulator_spec.lua
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local http = require "spec.support.http"
local process = require "spec.support.process"

local seed = emu.seed

-- One API call. opts: token | key | headers, body (table -> JSON, string -> raw).
local function call(method, path, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.token then headers["Authorization"] = "Bearer " .. opts.token end
  if opts.key then headers["X-API-Key"] = opts.key end
  local body = opts.body
  if type(body) == "table" then body = dkjson.encode(body) end
  if body then headers["Content-Type"] = "application/json" end
  local res, err = http.request({ method = method, url = emu.url .. path, headers = headers, body = body,
                                  timeout = opts.timeout })
  assert(res, err)
  if res.body ~= "" and (res.headers["content-type"] or ""):find("json") then
    res.json = dkjson.decode(res.body, 1, dkjson.null)
  end
  return res
end

local function login(user)
  local res = call("POST", "/auth/login", { body = { email = user.email, password = user.password } })
  assert.equal(200, res.status, res.body)
  return res.json
end

local function create_key(cred, body)
  return call("POST", "/api-keys", { token = cred.token, key = cred.key, body = body })
end

local function loc_of(res)
  local out = {}
  for _, d in ipairs(res.json.detail) do out[#out + 1] = table.concat(d.loc, ".") end
  return table.concat(out, ",")
end

local function sha256_hex(s)
  local p = io.popen("printf %s '" .. s .. "' | sha256sum")
  local out = p:read("*l"):match("^(%x+)")
  p:close()
  return out
end

describe("moltflow emulator", function()
  before_each(function()
    local _, status = emu.reset()
    assert.equal(200, status)
  end)

  describe("HTTP basics", function()
    it("answers JSON with a unique X-Request-Id and rate-limit headers on every response", function()
      local a = call("GET", "/billing/plans")
      local b = call("GET", "/no/such/path")
      assert.equal(200, a.status)
      assert.equal("application/json", a.headers["content-type"])
      assert.matches("^req_%x+$", a.headers["x-request-id"])
      assert.not_equal(a.headers["x-request-id"], b.headers["x-request-id"])
      for _, r in ipairs({ a, b }) do
        assert.matches("^%d+$", r.headers["x-ratelimit-remaining"])
        assert.matches("^%d+$", r.headers["x-ratelimit-reset"])
      end
    end)

    it("answers 404 Not Found for an unknown path and 405 for a wrong method", function()
      local r = call("GET", "/nope")
      assert.equal(404, r.status)
      assert.same({ detail = "Not Found" }, r.json)
      r = call("DELETE", "/billing/plans")
      assert.equal(405, r.status)
      assert.equal("GET", r.headers["allow"])
      assert.equal(404, call("GET", "/../billing/plans").status)
    end)

    it("answers 400 to a body that is not JSON", function()
      local r = call("POST", "/auth/login", { body = "email=owner@acme.test" })
      assert.equal(400, r.status)
      assert.is_string(r.json.detail)
    end)

    it("answers 422 with a FastAPI detail list for a missing body or a non-object body", function()
      local r = call("POST", "/auth/login")
      assert.equal(422, r.status)
      assert.same({ { loc = { "body" }, msg = "field required", type = "value_error.missing" } }, r.json.detail)
      for _, body in ipairs({ "[1]", "null", "3" }) do
        r = call("POST", "/auth/login", { body = body })
        assert.equal(422, r.status)
        assert.equal("type_error.dict", r.json.detail[1].type)
      end
    end)
  end)

  describe("auth", function()
    it("logs in with the seed password and returns the contract's shape", function()
      local res = login(seed.owner)
      assert.equal("bearer", res.token_type)
      assert.same({ id = "usr_acme_owner", email = "owner@acme.test", full_name = seed.owner.full_name,
                    role = "owner", tenant_id = "t_acme", email_verified = true }, res.user)
      assert.matches("^rt_", res.refresh_token)
    end)

    it("rejects a wrong password and an unknown email with 401", function()
      local r = call("POST", "/auth/login", { body = { email = seed.owner.email, password = "wrong-pass-1" } })
      assert.equal(401, r.status)
      assert.is_string(r.json.detail)
      r = call("POST", "/auth/login", { body = { email = "nobody@acme.test", password = "x" } })
      assert.equal(401, r.status)
    end)

    it("validates login fields FastAPI-style", function()
      local r = call("POST", "/auth/login", { body = { email = seed.owner.email } })
      assert.equal(422, r.status)
      assert.same({ { loc = { "body", "password" }, msg = "field required", type = "value_error.missing" } },
        r.json.detail)
    end)

    it("issues HS256 access JWTs with the contract's claims, 30 minutes long", function()
      local tok = login(seed.admin).access_token
      local h, p = tok:match("^([^.]+)%.([^.]+)%.[^.]+$")
      local function b64(s)
        s = s:gsub("-", "+"):gsub("_", "/")
        local f = io.popen("printf %s '" .. s .. string.rep("=", (4 - #s % 4) % 4) .. "' | base64 -d")
        local out = f:read("*a")
        f:close()
        return dkjson.decode(out)
      end
      assert.same({ alg = "HS256", typ = "JWT" }, b64(h))
      local c = b64(p)
      assert.equal("usr_acme_admin", c.sub)
      assert.equal("t_acme", c.tenant_id)
      assert.equal("admin", c.role)
      assert.equal("access", c.type)
      assert.equal(1800, c.exp - c.iat)
      assert.matches("^%x+$", c.jti)
    end)

    it("rejects a token whose signature was tampered with", function()
      local tok = login(seed.owner).access_token
      local last = tok:sub(-1) == "A" and "B" or "A"
      assert.equal(401, call("GET", "/auth/me", { token = tok:sub(1, -2) .. last }).status)
      assert.equal(401, call("GET", "/auth/me", { token = "not.a.jwt" }).status)
      assert.equal(401, call("GET", "/auth/me").status)
    end)

    it("expires access tokens after 30 minutes on the emulator clock", function()
      local tok = login(seed.owner).access_token
      assert.equal(200, call("GET", "/auth/me", { token = tok }).status)
      -- The clock is set from the token's own exp: iat is whole seconds, so
      -- advancing by 1799 s from "now" could already pass exp.
      local exp = require("moltflow.core").jwt_claims(tok).exp
      emu.control("POST", "clock", { set = exp - 1 })
      assert.equal(200, call("GET", "/auth/me", { token = tok }).status)
      emu.control("POST", "clock", { set = exp })
      local r = call("GET", "/auth/me", { token = tok })
      assert.equal(401, r.status)
      assert.equal("Token expired", r.json.detail)
    end)

    it("rotates refresh tokens and refuses a spent one", function()
      local s = login(seed.owner)
      local r1 = call("POST", "/auth/refresh", { body = { refresh_token = s.refresh_token } })
      assert.equal(200, r1.status)
      assert.not_equal(s.refresh_token, r1.json.refresh_token)
      assert.equal("bearer", r1.json.token_type)
      assert.equal(200, call("GET", "/auth/me", { token = r1.json.access_token }).status)
      assert.equal(401, call("POST", "/auth/refresh", { body = { refresh_token = s.refresh_token } }).status)
      assert.equal(200, call("POST", "/auth/refresh", { body = { refresh_token = r1.json.refresh_token } }).status)
    end)

    it("logout revokes the access token and the session's refresh token; API keys get 401", function()
      local s = login(seed.owner)
      local r = call("POST", "/auth/logout", { token = s.access_token })
      assert.equal(200, r.status)
      assert.is_string(r.json.detail)
      assert.equal(401, call("GET", "/auth/me", { token = s.access_token }).status)
      assert.equal(401, call("POST", "/auth/refresh", { body = { refresh_token = s.refresh_token } }).status)
      assert.equal(401, call("POST", "/auth/logout", { key = seed.keys.all }).status)
    end)

    it("logout ends every access token of its session (a refreshed one too), not another login's", function()
      local s = login(seed.owner)
      local other = login(seed.owner)
      local refreshed = call("POST", "/auth/refresh", { body = { refresh_token = s.refresh_token } }).json
      assert.equal(200, call("POST", "/auth/logout", { token = s.access_token }).status)
      assert.equal(401, call("GET", "/auth/me", { token = refreshed.access_token }).status)
      assert.equal(401, call("POST", "/auth/refresh", { body = { refresh_token = refreshed.refresh_token } }).status)
      assert.equal(200, call("GET", "/auth/me", { token = other.access_token }).status)
    end)

    it("/auth/me answers for a bearer token and for an API key (its creator)", function()
      local s = login(seed.member)
      assert.equal("member@acme.test", call("GET", "/auth/me", { token = s.access_token }).json.email)
      assert.equal("owner@acme.test", call("GET", "/auth/me", { key = seed.keys.usage_only }).json.email)
    end)
  end)

  describe("one-time tokens", function()
    local function outbox() return (emu.control("GET", "outbox")) end

    it("forgot-password answers the same for unknown emails, mailing only real users", function()
      local a = call("POST", "/auth/forgot-password", { body = { email = seed.owner.email } })
      local b = call("POST", "/auth/forgot-password", { body = { email = "ghost@acme.test" } })
      assert.equal(200, a.status)
      assert.equal(200, b.status)
      assert.same(a.json, b.json)
      local box = outbox()
      assert.equal(1, #box)
      assert.equal("owner@acme.test", box[1].to)
      assert.equal("password_reset", box[1].kind)
    end)

    it("reset-password sets a new password with a single-use token", function()
      call("POST", "/auth/forgot-password", { body = { email = seed.owner.email } })
      local token = outbox()[1].token
      local body = { token = token, new_password = "brand-new-pass" }
      assert.equal(200, call("POST", "/auth/reset-password", { body = body }).status)
      assert.equal(400, call("POST", "/auth/reset-password", { body = body }).status)
      assert.equal(401, call("POST", "/auth/login", { body = { email = seed.owner.email, password = seed.owner.password } }).status)
      assert.equal(200, call("POST", "/auth/login", { body = { email = seed.owner.email, password = "brand-new-pass" } }).status)
    end)

    it("reset tokens expire after an hour", function()
      call("POST", "/auth/forgot-password", { body = { email = seed.owner.email } })
      emu.advance(3601)
      local r = call("POST", "/auth/reset-password", { body = { token = outbox()[1].token, new_password = "brand-new-pass" } })
      assert.equal(400, r.status)
    end)

    it("magic-link verify answers like login, once; tokens expire after 15 minutes", function()
      assert.equal(401, call("POST", "/auth/login", { body = { email = seed.magic.email, password = "" } }).status)
      call("POST", "/auth/magic-link/request", { body = { email = seed.magic.email } })
      local token = outbox()[1].token
      assert.equal("magic_link", outbox()[1].kind)
      local r = call("POST", "/auth/magic-link/verify", { body = { token = token } })
      assert.equal(200, r.status)
      assert.equal("magic@acme.test", r.json.user.email)
      assert.is_string(r.json.access_token)
      assert.is_string(r.json.refresh_token)
      assert.equal(401, call("POST", "/auth/magic-link/verify", { body = { token = token } }).status)
      call("POST", "/auth/magic-link/request", { body = { email = seed.magic.email } })
      emu.advance(15 * 60 + 1)
      assert.equal(401, call("POST", "/auth/magic-link/verify", { body = { token = outbox()[2].token } }).status)
    end)

    it("setup-password and its alias set-password set the password of a bearer user", function()
      call("POST", "/auth/magic-link/request", { body = { email = seed.magic.email } })
      local s = call("POST", "/auth/magic-link/verify", { body = { token = outbox()[1].token } }).json
      assert.equal(200, call("POST", "/auth/setup-password", { token = s.access_token, body = { password = "magic-pass-1" } }).status)
      assert.equal(200, login({ email = seed.magic.email, password = "magic-pass-1" }) and 200)
      assert.equal(200, call("POST", "/auth/set-password", { token = s.access_token, body = { password = "magic-pass-2" } }).status)
      assert.equal(200, login({ email = seed.magic.email, password = "magic-pass-2" }) and 200)
      assert.equal(401, call("POST", "/auth/setup-password", { key = seed.keys.all, body = { password = "magic-pass-3" } }).status)
      assert.equal(422, call("POST", "/auth/setup-password", { token = s.access_token, body = { password = "short" } }).status)
    end)

    it("verify-email marks the user verified, single-use, 24 hours", function()
      local entry, status = emu.control("POST", "email-verification", { email = seed.member.email })
      assert.equal(201, status)
      assert.equal("email_verification", entry.kind)
      assert.equal(200, call("POST", "/auth/verify-email", { body = { token = entry.token } }).status)
      assert.equal(400, call("POST", "/auth/verify-email", { body = { token = entry.token } }).status)
      entry = emu.control("POST", "email-verification", { email = seed.member.email })
      emu.advance(24 * 3600 + 1)
      assert.equal(400, call("POST", "/auth/verify-email", { body = { token = entry.token } }).status)
    end)
  end)

  describe("users", function()
    it("PATCH /users/me changes only the given fields", function()
      local s = login(seed.admin)
      local r = call("PATCH", "/users/me", { token = s.access_token, body = { full_name = "Ada Admin" } })
      assert.equal(200, r.status)
      assert.equal("Ada Admin", r.json.full_name)
      assert.equal("admin@acme.test", r.json.email)
      assert.equal("Ada Admin", call("GET", "/users/me", { token = s.access_token }).json.full_name)
      r = call("PATCH", "/users/me", { token = s.access_token, body = { full_name = 42 } })
      assert.equal(422, r.status)
      assert.equal("body.full_name", loc_of(r))
    end)
  end)

  describe("API keys", function()
    local owner
    before_each(function() owner = { token = login(seed.owner).access_token } end)

    it("creates mf_ keys from a CSPRNG, storing only their SHA-256", function()
      local r = create_key(owner, { name = "ci", scopes = { "usage:read" } })
      assert.equal(201, r.status)
      local k = r.json
      assert.matches("^mf_[A-Za-z0-9]+$", k.raw_key)
      assert.is_true(#k.raw_key >= 35)
      assert.equal(k.raw_key:sub(1, 7), k.key_prefix)
      assert.same({ "usage:read" }, k.scopes)
      assert.equal(dkjson.null, k.expires_at)
      assert.equal(dkjson.null, k.last_used_at)
      assert.is_true(k.is_active)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", k.created_at)
      local stored
      for _, s in ipairs((emu.control("GET", "api-keys"))) do
        if s.id == k.id then stored = s end
      end
      assert.equal(sha256_hex(k.raw_key), stored.key_hash)
      assert.is_nil(stored.raw_key)
      local again = create_key(owner, { name = "ci-2", scopes = { "usage:read" } }).json
      assert.not_equal(k.raw_key, again.raw_key)
    end)

    it("lists keys as a bare array, gets one, and never shows the raw key again", function()
      local k = create_key(owner, { name = "ci", scopes = { "usage:read" } }).json
      local list = call("GET", "/api-keys", owner)
      assert.equal(200, list.status)
      assert.equal("[", list.body:sub(1, 1))
      assert.equal(3, #list.json) -- two seed keys + the new one
      local got = call("GET", "/api-keys/" .. k.id, owner)
      assert.equal(200, got.status)
      assert.equal("ci", got.json.name)
      assert.is_nil(got.json.raw_key)
      assert.is_nil(list.json[3].raw_key)
    end)

    it("lists keys oldest first, and keys of the same second by id", function()
      -- the seed keys are all made at the reset, in one second; one made 2 s later is younger
      emu.control("POST", "clock", { advance = 2 })
      local k = create_key(owner, { name = "later", scopes = { "usage:read" } }).json
      local ids = {}
      for i, key in ipairs(call("GET", "/api-keys", owner).json) do ids[i] = key.id end
      assert.same({ "key_acme_all", "key_acme_usage", k.id }, ids)
    end)

    it("the solo tenant's key list is the one seed key", function()
      local list = call("GET", "/api-keys", { key = seed.keys.solo_all })
      assert.equal(1, #list.json)
      assert.equal("key_solo_all", list.json[1].id)
    end)

    it("requires a non-empty scopes list of known strings and a name (422)", function()
      local r = create_key(owner, { name = "x" })
      assert.equal(422, r.status)
      assert.same({ { loc = { "body", "scopes" }, msg = "field required", type = "value_error.missing" } }, r.json.detail)
      r = create_key(owner, { name = "x", scopes = setmetatable({}, { __jsontype = "array" }) })
      assert.equal(422, r.status)
      assert.equal("value_error.list.min_items", r.json.detail[1].type)
      r = call("POST", "/api-keys", { token = owner.token, body = '{"name":"x","scopes":"usage:read"}' })
      assert.equal("type_error.list", r.json.detail[1].type)
      r = create_key(owner, { name = "x", scopes = { "usage:read", 5 } })
      assert.equal("body.scopes.1", loc_of(r))
      r = create_key(owner, { name = "x", scopes = { "nonsense:scope" } })
      assert.equal(422, r.status)
      r = create_key(owner, { scopes = { "usage:read" } })
      assert.equal("body.name", loc_of(r))
    end)

    it("expires_in_days must be a positive integer and is enforced on the emulator clock", function()
      for _, bad in ipairs({ 0, -1, 1.5, "7" }) do
        local r = create_key(owner, { name = "x", scopes = { "usage:read" }, expires_in_days = bad })
        assert.equal(422, r.status)
        assert.equal("body.expires_in_days", loc_of(r))
      end
      local k = create_key(owner, { name = "short", scopes = { "usage:read" }, expires_in_days = 1 }).json
      assert.matches("Z$", k.expires_at)
      assert.equal(200, call("GET", "/usage/current", { key = k.raw_key }).status)
      emu.advance(86400 + 1)
      local r = call("GET", "/usage/current", { key = k.raw_key })
      assert.equal(401, r.status)
      assert.equal("API key expired", r.json.detail)
    end)

    it("refuses a duplicate active name in a tenant with 409, but not across tenants", function()
      assert.equal(201, create_key(owner, { name = "dup", scopes = { "usage:read" } }).status)
      assert.equal(409, create_key(owner, { name = "dup", scopes = { "usage:read" } }).status)
      assert.equal(201, create_key({ key = seed.keys.solo_all }, { name = "dup", scopes = { "usage:read" } }).status)
    end)

    it("DELETE answers 204 with no body and the key stops working at once", function()
      local k = create_key(owner, { name = "gone", scopes = { "usage:read" } }).json
      assert.equal(200, call("GET", "/usage/current", { key = k.raw_key }).status)
      local r = call("DELETE", "/api-keys/" .. k.id, owner)
      assert.equal(204, r.status)
      assert.equal("", r.body)
      assert.equal(401, call("GET", "/usage/current", { key = k.raw_key }).status)
      assert.equal(404, call("GET", "/api-keys/" .. k.id, owner).status)
    end)

    it("rotate returns a new raw key and the old one stops working at once", function()
      local k = create_key(owner, { name = "rot", scopes = { "usage:read" } }).json
      local r = call("POST", "/api-keys/" .. k.id .. "/rotate", owner)
      assert.equal(200, r.status)
      assert.equal(k.id, r.json.id)
      assert.not_equal(k.raw_key, r.json.raw_key)
      assert.equal(r.json.raw_key:sub(1, 7), r.json.key_prefix)
      assert.equal(401, call("GET", "/usage/current", { key = k.raw_key }).status)
      assert.equal(200, call("GET", "/usage/current", { key = r.json.raw_key }).status)
    end)

    it("another tenant's key id is 404 for get, delete and rotate", function()
      local solo = { key = seed.keys.solo_all }
      assert.equal(404, call("GET", "/api-keys/key_acme_all", solo).status)
      assert.equal(404, call("DELETE", "/api-keys/key_acme_all", solo).status)
      assert.equal(404, call("POST", "/api-keys/key_acme_all/rotate", solo).status)
      assert.equal(200, call("GET", "/api-keys/key_acme_all", owner).status)
    end)

    it("a key cannot create a key with a scope it lacks", function()
      local limited = create_key(owner, { name = "mgr", scopes = { "account:manage", "usage:read" } }).json
      local r = create_key({ key = limited.raw_key }, { name = "x", scopes = { "billing:manage" } })
      assert.equal(403, r.status)
      assert.matches("billing:manage", r.json.detail)
      assert.equal(201, create_key({ key = limited.raw_key }, { name = "y", scopes = { "usage:read" } }).status)
      assert.equal(201, create_key({ key = seed.keys.all }, { name = "z", scopes = { "billing:manage" } }).status)
    end)

    it("updates last_used_at when a key is used", function()
      local before = call("GET", "/api-keys/key_acme_usage", owner).json
      assert.equal(dkjson.null, before.last_used_at)
      call("GET", "/usage/current", { key = seed.keys.usage_only })
      assert.matches("Z$", call("GET", "/api-keys/key_acme_usage", owner).json.last_used_at)
    end)

    it("an unknown key gets 401", function()
      assert.equal(401, call("GET", "/usage/current", { key = "mf_" .. string.rep("x", 40) }).status)
    end)

    it("a deleted key gets 401 at once", function()
      local k = create_key(owner, { name = "gone", scopes = { "usage:read" } }).json
      assert.equal(200, call("GET", "/usage/current", { key = k.raw_key }).status)
      assert.equal(204, call("DELETE", "/api-keys/" .. k.id, owner).status)
      assert.equal(401, call("GET", "/usage/current", { key = k.raw_key }).status)
    end)

    it("POST /_emulator/tenants seeds tenants with one key each, keys of their own tenant", function()
      local made, status = emu.control("POST", "tenants", { count = 3 })
      assert.equal(201, status)
      assert.equal(3, #made)
      local seen = {}
      for _, t in ipairs(made) do
        assert.matches("^mf_%w+$", t.api_key)
        assert.is_nil(seen[t.tenant_id])
        seen[t.tenant_id] = true
        local r = call("GET", "/users/me", { key = t.api_key })
        assert.equal(200, r.status, r.body)
        assert.equal(t.tenant_id, r.json.tenant_id)
      end
      for _, bad in ipairs({ 0, 1.5, "3", 100001 }) do
        local _, st = emu.control("POST", "tenants", { count = bad })
        assert.equal(422, st)
      end
      local _, st = emu.control("POST", "tenants", { count = 1, plan_id = "nope" })
      assert.equal(422, st)
    end)
  end)

  describe("scopes", function()
    local cases = {
      { "GET", "/users/me", "account:manage" }, { "GET", "/api-keys", "account:manage" },
      { "GET", "/billing/subscription", "billing:manage" }, { "POST", "/billing/portal", "billing:manage" },
      { "GET", "/tenant/settings", "settings:manage" },
      { "POST", "/gdpr/contact-erasure", "gdpr:manage" }, { "GET", "/users/me/export", "gdpr:manage" },
      { "DELETE", "/users/me", "gdpr:manage" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " " .. c[2] .. " needs " .. c[3] .. " from an API key", function()
        local r = call(c[1], c[2], { key = seed.keys.usage_only, body = c[1] == "POST" and { phone = "+5511999999999" } or nil })
        assert.equal(403, r.status)
        assert.equal("Missing required scope: " .. c[3], r.json.detail)
      end)
    end

    it("usage:read passes /usage/*, and * passes everything", function()
      assert.equal(200, call("GET", "/usage/current", { key = seed.keys.usage_only }).status)
      assert.equal(200, call("GET", "/billing/subscription", { key = seed.keys.all }).status)
      assert.equal(200, call("GET", "/tenant/settings", { key = seed.keys.all }).status)
      local k = create_key({ key = seed.keys.all }, { name = "s", scopes = { "settings:manage" } }).json
      local r = call("GET", "/usage/current", { key = k.raw_key })
      assert.equal("Missing required scope: usage:read", r.json.detail)
    end)
  end)

  describe("tenant settings", function()
    it("each seeded tenant starts with the settings docs/emulator.md gives it", function()
      -- written out here, not read from the seed module: a wrong seed must not agree with itself
      local documented = {
        [seed.keys.all] = { allowed_numbers = { "+5511999999999" }, require_approval = false,
                            ai_consent_enabled = false },
        [seed.keys.solo_all] = { allowed_numbers = {}, require_approval = false, ai_consent_enabled = false },
      }
      for key, settings in pairs(documented) do
        local r = call("GET", "/tenant/settings", { key = key })
        assert.equal(200, r.status)
        assert.same(settings, r.json)
        assert.matches('"allowed_numbers":%[', r.body) -- an empty list is [], not {}
      end
    end)

    it("a member may read but not PATCH settings (403); owner and admin may", function()
      local m = login(seed.member).access_token
      assert.equal(200, call("GET", "/tenant/settings", { token = m }).status)
      assert.equal(403, call("PATCH", "/tenant/settings", { token = m, body = { require_approval = true } }).status)
      local a = login(seed.admin).access_token
      assert.equal(200, call("PATCH", "/tenant/settings", { token = a, body = { require_approval = true } }).status)
    end)

    it("PATCH changes only the given fields", function()
      local t = login(seed.owner).access_token
      local before = call("GET", "/tenant/settings", { token = t }).json
      assert.same({ allowed_numbers = { "+5511999999999" }, require_approval = false, ai_consent_enabled = false }, before)
      local r = call("PATCH", "/tenant/settings", { token = t, body = { require_approval = true } })
      assert.same({ allowed_numbers = { "+5511999999999" }, require_approval = true, ai_consent_enabled = false }, r.json)
      r = call("PATCH", "/tenant/settings", { token = t, body = '{"allowed_numbers":[]}' })
      assert.equal('{"ai_consent_enabled":false,"allowed_numbers":[],"require_approval":true}', r.body)
    end)

    it("validates E.164 numbers and booleans with 422", function()
      local t = login(seed.owner).access_token
      local r = call("PATCH", "/tenant/settings", { token = t, body = { allowed_numbers = { "+14155550100", "0800123" } } })
      assert.equal(422, r.status)
      assert.equal("body.allowed_numbers.1", loc_of(r))
      r = call("PATCH", "/tenant/settings", { token = t, body = { require_approval = "yes" } })
      assert.equal("type_error.bool", r.json.detail[1].type)
      assert.equal(422, call("PATCH", "/tenant/settings", { token = t, body = { allowed_numbers = { "+1234567890123456" } } }).status)
      assert.equal(200, call("PATCH", "/tenant/settings", { token = t, body = { allowed_numbers = { "+1234567" } } }).status)
    end)

    it("turning ai_consent_enabled on records a consent entry with IP and User-Agent", function()
      local s = login(seed.admin)
      local r = call("PATCH", "/tenant/settings", { token = s.access_token, body = { ai_consent_enabled = true },
                                                    headers = { ["User-Agent"] = "spec-agent/1.0" } })
      assert.equal(200, r.status)
      local consents = emu.control("GET", "consents")
      assert.equal(1, #consents)
      local c = consents[1]
      assert.equal("t_acme", c.tenant_id)
      assert.equal("usr_acme_admin", c.user_id)
      assert.equal("ai_processing", c.consent_type)
      assert.equal("1.0", c.version)
      assert.equal("127.0.0.1", c.ip_address)
      assert.equal("spec-agent/1.0", c.user_agent)
      assert.matches("Z$", c.created_at)
      -- Already on: nothing new to consent to.
      call("PATCH", "/tenant/settings", { token = s.access_token, body = { ai_consent_enabled = true } })
      assert.equal(1, #emu.control("GET", "consents"))
    end)
  end)

  describe("usage", function()
    it("counts every authenticated call in api_calls for the month and the day", function()
      local first = call("GET", "/usage/current", { key = seed.keys.all }).json
      assert.equal(1, first.api_calls)
      call("GET", "/tenant/settings", { key = seed.keys.all })
      call("GET", "/usage/current", { key = seed.keys.usage_only })
      local cur = call("GET", "/usage/current", { key = seed.keys.all }).json
      assert.equal(4, cur.api_calls)
      assert.matches("^%d%d%d%d%-%d%d$", cur.period)
      assert.equal(cur.messages_sent + cur.messages_received, cur.total_messages)
      assert.equal(5000, cur.limit_messages)
      local daily = call("GET", "/usage/daily?days=2", { key = seed.keys.all }).json.days
      assert.equal(2, #daily)
      assert.equal(5, daily[2].api_calls)
      local hist = call("GET", "/usage/history?months=1", { key = seed.keys.all }).json.months
      assert.equal(6, hist[1].api_calls)
      local sub = call("GET", "/billing/subscription", { key = seed.keys.all }).json
      assert.equal(7, sub.usage.api_calls_this_month)
      -- The other tenant's counters are its own.
      assert.equal(1, call("GET", "/usage/current", { key = seed.keys.solo_all }).json.api_calls)
    end)

    it("history defaults to 6 months and daily to 30 days, oldest first", function()
      local h = call("GET", "/usage/history", { key = seed.keys.all }).json.months
      assert.equal(6, #h)
      assert.is_true(h[1].period < h[6].period)
      local d = call("GET", "/usage/daily", { key = seed.keys.all }).json.days
      assert.equal(30, #d)
      assert.matches("^%d%d%d%d%-%d%d%-%d%d$", d[30].date)
      assert.is_true(d[1].date < d[30].date)
    end)

    it("validates months (1-24) and days (1-31) as query parameters with 422", function()
      for _, q in ipairs({ "/usage/history?months=0", "/usage/history?months=25", "/usage/history?months=abc" }) do
        local r = call("GET", q, { key = seed.keys.all })
        assert.equal(422, r.status)
        assert.equal("query.months", loc_of(r))
      end
      assert.equal(200, call("GET", "/usage/history?months=24", { key = seed.keys.all }).status)
      assert.equal("query.days", loc_of(call("GET", "/usage/daily?days=32", { key = seed.keys.all })))
      assert.equal(31, #call("GET", "/usage/daily?days=31", { key = seed.keys.all }).json.days)
    end)
  end)

  describe("rate limiting", function()
    after_each(function() emu.control("POST", "config", { rate_limit_scale = 1000 }) end)

    it("limits a tenant per minute by plan, with Retry-After on 429", function()
      emu.control("POST", "config", { rate_limit_scale = 1 })
      local r
      for i = 1, 10 do
        r = call("GET", "/usage/current", { key = seed.keys.solo_all })
        assert.equal(200, r.status)
        assert.equal(tostring(10 - i), r.headers["x-ratelimit-remaining"])
      end
      r = call("GET", "/usage/current", { key = seed.keys.solo_all })
      assert.equal(429, r.status)
      local retry = tonumber(r.headers["retry-after"])
      assert.is_true(retry >= 1 and retry <= 60)
      assert.equal("0", r.headers["x-ratelimit-remaining"])
      -- Another tenant (pro: 40/min) is unaffected.
      local other = call("GET", "/usage/current", { key = seed.keys.all })
      assert.equal(200, other.status)
      assert.equal("39", other.headers["x-ratelimit-remaining"])
      -- The window is a fixed minute on the emulator clock.
      local reset = tonumber(r.headers["x-ratelimit-reset"])
      assert.equal(0, reset % 60)
      emu.advance(retry)
      assert.equal(200, call("GET", "/usage/current", { key = seed.keys.solo_all }).status)
    end)

    it("a test-scale window: rate_limit_window shortens the minute (free: 10 requests per 3 s)", function()
      local cfg = emu.control("POST", "config", { rate_limit_scale = 1, rate_limit_window = 3 })
      assert.equal(3, cfg.rate_limit_window)
      local r
      repeat r = call("GET", "/usage/current", { key = seed.keys.solo_all }) until r.status == 429
      local reset = tonumber(r.headers["x-ratelimit-reset"])
      assert.equal(0, reset % 3)
      assert.is_true(tonumber(r.headers["retry-after"]) <= 3)
      -- the emulator clock set to the next window's start (advancing it 3 s would land in the
      -- window after that whenever the real clock crossed a window's end meanwhile)
      emu.control("POST", "clock", { set = reset })
      r = call("GET", "/usage/current", { key = seed.keys.solo_all })
      assert.equal(200, r.status)
      assert.equal("9", r.headers["x-ratelimit-remaining"])
      assert.equal(reset + 3, tonumber(r.headers["x-ratelimit-reset"]))
      local _, status = emu.control("POST", "config", { rate_limit_window = 0 })
      assert.equal(422, status)
      emu.reset()
      assert.equal(60, emu.control("GET", "config").rate_limit_window)
    end)

    it("limits unauthenticated requests per client IP with the free plan's limit", function()
      emu.control("POST", "config", { rate_limit_scale = 0.2 })
      assert.equal(200, call("GET", "/billing/plans").status)
      assert.equal(200, call("POST", "/auth/login", { body = { email = seed.owner.email, password = seed.owner.password } }).status)
      assert.equal(429, call("GET", "/billing/plans").status)
      -- Authenticated calls use the tenant's own bucket.
      assert.equal(200, call("GET", "/usage/current", { key = seed.keys.all }).status)
    end)

    it("can be scaled and switched off (headers still sent)", function()
      emu.control("POST", "config", { rate_limit_scale = 0.2 })
      -- free: 10 * 0.2 = 2 requests a minute.
      assert.equal("1", call("GET", "/usage/current", { key = seed.keys.solo_all }).headers["x-ratelimit-remaining"])
      assert.equal("0", call("GET", "/usage/current", { key = seed.keys.solo_all }).headers["x-ratelimit-remaining"])
      assert.equal(429, call("GET", "/usage/current", { key = seed.keys.solo_all }).status)
      emu.control("POST", "config", { rate_limit = false })
      local r = call("GET", "/usage/current", { key = seed.keys.solo_all })
      assert.equal(200, r.status)
      assert.equal("0", r.headers["x-ratelimit-remaining"])
    end)
  end)

  describe("billing", function()
    it("lists the four plans publicly", function()
      local r = call("GET", "/billing/plans")
      assert.equal(200, r.status)
      local ids = {}
      for _, p in ipairs(r.json.plans) do
        ids[#ids + 1] = p.id
        assert.is_string(p.display_name)
        assert.is_number(p.price_monthly)
        assert.is_number(p.price_yearly)
        assert.is_table(p.limits)
      end
      assert.same({ "free", "starter", "pro", "business" }, ids)
    end)

    it("shows the subscription with limits and usage", function()
      local s = call("GET", "/billing/subscription", { key = seed.keys.all }).json
      assert.equal("pro", s.plan_id)
      assert.equal("Pro", s.display_name)
      assert.equal("active", s.status)
      assert.equal("monthly", s.billing_cycle)
      assert.matches("^%d%d%d%d%-%d%d%-01T00:00:00Z$", s.current_period_end)
      assert.equal(3, s.limits.max_sessions)
      assert.equal(1247, s.usage.messages_this_month)
    end)

    it("checkout validates billing_cycle (422) and plan_id (404), then a completed session switches the plan", function()
      local k = { key = seed.keys.all }
      local r = call("POST", "/billing/checkout", { key = k.key, body = { plan_id = "business", billing_cycle = "weekly" } })
      assert.equal(422, r.status)
      assert.equal("body.billing_cycle", loc_of(r))
      assert.equal("type_error.enum", r.json.detail[1].type)
      assert.equal(404, call("POST", "/billing/checkout", { key = k.key, body = { plan_id = "gold", billing_cycle = "monthly" } }).status)
      r = call("POST", "/billing/checkout", { key = k.key, body = { plan_id = "business", billing_cycle = "yearly" } })
      assert.equal(200, r.status)
      assert.matches("^cs_test_", r.json.session_id)
      assert.equal("https://checkout.moltflow-emulator.test/c/" .. r.json.session_id, r.json.checkout_url)
      assert.equal("pro", call("GET", "/billing/subscription", k).json.plan_id)
      local done, status = emu.control("POST", "checkout/" .. r.json.session_id .. "/complete")
      assert.equal(200, status)
      assert.equal("business", done.subscription.plan_id)
      local s = call("GET", "/billing/subscription", k).json
      assert.equal("business", s.plan_id)
      assert.equal("yearly", s.billing_cycle)
    end)

    it("portal returns a portal_url; cancel sets cancel_at_period_end and ends at period end", function()
      local k = { key = seed.keys.all }
      local r = call("POST", "/billing/portal", { key = k.key, body = { return_url = "https://example.test/back" } })
      assert.equal(200, r.status)
      assert.matches("^https://billing%.moltflow%-emulator%.test/p/", r.json.portal_url)
      r = call("POST", "/billing/cancel", k)
      assert.equal(200, r.status)
      assert.is_true(r.json.cancel_at_period_end)
      assert.equal("active", r.json.status)
      emu.advance(32 * 86400)
      local s = call("GET", "/billing/subscription", k).json
      assert.equal("canceled", s.status)
      assert.equal("free", s.plan_id)
    end)

    it("signup-checkout is public; completing it creates a tenant whose owner can use a magic link", function()
      local r = call("POST", "/billing/signup-checkout", { body = { email = "new@corp.test", plan_id = "starter", billing_cycle = "monthly" } })
      assert.equal(200, r.status)
      assert.matches("^https://checkout%.moltflow%-emulator%.test/c/cs_test_", r.json.checkout_url)
      assert.equal(409, call("POST", "/billing/signup-checkout", { body = { email = seed.owner.email, plan_id = "pro", billing_cycle = "monthly" } }).status)
      assert.equal(422, call("POST", "/billing/signup-checkout", { body = { email = "new@corp.test", plan_id = "pro" } }).status)
      local done = emu.control("POST", "checkout/" .. r.json.session_id .. "/complete")
      assert.equal("starter", done.subscription.plan_id)
      call("POST", "/auth/magic-link/request", { body = { email = "new@corp.test" } })
      local token = emu.control("GET", "outbox")[1].token
      local s = call("POST", "/auth/magic-link/verify", { body = { token = token } }).json
      assert.equal("owner", s.user.role)
      assert.equal(done.tenant_id, s.user.tenant_id)
      -- created unverified; following the link proves the mailbox
      assert.is_true(s.user.email_verified)
      assert.is_true(call("GET", "/auth/me", { token = s.access_token }).json.email_verified)
    end)

    it("a signup owner starts unverified; verify-email verifies them (seen at a password login)", function()
      local function signup(email)
        local r = call("POST", "/billing/signup-checkout", { body = { email = email, plan_id = "starter",
                                                                      billing_cycle = "monthly" } })
        emu.control("POST", "checkout/" .. r.json.session_id .. "/complete")
        -- a password, by reset (no link followed: a reset does not prove the mailbox)
        emu.control("DELETE", "outbox")
        call("POST", "/auth/forgot-password", { body = { email = email } })
        local token = emu.control("GET", "outbox")[1].token
        assert.equal(200, call("POST", "/auth/reset-password",
                               { body = { token = token, new_password = "signup-pass-1" } }).status)
      end
      local function verified(email)
        return call("POST", "/auth/login", { body = { email = email, password = "signup-pass-1" } }).json.user
          .email_verified
      end
      signup("unverified@corp.test")
      assert.is_false(verified("unverified@corp.test"))
      local entry = emu.control("POST", "email-verification", { email = "unverified@corp.test" })
      assert.equal(200, call("POST", "/auth/verify-email", { body = { token = entry.token } }).status)
      assert.is_true(verified("unverified@corp.test"))
    end)
  end)

  describe("GDPR contact erasure", function()
    it("requires a phone (digits, +digits or an @c.us id) and returns the erasure report", function()
      local r = call("POST", "/gdpr/contact-erasure", { key = seed.keys.all, body = { phone = "12345" } })
      assert.equal(422, r.status)
      assert.equal("body.phone", loc_of(r))
      assert.equal(422, call("POST", "/gdpr/contact-erasure", { key = seed.keys.all, body = { reason = "x" } }).status)
      r = call("POST", "/gdpr/contact-erasure", { key = seed.keys.all, body = { phone = "+5511999999999" } })
      assert.equal(200, r.status)
      assert.equal("+5511999999999", r.json.phone)
      assert.is_true(r.json.audit_logged)
      assert.is_true(r.json.messages_deleted > 0)
      for _, f in ipairs({ "reviews_deleted", "chats_anonymized", "group_members_anonymized" }) do
        assert.is_number(r.json[f])
      end
      assert.matches("Z$", r.json.completed_at)
      local again = call("POST", "/gdpr/contact-erasure", { key = seed.keys.all, body = { phone = "+5511999999999" } })
      assert.equal(0, again.json.messages_deleted)
    end)
  end)

  describe("control API", function()
    it("records every API request (not control ones) with headers and the raw body", function()
      emu.control("DELETE", "requests")
      call("POST", "/auth/login", { body = '{"email": "owner@acme.test", "password": "owner-pass-1"}',
                                    headers = { ["X-Trace"] = "t-1" } })
      call("GET", "/usage/history?months=3", { key = seed.keys.all })
      local log = emu.requests()
      assert.equal(2, #log)
      assert.equal("POST", log[1].method)
      assert.equal("/api/v2/auth/login", log[1].path)
      assert.equal('{"email": "owner@acme.test", "password": "owner-pass-1"}', log[1].body)
      assert.equal("t-1", log[1].headers["x-trace"])
      assert.equal(200, log[1].status)
      assert.is_false(log[1].fault)
      assert.equal("months=3", log[2].query)
      assert.equal(seed.keys.all, log[2].headers["x-api-key"])
    end)

    it("records a repeated header once, its values joined with \", \"", function()
      emu.control("DELETE", "requests")
      -- two spellings of one name: two header lines (in pairs() order)
      call("GET", "/usage/current", { key = seed.keys.all, headers = { ["X-Trace"] = "t-1", ["x-trace"] = "t-2" } })
      local log = emu.requests()
      assert.equal(1, #log)
      assert.equal(200, log[1].status)
      local values = {}
      for v in tostring(log[1].headers["x-trace"]):gmatch("[^,%s]+") do values[#values + 1] = v end
      table.sort(values)
      assert.same({ "t-1", "t-2" }, values)
      assert.matches("^t%-%d, t%-%d$", log[1].headers["x-trace"])
    end)

    it("redacts credentials and secret fields in the log unless ?raw=1 is asked", function()
      emu.control("DELETE", "requests")
      call("POST", "/auth/login", { body = '{"email": "owner@acme.test", "password": "owner-pass-1"}' })
      call("GET", "/usage/current?access_token=tok-1&months=2", { key = seed.keys.all,
                                                                  headers = { Authorization = "Bearer abc" } })
      call("POST", "/auth/refresh", { body = { refresh_token = "rt-secret", nested = { new_password = "pw-2" } } })
      local log = emu.control("GET", "requests")
      assert.equal(3, #log)
      local text = dkjson.encode(log)
      for _, secret in ipairs({ "owner-pass-1", seed.keys.all, "Bearer abc", "tok-1", "rt-secret", "pw-2" }) do
        assert.is_nil(text:find(secret, 1, true), secret .. " in the redacted log")
      end
      assert.same({ email = "owner@acme.test", password = "[redacted]" }, dkjson.decode(log[1].body))
      assert.equal("[redacted]", log[2].headers["x-api-key"])
      assert.equal("[redacted]", log[2].headers.authorization)
      assert.equal("access_token=[redacted]&months=2", log[2].query)
      assert.same({ refresh_token = "[redacted]", nested = { new_password = "[redacted]" } }, dkjson.decode(log[3].body))
      local raw = emu.requests() -- ?raw=1
      assert.equal('{"email": "owner@acme.test", "password": "owner-pass-1"}', raw[1].body)
      assert.equal(seed.keys.all, raw[2].headers["x-api-key"])
    end)

    -- A raw control request: method, path, headers (the token unless `token = false`).
    local function control_raw(method, path, headers, body)
      local h = { ["X-Emulator-Token"] = emu.token(), ["Content-Type"] = "application/json" }
      for k, v in pairs(headers or {}) do h[k] = v or nil end -- false removes a header
      local res = assert(http.request({ method = method, url = emu.url:gsub("/api/v2$", "") .. "/_emulator/" .. path,
                                        headers = h, body = body }))
      return res.status, res.body
    end

    it("requires the launcher's token on every route but /health", function()
      assert.equal(200, (control_raw("GET", "requests")))
      for _, route in ipairs({ { "GET", "requests" }, { "GET", "outbox" }, { "GET", "config" },
                               { "POST", "reset" }, { "GET", "api-keys" } }) do
        assert.equal(401, (control_raw(route[1], route[2], { ["X-Emulator-Token"] = false }, route[1] == "POST" and "{}" or nil)))
        assert.equal(401, (control_raw(route[1], route[2], { ["X-Emulator-Token"] = emu.token():sub(2) .. "0" },
                                       route[1] == "POST" and "{}" or nil)))
      end
      assert.equal(200, (control_raw("GET", "health", { ["X-Emulator-Token"] = false })))
    end)

    it("refuses other Host and Origin headers, and POSTs that are not JSON", function()
      local port = emu.url:match(":(%d+)/")
      assert.equal(403, (control_raw("GET", "requests", { Host = "evil.example:" .. port })))
      assert.equal(403, (control_raw("GET", "health", { Host = "127.0.0.1.evil.example:" .. port })))
      assert.equal(403, (control_raw("GET", "requests", { Host = "127.0.0.1:1" .. port })))
      assert.equal(200, (control_raw("GET", "requests", { Host = "localhost:" .. port })))
      assert.equal(403, (control_raw("GET", "requests", { Origin = "http://evil.example" })))
      assert.equal(200, (control_raw("GET", "requests", { Origin = "http://127.0.0.1:" .. port })))
      emu.advance(0)
      local before = emu.control("GET", "clock").offset
      assert.equal(415, (control_raw("POST", "clock", { ["Content-Type"] = "text/plain" }, '{"advance":50}')))
      assert.equal(415, (control_raw("POST", "reset", { ["Content-Type"] = false })))
      assert.equal(before, emu.control("GET", "clock").offset)
      assert.equal(200, (control_raw("POST", "clock", { ["Content-Type"] = "application/json; charset=utf-8" },
                                     '{"advance":0}')))
    end)

    it("reset restores seed data, the clock, the config and the logs", function()
      local t = login(seed.owner).access_token
      call("PATCH", "/tenant/settings", { token = t, body = { require_approval = true } })
      emu.advance(1000)
      local launch = emu.control("GET", "config")
      emu.control("POST", "config", { rate_limit = false, rate_limit_scale = 3 })
      emu.reset()
      assert.same(launch, emu.control("GET", "config"))
      assert.is_false(call("GET", "/tenant/settings", { key = seed.keys.all }).json.require_approval)
      local clock = emu.control("GET", "clock")
      assert.equal(0, clock.offset)
      assert.equal(1, #emu.requests())
    end)

    it("sets the clock absolutely", function()
      local r = emu.control("POST", "clock", { set = 2000000000 })
      assert.is_true(math.abs(r.now - 2000000000) < 1)
      assert.equal("2033-05", call("GET", "/usage/current", { key = seed.keys.all }).json.period)
    end)
  end)

  describe("faults", function()
    it("answers the next N matching requests with a status, body and Retry-After, then normally", function()
      local f, status = emu.fault({ method = "GET", path = "/billing/subscription", times = 2, status = 503,
                                    body = '{"detail":"down"}', retry_after = 3 })
      assert.equal(201, status)
      assert.equal("/billing/subscription", f.path)
      assert.equal(1, #emu.control("GET", "faults"))
      assert.equal(200, call("GET", "/billing/plans").status) -- does not match
      for _ = 1, 2 do
        local r = call("GET", "/billing/subscription", { key = seed.keys.all })
        assert.equal(503, r.status)
        assert.equal('{"detail":"down"}', r.body)
        assert.equal("3", r.headers["retry-after"])
        assert.is_string(r.headers["x-request-id"])
      end
      assert.equal(200, call("GET", "/billing/subscription", { key = seed.keys.all }).status)
      local log = emu.requests()
      assert.same({ false, true, true, false }, { log[1].fault, log[2].fault, log[3].fault, log[4].fault })
      assert.equal(503, log[2].status)
      assert.equal(0, #emu.control("GET", "faults"))
    end)

    it("a fault answering by itself leaves state untouched", function()
      emu.fault({ path = "/api-keys", method = "POST", status = 500 })
      assert.equal(500, create_key({ key = seed.keys.all }, { name = "n", scopes = { "usage:read" } }).status)
      assert.equal(2, #call("GET", "/api-keys", { key = seed.keys.all }).json)
    end)

    it("sets the content type and extra headers of an injected answer", function()
      emu.fault({ status = 502, body = "<html>bad gateway</html>", content_type = "text/html",
                  headers = { ["X-Upstream"] = "lb-1" } })
      local r = call("GET", "/billing/plans")
      assert.equal(502, r.status)
      assert.equal("text/html", r.headers["content-type"])
      assert.equal("lb-1", r.headers["x-upstream"])
      assert.equal("<html>bad gateway</html>", r.body)
    end)

    it("retry_after alone answers 429", function()
      emu.fault({ retry_after = 7 })
      local r = call("GET", "/billing/plans")
      assert.equal(429, r.status)
      assert.equal("7", r.headers["retry-after"])
    end)

    it("drops the connection without an answer", function()
      emu.fault({ path = "/billing/plans", drop = true })
      local res, err = http.request({ url = emu.url .. "/billing/plans" })
      assert.is_nil(res)
      assert.matches("closed", err)
      assert.equal(444, emu.requests()[1].status)
    end)

    it("truncates the body (Content-Length larger than what is sent)", function()
      emu.fault({ path = "/billing/plans", truncate = true })
      local res, err, partial = http.request({ url = emu.url .. "/billing/plans" })
      assert.is_nil(res)
      assert.matches("closed", err)
      assert.is_true(#partial > 0)
    end)

    it("resets mid-body (unterminated chunked body)", function()
      emu.fault({ path = "/billing/plans", reset_mid_body = true })
      local res, err = http.request({ url = emu.url .. "/billing/plans" })
      assert.is_nil(res)
      assert.matches("chunked", err)
    end)

    it("serves malformed JSON and invalid UTF-8 with 200", function()
      emu.fault({ malformed = true })
      local r = call("GET", "/billing/plans")
      assert.equal(200, r.status)
      assert.is_nil(dkjson.decode(r.body))
      emu.fault({ invalid_utf8 = true })
      r = call("GET", "/billing/plans")
      assert.equal(200, r.status)
      assert.is_nil(utf8.len(r.body))
    end)

    it("streams an oversized body of exactly N bytes", function()
      emu.fault({ oversize = 3 * 1024 * 1024 })
      local r = call("GET", "/billing/plans")
      assert.equal(3 * 1024 * 1024, #r.body)
      assert.equal(tostring(3 * 1024 * 1024), r.headers["content-length"])
    end)

    it("delays, then answers normally", function()
      emu.fault({ delay = 0.3 })
      local t0 = require("socket").gettime()
      assert.equal(200, call("GET", "/billing/plans").status)
      assert.is_true(require("socket").gettime() - t0 >= 0.3)
    end)

    it("trickles the real answer slowly, so client timeouts fire", function()
      emu.fault({ trickle = 100 })
      local res, err = http.request({ url = emu.url .. "/billing/plans", timeout = 0.3 })
      assert.is_nil(res)
      assert.matches("timeout", err)
    end)

    it("redirects with 302 and a Location", function()
      emu.fault({ redirect = "http://127.0.0.1:1/elsewhere" })
      local r = call("GET", "/billing/plans")
      assert.equal(302, r.status)
      assert.equal("http://127.0.0.1:1/elsewhere", r.headers["location"])
    end)

    it("rejects unknown fault fields and can be cleared", function()
      for _, bad in ipairs({ { stauts = 500 }, { status = "500" }, { times = 1.5 }, { delay = -1 }, { status = 42 } }) do
        local _, status = emu.fault(bad)
        assert.equal(422, status)
      end
      emu.fault({ status = 500 })
      emu.control("DELETE", "faults")
      assert.equal(200, call("GET", "/billing/plans").status)
    end)
  end)
end)

describe("bin/moltflow-emulator", function()
  local function sh(cmd)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("*a")
    local ok = p:close()
    return out, ok == true
  end
  local function read(path)
    local f = assert(io.open(path))
    local s = f:read("*a")
    f:close()
    return s
  end
  local function mode_of(path)
    return (sh("stat -c %a " .. path):gsub("%s+$", ""))
  end
  local function read_if(path)
    local f = io.open(path)
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
  end
  -- A stopped daemon may linger as a zombie until init reaps it: not alive.
  local function pid_alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return false end
    local stat = f:read("*a")
    f:close()
    return stat:match("%) (%a)") ~= "Z"
  end

  local prefix, conf_dir
  before_each(function()
    prefix = sh("mktemp -d"):gsub("%s+$", "")
    conf_dir = sh("mktemp -d"):gsub("%s+$", "")
  end)
  after_each(function()
    sh(emu.launcher .. " --stop --prefix " .. prefix .. " --quiet")
    sh("rm -rf " .. prefix .. " " .. conf_dir)
  end)

  it("--daemon prints only the base URL, writes a private nginx.conf, and --stop ends nginx", function()
    local http_conf, server_conf = conf_dir .. "/http.conf", conf_dir .. "/server.conf"
    assert(io.open(http_conf, "w")):write("lua_shared_dict spec_dict 1m;\n"):close()
    assert(io.open(server_conf, "w")):write(
      'location = /spec-extra { content_by_lua_block { ngx.say(ngx.shared.spec_dict and "dict" or "none") } }\n'):close()
    local out, ok = sh("MOLTFLOW_EMULATOR_LUA_CPATH='/opt/spec/?.so' " .. emu.launcher .. " --daemon --port 0 --prefix "
      .. prefix .. " --no-rate-limit --http-conf " .. http_conf .. " --server-conf " .. server_conf)
    assert.is_true(ok)
    local port = out:match("^http://127%.0%.0%.1:(%d+)/api/v2\n$")
    assert.is_string(port, out)
    assert.is_true(tonumber(port) >= 20000 and tonumber(port) <= 60999)

    local conf = read(prefix .. "/nginx.conf")
    assert.matches("load_module /usr/lib/nginx/modules/ndk_http_module.so;", conf, 1, true)
    assert.matches("load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;", conf, 1, true)
    assert.matches("worker_processes 1;", conf, 1, true)
    assert.matches("pid " .. prefix .. "/nginx.pid;", conf, 1, true)
    assert.matches("access_log off;", conf, 1, true)
    assert.matches("client_body_temp_path " .. prefix, conf, 1, true)
    assert.matches('lua_package_cpath "/opt/spec/?.so;;";', conf, 1, true)
    assert.matches("listen 127.0.0.1:" .. port .. ";", conf, 1, true)
    assert.is_nil(conf:find("/etc/nginx", 1, true))

    local base = "http://127.0.0.1:" .. port
    local extra = http.request({ url = base .. "/spec-extra" })
    assert.equal("dict\n", extra.body)
    assert.equal("600", mode_of(prefix .. "/control-token"))
    local token = read(prefix .. "/control-token"):gsub("%s+$", "")
    assert.matches("^%x+$", token)
    assert.equal(64, #token)
    assert.is_nil(conf:find(token, 1, true)) -- the token is read from its file, never copied
    local cfg = http.request({ url = base .. "/_emulator/config", headers = { ["X-Emulator-Token"] = token } })
    assert.equal('{"rate_limit":false,"rate_limit_scale":1,"rate_limit_window":60}', cfg.body)
    assert.equal(401, http.request({ url = base .. "/_emulator/config" }).status)

    local pid = read(prefix .. "/nginx.pid"):gsub("%s+$", "")
    assert.is_true(pid_alive(pid))
    local _, stopped = sh(emu.launcher .. " --stop --prefix " .. prefix)
    assert.is_true(stopped)
    assert.is_false(pid_alive(pid))
    local res = http.request({ url = base .. "/_emulator/health" })
    assert.is_nil(res)
  end)

  it("runs in the foreground on $PORT, printing its URL, and --stop ends it", function()
    -- a port verified free, and readiness awaited with a deadline: first the
    -- launcher's "listening" line, then nginx's own pid file and health answer
    local port = tostring(process.free_port())
    sh("PORT=" .. port .. " " .. emu.launcher .. " --prefix " .. prefix .. " >" .. prefix .. "/out 2>&1 &")
    local want = "MoltFlow emulator listening on http://127.0.0.1:" .. port .. "/api/v2\n"
    assert.is_true(process.wait_for(function() return read_if(prefix .. "/out") == want end, 20),
      "no listening line: " .. tostring(read_if(prefix .. "/out")))
    local res
    assert.is_true(process.wait_for(function()
      if not read_if(prefix .. "/nginx.pid") then return false end
      res = http.request({ url = "http://127.0.0.1:" .. port .. "/_emulator/health", timeout = 1 })
      return res ~= nil
    end, 20), "no health answer on port " .. port)
    assert.equal(200, res.status)
    assert.matches("daemon off;", read(prefix .. "/nginx.conf"), 1, true)
    local pid = read(prefix .. "/nginx.pid"):gsub("%s+$", "")
    sh(emu.launcher .. " --stop --prefix " .. prefix)
    assert.is_false(pid_alive(pid))
  end)

  it("refuses a prefix that is not private to the user, and writes nothing into it", function()
    sh("chmod 755 " .. prefix)
    local out, ok = sh(emu.launcher .. " --daemon --port 0 --prefix " .. prefix)
    assert.is_false(ok)
    assert.matches("mode 0700", out)
    assert.is_nil(io.open(prefix .. "/nginx.conf"))
    -- a planted symlink is never written through
    sh("chmod 700 " .. prefix .. " && ln -s " .. conf_dir .. "/victim " .. prefix .. "/nginx.conf")
    local victim = conf_dir .. "/victim"
    assert(io.open(victim, "w")):write("precious\n"):close()
    sh("chmod 777 " .. prefix)
    ok = select(2, sh(emu.launcher .. " --daemon --port 0 --prefix " .. prefix))
    assert.is_false(ok)
    assert.equal("precious\n", read(victim))
    ok = select(2, sh(emu.launcher .. " --stop --prefix " .. prefix))
    assert.is_false(ok)
    sh("chmod 700 " .. prefix)
  end)

  process.it_chowning(it, pending)("refuses a prefix owned by another user", function()
    sh("chown nobody " .. prefix)
    local out, ok = sh(emu.launcher .. " --daemon --port 0 --prefix " .. prefix)
    assert.is_false(ok)
    assert.matches("owned by you", out)
    ok = select(2, sh(emu.launcher .. " --stop --prefix " .. prefix))
    assert.is_false(ok)
    sh("chown 0 " .. prefix)
  end)

  it("--stop signals only the nginx of its prefix, whatever nginx.pid says", function()
    local victim = sh("sleep 30 >/dev/null 2>&1 & echo $!"):gsub("%s+$", "")
    assert(io.open(prefix .. "/nginx.pid", "w")):write(victim, "\n"):close()
    local out, ok = sh(emu.launcher .. " --stop --prefix " .. prefix)
    assert.is_false(ok)
    assert.matches("not this emulator's nginx", out)
    assert.is_true(pid_alive(victim))
    sh("kill " .. victim)
  end)

  it("fails with the startup log when the port is taken", function()
    local port = emu.url:match(":(%d+)/")
    local out, ok = sh(emu.launcher .. " --daemon --port " .. port .. " --prefix " .. prefix)
    assert.is_false(ok)
    assert.matches("Address already in use", out)
  end)

  it("runs from an installed layout ($PREFIX/bin + $PREFIX/share/lua/5.4)", function()
    local inst = conf_dir .. "/inst"
    sh("mkdir -p " .. inst .. "/bin " .. inst .. "/share/lua/5.4/moltflow && cp " .. emu.launcher .. " " .. inst
      .. "/bin/ && cp -r " .. emu.root .. "/lua/moltflow/emulator " .. inst .. "/share/lua/5.4/moltflow/")
    local out, ok = sh(inst .. "/bin/moltflow-emulator --daemon --port 0 --prefix " .. prefix .. " --quiet")
    assert.is_true(ok, out)
    assert.matches(inst .. "/share/lua/5.4/?.lua", read(prefix .. "/nginx.conf"), 1, true)
    local res = http.request({ url = out:gsub("%s+$", "") .. "/billing/plans" })
    assert.equal(200, res.status)
    sh(inst .. "/bin/moltflow-emulator --stop --prefix " .. prefix)
  end)
end)

describe("the emulator's JSON codec (moltflow.emulator.json)", function()
  local json = require "moltflow.emulator.json"

  it("accepts DEL (0x7F) in strings, as JSON allows, and writes it back", function()
    assert.equal("a\127b", json.decode('"a\127b"'))
    assert.equal('"a\127b"', json.encode("a\127b"))
    assert.is_nil(json.decode('"a\31b"')) -- while U+001F stays a control character
  end)

  it("rejects a lone low surrogate, as it does a lone high one", function()
    local v, err = json.decode('"\\udc00"')
    assert.is_nil(v)
    assert.matches("lone surrogate", err)
    assert.is_nil(json.decode('"x\\udfffy"'))
    assert.is_nil(json.decode('"\\ud800"'))
    assert.equal("\240\159\152\128", json.decode('"\\ud83d\\ude00"'))
  end)

  it("writes floats that read back as the same double, in the fewest digits", function()
    for _, x in ipairs({ 0.1, 1 / 3, 2 / 3, 1e300, -5e-324, 123456.789, 2 ^ 53 + 2, 0.30000000000000004 }) do
      local text = json.encode(x)
      assert.equal(x, tonumber(text), text)
      assert.equal(x, json.decode(text))
    end
    assert.equal("0.1", json.encode(0.1))
    assert.equal("0.3333333333333333", json.encode(1 / 3))
    assert.equal("42", json.encode(42))
  end)

  it("raises on mixed or sparse tables instead of dropping entries", function()
    for _, t in ipairs({ { 1, 2, x = 3 }, { [1] = 1, [3] = 3 }, { [2] = "b" }, { [1.5] = 1 },
                         json.array({ 1, nil, 3 }), setmetatable({ a = 1 }, getmetatable(json.array())) }) do
      local ok, err = pcall(json.encode, t)
      assert.is_false(ok)
      assert.matches("mixed or sparse", err)
    end
    assert.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
    assert.equal("[]", json.encode(json.array()))
    assert.equal("{}", json.encode({}))
  end)

  it("answers nil and a message for a minus sign without digits, never raising", function()
    for _, text in ipairs({ "-", "[-]", "[-a]", '{"a":-}' }) do
      local ok, v, err = pcall(json.decode, text)
      assert.is_true(ok, text .. ": " .. tostring(v))
      assert.is_nil(v)
      assert.matches("bad number", err)
    end
  end)

  it("keeps its sorted, byte-stable output", function()
    assert.equal('{"a":[1,{"b":null,"c":true}],"z":"\\u0000"}', json.encode({ z = "\0", a = { 1, { c = true, b = json.null } } }))
  end)
end)
