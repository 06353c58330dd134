-- The MoltFlow admin API endpoints (paths relative to /api/v2).
-- Each route: method, Lua pattern, auth ("none" | "token" | "any"), the scope an
-- API key needs, the roles a bearer user needs, body ("required" | "optional" |
-- nil = ignored) and a handler(req, principal, body, captures...) that returns
-- status, body table.
local auth = require "moltflow.emulator.auth"
local crypto = require "moltflow.emulator.crypto"
local json = require "moltflow.emulator.json"
local state = require "moltflow.emulator.state"
local V = require "moltflow.emulator.validate"

local M = {}

local function detail(status, msg)
  return status, { detail = msg }
end

local function unprocessable(v)
  return 422, { detail = v.errors }
end

---------------------------------------------------------------- one-time tokens
-- Lifetimes on the emulator clock.
local ONE_TIME_TTL = { magic_link = 15 * 60, password_reset = 3600, email_verification = 24 * 3600 }
local ONE_TIME_PATH = { magic_link = "/auth/magic-link", password_reset = "/reset-password",
                        email_verification = "/verify-email" }

-- Issue a token and "mail" it: the outbox entry is the only place it appears.
function M.send_one_time(kind, user)
  local token = "ott_" .. crypto.random_alnum(40)
  local now = state.now_s()
  state.one_time[token] = { kind = kind, user_id = user.id, expires = now + ONE_TIME_TTL[kind], used = false }
  local entry = { id = state.new_id("msg_"), to = user.email, kind = kind, token = token,
                  url = "https://app.moltflow-emulator.test" .. ONE_TIME_PATH[kind] .. "?token=" .. token,
                  created_at = state.iso(now), expires_at = state.iso(now + ONE_TIME_TTL[kind]) }
  state.outbox[#state.outbox + 1] = entry
  return entry
end

-- Spend a token of the given kind: returns the user, or nil when unknown,
-- of another kind, used or expired.
local function spend_one_time(kind, token)
  local t = state.one_time[token]
  if not t or t.kind ~= kind or t.used or t.expires <= state.now() then return nil end
  t.used = true
  return state.users[t.user_id]
end

local MIN_PASSWORD = 8

local function password_field(v, field)
  local p = v:string(field, true)
  if p and #p < MIN_PASSWORD then
    v:fail(field, "ensure this value has at least " .. MIN_PASSWORD .. " characters", "value_error.any_str.min_length")
    return nil
  end
  return p
end

---------------------------------------------------------------- auth handlers
local function login(_, _, body)
  local v = V.new("body", body)
  local email, password = v:string("email", true), v:string("password", true)
  if not v:ok() then return unprocessable(v) end
  local user = state.users_by_email[email:lower()]
  if not user or not crypto.verify_password(password, user.password_hash) then
    return detail(401, "Incorrect email or password")
  end
  return 200, auth.login_response(user)
end

local function refresh(_, _, body)
  local v = V.new("body", body)
  local token = v:string("refresh_token", true)
  if not v:ok() then return unprocessable(v) end
  local res, err = auth.refresh(token)
  if not res then return detail(401, err) end
  return 200, res
end

local function me(_, p)
  return 200, auth.user_object(p.user)
end

local function logout(_, p, body)
  local v = V.new("body", body or {})
  local rt = v:string("refresh_token")
  if not v:ok() then return unprocessable(v) end
  auth.logout(p, rt)
  return detail(200, "Successfully logged out")
end

local function forgot_password(_, _, body)
  local v = V.new("body", body)
  local email = v:string("email", true)
  if not v:ok() then return unprocessable(v) end
  local user = state.users_by_email[email:lower()]
  if user then M.send_one_time("password_reset", user) end
  return detail(200, "If the email is registered, a password reset link has been sent")
end

local function reset_password(_, _, body)
  local v = V.new("body", body)
  local token, password = v:string("token", true), password_field(v, "new_password")
  if not v:ok() then return unprocessable(v) end
  local user = spend_one_time("password_reset", token)
  if not user then return detail(400, "Invalid or expired token") end
  user.password_hash = crypto.hash_password(password)
  return detail(200, "Password has been reset")
end

local function verify_email(_, _, body)
  local v = V.new("body", body)
  local token = v:string("token", true)
  if not v:ok() then return unprocessable(v) end
  local user = spend_one_time("email_verification", token)
  if not user then return detail(400, "Invalid or expired token") end
  user.email_verified = true
  return detail(200, "Email verified")
end

local function magic_request(_, _, body)
  local v = V.new("body", body)
  local email = v:string("email", true)
  if not v:ok() then return unprocessable(v) end
  local user = state.users_by_email[email:lower()]
  if user then M.send_one_time("magic_link", user) end
  return detail(200, "If the email is registered, a sign-in link has been sent")
end

local function magic_verify(_, _, body)
  local v = V.new("body", body)
  local token = v:string("token", true)
  if not v:ok() then return unprocessable(v) end
  local user = spend_one_time("magic_link", token)
  if not user then return detail(401, "Invalid or expired magic link") end
  -- Following the link proves the mailbox.
  user.email_verified = true
  return 200, auth.login_response(user)
end

local function setup_password(_, p, body)
  local v = V.new("body", body)
  local password = password_field(v, "password")
  if not v:ok() then return unprocessable(v) end
  p.user.password_hash = crypto.hash_password(password)
  return detail(200, "Password set")
end

---------------------------------------------------------------- users
local function patch_me(_, p, body)
  local v = V.new("body", body)
  local name = v:string("full_name")
  if name and #name == 0 then
    v:fail("full_name", "ensure this value has at least 1 characters", "value_error.any_str.min_length")
  end
  if not v:ok() then return unprocessable(v) end
  if name then p.user.full_name = name end
  return 200, auth.user_object(p.user)
end

---------------------------------------------------------------- API keys
-- The SDK's list: one source for the emulator, the endpoint table and the CLI.
local KNOWN_SCOPES = {}
for _, s in ipairs(require("moltflow.endpoints").scopes) do
  KNOWN_SCOPES[s] = true
end

local function key_object(k, raw_key)
  return { id = k.id, name = k.name, key_prefix = k.key_prefix, scopes = state.copy_list(k.scopes),
           expires_at = state.iso(k.expires_at), created_at = state.iso(k.created_at),
           last_used_at = state.iso(k.last_used_at), is_active = k.is_active, description = k.description,
           raw_key = raw_key }
end

local function new_raw_key()
  return "mf_" .. crypto.random_alnum(40)
end
M.new_raw_key = new_raw_key

-- Keys of the caller's tenant only: another tenant's id is indistinguishable
-- from a missing one.
local function tenant_key(p, id)
  local k = state.keys[id]
  if k and k.tenant_id == p.tenant.id then return k end
end

-- The tenant's key objects (never a secret), oldest first.
local function tenant_key_objects(tenant_id)
  local ids = {}
  for id, k in pairs(state.keys) do
    if k.tenant_id == tenant_id then ids[#ids + 1] = id end
  end
  -- Oldest first; the id breaks ties between keys created in the same second.
  table.sort(ids, function(a, b)
    local ka, kb = state.keys[a], state.keys[b]
    if ka.created_at ~= kb.created_at then return ka.created_at < kb.created_at end
    return a < b
  end)
  local out = json.array()
  for i, id in ipairs(ids) do out[i] = key_object(state.keys[id]) end
  return out
end

local function list_keys(_, p)
  return 200, tenant_key_objects(p.tenant.id)
end

local function create_key(_, p, body)
  local v = V.new("body", body)
  local name = v:string("name", true)
  if name and #name == 0 then
    v:fail("name", "ensure this value has at least 1 characters", "value_error.any_str.min_length")
  end
  local scopes = v:string_list("scopes", { required = true, non_empty = true, check = function(s)
    if not KNOWN_SCOPES[s] then return "unknown scope: " .. s, "value_error.scope" end
  end })
  local days = v:positive_integer("expires_in_days")
  local description = v:string("description")
  if not v:ok() then return unprocessable(v) end
  if p.kind == "key" then
    for _, s in ipairs(scopes) do
      if not auth.has_scope(p.key, s) then return detail(403, "Cannot grant scope not held by this API key: " .. s) end
    end
  end
  for _, k in pairs(state.keys) do
    if k.tenant_id == p.tenant.id and k.is_active and k.name == name then
      return detail(409, "An API key named '" .. name .. "' already exists")
    end
  end
  local now = state.now_s()
  local raw = new_raw_key()
  local key = { id = state.new_id("key_"), tenant_id = p.tenant.id, user_id = p.user.id, name = name,
                scopes = state.copy_list(scopes), created_at = now, is_active = true,
                expires_at = days and now + days * 86400 or nil, description = description }
  state.store_key(key, raw)
  return 201, key_object(key, raw)
end

local function get_key(_, p, _, id)
  local k = tenant_key(p, id)
  if not k then return detail(404, "API key not found") end
  return 200, key_object(k)
end

local function delete_key(_, p, _, id)
  local k = tenant_key(p, id)
  if not k then return detail(404, "API key not found") end
  state.revoked_keys[id] = { id = id, name = k.name, last_used = k.last_used, uses = k.uses or 0,
                             revoked_at = state.now() }
  state.keys[id] = nil
  return 204
end

local function rotate_key(_, p, _, id)
  local k = tenant_key(p, id)
  if not k then return detail(404, "API key not found") end
  local raw = new_raw_key()
  state.store_key(k, raw)
  return 200, key_object(k, raw)
end

---------------------------------------------------------------- usage
local function api_calls(tenant_id, period)
  local c = state.api_calls[tenant_id]
  return c and c[period] or 0
end

-- Counted once per authenticated request, by the pipeline in init.lua.
function M.count_api_call(tenant_id)
  local c = state.api_calls[tenant_id] or {}
  state.api_calls[tenant_id] = c
  local now = state.now()
  local month, day = state.month_key(now), state.day_key(now)
  c[month] = (c[month] or 0) + 1
  c[day] = (c[day] or 0) + 1
end

local function plan_of(tenant)
  return state.plans_by_id[tenant.subscription.plan_id]
end

-- Message counters of earlier periods are synthetic but stable: derived from
-- the current month's seed so history and daily views look plausible.
local function past_messages(tenant, back)
  local u = tenant.usage
  return math.floor(u.messages_sent * (1 - (back % 5) * 0.1)), math.floor(u.messages_received * (1 - (back % 4) * 0.1))
end

local function usage_object(t)
  local now = state.now()
  local limit = plan_of(t).limits.max_messages_per_month
  local total = t.usage.messages_sent + t.usage.messages_received
  return { period = state.month_key(now), messages_sent = t.usage.messages_sent,
                messages_received = t.usage.messages_received, total_messages = total,
                leads_detected = t.usage.leads_detected, api_calls = api_calls(t.id, state.month_key(now)),
                limit_messages = limit,
                usage_percentage = limit > 0 and math.floor(total * 10000 / limit + 0.5) / 100 or 0 }
end

local function usage_current(_, p)
  return 200, usage_object(p.tenant)
end

local function usage_history(req, p)
  local v = V.new("query", req.args)
  local months = v:query_int("months", 6, 1, 24)
  if not v:ok() then return unprocessable(v) end
  local out, now = json.array(), state.now()
  -- Oldest first, ending with the current month.
  for back = months - 1, 0, -1 do
    local sent, received
    if back == 0 then
      sent, received = p.tenant.usage.messages_sent, p.tenant.usage.messages_received
    else
      sent, received = past_messages(p.tenant, back)
    end
    local period = state.month_key(now, back)
    out[#out + 1] = { period = period, messages_sent = sent, messages_received = received,
                      total_messages = sent + received, api_calls = api_calls(p.tenant.id, period) }
  end
  return 200, { months = out }
end

local function usage_daily(req, p)
  local v = V.new("query", req.args)
  local days = v:query_int("days", 30, 1, 31)
  if not v:ok() then return unprocessable(v) end
  local out, now = json.array(), state.now()
  for back = days - 1, 0, -1 do
    local date = state.day_key(now, back)
    local sent, received = past_messages(p.tenant, back)
    out[#out + 1] = { date = date, messages_sent = math.floor(sent / 30), messages_received = math.floor(received / 30),
                      api_calls = api_calls(p.tenant.id, date) }
  end
  return 200, { days = out }
end

---------------------------------------------------------------- billing
local CYCLES = { "monthly", "yearly" }
local CHECKOUT_HOST = "https://checkout.moltflow-emulator.test"

-- Lazily roll the period forward on the emulator clock: a canceled
-- subscription ends at its period end (back to free), others renew.
local function settle_subscription(tenant)
  local sub = tenant.subscription
  local now = state.now()
  while sub.current_period_end <= now do
    if sub.cancel_at_period_end then
      sub.status, sub.plan_id, sub.cancel_at_period_end = "canceled", "free", false
    end
    sub.current_period_end = state.month_start(sub.current_period_end, sub.billing_cycle == "yearly" and 12 or 1)
  end
  return sub
end

function M.subscription_object(tenant)
  local sub = settle_subscription(tenant)
  local plan = state.plans_by_id[sub.plan_id]
  local u = tenant.usage
  return { plan_id = sub.plan_id, display_name = plan.display_name, status = sub.status,
           billing_cycle = sub.billing_cycle, current_period_end = state.iso(sub.current_period_end),
           cancel_at_period_end = sub.cancel_at_period_end, limits = plan.limits,
           usage = { sessions = u.sessions, messages_this_month = u.messages_sent + u.messages_received,
                     groups = u.groups, labels = u.labels, ai_replies_this_month = u.ai_replies_this_month,
                     api_calls_this_month = api_calls(tenant.id, state.month_key(state.now())) } }
end

-- Switch a tenant to the plan of a completed checkout; a new period starts now.
function M.apply_plan(tenant, plan_id, cycle)
  local sub = tenant.subscription
  sub.plan_id, sub.billing_cycle, sub.status, sub.cancel_at_period_end = plan_id, cycle, "active", false
  sub.current_period_end = state.month_start(state.now(), cycle == "yearly" and 12 or 1)
end

local function checkout_fields(v)
  local plan_id = v:string("plan_id", true)
  local cycle = v:enum("billing_cycle", CYCLES, true)
  return plan_id, cycle
end

local function new_checkout(fields)
  local sid = "cs_test_" .. crypto.random_alnum(24)
  fields.completed = false
  state.checkouts[sid] = fields
  return { checkout_url = CHECKOUT_HOST .. "/c/" .. sid, session_id = sid }
end

local function subscription(_, p)
  return 200, M.subscription_object(p.tenant)
end

local function checkout(_, p, body)
  local v = V.new("body", body)
  local plan_id, cycle = checkout_fields(v)
  if not v:ok() then return unprocessable(v) end
  if not state.plans_by_id[plan_id] then return detail(404, "Plan not found: " .. plan_id) end
  return 200, new_checkout({ tenant_id = p.tenant.id, plan_id = plan_id, billing_cycle = cycle })
end

local function portal(_, _, body)
  local v = V.new("body", body or {})
  local return_url = v:string("return_url")
  if not v:ok() then return unprocessable(v) end
  local url = "https://billing.moltflow-emulator.test/p/bps_" .. crypto.random_alnum(24)
  if return_url then url = url .. "?return_url=" .. ngx.escape_uri(return_url) end
  return 200, { portal_url = url }
end

local function cancel(_, p)
  settle_subscription(p.tenant).cancel_at_period_end = true
  return 200, M.subscription_object(p.tenant)
end

local function plans()
  return 200, { plans = state.plans }
end

local function signup_checkout(_, _, body)
  local v = V.new("body", body)
  local email = v:string("email", true)
  if email and not email:match("^[^@%s]+@[^@%s]+%.[^@%s]+$") then
    v:fail("email", "value is not a valid email address", "value_error.email")
  end
  local plan_id, cycle = checkout_fields(v)
  if not v:ok() then return unprocessable(v) end
  if not state.plans_by_id[plan_id] then return detail(404, "Plan not found: " .. plan_id) end
  if state.users_by_email[email:lower()] then return detail(409, "Email already registered") end
  return 200, new_checkout({ email = email:lower(), plan_id = plan_id, billing_cycle = cycle })
end

---------------------------------------------------------------- settings
local function settings_object(t)
  local s = t.settings
  return { allowed_numbers = state.copy_list(s.allowed_numbers), require_approval = s.require_approval,
           ai_consent_enabled = s.ai_consent_enabled }
end

local function get_settings(_, p)
  return 200, settings_object(p.tenant)
end

local function patch_settings(req, p, body)
  local v = V.new("body", body)
  local numbers = v:string_list("allowed_numbers", { check = V.e164_check })
  local approval = v:bool("require_approval")
  local consent = v:bool("ai_consent_enabled")
  if not v:ok() then return unprocessable(v) end
  local s = p.tenant.settings
  if numbers then s.allowed_numbers = state.copy_list(numbers) end
  if approval ~= nil then s.require_approval = approval end
  if consent ~= nil then
    if consent and not s.ai_consent_enabled then
      state.consents[#state.consents + 1] = {
        tenant_id = p.tenant.id, user_id = p.user.id, consent_type = "ai_processing", version = "1.0",
        ip_address = req.remote_addr, user_agent = req.headers["user-agent"] or json.null,
        created_at = state.iso(state.now()) }
    end
    s.ai_consent_enabled = consent
  end
  return 200, settings_object(p.tenant)
end

---------------------------------------------------------------- GDPR
local function contact_erasure(_, p, body)
  local v = V.new("body", body)
  local phone, digits = v:phone("phone", true)
  v:string("reason")
  if not v:ok() then return unprocessable(v) end
  -- Counts derive from the number so they are stable; a second erasure of the
  -- same number, in any of its forms, finds nothing left.
  local erased = state.erased_phones[p.tenant.id] or {}
  state.erased_phones[p.tenant.id] = erased
  local n = 0
  if not erased[digits] then
    for d in digits:gmatch("%d") do n = n + tonumber(d) end
    erased[digits] = true
  end
  return 200, { phone = phone, messages_deleted = n, reviews_deleted = n % 3, chats_anonymized = n > 0 and 1 or 0,
                group_members_anonymized = n % 4, audit_logged = true, completed_at = state.iso(state.now()) }
end

-- GDPR Art. 20: what the emulator holds of the account, secrets excepted;
-- empty arrays for the parts of MoltFlow it does not model.
local function export(_, p)
  local t = p.tenant
  local consents = json.array()
  for _, c in ipairs(state.consents) do
    if c.tenant_id == t.id then consents[#consents + 1] = c end
  end
  local out = { exported_at = state.iso(state.now()), user = auth.user_object(p.user),
                tenant = { id = t.id, name = t.name }, subscription = M.subscription_object(t),
                api_keys = tenant_key_objects(t.id), settings = settings_object(t), usage = usage_object(t),
                consents = consents }
  for _, name in ipairs({ "sessions", "chats", "messages", "groups", "labels", "webhooks" }) do
    out[name] = json.array()
  end
  return 200, out
end

-- GDPR Art. 17: the owner, with the password, deletes the tenant and all it
-- holds; every token and key of it fails with 401 from the next request on.
local function delete_account(_, p, body)
  if p.user.role ~= "owner" then return detail(403, "Insufficient role: " .. p.user.role) end
  local v = V.new("body", body)
  local password = v:string("current_password", true)
  if not v:ok() then return unprocessable(v) end
  if not p.user.password_hash or not crypto.verify_password(password, p.user.password_hash) then
    return detail(401, "Incorrect password")
  end
  state.delete_tenant(p.tenant.id)
  return detail(200, "Account deleted")
end

---------------------------------------------------------------- routes
local ANY, TOKEN, NONE = "any", "token", "none"
local ADMINS = { owner = true, admin = true }

M.routes = {
  { "POST", "^/auth/login$", NONE, nil, nil, "required", login },
  { "POST", "^/auth/refresh$", NONE, nil, nil, "required", refresh },
  { "GET", "^/auth/me$", ANY, nil, nil, nil, me },
  { "POST", "^/auth/logout$", TOKEN, nil, nil, "optional", logout },
  { "POST", "^/auth/forgot%-password$", NONE, nil, nil, "required", forgot_password },
  { "POST", "^/auth/reset%-password$", NONE, nil, nil, "required", reset_password },
  { "POST", "^/auth/verify%-email$", NONE, nil, nil, "required", verify_email },
  { "POST", "^/auth/magic%-link/request$", NONE, nil, nil, "required", magic_request },
  { "POST", "^/auth/magic%-link/verify$", NONE, nil, nil, "required", magic_verify },
  { "POST", "^/auth/setup%-password$", TOKEN, nil, nil, "required", setup_password },
  { "POST", "^/auth/set%-password$", TOKEN, nil, nil, "required", setup_password },
  { "GET", "^/users/me$", ANY, "account:manage", nil, nil, me },
  { "GET", "^/users/me/export$", ANY, "gdpr:manage", nil, nil, export },
  { "DELETE", "^/users/me$", ANY, "gdpr:manage", nil, "required", delete_account },
  { "PATCH", "^/users/me$", ANY, "account:manage", nil, "required", patch_me },
  { "GET", "^/api%-keys$", ANY, "account:manage", nil, nil, list_keys },
  { "POST", "^/api%-keys$", ANY, "account:manage", nil, "required", create_key },
  { "GET", "^/api%-keys/([^/]+)$", ANY, "account:manage", nil, nil, get_key },
  { "DELETE", "^/api%-keys/([^/]+)$", ANY, "account:manage", nil, nil, delete_key },
  { "POST", "^/api%-keys/([^/]+)/rotate$", ANY, "account:manage", nil, "optional", rotate_key },
  { "GET", "^/billing/subscription$", ANY, "billing:manage", nil, nil, subscription },
  { "POST", "^/billing/checkout$", ANY, "billing:manage", nil, "required", checkout },
  { "POST", "^/billing/portal$", ANY, "billing:manage", nil, "optional", portal },
  { "POST", "^/billing/cancel$", ANY, "billing:manage", nil, "optional", cancel },
  { "GET", "^/billing/plans$", NONE, nil, nil, nil, plans },
  { "POST", "^/billing/signup%-checkout$", NONE, nil, nil, "required", signup_checkout },
  { "GET", "^/usage/current$", ANY, "usage:read", nil, nil, usage_current },
  { "GET", "^/usage/history$", ANY, "usage:read", nil, nil, usage_history },
  { "GET", "^/usage/daily$", ANY, "usage:read", nil, nil, usage_daily },
  { "GET", "^/tenant/settings$", ANY, "settings:manage", nil, nil, get_settings },
  { "PATCH", "^/tenant/settings$", ANY, "settings:manage", ADMINS, "required", patch_settings },
  { "POST", "^/gdpr/contact%-erasure$", ANY, "gdpr:manage", nil, "required", contact_erasure },
}

-- Returns route, captures | nil, allowed-methods (path known, method not) | nil.
function M.match(method, path)
  local allowed = {}
  for _, r in ipairs(M.routes) do
    local caps = { path:match(r[2]) }
    if #caps > 0 then
      if r[1] == method then
        -- A pattern without captures yields the whole match; drop it.
        if not r[2]:find("%(") then caps = {} end
        return { method = r[1], auth = r[3], scope = r[4], roles = r[5], body = r[6], handler = r[7] }, caps
      end
      allowed[#allowed + 1] = r[1]
    end
  end
  if #allowed > 0 then return nil, allowed end
end

return M
