-- moltflow.admin over real HTTP against the emulator: for every endpoint,
-- what the server received, what came back, and at least one failure.
local emu = require "spec.support.emulator"
local admin = require "moltflow.admin"
local dkjson = require "dkjson"

local seed = emu.seed
local KEY_ALL, KEY_USAGE = seed.keys.all, seed.keys.usage_only

local function is_integer(v)
  if math.type then return math.type(v) == "integer" end
  return type(v) == "number" and v == math.floor(v)
end

local function log_size() return #emu.requests() end

local function last_request()
  local log = emu.requests()
  return log[#log], #log
end

-- The raw body, decoded by an independent decoder (dkjson marks arrays and
-- objects with __jsontype, so [] and {} stay apart).
local function sent_body(req)
  if req.body == "" then return nil end
  local v, _, err = dkjson.decode(req.body)
  assert(v ~= nil, err)
  return v
end

local function jsontype(t) return (getmetatable(t) or {}).__jsontype end

-- What the server received: method, path, query, credential, user agent, body.
local function expect_wire(want)
  local req = last_request()
  assert.equal(want.method, req.method)
  assert.equal("/api/v2" .. want.path, req.path)
  assert.equal(want.query or "", req.query)
  local h = req.headers
  assert.matches("moltflow", h["user-agent"])
  if want.bearer then
    assert.equal("Bearer " .. want.bearer, h.authorization)
    assert.is_nil(h["x-api-key"])
  elseif want.key then
    assert.equal(want.key, h["x-api-key"])
    assert.is_nil(h.authorization)
  else
    assert.is_nil(h.authorization)
    assert.is_nil(h["x-api-key"])
  end
  if want.body then
    assert.same(want.body, sent_body(req))
    assert.equal("application/json", h["content-type"])
  else
    assert.equal("", req.body)
  end
  return req
end

-- What came back besides the value.
local function expect_res(res, status)
  assert.equal(status, res.status)
  assert.matches("^req_%x+$", res.request_id)
  for name in pairs(res.headers) do assert.equal(name:lower(), name) end
  assert.equal(res.request_id, res.headers["x-request-id"])
  assert.is_true(is_integer(res.rate_limit.remaining))
  assert.is_true(is_integer(res.rate_limit.reset))
  assert.equal(tonumber(res.headers["x-ratelimit-remaining"]), res.rate_limit.remaining)
  assert.equal(tonumber(res.headers["x-ratelimit-reset"]), res.rate_limit.reset)
  assert.is_true(res.rate_limit.reset >= os.time() - 1)
end

-- A failure: kind, status, message, method, path, request id, one-line tostring.
local function expect_err(err, want)
  assert.is_true(admin.is_error(err))
  local kind = want.kind or (want.status == 401 and "auth" or "http")
  assert.equal(kind, err.kind)
  assert.equal(want.status, err.status)
  assert.equal(want.method, err.method)
  assert.equal(want.path, err.path)
  -- a 404 names the full URL requested (a doubled or missing /api/v2 shows)
  local message = want.status == 404 and ("%s (requested %s%s)"):format(want.message, emu.url, want.path)
                  or want.message
  assert.equal(message, err.message)
  local line = tostring(err)
  assert.is_nil(line:find("[\r\n]"))
  if want.status then
    assert.matches("^req_%x+$", err.request_id)
    assert.is_number(err.rate_limit.remaining)
    local what = kind == "http" and tostring(want.status) or (kind .. " " .. want.status)
    assert.equal(("moltflow: %s %s %s: %s"):format(what, want.method, want.path, message), line)
  else
    assert.is_nil(err.request_id)
    assert.equal(("moltflow: %s %s %s: %s"):format(kind, want.method, want.path, want.message), line)
  end
  for _, secret in ipairs{KEY_ALL, KEY_USAGE, seed.owner.password} do
    assert.is_nil(line:find(secret, 1, true))
  end
end

local function key_client(key, opts)
  opts = opts or {}
  opts.api_key, opts.retry = key or KEY_ALL, false
  return emu.client(opts)
end

local function anon_client(opts)
  opts = opts or {}
  opts.api_key, opts.retry = false, false -- no key, whatever MOLTFLOW_API_KEY says
  return emu.client(opts)
end

local function login(user, opts)
  local c = anon_client(opts)
  assert(c.auth:login{email = user.email, password = user.password})
  return c, c:tokens().access_token
end

local function outbox_token(kind, to)
  local list = emu.control("GET", "outbox")
  for i = #list, 1, -1 do
    if list[i].kind == kind and list[i].to == to then return list[i].token end
  end
  error("no " .. kind .. " mail for " .. to)
end

describe("moltflow.admin against the emulator", function()
  before_each(function() emu.reset() end)

  describe("auth", function()
    it("login stores the tokens, calls on_tokens and sends no credential", function()
      local seen = {}
      local c = anon_client{on_tokens = function(t) seen[#seen + 1] = t end}
      c:set_api_key(KEY_ALL) -- a key is held, yet a public endpoint sends none
      local v, res = c.auth:login{email = seed.owner.email, password = seed.owner.password}
      expect_wire{method = "POST", path = "/auth/login",
                  body = {email = seed.owner.email, password = seed.owner.password}}
      expect_res(res, 200)
      assert.equal("bearer", v.token_type)
      assert.same({id = "usr_acme_owner", email = seed.owner.email, role = "owner", tenant_id = "t_acme"},
                  {id = v.user.id, email = v.user.email, role = v.user.role, tenant_id = v.user.tenant_id})
      local t = c:tokens()
      assert.equal(v.access_token, t.access_token)
      assert.equal(v.refresh_token, t.refresh_token)
      assert.equal(admin.jwt_claims(v.access_token).exp, t.expires_at)
      assert.equal(1, #seen)
      assert.same(t, seen[1])
      -- the bearer token wins over the key, and only one goes out
      assert(c.auth:me())
      expect_wire{method = "GET", path = "/auth/me", bearer = t.access_token}
    end)

    it("login with a wrong password: 401, no tokens, no secret in the message", function()
      local seen = 0
      local c = anon_client{on_tokens = function() seen = seen + 1 end}
      local v, err = c.auth:login{email = seed.owner.email, password = "wrong-pass-1"}
      assert.is_nil(v)
      expect_err(err, {status = 401, method = "POST", path = "/auth/login",
                       message = "Incorrect email or password"})
      assert.is_nil(tostring(err):find("wrong-pass-1", 1, true))
      assert.is_nil(c:tokens())
      assert.equal(0, seen)
    end)

    it("refresh sends the stored refresh token and stores the rotated pair", function()
      local seen = {}
      local c = login(seed.owner, {on_tokens = function(t) seen[#seen + 1] = t end})
      local old = c:tokens()
      local v, res = c.auth:refresh()
      expect_wire{method = "POST", path = "/auth/refresh", body = {refresh_token = old.refresh_token}}
      expect_res(res, 200)
      assert.equal("bearer", v.token_type)
      local new = c:tokens()
      assert.equal(v.access_token, new.access_token)
      assert.equal(v.refresh_token, new.refresh_token)
      assert.not_equal(old.refresh_token, new.refresh_token)
      assert.not_equal(old.access_token, new.access_token)
      assert.equal(2, #seen) -- login, refresh
      assert.same(new, seen[2])
      assert(c.auth:me())
      expect_wire{method = "GET", path = "/auth/me", bearer = new.access_token}
    end)

    it("refresh with a spent refresh token: 401 and the tokens are cleared", function()
      local seen = {}
      local c = login(seed.owner, {on_tokens = function(t) seen[#seen + 1] = t or false end})
      local old = c:tokens()
      assert(c.auth:refresh())
      c:set_tokens{refresh_token = old.refresh_token}
      local v, err = c.auth:refresh()
      assert.is_nil(v)
      expect_err(err, {status = 401, method = "POST", path = "/auth/refresh",
                       message = "Refresh token already used"})
      assert.is_nil(c:tokens())
      assert.is_false(seen[#seen]) -- on_tokens(nil)
    end)

    it("refresh without a refresh token fails before any I/O", function()
      local c = anon_client()
      local before = log_size()
      local v, err = c.auth:refresh()
      assert.is_nil(v)
      expect_err(err, {kind = "auth", method = "POST", path = "/auth/refresh",
                       message = "no refresh token: log in first"})
      assert.equal(before, log_size())
    end)

    it("me with an API key answers as the key's creator", function()
      local c = key_client()
      local v, res = c.auth:me()
      expect_wire{method = "GET", path = "/auth/me", key = KEY_ALL}
      expect_res(res, 200)
      assert.equal("usr_acme_owner", v.id)
      assert.equal(seed.owner.email, v.email)
    end)

    it("me: no credentials fail before I/O, a bad key gets 401", function()
      local c = anon_client()
      local before = log_size()
      local v, err = c.auth:me()
      assert.is_nil(v)
      expect_err(err, {kind = "auth", method = "GET", path = "/auth/me",
                       message = "no credentials: log in or set an API key"})
      assert.equal(before, log_size())
      v, err = key_client("mf_NotARealKey00000000000000000000000000000").auth:me()
      assert.is_nil(v)
      expect_err(err, {status = 401, method = "GET", path = "/auth/me", message = "Invalid API key"})
    end)

    it("logout revokes on the server, clears the tokens and calls on_tokens(nil)", function()
      local seen = {}
      local c, access = login(seed.owner, {on_tokens = function(t) seen[#seen + 1] = t or "nil" end})
      local refresh = c:tokens().refresh_token
      local v, res = c.auth:logout()
      expect_wire{method = "POST", path = "/auth/logout", bearer = access, body = {refresh_token = refresh}}
      expect_res(res, 200)
      assert.equal("Successfully logged out", v.detail)
      assert.is_nil(c:tokens())
      assert.equal("nil", seen[#seen])
      -- the old access token no longer works
      local old = admin.new{base_url = emu.url, access_token = access, retry = false}
      local v2, err = old.auth:me()
      assert.is_nil(v2)
      assert.equal(401, err.status)
      assert.equal("auth", err.kind)
    end)

    it("logout needs a bearer token: an API key client fails before I/O", function()
      local c = key_client()
      local before = log_size()
      local v, err = c.auth:logout()
      assert.is_nil(v)
      expect_err(err, {kind = "auth", method = "POST", path = "/auth/logout",
                       message = "this call needs a bearer token: log in first"})
      assert.equal(before, log_size())
    end)

    it("forgot_password and reset_password: the mailed token sets a new password once", function()
      local c = anon_client()
      local v, res = c.auth:forgot_password{email = seed.owner.email}
      expect_wire{method = "POST", path = "/auth/forgot-password", body = {email = seed.owner.email}}
      expect_res(res, 200)
      assert.is_string(v.detail)
      local token = outbox_token("password_reset", seed.owner.email)
      v, res = c.auth:reset_password{token = token, new_password = "brand-new-pass-1"}
      expect_wire{method = "POST", path = "/auth/reset-password",
                  body = {token = token, new_password = "brand-new-pass-1"}}
      expect_res(res, 200)
      assert.is_string(v.detail)
      assert(c.auth:login{email = seed.owner.email, password = "brand-new-pass-1"})
      -- single use
      local v2, err = c.auth:reset_password{token = token, new_password = "another-pass-1"}
      assert.is_nil(v2)
      expect_err(err, {status = 400, method = "POST", path = "/auth/reset-password",
                       message = "Invalid or expired token"})
    end)

    it("forgot_password: a 429 carries retry_after and the rate limit", function()
      emu.fault{path = "/auth/forgot-password", retry_after = 7}
      local v, err = anon_client().auth:forgot_password{email = seed.owner.email}
      assert.is_nil(v)
      expect_wire{method = "POST", path = "/auth/forgot-password", body = {email = seed.owner.email}}
      expect_err(err, {status = 429, method = "POST", path = "/auth/forgot-password",
                       message = "Injected fault"})
      assert.equal(7, err.retry_after)
      assert.equal("7", err.headers["retry-after"])
    end)

    it("verify_email with a mailed token, then the same token fails", function()
      local c = anon_client()
      local entry = emu.control("POST", "email-verification", {email = seed.member.email})
      local v, res = c.auth:verify_email{token = entry.token}
      expect_wire{method = "POST", path = "/auth/verify-email", body = {token = entry.token}}
      expect_res(res, 200)
      assert.is_string(v.detail)
      local m = login(seed.member)
      assert.is_true((m.auth:me()).email_verified)
      local v2, err = c.auth:verify_email{token = entry.token}
      assert.is_nil(v2)
      expect_err(err, {status = 400, method = "POST", path = "/auth/verify-email",
                       message = "Invalid or expired token"})
    end)

    it("magic_link_request and magic_link_verify log in and call on_tokens", function()
      local seen = {}
      local c = anon_client{on_tokens = function(t) seen[#seen + 1] = t end}
      local v, res = c.auth:magic_link_request{email = seed.magic.email}
      expect_wire{method = "POST", path = "/auth/magic-link/request", body = {email = seed.magic.email}}
      expect_res(res, 200)
      assert.is_string(v.detail)
      local token = outbox_token("magic_link", seed.magic.email)
      v, res = c.auth:magic_link_verify{token = token}
      expect_wire{method = "POST", path = "/auth/magic-link/verify", body = {token = token}}
      expect_res(res, 200)
      assert.equal("usr_acme_magic", v.user.id)
      assert.equal(v.access_token, c:tokens().access_token)
      assert.equal(v.refresh_token, c:tokens().refresh_token)
      assert.equal(1, #seen)
      assert.equal(v.access_token, seen[1].access_token)
      local v2, err = anon_client().auth:magic_link_verify{token = token}
      assert.is_nil(v2)
      assert.equal(401, err.status)
      assert.equal("auth", err.kind)
      assert.equal("/auth/magic-link/verify", err.path)
    end)

    it("magic_link_request: a dropped connection is a network error", function()
      emu.fault{path = "/auth/magic-link/request", drop = true}
      local v, err = anon_client().auth:magic_link_request{email = seed.magic.email}
      assert.is_nil(v)
      -- on a fresh connection libcurl reports the empty reply; on a reused
      -- one it would send the body again, which the SDK refuses
      local sent_once = "the connection closed before an answer, after the request was sent: "
                        .. "not sent again (the server may have acted on it)"
      assert.is_true(err.message == "Empty reply from server" or err.message == sent_once, err.message)
      expect_err(err, {kind = "network", method = "POST", path = "/auth/magic-link/request",
                       message = err.message})
      assert.equal(444, (last_request()).status)
    end)

    it("set_password (POST /auth/setup-password) for a magic-link user", function()
      local c = anon_client()
      assert(c.auth:magic_link_request{email = seed.magic.email})
      assert(c.auth:magic_link_verify{token = outbox_token("magic_link", seed.magic.email)})
      local access = c:tokens().access_token
      local v, res = c.auth:set_password{password = "magic-pass-12"}
      expect_wire{method = "POST", path = "/auth/setup-password", bearer = access,
                  body = {password = "magic-pass-12"}}
      expect_res(res, 200)
      assert.is_string(v.detail)
      assert(anon_client().auth:login{email = seed.magic.email, password = "magic-pass-12"})
      -- too short: the server's validation list
      local v2, err = c.auth:set_password{password = "short"}
      assert.is_nil(v2)
      assert.equal(422, err.status)
      assert.same({field = "password", message = err.validation_errors[1].message,
                   type = err.validation_errors[1].type}, err.validation_errors[1])
      assert.matches("^password: ", err.message)
      -- an API key is not enough, and nothing is sent
      local before = log_size()
      local v3, err3 = key_client().auth:set_password{password = "whatever-123"}
      assert.is_nil(v3)
      assert.equal("auth", err3.kind)
      assert.equal(before, log_size())
    end)

    it("tokens() and set_tokens{} replace the tokens and call on_tokens", function()
      local seen = {}
      local _, access = login(seed.admin)
      local c = anon_client{on_tokens = function(t) seen[#seen + 1] = t or "nil" end}
      assert.is_nil(c:tokens())
      c:set_tokens{access_token = access}
      assert.same({access_token = access, expires_at = admin.jwt_claims(access).exp}, c:tokens())
      assert.same(c:tokens(), seen[1])
      local v = assert(c.users:me())
      assert.equal("usr_acme_admin", v.id)
      expect_wire{method = "GET", path = "/users/me", bearer = access}
      c:set_tokens(nil)
      assert.is_nil(c:tokens())
      assert.equal("nil", seen[2])
      local before = log_size()
      local v2, err = c.users:me()
      assert.is_nil(v2)
      assert.equal("auth", err.kind)
      assert.equal(before, log_size())
    end)
  end)

  describe("users", function()
    it("me", function()
      local v, res = key_client().users:me()
      expect_wire{method = "GET", path = "/users/me", key = KEY_ALL}
      expect_res(res, 200)
      assert.equal("usr_acme_owner", v.id)
      local v2, err = key_client(KEY_USAGE).users:me()
      assert.is_nil(v2)
      expect_err(err, {status = 403, method = "GET", path = "/users/me",
                       message = "Missing required scope: account:manage"})
    end)

    it("update_me", function()
      local c, access = login(seed.member)
      local v, res = c.users:update_me{full_name = "Mem Ber"}
      expect_wire{method = "PATCH", path = "/users/me", bearer = access, body = {full_name = "Mem Ber"}}
      expect_res(res, 200)
      assert.equal("Mem Ber", v.full_name)
      assert.equal("Mem Ber", (c.auth:me()).full_name)
      local v2, err = c.users:update_me{full_name = ""}
      assert.is_nil(v2)
      expect_err(err, {status = 422, method = "PATCH", path = "/users/me",
                       message = "full_name: " .. err.validation_errors[1].message})
      assert.same({field = "full_name", message = err.validation_errors[1].message,
                   type = "value_error.any_str.min_length"}, err.validation_errors[1])
    end)
  end)

  describe("api_keys", function()
    it("list: a decoded array of key objects", function()
      local v, res = key_client().api_keys:list()
      expect_wire{method = "GET", path = "/api-keys", key = KEY_ALL}
      expect_res(res, 200)
      assert.equal(getmetatable(admin.array()), getmetatable(v))
      local ids = {}
      for _, k in ipairs(v) do ids[k.id] = k end
      assert.same({"*"}, ids.key_acme_all.scopes)
      assert.is_nil(ids.key_solo_all) -- another tenant's
      local v2, err = key_client(KEY_USAGE).api_keys:list()
      assert.is_nil(v2)
      expect_err(err, {status = 403, method = "GET", path = "/api-keys",
                       message = "Missing required scope: account:manage"})
    end)

    it("create: scopes as an array, integers as integers, the raw key works", function()
      local c = key_client()
      local v, res = c.api_keys:create{name = "ci", scopes = {"usage:read"}, expires_in_days = 30}
      local req = expect_wire{method = "POST", path = "/api-keys", key = KEY_ALL,
                              body = {name = "ci", scopes = {"usage:read"}, expires_in_days = 30}}
      local sent = sent_body(req)
      assert.equal("array", jsontype(sent.scopes))
      assert.is_true(is_integer(sent.expires_in_days))
      assert.matches('"expires_in_days":30[,}]', req.body)
      expect_res(res, 201)
      assert.matches("^mf_", v.raw_key)
      assert.equal(v.raw_key:sub(1, 7), v.key_prefix)
      assert.same({"usage:read"}, v.scopes)
      assert.is_true(v.is_active)
      assert.is_string(v.expires_at)
      assert.equal(admin.null, v.last_used_at)
      local u = assert(key_client(v.raw_key).usage:current())
      assert.is_number(u.api_calls)
      local v2, err = key_client(v.raw_key).api_keys:list()
      assert.is_nil(v2)
      assert.equal(403, err.status)
    end)

    it("create: scopes = {} goes out as [] and the 422 list is flattened", function()
      local v, err = key_client().api_keys:create{name = "empty", scopes = {}}
      assert.is_nil(v)
      local req = expect_wire{method = "POST", path = "/api-keys", key = KEY_ALL,
                              body = {name = "empty", scopes = {}}}
      assert.equal("array", jsontype(sent_body(req).scopes))
      assert.matches('"scopes":%[%]', req.body)
      expect_err(err, {status = 422, method = "POST", path = "/api-keys",
                       message = "scopes: ensure this value has at least 1 items"})
      assert.same({{field = "scopes", message = "ensure this value has at least 1 items",
                    type = "value_error.list.min_items"}}, err.validation_errors)
      assert.is_table(err.detail)
    end)

    it("create: a duplicate name is a 409", function()
      local v, err = key_client().api_keys:create{name = "acme-all", scopes = {"usage:read"}}
      assert.is_nil(v)
      assert.equal(409, err.status)
      assert.equal("http", err.kind)
      assert.is_string(err.message)
      assert.equal("moltflow: 409 POST /api-keys: " .. err.message, tostring(err))
    end)

    it("get", function()
      local c = key_client()
      local v, res = c.api_keys:get("key_acme_usage")
      expect_wire{method = "GET", path = "/api-keys/key_acme_usage", key = KEY_ALL}
      expect_res(res, 200)
      assert.equal("acme-usage", v.name)
      assert.is_nil(v.raw_key)
      local v2, err = c.api_keys:get("x")
      assert.is_nil(v2)
      expect_err(err, {status = 404, method = "GET", path = "/api-keys/x", message = "API key not found"})
      assert.equal("moltflow: 404 GET /api-keys/x: API key not found (requested " .. emu.url .. "/api-keys/x)",
                   tostring(err))
      -- another tenant's key
      local _, err2 = c.api_keys:get(seed.key_ids.solo_all)
      assert.equal(404, err2.status)
    end)

    it("revoke: true for the 204, the key stops working, a second revoke is a 404", function()
      local c = key_client()
      local created = assert(c.api_keys:create{name = "doomed", scopes = {"usage:read"}})
      local v, res = c.api_keys:revoke(created.id)
      expect_wire{method = "DELETE", path = "/api-keys/" .. created.id, key = KEY_ALL}
      assert.is_true(v)
      assert.equal(204, res.status)
      assert.matches("^req_%x+$", res.request_id)
      local _, err = key_client(created.raw_key).usage:current()
      assert.equal(401, err.status)
      local v2, err2 = c.api_keys:revoke(created.id)
      assert.is_nil(v2)
      expect_err(err2, {status = 404, method = "DELETE", path = "/api-keys/" .. created.id,
                        message = "API key not found"})
    end)

    it("rotate: a new raw key for the same id, the old one fails", function()
      local c = key_client()
      local created = assert(c.api_keys:create{name = "turn", scopes = {"usage:read"}})
      local v, res = c.api_keys:rotate(created.id)
      expect_wire{method = "POST", path = "/api-keys/" .. created.id .. "/rotate", key = KEY_ALL}
      expect_res(res, 200)
      assert.equal(created.id, v.id)
      assert.not_equal(created.raw_key, v.raw_key)
      assert(key_client(v.raw_key).usage:current())
      local _, old = key_client(created.raw_key).usage:current()
      assert.equal(401, old.status)
      local v2, err = c.api_keys:rotate("key_0000000000000000")
      assert.is_nil(v2)
      expect_err(err, {status = 404, method = "POST", path = "/api-keys/key_0000000000000000/rotate",
                       message = "API key not found"})
    end)
  end)

  describe("billing", function()
    it("subscription", function()
      local v, res = key_client().billing:subscription()
      expect_wire{method = "GET", path = "/billing/subscription", key = KEY_ALL}
      expect_res(res, 200)
      assert.equal("pro", v.plan_id)
      assert.equal("active", v.status)
      assert.is_true(is_integer(v.limits.max_messages_per_month))
      assert.equal(5000, v.limits.max_messages_per_month)
      local v2, err = key_client(KEY_USAGE).billing:subscription()
      assert.is_nil(v2)
      expect_err(err, {status = 403, method = "GET", path = "/billing/subscription",
                       message = "Missing required scope: billing:manage"})
    end)

    it("checkout", function()
      local c = key_client()
      local v, res = c.billing:checkout{plan_id = "business", billing_cycle = "yearly"}
      expect_wire{method = "POST", path = "/billing/checkout", key = KEY_ALL,
                  body = {plan_id = "business", billing_cycle = "yearly"}}
      expect_res(res, 200)
      assert.matches("^cs_test_", v.session_id)
      assert.equal("https://checkout.moltflow-emulator.test/c/" .. v.session_id, v.checkout_url)
      local v2, err = c.billing:checkout{plan_id = "gold", billing_cycle = "monthly"}
      assert.is_nil(v2)
      expect_err(err, {status = 404, method = "POST", path = "/billing/checkout",
                       message = "Plan not found: gold"})
      local _, err3 = c.billing:checkout{plan_id = "pro", billing_cycle = "weekly"}
      assert.equal(422, err3.status)
      assert.equal("type_error.enum", err3.validation_errors[1].type)
      assert.equal("billing_cycle", err3.validation_errors[1].field)
    end)

    it("portal", function()
      local c = key_client()
      local v, res = c.billing:portal{return_url = "https://app.test/back"}
      expect_wire{method = "POST", path = "/billing/portal", key = KEY_ALL,
                  body = {return_url = "https://app.test/back"}}
      expect_res(res, 200)
      assert.matches("^https://billing%.moltflow%-emulator%.test/p/bps_", v.portal_url)
      assert.matches("return_url=", v.portal_url)
      assert(c.billing:portal())
      expect_wire{method = "POST", path = "/billing/portal", key = KEY_ALL}
      local v2, err = key_client(KEY_USAGE).billing:portal()
      assert.is_nil(v2)
      expect_err(err, {status = 403, method = "POST", path = "/billing/portal",
                       message = "Missing required scope: billing:manage"})
    end)

    it("cancel", function()
      local v, res = key_client().billing:cancel()
      expect_wire{method = "POST", path = "/billing/cancel", key = KEY_ALL}
      expect_res(res, 200)
      assert.is_true(v.cancel_at_period_end)
      assert.equal("active", v.status)
      local v2, err = key_client(KEY_USAGE).billing:cancel()
      assert.is_nil(v2)
      expect_err(err, {status = 403, method = "POST", path = "/billing/cancel",
                       message = "Missing required scope: billing:manage"})
    end)

    it("plans: public, no credential sent even when one is held", function()
      local c = key_client()
      local v, res = c.billing:plans()
      expect_wire{method = "GET", path = "/billing/plans"}
      expect_res(res, 200)
      local ids = {}
      for _, p in ipairs(v.plans) do ids[p.id] = p end
      assert.equal(49, ids.pro.price_monthly)
      assert.is_true(is_integer(ids.pro.price_monthly))
      assert.equal(40, ids.pro.limits.requests_per_minute)
      emu.fault{path = "/billing/plans", status = 503}
      local v2, err = c.billing:plans()
      assert.is_nil(v2)
      expect_err(err, {status = 503, method = "GET", path = "/billing/plans", message = "Injected fault"})
      assert.equal(1, err.attempts)
    end)

    it("signup_checkout", function()
      local c = anon_client()
      local v, res = c.billing:signup_checkout{email = "new@corp.test", plan_id = "starter",
                                               billing_cycle = "monthly"}
      expect_wire{method = "POST", path = "/billing/signup-checkout",
                  body = {email = "new@corp.test", plan_id = "starter", billing_cycle = "monthly"}}
      expect_res(res, 200)
      assert.matches("^cs_test_", v.session_id)
      local v2, err = c.billing:signup_checkout{email = seed.owner.email, plan_id = "starter",
                                                billing_cycle = "monthly"}
      assert.is_nil(v2)
      assert.equal(409, err.status)
      assert.equal("moltflow: 409 POST /billing/signup-checkout: " .. err.message, tostring(err))
    end)
  end)

  describe("usage", function()
    it("current", function()
      local v, res = key_client().usage:current()
      expect_wire{method = "GET", path = "/usage/current", key = KEY_ALL}
      expect_res(res, 200)
      assert.equal(1247, v.total_messages)
      assert.is_true(is_integer(v.total_messages))
      assert.equal(24.94, v.usage_percentage)
      local v2, err = key_client("mf_Bogus").usage:current()
      assert.is_nil(v2)
      expect_err(err, {status = 401, method = "GET", path = "/usage/current", message = "Invalid API key"})
    end)

    it("history: months goes to the query string", function()
      local c = key_client(KEY_USAGE)
      local v, res = c.usage:history{months = 3}
      expect_wire{method = "GET", path = "/usage/history", query = "months=3", key = KEY_USAGE}
      expect_res(res, 200)
      assert.equal(3, #v.months)
      local v2, err = c.usage:history{months = 99}
      assert.is_nil(v2)
      expect_err(err, {status = 422, method = "GET", path = "/usage/history?months=99",
                       message = "months: ensure this value is less than or equal to 24"})
      assert.equal("value_error.number.not_le", err.validation_errors[1].type)
    end)

    it("daily: days goes to the query string", function()
      local c = key_client(KEY_USAGE)
      local v, res = c.usage:daily{days = 7}
      expect_wire{method = "GET", path = "/usage/daily", query = "days=7", key = KEY_USAGE}
      expect_res(res, 200)
      assert.equal(7, #v.days)
      assert.matches("^%d%d%d%d%-%d%d%-%d%d$", v.days[7].date)
      assert(c.usage:daily())
      expect_wire{method = "GET", path = "/usage/daily", key = KEY_USAGE}
      local v2, err = c.usage:daily{days = 0}
      assert.is_nil(v2)
      assert.equal(422, err.status)
      assert.same("days", err.validation_errors[1].field)
      assert.equal("/usage/daily?days=0", err.path)
    end)
  end)

  describe("tenant", function()
    it("settings", function()
      local v, res = key_client().tenant:settings()
      expect_wire{method = "GET", path = "/tenant/settings", key = KEY_ALL}
      expect_res(res, 200)
      assert.same({"+5511999999999"}, v.allowed_numbers)
      assert.is_false(v.require_approval)
      local v2, err = key_client(KEY_USAGE).tenant:settings()
      assert.is_nil(v2)
      expect_err(err, {status = 403, method = "GET", path = "/tenant/settings",
                       message = "Missing required scope: settings:manage"})
    end)

    it("update_settings: allowed_numbers = {} goes out as [], booleans as booleans", function()
      local c, access = login(seed.owner)
      local v, res = c.tenant:update_settings{allowed_numbers = {}, require_approval = true,
                                              ai_consent_enabled = true}
      local req = expect_wire{method = "PATCH", path = "/tenant/settings", bearer = access,
                              body = {allowed_numbers = {}, require_approval = true,
                                      ai_consent_enabled = true}}
      assert.equal("array", jsontype(sent_body(req).allowed_numbers))
      expect_res(res, 200)
      assert.same({}, v.allowed_numbers)
      assert.equal(getmetatable(admin.array()), getmetatable(v.allowed_numbers))
      assert.is_true(v.require_approval)
      local consents = emu.control("GET", "consents")
      assert.equal(1, #consents)
      assert.equal("usr_acme_owner", consents[1].user_id)
      assert.matches("moltflow", consents[1].user_agent)
      assert.same({}, (key_client().tenant:settings()).allowed_numbers)
    end)

    it("update_settings: a member gets 403, a bad number 422 naming the item", function()
      local m = login(seed.member)
      local v, err = m.tenant:update_settings{require_approval = true}
      assert.is_nil(v)
      expect_err(err, {status = 403, method = "PATCH", path = "/tenant/settings",
                       message = "Insufficient role: member"})
      local _, err2 = key_client().tenant:update_settings{allowed_numbers = {"+5511999999999", "bad"}}
      assert.equal(422, err2.status)
      assert.equal("allowed_numbers.1", err2.validation_errors[1].field)
      assert.equal("value_error.str.regex", err2.validation_errors[1].type)
      assert.equal("allowed_numbers.1: " .. err2.validation_errors[1].message, err2.message)
    end)
  end)

  describe("gdpr", function()
    it("contact_erasure", function()
      local c = key_client()
      local v, res = c.gdpr:contact_erasure{phone = "+5511988887777", reason = "user asked"}
      expect_wire{method = "POST", path = "/gdpr/contact-erasure", key = KEY_ALL,
                  body = {phone = "+5511988887777", reason = "user asked"}}
      expect_res(res, 200)
      assert.equal("+5511988887777", v.phone)
      assert.is_true(v.audit_logged)
      assert.is_true(is_integer(v.messages_deleted))
      local v2, err = c.gdpr:contact_erasure{phone = "123"}
      assert.is_nil(v2)
      assert.equal(422, err.status)
      assert.same("phone", err.validation_errors[1].field)
      assert.equal("value_error.str.regex", err.validation_errors[1].type)
    end)
  end)

  describe("c:request", function()
    it("sends query and body, and picks the credential by auth", function()
      local c = key_client()
      local v, res = c:request("GET", "/usage/history", {query = {months = 2}})
      expect_wire{method = "GET", path = "/usage/history", query = "months=2", key = KEY_ALL}
      expect_res(res, 200)
      assert.equal(2, #v.months)
      v = assert(c:request("GET", "/billing/plans", {auth = "none"}))
      expect_wire{method = "GET", path = "/billing/plans"}
      assert.is_table(v.plans)
      local v2, err = c:request("POST", "/api-keys", {body = {name = "raw", scopes = admin.array()}})
      assert.is_nil(v2)
      local req = expect_wire{method = "POST", path = "/api-keys", key = KEY_ALL,
                              body = {name = "raw", scopes = {}}}
      assert.matches('"scopes":%[%]', req.body)
      assert.equal(422, err.status)
      v, res = c:request("PATCH", "/users/me", {body = {full_name = "Raw Name"}})
      expect_res(res, 200)
      assert.equal("Raw Name", v.full_name)
    end)

    it("failures: 404, 405, decode, too_large, network", function()
      local c = key_client()
      local v, err = c:request("GET", "/nothing/here")
      assert.is_nil(v)
      expect_err(err, {status = 404, method = "GET", path = "/nothing/here", message = "Not Found"})
      err = select(2, c:request("PUT", "/usage/current"))
      expect_err(err, {status = 405, method = "PUT", path = "/usage/current", message = "Method Not Allowed"})
      emu.fault{path = "/usage/current", malformed = true}
      err = select(2, c:request("GET", "/usage/current"))
      assert.equal("decode", err.kind)
      assert.equal(200, err.status)
      local small = key_client(nil, {max_response_bytes = 1000})
      emu.fault{path = "/usage/current", oversize = 5000}
      err = select(2, small:request("GET", "/usage/current"))
      assert.equal("too_large", err.kind)
      local dead = admin.new{base_url = "http://127.0.0.1:9/api/v2", api_key = KEY_ALL, retry = false}
      err = select(2, dead:request("GET", "/usage/current"))
      assert.equal("network", err.kind)
      assert.equal("moltflow: network GET /usage/current: " .. err.message, tostring(err))
    end)
  end)
end)
