--- Retry policy: when to try a failed call again, and how long to wait.
-- Pure policy, no I/O: `admin.lua` asks `delay()` after each failure and
-- sleeps with the client's sleep function.
--
-- Rules:
-- * A call declared idempotent (the endpoint's `idempotent` flag in
--   `moltflow.endpoints`, or `idempotent = true` given to `c:request`) is
--   retried on network errors, timeouts and the statuses of `retry_on`:
--   sending it again is safe even when the server acted on the failed attempt.
-- * Any other call is retried only when the server certainly did not act:
--   the connection failed (`err.connect_failed`), or it answered 429.
-- * A raw `c:request` that declares nothing follows HTTP's rule for its
--   method (RFC 9110: GET, HEAD, OPTIONS, PUT and DELETE are idempotent;
--   POST and PATCH are not): `retry.method_idempotent`.
-- * The wait is exponential backoff with full jitter, `random() * min(max_delay,
--   base_delay * 2^(attempt - 1))`, unless the server said how long:
--   `Retry-After` (seconds or an HTTP date, read by the core), or on a 429
--   without it, `X-RateLimit-Reset` (plus `RESET_MARGIN`).
-- * `max_elapsed` is one deadline over every attempt and every sleep: a wait
--   that would pass it ends the call with the last error instead.
--   `admin.lua` holds the other waits to it as well: a pacing wait past it
--   ends the call with kind "rate_limited", waiting for a token refresh with
--   kind "timeout".
-- @module moltflow.retry

local retry = {}

--- Seconds added to a wait for `X-RateLimit-Reset`: the reset is a whole
-- second on the server's clock, and clocks differ a little; waking exactly at
-- it can land in the old window.
retry.RESET_MARGIN = 0.25

--- The default policy (a fresh copy each call).
-- @return `{max_attempts, base_delay, max_delay, max_elapsed, retry_on}`
function retry.defaults()
  return {max_attempts = 3, base_delay = 0.5, max_delay = 8, max_elapsed = 30,
          retry_on = {408, 429, 500, 502, 503, 504}}
end

-- RFC 9110, 9.2.2 (the methods this SDK sends; TRACE never)
local IDEMPOTENT_METHODS = {GET = true, HEAD = true, OPTIONS = true, PUT = true, DELETE = true}

--- HTTP's rule, for a raw request that declares nothing: whether `method` is
-- idempotent by RFC 9110.
-- @tparam string method the HTTP method
-- @treturn boolean
function retry.method_idempotent(method)
  return IDEMPOTENT_METHODS[method] == true
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -math.huge and v < math.huge
end

local function check_number(opts, name, min, integer)
  local v = opts[name]
  if type(v) ~= "number" or v ~= v or v < min or v == math.huge or (integer and not is_integer(v)) then
    error(("moltflow.new: field 'retry.%s' must be %s >= %g"):format(
      name, integer and "an integer" or "a number", min), 4)
  end
end

--- Normalises a policy option: `nil` or `true` give the defaults, `false` none.
-- @param opts nil, true, false or a table overriding some defaults
-- @return a policy table, or nil for no retries; raises on a bad option
function retry.policy(opts)
  if opts == false then return nil end
  local p = retry.defaults()
  if opts == nil or opts == true then opts = {} end
  if type(opts) ~= "table" then error("moltflow.new: field 'retry' must be a table or a boolean", 3) end
  for k, v in pairs(opts) do
    if p[k] == nil then error(("moltflow.new: unknown field 'retry.%s'"):format(tostring(k)), 3) end
    p[k] = v
  end
  check_number(p, "max_attempts", 1, true)
  check_number(p, "base_delay", 0)
  check_number(p, "max_delay", 0)
  check_number(p, "max_elapsed", 0)
  if type(p.retry_on) ~= "table" then error("moltflow.new: field 'retry.retry_on' must be a list of statuses", 3) end
  local set = {}
  for i, s in ipairs(p.retry_on) do
    if not is_integer(s) or s < 100 or s > 599 then
      error(("moltflow.new: field 'retry.retry_on[%d]' must be an HTTP status (100-599)"):format(i), 3)
    end
    set[s] = true
  end
  p.retry_set = set
  return p
end

local function check_idempotent(fn, idempotent)
  if type(idempotent) ~= "boolean" then
    error(("moltflow.retry.%s: 'idempotent' must be a boolean (the endpoint's flag, or "
           .. "retry.method_idempotent(method) for a raw request)"):format(fn), 3)
  end
end

--- Whether an error may be retried at all.
-- @param policy a table from `retry.policy`
-- @tparam boolean idempotent whether the call is idempotent (the endpoint's
--   flag; for a raw request its declaration or `retry.method_idempotent`)
-- @param err the error table of the failed attempt
-- @treturn boolean
-- @raise when `idempotent` is not a boolean (a method name is not enough)
function retry.retryable(policy, idempotent, err)
  check_idempotent("retryable", idempotent)
  if err.kind == "network" or err.kind == "timeout" then
    return idempotent or err.connect_failed == true
  end
  if err.status and policy.retry_set[err.status] then
    return idempotent or err.status == 429
  end
  return false
end

--- The wait before attempt `attempt + 1`, or nil when the error is final.
-- @param policy a table from `retry.policy`
-- @tparam boolean idempotent whether the call is idempotent (as for `retryable`)
-- @param err the error table of the failed attempt
-- @param attempt attempts made so far (1 after the first)
-- @param elapsed seconds spent so far (attempts and sleeps)
-- @param now Unix time, for `X-RateLimit-Reset`
-- @param random optional function returning [0, 1), for tests
-- @return seconds to wait, or nil: give up
-- @raise when `idempotent` is not a boolean
function retry.delay(policy, idempotent, err, attempt, elapsed, now, random)
  check_idempotent("delay", idempotent)
  if attempt >= policy.max_attempts or not retry.retryable(policy, idempotent, err) then return nil end
  local wait
  if err.retry_after then
    wait = err.retry_after
  elseif err.status == 429 and err.rate_limit and err.rate_limit.reset and now then
    wait = math.max(0, err.rate_limit.reset - now) + retry.RESET_MARGIN
  else
    local cap = math.min(policy.max_delay, policy.base_delay * 2 ^ (attempt - 1))
    wait = (random or math.random)() * cap
  end
  if elapsed + wait > policy.max_elapsed then return nil end
  return wait
end

return retry
