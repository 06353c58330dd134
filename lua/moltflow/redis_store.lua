--- moltflow.redis_store: tokens and the rate budget shared through Redis,
-- by every process on every host (`admin.redis_store{...}`).
--
--   local store = admin.redis_store{url = "rediss://app:" .. pw .. "@redis.internal:6380/0",
--                                   ca_file = "/etc/ssl/redis-ca.pem", prefix = "prod:",
--                                   seal_key = os.getenv("MOLTFLOW_SEAL_KEY")}
--   local c = admin.new{token_store = store}                    -- one login, one refresh at a time
--   local k = admin.new{api_key = key, pace = store}            -- one rate budget per API key
--
-- Keys (under `prefix`, default "moltflow:"): `tokens` (JSON, or sealed with
-- the seal key: see `moltflow.seal`), `tokens:gen` (a random id that every
-- write of `tokens` replaces), `tokens:lock` (the refresh lock: SET NX PX,
-- released by a compare-and-delete script, so only its owner releases it and
-- a killed owner's lock expires), and `rate:<sha256 of the credential>` (the
-- budget the server last announced, reserved from by a script, atomically).
--
-- When Redis cannot be reached (down, timing out, refusing), every method
-- returns nil and an error of kind "store": clients then go on locally (see
-- `moltflow.tokens` and `admin.new`'s `pace`). After a failure the store
-- waits `retry_after` seconds before it tries Redis again. A save that failed
-- is written later only if nothing was written since this process last read
-- or wrote the tokens (the `tokens:gen` it knew is still there, checked and
-- written in one script): a logout is never undone and a newer login never
-- erased by a late write; a write that lost is dropped. A load that fails
-- (Redis down, tokens sealed with a key this process lacks, tampered) warns
-- once, until a load succeeds again.
-- @module moltflow.redis_store

local core = require "moltflow.core"
local redis = require "moltflow.redis"
local nginx = require "moltflow.transport.ngx.host"
local seal = require "moltflow.seal"

local M = {}

-- KEYS: api_key, api_key:version. ARGV: the version this publication follows,
-- its version, the record. -1 when published; else the version found (another
-- publication came first).
local PUBLISH = [[
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur ~= tonumber(ARGV[1]) then return cur end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
return -1]]

-- KEYS: tokens, gen. ARGV: new gen, "set" or "del", value. A write that
-- happens now: replaces whatever is there.
local SAVE = [[
redis.call('SET', KEYS[2], ARGV[1])
if ARGV[2] == 'set' then redis.call('SET', KEYS[1], ARGV[3]) else redis.call('DEL', KEYS[1]) end
return 1]]

-- KEYS: tokens, gen. ARGV: the gen this process last knew ('' for none), new
-- gen, "set" or "del", value. A late write: lands only if nothing was written
-- since (the same gen; or no gen and no tokens: a Redis restarted empty).
local SAVE_IF = [[
local cur = redis.call('GET', KEYS[2])
if cur then
  if cur ~= ARGV[1] then return 0 end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] == 'set' then redis.call('SET', KEYS[1], ARGV[4]) else redis.call('DEL', KEYS[1]) end
return 1]]

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

-- tostring: "moltflow: store REDIS <command>: <message>"; `cause`: the
-- moltflow.redis kind ("timeout", "tls", "auth", ...) or "seal"
local function store_error(command, err)
  local message = type(err) == "table" and err.message or tostring(err)
  message = tostring(message):gsub("^moltflow%.redis: ", "")
  return setmetatable({kind = "store", method = "REDIS", path = command, message = message, attempts = 1,
                       cause = type(err) == "table" and err.kind or nil}, core.error_mt)
end

local function hex(bytes)
  return (bytes:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end

-- The warning of a failed load: on_warning(message), else nginx's log or stderr.
local function default_warning(message)
  if not nginx.log(message) then io.stderr:write(message, "\n") end
end

--- A store in Redis.
-- @tparam table opts `url` ("redis://[user:password@]host:port/db", or
--   "rediss://..." for TLS; required), `prefix` (default "moltflow:"),
--   `username` (an ACL user), `password`, `ca_file` (the CAs to trust for
--   rediss://; default: the system's), `server_name` (the name the
--   certificate must carry, and SNI; default the url's host), `timeout`
--   (seconds for each Redis command, default 1), `retry_after` (seconds before
--   Redis is tried again after a failure, default 1), `seal_key` and
--   `old_seal_keys` (see `moltflow.seal`; default $MOLTFLOW_SEAL_KEY),
--   `on_warning` (function(message) for a failed load; default nginx's log or
--   stderr), and the RESP bounds of `moltflow.redis`
-- @return the store: `load`, `save`, `try_lock`, `unlock` (a token store),
--   `reserve`, `record`, `release_probe` (a rate budget for `pace`), `close`
-- @raise on a missing or malformed option, before any I/O
function M.new(opts)
  if type(opts) ~= "table" then error("moltflow.redis_store: expected a table of options", 2) end
  if type(opts.url) ~= "string" then error("moltflow.redis_store: field 'url' must be a string", 2) end
  local target, uerr = redis.parse_url(opts.url)
  if not target then error("moltflow.redis_store: field 'url': " .. uerr, 2) end
  for _, field in ipairs{"prefix", "username", "password", "ca_file", "server_name"} do
    if opts[field] ~= nil and type(opts[field]) ~= "string" then
      error(("moltflow.redis_store: field '%s' must be a string"):format(field), 2)
    end
  end
  for _, field in ipairs{"timeout", "retry_after"} do
    if opts[field] ~= nil and (type(opts[field]) ~= "number" or opts[field] <= 0) then
      error(("moltflow.redis_store: field '%s' must be a positive number"):format(field), 2)
    end
  end
  if opts.on_warning ~= nil and type(opts.on_warning) ~= "function" then
    error("moltflow.redis_store: field 'on_warning' must be a function", 2)
  end
  if opts.ca_file and not target.tls then
    error("moltflow.redis_store: field 'ca_file' needs a rediss:// url", 2)
  end
  local sealer = seal.from_options(opts, "moltflow.redis_store", 2)
  local conn_opts = {host = target.host, port = target.port, db = target.db, tls = target.tls,
                     username = opts.username or target.username, password = opts.password or target.password,
                     ca_file = opts.ca_file, server_name = opts.server_name, timeout = opts.timeout}
  for k in pairs(redis.LIMITS) do conn_opts[k] = opts[k] end
  local ok_conn, conn = pcall(redis.new, conn_opts)
  if not ok_conn then error((tostring(conn):gsub("^moltflow%.redis:", "moltflow.redis_store:")), 2) end
  local prefix = opts.prefix or "moltflow:"
  local tokens_key, gen_key, lock_key = prefix .. "tokens", prefix .. "tokens:gen", prefix .. "tokens:lock"
  local retry_after = opts.retry_after or 1
  local warn = opts.on_warning or default_warning
  local down_until = -math.huge
  local known_gen = "" -- the tokens:gen this process last read or wrote
  local unsaved -- {tokens or false (a logout), base = the gen it follows} whose save failed; nil: none
  local load_warned = false
  local store = {}

  local function new_gen() return core.sha256(core.random_bytes(16)):sub(1, 24) end

  -- The stored text of tokens (sealed with a seal key), or nil and an error.
  local function encode(tokens)
    local text, err = seal.encode(sealer, core.json_encode({access_token = tokens.access_token,
                                                            refresh_token = tokens.refresh_token,
                                                            expires_at = tokens.expires_at}))
    if not text then return nil, store_error("SET", err) end
    return text
  end

  -- Runs a command unless Redis failed less than retry_after ago (`urgent`:
  -- try anyway); a failure starts that pause. A pending save goes first once
  -- Redis answers, if nothing was written since (else it is dropped).
  local function send(urgent, command, ...)
    local now = core.monotime()
    if now < down_until and not urgent then
      return nil, store_error(command, "Redis is unavailable (retrying shortly)")
    end
    local text = unsaved and unsaved.tokens and encode(unsaved.tokens)
    if unsaved and unsaved.tokens and not text then unsaved = nil end -- cannot seal: nothing to write
    if unsaved ~= nil then
      local gen = new_gen()
      local v, err = conn:call("EVAL", SAVE_IF, 2, tokens_key, gen_key, unsaved.base, gen,
                               text and "set" or "del", text or "")
      if v == nil then
        down_until = core.monotime() + retry_after
        return nil, store_error(command, err)
      end
      if v == 1 then known_gen = gen end
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

  local function load_failed(err)
    if not load_warned then
      load_warned = true
      pcall(warn, ("moltflow: warning: the Redis store's tokens could not be loaded (this process goes on "
                   .. "without them until a load succeeds): %s"):format(tostring(err)))
    end
    return nil, err
  end

  function store.load()
    local v, err = call("MGET", tokens_key, gen_key)
    if v == nil then return load_failed(err) end
    known_gen = type(v[2]) == "string" and v[2] or ""
    local text = v[1]
    if not text then load_warned = false return nil end
    local json, stale_key = seal.decode(sealer, text)
    if not json then return load_failed(store_error("GET", stale_key)) end
    local t = core.json_decode(json)
    if type(t) ~= "table" then return load_failed(store_error("GET", "the stored tokens are not JSON")) end
    load_warned = false
    if stale_key then -- opened by an old seal key: sealed again with the current one, unless rewritten since
      local gen, sealed = new_gen(), encode(t)
      if sealed and call("EVAL", SAVE_IF, 2, tokens_key, gen_key, known_gen, gen, "set", sealed) == 1 then
        known_gen = gen
      end
    end
    return t
  end

  function store.save(_, tokens)
    local text, mode = "", "del"
    if tokens ~= nil then
      local err
      text, err = encode(tokens)
      if not text then return nil, err end
      mode = "set"
    end
    local gen = new_gen()
    local base = known_gen
    local ok, err = call("EVAL", SAVE, 2, tokens_key, gen_key, gen, mode, text)
    if ok == nil then
      unsaved = {tokens = tokens or false, base = base}
      return nil, err
    end
    unsaved = nil -- this write replaces any older pending one
    known_gen = gen
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

  -- The shared API key: `api_key` (the record {version, id, key,
  -- published_at}: JSON, or sealed), `api_key:version` (its version alone, for
  -- the workers' cheap check), `api_key:reports` (worker -> "version time": who
  -- adopted what), `api_key:rotation` (the state of a rotation in progress).
  local key_key, version_key = prefix .. "api_key", prefix .. "api_key:version"
  local reports_key, rotation_key = prefix .. "api_key:reports", prefix .. "api_key:rotation"

  local function decode_record(text, purpose)
    local json, err = seal.decode(sealer, text, purpose)
    if not json then return nil, store_error("GET", err) end
    local rec = core.json_decode(json)
    if type(rec) ~= "table" then return nil, store_error("GET", "the stored " .. purpose .. " is not JSON") end
    return rec
  end

  -- The version of the published key: 0 when none; or nil and an error.
  function store.api_key_version()
    local v, err = call("GET", version_key)
    if v == nil then return nil, err end
    return tonumber(v) or 0
  end

  -- The published key {version, id, key, published_at}; false when none; or nil and an error.
  function store.load_api_key()
    local text, err = call("GET", key_key)
    if text == nil then return nil, err end
    if not text then return false end
    local rec, rerr = decode_record(text, "api key")
    if not rec then return nil, rerr end
    if type(rec.key) ~= "string" or type(rec.version) ~= "number" then
      return nil, store_error("GET", "the stored API key record is malformed")
    end
    return rec
  end

  -- Publishes `rec` if the published version is still `after`: true; false
  -- and the version found; or nil and an error.
  function store.publish_api_key(_, rec, after)
    local text, serr = seal.encode(sealer, core.json_encode(rec), "api key")
    if not text then return nil, store_error("SET", serr) end
    local v, err = call("EVAL", PUBLISH, 2, key_key, version_key, tostring(after), tostring(rec.version), text)
    if v == nil then return nil, err end
    if v == -1 then return true end
    return false, v
  end

  -- A worker says it uses `version` (at `now`, Unix seconds).
  function store.report_api_key(_, worker, version, now)
    local v, err = call("HSET", reports_key, worker, ("%d %.3f"):format(version, now))
    if v == nil then return nil, err end
    call("EXPIRE", reports_key, 86400)
    return true
  end

  -- The workers' reports: {worker = {version = n, at = unix seconds}}; or nil and an error.
  function store.api_key_reports()
    local v, err = call("HGETALL", reports_key)
    if v == nil then return nil, err end
    local out = {}
    for i = 1, #v - 1, 2 do
      local version, at = v[i + 1]:match("^(%d+) ([%d.]+)$")
      if version then out[v[i]] = {version = tonumber(version), at = tonumber(at)} end
    end
    return out
  end

  -- The state of a rotation in progress (a table), false when none; or nil and an error.
  function store.load_rotation()
    local text, err = call("GET", rotation_key)
    if text == nil then return nil, err end
    if not text then return false end
    return decode_record(text, "rotation")
  end

  -- Saves (or with nil, ends) the rotation's state: true, or nil and an error.
  function store.save_rotation(_, state)
    local v, err
    if state == nil then
      v, err = call("DEL", rotation_key)
    else
      local text, serr = seal.encode(sealer, core.json_encode(state), "rotation")
      if not text then return nil, store_error("SET", serr) end
      v, err = call("SET", rotation_key, text)
    end
    if v == nil then return nil, err end
    return true
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

  local name = ("moltflow.redis_store(%s, prefix %s)"):format(tostring(conn), prefix)
  return setmetatable(store, {__tostring = function() return name end})
end

return M
