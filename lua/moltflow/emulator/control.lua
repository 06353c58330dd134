-- The control API under /_emulator/: only in the emulator, never logged,
-- never rate-limited, never faulted. docs/emulator.md documents each route.
local api = require "moltflow.emulator.api"
local faults = require "moltflow.emulator.faults"
local json = require "moltflow.emulator.json"
local state = require "moltflow.emulator.state"

local M = {}

local function reply(req, status, body)
  return require("moltflow.emulator").send(req, status, body)
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

local function requests(req)
  if req.method == "DELETE" then
    state.requests = json.array()
    return reply(req, 204)
  end
  return reply(req, 200, state.requests)
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
                      key_hash = k.key_hash, scopes = state.copy_list(k.scopes), is_active = k.is_active }
  end
  table.sort(out, function(a, b) return a.id < b.id end)
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
  { "^/checkout/([^/]+)/complete$", { POST = complete_checkout } },
  { "^/email%-verification$", { POST = email_verification } },
}

function M.handle(req)
  local path = req.path:sub(#"/_emulator" + 1)
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
