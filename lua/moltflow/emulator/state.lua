-- All mutable state of the emulator, plus its clock and calendar helpers.
-- nginx runs one worker (worker_processes 1), so a plain module table is the
-- whole database; reset() rebuilds it from the seed.
local crypto = require "moltflow.emulator.crypto"
local json = require "moltflow.emulator.json"
local seed = require "moltflow.emulator.seed"

local S = {}

-- Values given at launch (nginx.conf's init_by_lua); reset() returns to them.
local launch_config = { rate_limit = true, rate_limit_scale = 1, tenants = {} }

-- HS256 secret for access tokens. Generated per process and kept across
-- reset(): a reset restores data, it does not invalidate the signing key.
S.jwt_secret = crypto.random_bytes(32)

S.plans = {
  { id = "free", name = "free", display_name = "Free", price_monthly = 0, price_yearly = 0,
    limits = { max_sessions = 1, max_messages_per_month = 50, max_groups = 1, max_labels = 5,
               ai_replies_per_month = 0, requests_per_minute = 10 } },
  { id = "starter", name = "starter", display_name = "Starter", price_monthly = 19, price_yearly = 190,
    limits = { max_sessions = 1, max_messages_per_month = 1000, max_groups = 5, max_labels = 20,
               ai_replies_per_month = 100, requests_per_minute = 20 } },
  { id = "pro", name = "pro", display_name = "Pro", price_monthly = 49, price_yearly = 490,
    limits = { max_sessions = 3, max_messages_per_month = 5000, max_groups = 10, max_labels = 50,
               ai_replies_per_month = 500, requests_per_minute = 40 } },
  { id = "business", name = "business", display_name = "Business", price_monthly = 149, price_yearly = 1490,
    limits = { max_sessions = 10, max_messages_per_month = 25000, max_groups = 50, max_labels = 200,
               ai_replies_per_month = 2500, requests_per_minute = 60 } },
}
S.plans_by_id = {}
for _, p in ipairs(S.plans) do S.plans_by_id[p.id] = p end

---------------------------------------------------------------- clock
-- Emulator time = real time + offset; everything (JWT exp, key expiry,
-- one-time tokens, rate windows, usage periods) reads this clock.
function S.now()
  return ngx.now() + S.clock_offset
end

function S.now_s()
  return math.floor(S.now())
end

-- Calendar maths in pure integer arithmetic (days since 1970-01-01, UTC),
-- so results never depend on the process time zone.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  return m <= 2 and y + 1 or y, m, d
end

function S.iso(t)
  if t == nil then return json.null end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- "YYYY-MM" of a time, shifted back by `back` months.
function S.month_key(t, back)
  local y, m = civil_from_days(math.floor(t / 86400))
  local idx = y * 12 + (m - 1) - (back or 0)
  return string.format("%04d-%02d", math.floor(idx / 12), idx % 12 + 1)
end

-- "YYYY-MM-DD" of a time, shifted back by `back` days.
function S.day_key(t, back)
  local y, m, d = civil_from_days(math.floor(t / 86400) - (back or 0))
  return string.format("%04d-%02d-%02d", y, m, d)
end

-- Unix time of the first instant of the month `ahead` months after t's month.
function S.month_start(t, ahead)
  local y, m = civil_from_days(math.floor(t / 86400))
  local idx = y * 12 + (m - 1) + (ahead or 0)
  return days_from_civil(math.floor(idx / 12), idx % 12 + 1, 1) * 86400
end

---------------------------------------------------------------- helpers
function S.new_id(prefix)
  return prefix .. crypto.random_hex(8)
end

-- Extra tenants for load tests and agency scripts: each a pro tenant with an
-- owner and one all-scope key. Made once per process, so a reset brings back
-- the same ids and raw keys.
local function new_tenants(count, first)
  local out = {}
  for i = first, first + count - 1 do
    local name = ("tenant-%05d"):format(i)
    out[#out + 1] = { id = "t_" .. name:gsub("%-", "_"), name = name, email = "owner@" .. name .. ".test",
                      password = "owner-pass-" .. crypto.random_hex(8),
                      key_id = "key_" .. name:gsub("%-", "_"), raw_key = "mf_" .. crypto.random_alnum(40),
                      -- distinct, repeatable usage, so that per-tenant reports differ
                      messages_sent = (i * 373) % 4900 }
  end
  return out
end

function S.configure(opts)
  launch_config.rate_limit = opts.rate_limit ~= false
  launch_config.rate_limit_scale = opts.rate_limit_scale or 1
  launch_config.tenants = new_tenants(opts.tenants or 0, 1)
end

-- The launch's seeded tenants, with their secrets (for the launcher's file).
function S.seeded_tenants()
  return launch_config.tenants
end

local function copy_list(t)
  local out = json.array()
  for i, v in ipairs(t) do out[i] = v end
  return out
end

-- Store an API key: only the SHA-256 of the raw key is kept, indexed by that
-- hash so that authentication is one lookup however many keys exist.
function S.store_key(key, raw_key)
  key.key_hash = crypto.sha256_hex(raw_key)
  key.key_prefix = raw_key:sub(1, 7)
  S.keys[key.id] = key
  S.keys_by_hash[key.key_hash] = key
end

-- The stored key whose hash this is: not a deleted key (gone from S.keys),
-- nor a rotated one's old hash.
function S.key_for_hash(hash)
  local key = S.keys_by_hash[hash]
  if key and S.keys[key.id] == key and key.key_hash == hash then return key end
  if key then S.keys_by_hash[hash] = nil end
end

-- Account deletion: the tenant and every row that names it or its users.
-- Tokens and keys then fail authentication (no user, no key) at once.
function S.delete_tenant(tenant_id)
  local gone = {}
  for id, u in pairs(S.users) do
    if u.tenant_id == tenant_id then
      gone[id] = true
      S.users[id], S.users_by_email[u.email] = nil, nil
    end
  end
  for sid, session in pairs(S.sessions) do
    if gone[session.user_id] then S.sessions[sid] = nil end
  end
  for token, rt in pairs(S.refresh_tokens) do
    if not S.sessions[rt.session_id] then S.refresh_tokens[token] = nil end
  end
  for token, t in pairs(S.one_time) do
    if gone[t.user_id] then S.one_time[token] = nil end
  end
  for id, k in pairs(S.keys) do
    if k.tenant_id == tenant_id then S.keys[id] = nil end
  end
  for sid, c in pairs(S.checkouts) do
    if c.tenant_id == tenant_id then S.checkouts[sid] = nil end
  end
  local consents = json.array()
  for _, c in ipairs(S.consents) do
    if c.tenant_id ~= tenant_id then consents[#consents + 1] = c end
  end
  S.consents = consents
  S.tenants[tenant_id], S.api_calls[tenant_id], S.erased_phones[tenant_id] = nil, nil, nil
  S.rate["tenant:" .. tenant_id] = nil
end

---------------------------------------------------------------- reset
function S.reset()
  S.clock_offset = 0
  S.config = { rate_limit = launch_config.rate_limit, rate_limit_scale = launch_config.rate_limit_scale,
               rate_limit_window = 60 }
  S.tenants, S.users, S.users_by_email, S.keys, S.keys_by_hash = {}, {}, {}, {}, {}
  S.revoked_keys = {}    -- key id -> { id, name, last_used, uses, revoked_at } (the control API's record)
  S.sessions = {}        -- login session id -> { user_id, revoked }
  S.refresh_tokens = {}  -- raw refresh token -> { session_id, spent, expires }
  S.one_time = {}        -- raw one-time token -> { kind, user_id, expires, used }
  S.checkouts = {}       -- checkout session id -> { tenant_id | email, plan_id, billing_cycle, completed }
  S.outbox, S.consents, S.requests, S.faults = json.array(), json.array(), json.array(), json.array()
  S.rate = {}            -- bucket -> { window, count }
  S.api_calls = {}       -- tenant id -> { ["YYYY-MM"] = n, ["YYYY-MM-DD"] = n }
  S.erased_phones = {}   -- tenant id -> { phone = true }

  local now = S.now_s()
  for _, t in ipairs(seed.tenants) do
    S.tenants[t.id] = {
      id = t.id, name = t.name,
      settings = { allowed_numbers = copy_list(t.settings.allowed_numbers),
                   require_approval = t.settings.require_approval,
                   ai_consent_enabled = t.settings.ai_consent_enabled },
      usage = {},
      subscription = { plan_id = t.plan_id, billing_cycle = t.billing_cycle, status = "active",
                       cancel_at_period_end = false, current_period_end = S.month_start(now, 1) },
    }
    for k, v in pairs(t.usage) do S.tenants[t.id].usage[k] = v end
  end
  for _, u in pairs(seed.users) do
    local user = { id = u.id, tenant_id = u.tenant_id, role = u.role, email = u.email,
                   full_name = u.full_name, email_verified = true,
                   password_hash = u.password and crypto.hash_password(u.password) or nil }
    S.users[u.id] = user
    S.users_by_email[u.email] = user
  end
  for _, k in pairs(seed.keys) do
    S.store_key({ id = k.id, tenant_id = k.tenant_id, user_id = k.user_id, name = k.name,
                  scopes = copy_list(k.scopes), created_at = now, is_active = true }, k.raw_key)
  end
  S.add_tenants(launch_config.tenants)
end

-- Tenants made by S.configure or the control API's POST /tenants.
function S.add_tenants(list)
  local now = S.now_s()
  for _, t in ipairs(list) do
    S.tenants[t.id] = {
      id = t.id, name = t.name,
      settings = { allowed_numbers = json.array(), require_approval = false, ai_consent_enabled = false },
      usage = { messages_sent = t.messages_sent, messages_received = math.floor(t.messages_sent / 2),
                leads_detected = 0, sessions = 1, groups = 0, labels = 0, ai_replies_this_month = 0 },
      subscription = { plan_id = t.plan_id or "pro", billing_cycle = "monthly", status = "active",
                       cancel_at_period_end = false, current_period_end = S.month_start(now, 1) },
    }
    local owner = { id = "usr_" .. t.id:sub(3), tenant_id = t.id, role = "owner", email = t.email,
                    full_name = t.name .. " owner", email_verified = true,
                    -- one PBKDF2 round: thousands of tenants are made at once (bench-scale)
                    password_hash = crypto.hash_password(t.password, 1) }
    S.users[owner.id], S.users_by_email[owner.email] = owner, owner
    S.store_key({ id = t.key_id, tenant_id = t.id, user_id = owner.id, name = t.name .. "-all",
                  scopes = copy_list({ "*" }), created_at = now, is_active = true }, t.raw_key)
  end
end

-- n more tenants, numbered after every tenant made so far.
function S.new_tenants(n, plan_id)
  local first = 1
  for _, t in pairs(S.tenants) do
    local i = tonumber(t.name:match("^tenant%-(%d+)$"))
    if i and i >= first then first = i + 1 end
  end
  local list = new_tenants(n, first)
  for _, t in ipairs(list) do t.plan_id = plan_id end
  S.add_tenants(list)
  return list
end

S.copy_list = copy_list

return S
