--- moltflow.redis_store: tokens and the rate budget shared through Redis,
-- by every process on every host (`admin.redis_store{...}`).
--
--   local store = admin.redis_store{url = "redis://10.0.0.5:6379/0", prefix = "myapp:", password = pw}
--   local c = admin.new{token_store = store}                    -- one login, one refresh at a time
--   local k = admin.new{api_key = key, pace = store}            -- one rate budget per API key
--
-- Keys (under `prefix`, default "moltflow:"): `tokens` (JSON), `tokens:lock`
-- (the refresh lock: SET NX PX, released by a compare-and-delete script, so
-- only its owner releases it and a killed owner's lock expires), and
-- `rate:<sha256 of the credential>` (the budget the server last announced,
-- reserved from by a script, atomically).
--
-- When Redis cannot be reached (down, timing out, refusing), every method
-- returns nil and an error of kind "store": clients then go on locally (see
-- `moltflow.tokens` and `admin.new`'s `pace`). After a failure the store
-- waits `retry_after` seconds before it tries Redis again. Tokens whose save
-- failed are written at the next operation that reaches Redis.
-- @module moltflow.redis_store

local core = require "moltflow.core"
local redis = require "moltflow.redis"

local M = {}

local UNLOCK = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0]]

-- ARGV: now (unix s), margin (s), probe ttl (ms). Returns {1} to go, or
-- {0, seconds to wait, reset}. A known window with requests left: take one.
-- None left: wait for its reset. The window over or none known yet: one
-- request (the probe) goes to learn the new budget; the others poll briefly.
local RESERVE = [[
local rem = tonumber(redis.call('HGET', KEYS[1], 'remaining'))
local reset = tonumber(redis.call('HGET', KEYS[1], 'reset'))
local now, margin = tonumber(ARGV[1]), tonumber(ARGV[2])
if rem and reset and now < reset + margin then
  if rem > 0 then
    redis.call('HINCRBY', KEYS[1], 'remaining', -1)
    return {1}
  end
  return {0, tostring(reset + margin - now), tostring(reset)}
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then return {1} end
return {0, '0.02', '0'}]]

-- ARGV: remaining, reset as the server announced them. A newer window
-- replaces the budget (and ends the probe); the same window only lowers it
-- (requests reserved but not yet counted by the server stay reserved).
local RECORD = [[
local rem, reset = tonumber(ARGV[1]), tonumber(ARGV[2])
local known = tonumber(redis.call('HGET', KEYS[1], 'reset'))
if not known or reset > known then
  redis.call('HMSET', KEYS[1], 'remaining', rem, 'reset', reset)
  redis.call('DEL', KEYS[2])
elseif reset == known then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'remaining'))
  if not cur or rem < cur then redis.call('HSET', KEYS[1], 'remaining', rem) end
end
redis.call('EXPIRE', KEYS[1], 3600)
return 1]]

-- tostring: "moltflow: store REDIS <command>: <message>"
local function store_error(command, message)
  return setmetatable({kind = "store", method = "REDIS", path = command, message = message, attempts = 1},
                      core.error_mt)
end

local function hex(bytes)
  return (bytes:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end

--- A store in Redis.
-- @tparam table opts `url` ("redis://host:port/db", required), `prefix`
--   (default "moltflow:"), `password`, `timeout` (seconds for each Redis
--   command, default 1), `retry_after` (seconds before Redis is tried again
--   after a failure, default 1)
-- @return the store: `load`, `save`, `try_lock`, `unlock` (a token store),
--   `reserve`, `record`, `release_probe` (a rate budget for `pace`), `close`
-- @raise on a missing or malformed option, before any I/O
function M.new(opts)
  if type(opts) ~= "table" then error("moltflow.redis_store: expected a table of options", 2) end
  if type(opts.url) ~= "string" then error("moltflow.redis_store: field 'url' must be a string", 2) end
  local target, uerr = redis.parse_url(opts.url)
  if not target then error("moltflow.redis_store: field 'url': " .. uerr, 2) end
  for _, field in ipairs{"prefix", "password"} do
    if opts[field] ~= nil and type(opts[field]) ~= "string" then
      error(("moltflow.redis_store: field '%s' must be a string"):format(field), 2)
    end
  end
  for _, field in ipairs{"timeout", "retry_after"} do
    if opts[field] ~= nil and (type(opts[field]) ~= "number" or opts[field] <= 0) then
      error(("moltflow.redis_store: field '%s' must be a positive number"):format(field), 2)
    end
  end
  local conn = redis.new{host = target.host, port = target.port, db = target.db,
                         password = opts.password or target.password, timeout = opts.timeout}
  local prefix = opts.prefix or "moltflow:"
  local tokens_key, lock_key = prefix .. "tokens", prefix .. "tokens:lock"
  local retry_after = opts.retry_after or 1
  local down_until = -math.huge
  local unsaved -- tokens (or false: a logout) whose save failed; nil: none
  local store = {}

  -- Runs a command unless Redis failed less than retry_after ago (`urgent`:
  -- try anyway); a failure starts that pause. Pending tokens go first once
  -- Redis answers.
  local function send(urgent, command, ...)
    local now = core.monotime()
    if now < down_until and not urgent then
      return nil, store_error(command, "Redis is unavailable (retrying shortly)")
    end
    if unsaved ~= nil then
      local v, err
      if unsaved then
        v, err = conn:call("SET", tokens_key, core.json_encode(unsaved))
      else
        v, err = conn:call("DEL", tokens_key)
      end
      if v == nil then
        down_until = core.monotime() + retry_after
        return nil, store_error(command, err)
      end
      unsaved = nil
    end
    local v, err = conn:call(command, ...)
    if v == nil then
      down_until = core.monotime() + retry_after
      return nil, store_error(command, err)
    end
    down_until = -math.huge
    return v
  end
  local function call(...) return send(false, ...) end

  function store.load()
    local text, err = call("GET", tokens_key)
    if text == nil then return nil, err end
    local t = text and core.json_decode(text)
    return type(t) == "table" and t or nil
  end

  function store.save(_, tokens)
    local ok, err
    if tokens == nil then
      ok, err = call("DEL", tokens_key)
    else
      ok, err = call("SET", tokens_key, core.json_encode({access_token = tokens.access_token,
                                                         refresh_token = tokens.refresh_token,
                                                         expires_at = tokens.expires_at}))
    end
    if ok == nil then
      unsaved = tokens or false
      return nil, err
    end
    return true
  end

  -- Takes the refresh lock for `ttl` seconds: a handle, nil while another
  -- holder has it, or nil and an error when Redis cannot be reached.
  function store.try_lock(_, ttl)
    local handle = hex(core.random_bytes(16))
    -- a refresh is rare and costly to get wrong: Redis is asked even during the pause
    local ok, err = send(true, "SET", lock_key, handle, "NX", "PX", math.max(1, math.floor(ttl * 1000)))
    if ok == nil then return nil, err end
    if ok == false then return nil end
    return handle
  end

  -- Releases the lock if `handle` still holds it (compare-and-delete).
  function store.unlock(_, handle)
    send(true, "EVAL", UNLOCK, 1, lock_key, handle)
  end

  local function budget_keys(budget_id)
    local key = prefix .. "rate:" .. budget_id
    return key, key .. ":probe"
  end

  -- Reserves one request from the budget `budget_id` (a hash naming the
  -- credential). Returns true (go); false, seconds to wait, the reset (the
  -- budget is spent, or another client is learning the new one); or nil and
  -- an error.
  -- budget_id: a hash of the credential, never the credential
  -- now: the caller's clock (Unix seconds)
  -- margin: seconds added to the reset
  -- probe_ttl: how long (s) one request may take to learn a new window
  function store.reserve(_, budget_id, now, margin, probe_ttl)
    local key, probe = budget_keys(budget_id)
    local v, err = call("EVAL", RESERVE, 2, key, probe, ("%.3f"):format(now), tostring(margin),
                        math.max(1, math.floor(probe_ttl * 1000)))
    if v == nil then return nil, err end
    if v[1] == 1 then return true end
    return false, tonumber(v[2]), tonumber(v[3])
  end

  -- Records what the server announced for `budget_id`.
  -- Returns true, or nil and an error.
  function store.record(_, budget_id, remaining, reset)
    local key, probe = budget_keys(budget_id)
    local v, err = call("EVAL", RECORD, 2, key, probe, tostring(remaining), tostring(reset))
    if v == nil then return nil, err end
    return true
  end

  -- Ends a probe that learned nothing (its answer had no rate headers).
  function store.release_probe(_, budget_id)
    local _, probe = budget_keys(budget_id)
    local v, err = call("DEL", probe)
    if v == nil then return nil, err end
    return true
  end

  -- Closes the connection held outside nginx.
  function store.close()
    conn:close()
  end

  return setmetatable(store, {__tostring = function() return "moltflow.redis_store(" .. tostring(conn) .. ")" end})
end

return M
