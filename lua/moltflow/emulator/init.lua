-- MoltFlow admin API emulator: the request pipeline.
--
-- nginx.conf (written by bin/moltflow-emulator) calls init(opts) from
-- init_by_lua and content() for every request. Order of work per API request:
--   request log entry -> fault injection -> routing (404/405) ->
--   authentication -> rate limit (429) -> 401 -> usage count ->
--   scope/role (403) -> body parsing (400/422) -> handler.
local api = require "moltflow.emulator.api"
local auth = require "moltflow.emulator.auth"
local crypto = require "moltflow.emulator.crypto"
local json = require "moltflow.emulator.json"
local response = require "moltflow.emulator.response"
local state = require "moltflow.emulator.state"

local M = {}

local BASE = "/api/v2"
-- The request log keeps the most recent entries only, so long benchmarks do
-- not grow the worker without bound.
M.REQUEST_LOG_LIMIT = 10000

-- opts: rate_limit, rate_limit_scale, control_token_file (the launcher's
-- token for /_emulator/; read once here, at startup).
function M.init(opts)
  opts = opts or {}
  state.configure(opts)
  state.reset()
  local token
  if opts.control_token_file then
    local f = assert(io.open(opts.control_token_file, "rb"))
    token = f:read("*l")
    f:close()
    assert(token and #token >= 32, "the control token file holds no token")
  end
  local control = require("moltflow.emulator.control")
  control.configure({ control_token = token })
  -- --tenants N: the tenants' keys and owners' passwords for the caller (the
  -- launcher made the prefix private, and the file is created 0600).
  if opts.tenants_file then
    local f = assert(io.open(opts.tenants_file, "wb"))
    f:write(require("moltflow.emulator.json").encode(control.tenant_rows(state.seeded_tenants())), "\n")
    f:close()
  end
end

---------------------------------------------------------------- request
local function read_body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  -- Bodies larger than client_body_buffer_size are spooled to a file.
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local f = assert(io.open(file, "rb"))
  data = f:read("*a")
  f:close()
  return data
end

-- Lower-case header names; repeated headers joined with ", ".
local function flat_headers()
  local out = {}
  for k, v in pairs(ngx.req.get_headers(0)) do
    out[k:lower()] = type(v) == "table" and table.concat(v, ", ") or v
  end
  return out
end

function M.request()
  return {
    id = "req_" .. crypto.random_hex(12),
    method = ngx.req.get_method(),
    path = ngx.var.uri,
    query = ngx.var.args or "",
    args = ngx.req.get_uri_args(0),
    headers = flat_headers(),
    body_raw = read_body(),
    remote_addr = ngx.var.remote_addr,
  }
end

---------------------------------------------------------------- response
-- moltflow.emulator.response (control and faults answer through it too,
-- without requiring this module back).
M.send = response.send

---------------------------------------------------------------- rate limit
-- Fixed one-minute windows on the emulator clock (config rate_limit_window
-- shortens them for tests: with rate_limit_scale, "10 requests per 3 s"). Authenticated requests
-- count against their tenant's plan limit; everything else (public
-- endpoints, failed authentication, unknown paths) against the caller's IP
-- with the free plan's limit.

-- The bucket of a tenant (or of the caller's IP when tenant is nil), reset
-- when a new window has begun; plus its limit, the window end and now.
local function bucket_of(req, tenant)
  local now = state.now()
  local length = state.config.rate_limit_window
  local window = math.floor(now / length) * length
  local plan = state.plans_by_id[tenant and tenant.subscription.plan_id or "free"]
  local limit = math.max(1, math.floor(plan.limits.requests_per_minute * state.config.rate_limit_scale))
  local id = tenant and ("tenant:" .. tenant.id) or ("ip:" .. req.remote_addr)
  local bucket = state.rate[id]
  if not bucket or bucket.window ~= window then
    bucket = { window = window, count = 0 }
    state.rate[id] = bucket
  end
  return bucket, limit, window + length, now
end

-- Counts the request; false (and Retry-After) when the limit is reached.
local function rate_limit(req, tenant)
  local bucket, limit, reset, now = bucket_of(req, tenant)
  if state.config.rate_limit and bucket.count >= limit then
    req.rate = { remaining = 0, reset = reset, retry_after = math.max(1, math.ceil(reset - now)) }
    return false
  end
  bucket.count = bucket.count + 1
  req.rate = { remaining = math.max(0, limit - bucket.count), reset = reset }
  return true
end

-- Rate headers for answers injected by a fault: the caller's IP bucket as it
-- stands, without counting the request.
local function peek_rate(req)
  local bucket, limit, reset = bucket_of(req, nil)
  req.rate = { remaining = math.max(0, limit - bucket.count), reset = reset }
end

---------------------------------------------------------------- pipeline
local function handle_api(req)
  local faults = require "moltflow.emulator.faults"
  local path = req.path:sub(#BASE + 1)
  local fault = faults.take(req.method, path)
  if fault then
    req.log.fault = true
    if fault.delay then ngx.sleep(fault.delay) end
    if faults.answers_itself(fault) then
      peek_rate(req)
      return faults.apply(req, fault)
    end
  end

  local send = function(status, body, headers)
    if fault then return faults.apply(req, fault, status, body, headers) end
    return M.send(req, status, body, headers)
  end

  local route, extra
  if req.path:sub(1, #BASE + 1) == BASE .. "/" then route, extra = api.match(req.method, path) end
  if not route then
    rate_limit(req, nil)
    if extra then return send(405, { detail = "Method Not Allowed" }, { Allow = table.concat(extra, ", ") }) end
    return send(404, { detail = "Not Found" })
  end

  local principal, auth_err
  if route.auth ~= "none" then principal, auth_err = auth.authenticate(req.headers) end
  if not rate_limit(req, principal and principal.tenant) then
    return send(429, { detail = "Rate limit exceeded" })
  end
  if route.auth ~= "none" then
    if not principal then
      return send(401, { detail = auth_err or "Not authenticated" }, { ["WWW-Authenticate"] = "Bearer" })
    end
    api.count_api_call(principal.tenant.id)
    if route.auth == "token" and principal.kind ~= "token" then
      return send(401, { detail = "This endpoint requires a bearer token" }, { ["WWW-Authenticate"] = "Bearer" })
    end
    if principal.kind == "key" and route.scope and not auth.has_scope(principal.key, route.scope) then
      return send(403, { detail = "Missing required scope: " .. route.scope })
    end
    if principal.kind == "token" and route.roles and not route.roles[principal.user.role] then
      return send(403, { detail = "Insufficient role: " .. principal.user.role })
    end
  end

  local body
  if route.body then
    if req.body_raw:match("^%s*$") then
      if route.body == "required" then
        return send(422, { detail = { { loc = json.array({ "body" }), msg = "field required",
                                        type = "value_error.missing" } } })
      end
    else
      local decoded = json.decode(req.body_raw)
      if decoded == nil then return send(400, { detail = "Invalid JSON body" }) end
      if type(decoded) ~= "table" or json.is_array(decoded) or decoded == json.null then
        return send(422, { detail = { { loc = json.array({ "body" }), msg = "value is not a valid dict",
                                        type = "type_error.dict" } } })
      end
      body = decoded
    end
  end

  local status, out = route.handler(req, principal, body or {}, unpack(extra))
  return send(status, out)
end

function M.content()
  local req = M.request()
  if req.path == "/_emulator" or req.path:sub(1, 11) == "/_emulator/" then
    return require("moltflow.emulator.control").handle(req)
  end
  req.log = { method = req.method, path = req.path, query = req.query, headers = req.headers,
              body = req.body_raw, status = json.null, fault = false, at = state.now() }
  local log = state.requests
  log[#log + 1] = req.log
  if #log > 2 * M.REQUEST_LOG_LIMIT then
    local keep = json.array()
    for i = #log - M.REQUEST_LOG_LIMIT + 1, #log do keep[#keep + 1] = log[i] end
    state.requests = keep
  end
  local ok, err = pcall(handle_api, req)
  if not ok then
    ngx.log(ngx.ERR, "emulator error: ", err)
    if not ngx.headers_sent then return M.send(req, 500, { detail = "Internal emulator error" }) end
  end
end

return M
