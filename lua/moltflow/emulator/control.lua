-- The control API under /_emulator/: only in the emulator, never logged,
-- never rate-limited, never faulted. docs/emulator.md documents each route.
--
-- It can read every secret sent to the emulator, so: the Host must be the
-- loopback address and port (no DNS rebinding), an Origin must be too, every
-- route but /health needs the launcher's token in X-Emulator-Token, a POST
-- must be application/json (no cross-site "simple" request), and the request
-- log comes redacted unless ?raw=1 asks otherwise.
local api = require "moltflow.emulator.api"
local faults = require "moltflow.emulator.faults"
local json = require "moltflow.emulator.json"
local response = require "moltflow.emulator.response"
local state = require "moltflow.emulator.state"

local M = {}

local control_token -- set by configure(); nil refuses every guarded route

function M.configure(opts)
  control_token = opts.control_token
end

-- Compares in time independent of where the strings differ.
local function same_secret(given, want)
  if type(given) ~= "string" or #given ~= #want then return false end
  local diff = 0
  for i = 1, #want do
    if given:byte(i) ~= want:byte(i) then diff = diff + 1 end
  end
  return diff == 0
end

local function reply(req, status, body)
  return response.send(req, status, body)
end

-- Control bodies are optional JSON objects; returns body or nil after replying 400.
local function body_of(req)
  if req.body_raw:match("^%s*$") then return {} end
  local b = json.decode(req.body_raw)
  if type(b) ~= "table" or b == json.null or json.is_array(b) then
    reply(req, 400, { detail = "Body must be a JSON object" })
    return nil
  end
  return b
end

local function clock(req)
  local b = body_of(req)
  if not b then return end
  if type(b.advance) == "number" then
    state.clock_offset = state.clock_offset + b.advance
  elseif type(b.set) == "number" then
    state.clock_offset = b.set - ngx.now()
  elseif req.method == "POST" then
    return reply(req, 422, { detail = "body needs a number 'advance' (seconds) or 'set' (Unix time)" })
  end
  return reply(req, 200, { now = state.now(), offset = state.clock_offset })
end

local function config(req)
  if req.method == "POST" then
    local b = body_of(req)
    if not b then return end
    if b.rate_limit ~= nil and type(b.rate_limit) ~= "boolean" then
      return reply(req, 422, { detail = "rate_limit must be a boolean" })
    end
    if b.rate_limit_scale ~= nil and (type(b.rate_limit_scale) ~= "number" or b.rate_limit_scale <= 0) then
      return reply(req, 422, { detail = "rate_limit_scale must be a positive number" })
    end
    if b.rate_limit_window ~= nil and (type(b.rate_limit_window) ~= "number" or b.rate_limit_window <= 0
                                       or b.rate_limit_window > 60) then
      return reply(req, 422, { detail = "rate_limit_window must be a number of seconds from 0 to 60" })
    end
    if b.rate_limit ~= nil then state.config.rate_limit = b.rate_limit end
    if b.rate_limit_window then state.config.rate_limit_window = b.rate_limit_window end
    if b.rate_limit_scale then state.config.rate_limit_scale = b.rate_limit_scale end
  end
  return reply(req, 200, state.config)
end

local function fault_list(req)
  if req.method == "DELETE" then
    state.faults = json.array()
    return reply(req, 204)
  end
  if req.method == "POST" then
    local b = body_of(req)
    if not b then return end
    local f, err = faults.register(b)
    if not f then return reply(req, 422, { detail = err }) end
    return reply(req, 201, f)
  end
  return reply(req, 200, state.faults)
end

-- Redaction of the request log: credential headers, and values whose names
-- mark them as secrets, in JSON bodies and query strings.
local SECRET_HEADERS = { authorization = true, ["x-api-key"] = true, cookie = true, ["x-emulator-token"] = true }
local REDACTED = "[redacted]"

local function secret_name(name)
  name = tostring(name):lower()
  return name:find("password", 1, true) or name:find("token", 1, true) or name:find("secret", 1, true)
    or name == "raw_key" or name == "api_key" or name == "key" or name == "code"
end

local function redact_json(v)
  if type(v) ~= "table" or v == json.null then return v end
  for k, item in pairs(v) do
    if type(k) == "string" and secret_name(k) and item ~= json.null then
      v[k] = REDACTED
    else
      redact_json(item)
    end
  end
  return v
end

local function redact_query(query)
  return (query:gsub("([^&=]+)=([^&]*)", function(name, value)
    if secret_name(ngx.unescape_uri(name)) then return name .. "=" .. REDACTED end
    return name .. "=" .. value
  end))
end

local function redacted(entry)
  local out = {}
  for k, v in pairs(entry) do out[k] = v end
  out.headers = {}
  for name, value in pairs(entry.headers) do out.headers[name] = SECRET_HEADERS[name] and REDACTED or value end
  out.query = redact_query(entry.query or "")
  local body = entry.body ~= "" and json.decode(entry.body)
  if type(body) == "table" then
    out.body = json.encode(redact_json(body))
  elseif entry.body ~= "" and body == nil then
    out.body = REDACTED -- not JSON: nothing to tell secrets from the rest by
  end
  return out
end

local function requests(req)
  if req.method == "DELETE" then
    state.requests = json.array()
    return reply(req, 204)
  end
  if req.args.raw == "1" then return reply(req, 200, state.requests) end
  local out = json.array()
  for i, entry in ipairs(state.requests) do out[i] = redacted(entry) end
  return reply(req, 200, out)
end

local function outbox(req)
  if req.method == "DELETE" then
    state.outbox = json.array()
    return reply(req, 204)
  end
  return reply(req, 200, state.outbox)
end

-- Stored key records (hashes, never raw keys), so specs can check storage.
local function stored_keys(req)
  local out = json.array()
  for _, k in pairs(state.keys) do
    out[#out + 1] = { id = k.id, tenant_id = k.tenant_id, name = k.name, key_prefix = k.key_prefix,
                      key_hash = k.key_hash, scopes = state.copy_list(k.scopes), is_active = k.is_active,
                      last_used = k.last_used, uses = k.uses or 0 }
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return reply(req, 200, out)
end

-- Keys revoked (DELETE /api-keys/{id}): when each was last used, how often, and when revoked.
local function revoked_keys(req)
  local out = json.array()
  for _, k in pairs(state.revoked_keys) do out[#out + 1] = k end
  table.sort(out, function(a, b) return a.revoked_at < b.revoked_at end)
  return reply(req, 200, out)
end

-- Complete a checkout as if the customer paid: a tenant checkout switches its
-- plan; a signup checkout creates a tenant whose owner (no password yet) can
-- sign in by magic link or password reset.
local function complete_checkout(req, sid)
  local c = state.checkouts[sid]
  if not c then return reply(req, 404, { detail = "Checkout session not found" }) end
  if c.completed then return reply(req, 409, { detail = "Checkout session already completed" }) end
  local tenant = c.tenant_id and state.tenants[c.tenant_id]
  if not tenant then
    if state.users_by_email[c.email] then return reply(req, 409, { detail = "Email already registered" }) end
    local tid = state.new_id("t_")
    tenant = { id = tid, name = c.email,
               settings = { allowed_numbers = json.array(), require_approval = false, ai_consent_enabled = false },
               usage = { messages_sent = 0, messages_received = 0, leads_detected = 0, sessions = 0, groups = 0,
                         labels = 0, ai_replies_this_month = 0 },
               subscription = {} }
    state.tenants[tid] = tenant
    local user = { id = state.new_id("usr_"), tenant_id = tid, role = "owner", email = c.email,
                   full_name = c.email, email_verified = false }
    state.users[user.id], state.users_by_email[c.email] = user, user
  end
  api.apply_plan(tenant, c.plan_id, c.billing_cycle)
  c.completed = true
  return reply(req, 200, { session_id = sid, tenant_id = tenant.id, subscription = api.subscription_object(tenant) })
end

-- Seeded tenants as the launcher's --tenants prints them: secrets included,
-- since the caller holds the control token.
local function tenant_rows(list)
  local out = json.array()
  for i, t in ipairs(list) do
    out[i] = { tenant_id = t.id, name = t.name, owner_email = t.email, owner_password = t.password,
               key_id = t.key_id, api_key = t.raw_key }
  end
  return out
end
M.tenant_rows = tenant_rows

local MAX_NEW_TENANTS = 100000

local function tenants(req)
  local b = body_of(req)
  if not b then return end
  local n = b.count
  if type(n) ~= "number" or n ~= math.floor(n) or n < 1 or n > MAX_NEW_TENANTS then
    return reply(req, 422, { detail = "count must be an integer from 1 to " .. MAX_NEW_TENANTS })
  end
  local plan_id = b.plan_id or "pro"
  if not state.plans_by_id[plan_id] then return reply(req, 422, { detail = "unknown plan_id" }) end
  return reply(req, 201, tenant_rows(state.new_tenants(n, plan_id)))
end

-- Mail an email-verification token (the contract has no endpoint that sends one).
local function email_verification(req)
  local b = body_of(req)
  if not b then return end
  local user = type(b.email) == "string" and state.users_by_email[b.email:lower()]
  if not user then return reply(req, 404, { detail = "User not found" }) end
  return reply(req, 201, api.send_one_time("email_verification", user))
end

local routes = {
  { "^/health$", { GET = function(req) return reply(req, 200, { status = "ok", now = state.now() }) end } },
  { "^/reset$", { POST = function(req) state.reset(); return reply(req, 200, { status = "reset" }) end } },
  { "^/clock$", { GET = clock, POST = clock } },
  { "^/config$", { GET = config, POST = config } },
  { "^/faults$", { GET = fault_list, POST = fault_list, DELETE = fault_list } },
  { "^/requests$", { GET = requests, DELETE = requests } },
  { "^/outbox$", { GET = outbox, DELETE = outbox } },
  { "^/consents$", { GET = function(req) return reply(req, 200, state.consents) end } },
  { "^/api%-keys$", { GET = stored_keys } },
  { "^/revoked%-keys$", { GET = revoked_keys } },
  { "^/checkout/([^/]+)/complete$", { POST = complete_checkout } },
  { "^/tenants$", { POST = tenants } },
  { "^/email%-verification$", { POST = email_verification } },
}

local function guard(req, path)
  local port = ngx.var.server_port
  local host = req.headers.host
  if host ~= "127.0.0.1:" .. port and host ~= "localhost:" .. port then
    return reply(req, 403,
                 { detail = "the control API answers only Host 127.0.0.1:" .. port .. " or localhost:" .. port })
  end
  local origin = req.headers.origin
  if origin and origin ~= "http://127.0.0.1:" .. port and origin ~= "http://localhost:" .. port then
    return reply(req, 403, { detail = "the control API refuses cross-origin requests" })
  end
  if path ~= "/health" and not (control_token and same_secret(req.headers["x-emulator-token"], control_token)) then
    return reply(req, 401, { detail = "X-Emulator-Token missing or wrong (see control-token in the prefix)" })
  end
  local ctype = (req.headers["content-type"] or ""):lower()
  if req.method == "POST" and not (ctype == "application/json" or ctype:find("^application/json%s*;")) then
    return reply(req, 415, { detail = "control requests must be Content-Type: application/json" })
  end
  return true
end

function M.handle(req)
  local path = req.path:sub(#"/_emulator" + 1)
  if guard(req, path) ~= true then return end
  for _, r in ipairs(routes) do
    local cap = path:match(r[1])
    if cap then
      local h = r[2][req.method]
      if not h then return reply(req, 405, { detail = "Method Not Allowed" }) end
      return h(req, cap)
    end
  end
  return reply(req, 404, { detail = "Not Found" })
end

return M
