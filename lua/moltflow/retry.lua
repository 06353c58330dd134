--- Retry policy: when to try a failed call again, and how long to wait.
-- Pure policy, no I/O: `admin.lua` asks `delay()` after each failure and
-- sleeps with the client's sleep function.
-- @module moltflow.retry

local retry = {}

--- The default policy (a fresh copy each call).
function retry.defaults()
  return {max_attempts = 3, base_delay = 0.5, max_delay = 8, max_elapsed = 30,
          retry_on = {408, 429, 500, 502, 503, 504}}
end

local IDEMPOTENT = {GET = true, HEAD = true, OPTIONS = true, PUT = true, DELETE = true}

local function check_number(opts, name, min)
  local v = opts[name]
  if type(v) ~= "number" or v ~= v or v < min then
    error(("moltflow.new: field 'retry.%s' must be a number >= %g"):format(name, min), 4)
  end
end

--- Normalises a policy option: `nil` gives the defaults, `false` none.
-- @param opts nil, false or a table overriding some defaults
-- @return a policy table, or nil for no retries
function retry.policy(opts)
  if opts == false then return nil end
  local p = retry.defaults()
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error("moltflow.new: field 'retry' must be a table or false", 3) end
  for k, v in pairs(opts) do
    if p[k] == nil then error(("moltflow.new: unknown field 'retry.%s'"):format(tostring(k)), 3) end
    p[k] = v
  end
  check_number(p, "max_attempts", 1)
  check_number(p, "base_delay", 0)
  check_number(p, "max_delay", 0)
  check_number(p, "max_elapsed", 0)
  if type(p.retry_on) ~= "table" then error("moltflow.new: field 'retry.retry_on' must be a list of statuses", 3) end
  local set = {}
  for _, s in ipairs(p.retry_on) do set[s] = true end
  p.retry_set = set
  return p
end

--- Whether an error may be retried at all for this method.
-- Idempotent methods are retried on network errors, timeouts and the listed
-- statuses. Other methods only when the request certainly never reached the
-- server: the connection failed, or the server answered 429 (it refused the
-- request without acting on it).
function retry.retryable(policy, method, err)
  if err.kind == "network" or err.kind == "timeout" then
    return IDEMPOTENT[method] == true or err.connect_failed == true
  end
  if err.status and policy.retry_set[err.status] then
    return IDEMPOTENT[method] == true or err.status == 429
  end
  return false
end

--- The wait before attempt `attempt + 1`, or nil when the error is final.
-- Exponential backoff with full jitter; the server's `Retry-After` (or, on a
-- 429, `X-RateLimit-Reset`) wins when present. `elapsed` is the time spent so
-- far: a wait that would pass `max_elapsed` gives up instead.
-- @param policy a table from `retry.policy`
-- @param method the HTTP method
-- @param err the error table of the failed attempt
-- @param attempt attempts made so far (1 after the first)
-- @param elapsed seconds since the call started
-- @param now Unix time, for `X-RateLimit-Reset`
-- @param random optional function returning [0, 1), for tests
function retry.delay(policy, method, err, attempt, elapsed, now, random)
  if attempt >= policy.max_attempts or not retry.retryable(policy, method, err) then return nil end
  local wait
  if err.retry_after then
    wait = err.retry_after
  elseif err.status == 429 and err.rate_limit and err.rate_limit.reset and now then
    wait = math.max(0, err.rate_limit.reset - now)
  else
    local cap = math.min(policy.max_delay, policy.base_delay * 2 ^ (attempt - 1))
    wait = (random or math.random)() * cap
  end
  if elapsed + wait > policy.max_elapsed then return nil end
  return wait
end

return retry
