--- moltflow.admin: the MoltFlow admin API for Lua.
-- Every endpoint of `moltflow.endpoints` becomes a method (`c.api_keys:create{...}`);
-- the C core (`moltflow.core`) builds requests, performs them with libcurl and
-- reads responses; this module adds tokens, retries, hooks and pacing.
-- @module moltflow.admin

local compat = require "moltflow.compat"
local core = require "moltflow.core"
local endpoints = require "moltflow.endpoints"
local retry = require "moltflow.retry"
local tokens = require "moltflow.tokens"

local admin = {
  VERSION = core.version,
  --- JSON null, in both directions (the same sentinel as lua-cjson's).
  null = core.null,
  endpoints = endpoints,
}

local DEFAULT_BASE_URL = "https://apiv2.waiflow.app/api/v2"
local LUA_NAME = jit and jit.version or _VERSION

--- Marks a table as a JSON array, so that an empty one goes out as `[]`.
-- Tables decoded from JSON arrays carry the same mark: lua-cjson's
-- `array_mt` when the loaded cjson has one (OpenResty's), so that
-- `cjson.encode` writes them as arrays too.
-- @param t a table (default: a new one)
-- @return t
-- @raise when `t` is neither a table nor nil
function admin.array(t)
  if t ~= nil and type(t) ~= "table" then error("moltflow.array: 't' must be a table or nil", 2) end
  return core.json_array(t)
end

--- Encodes a value as JSON with the core's codec: integers stay integers,
-- `admin.null` is `null`, tables marked by `admin.array` (or decoded from
-- arrays) are arrays.
-- @function admin.json_encode
-- @param v the value
-- @treturn string the JSON text
-- @raise on a value JSON cannot hold (a function, a userdata, a cycle)
admin.json_encode = core.json_encode
--- Decodes JSON text: arrays come back marked as arrays, `null` as `admin.null`.
-- @function admin.json_decode
-- @tparam string text the JSON text
-- @return the value
-- @return[2] nil and a message for malformed JSON
admin.json_decode = core.json_decode

--- Lower-case hex SHA-256 of a string (OpenSSL).
-- @function admin.sha256
-- @tparam string s the data
-- @treturn string 64 hex digits
admin.sha256 = core.sha256
--- Lower-case hex HMAC-SHA256 (OpenSSL).
-- @function admin.hmac_sha256
-- @tparam string key the secret
-- @tparam string s the data
-- @treturn string 64 hex digits
admin.hmac_sha256 = core.hmac_sha256

--- The hash the server stores for a raw API key: SHA-256, lower-case hex.
-- @param raw_key the `raw_key` returned by create or rotate
-- @treturn string 64 hex digits, as `key_hash` on the server
-- @raise when `raw_key` is not a string
function admin.key_fingerprint(raw_key)
  if type(raw_key) ~= "string" then error("moltflow.key_fingerprint: 'raw_key' must be a string", 2) end
  return core.sha256(raw_key)
end

--- Verifies an `X-Webhook-Signature` (HMAC-SHA256 of the raw body, hex) in
-- constant time.
-- @tparam string secret the webhook's secret
-- @tparam string body the raw request body, as received
-- @param signature the header's value (hex, `sha256=` prefix allowed); a non-string gives false
-- @return true or false
-- @raise when `secret` or `body` is not a string
function admin.verify_signature(secret, body, signature)
  if type(secret) ~= "string" then error("moltflow.verify_signature: 'secret' must be a string", 2) end
  if type(body) ~= "string" then error("moltflow.verify_signature: 'body' must be a string", 2) end
  if type(signature) ~= "string" then return false end
  signature = signature:gsub("^sha256=", ""):lower()
  return core.equal(core.hmac_sha256(secret, body), signature)
end

--- The claims of a JWT, decoded without verifying the signature.
-- @function admin.jwt_claims
-- @tparam string token the JWT
-- @return a table, or nil and a message
admin.jwt_claims = core.jwt_claims

--- Writes a file only its owner can read (mode 0600), atomically: a new file
-- under an unpredictable name beside `path` (`O_EXCL`), every write checked,
-- synced, then renamed over `path` (a link at `path` is replaced, never
-- written through). No shell is run.
-- @function admin.write_private
-- @tparam string path the file
-- @tparam string data its content
-- @return true, or nil and a message (the old file, if any, is kept)
admin.write_private = core.sys.write_private

------------------------------------------------------------------ errors

local error_mt = core.error_mt

--- Makes an error table of the SDK's shape (for transports written in Lua),
-- with the core's own constructor: every error, C or Lua, is made there.
-- @function admin.error
-- @tparam table fields `kind` and `message` (strings), and any of `status`,
--   `method`, `path`, `attempts` (default 1), `retry_after`, `rate_limit`,
--   `connect_failed`
-- @return a new error table with the `moltflow.error` metatable (`__tostring`)
-- @raise when `kind` or `message` is missing or not a string
admin.error = core.new_error

--- Whether a value is an error returned by this SDK.
-- @param v any value
-- @treturn boolean
function admin.is_error(v)
  return type(v) == "table" and getmetatable(v) == error_mt
end

-- ---------------------------------------------------------- token stores

--- A token store keeping tokens in memory (the default); it can be shared.
-- A store has `store:load()`, `store:save(tokens_or_nil)` and optionally
-- `store:try_lock(ttl)` and `store:unlock(handle)` (moltflow.tokens).
-- @function admin.memory_store
-- @return a store for the `token_store` option
admin.memory_store = tokens.memory_store

--- A token store in a private file (mode 0600, atomic saves, an fcntl lock):
-- `moltflow.file_store.new`.
-- @function admin.file_store
admin.file_store = require("moltflow.file_store").new

--- Tokens and the rate budget shared through Redis by every process on
-- every host: `moltflow.redis_store.new`.
-- @function admin.redis_store
admin.redis_store = require("moltflow.redis_store").new

------------------------------------------------------------------ client

local Client = {}
Client.__index = Client
Client.__name = "moltflow.client"

local OPTIONS = {
  blocking = "boolean", -- false: in nginx, a call from a phase without cosockets raises instead of blocking
  base_url = "string", api_key = "string", access_token = "string", refresh_token = "string",
  timeout = "number", connect_timeout = "number", max_response_bytes = "number",
  user_agent = "string", ca_file = "string", proxy = "string", insecure_http = "boolean",
  retry = "table|boolean", on_tokens = "function", on_request = "function",
  on_response = "function", on_hook_error = "function", sleep = "function", pace = "boolean|table",
  refresh_skew = "number", token_store = "table", transport = "string|table",
  loop = "table", pool = "boolean", http_version = "string",
}

local function check_options(opts)
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then error(("moltflow.new: unknown option '%s'"):format(tostring(k)), 3) end
    if not want:find(type(v), 1, true) then
      error(("moltflow.new: field '%s' must be a %s (got %s)"):format(k, want:gsub("|", " or "), type(v)), 3)
    end
  end
end

--- The base URL as the client uses it: trailing slashes removed, and
-- `/api/v2` added to a bare host. So `https://api.example.com`,
-- `https://api.example.com/` and `https://api.example.com/api/v2/` all give
-- `https://api.example.com/api/v2`; a URL with another path (a proxy's
-- prefix, say) is kept as it is. `base_url`, `$MOLTFLOW_API_URL` and the
-- CLI's `--base-url` all go through it.
-- @tparam string url the URL
-- @treturn string the normalised URL
-- @raise when `url` is not a string
function admin.normalize_base_url(url)
  if type(url) ~= "string" then error("moltflow.normalize_base_url: 'url' must be a string", 2) end
  url = url:gsub("/+$", "")
  if url:match("^%a[%w+.-]*://[^/]*$") then url = url .. "/api/v2" end
  return url
end

local function default_base_url()
  local url = os.getenv("MOLTFLOW_API_URL")
  if url and url ~= "" then return admin.normalize_base_url(url) end
  return DEFAULT_BASE_URL
end

--- The base URL a client made with `base_url = url` talks to: `url`
-- normalised (`admin.normalize_base_url`), else `$MOLTFLOW_API_URL`
-- normalised, else the default (`https://apiv2.waiflow.app/api/v2`).
-- @tparam[opt] string url the URL given, or nil
-- @treturn string the URL
-- @raise when `url` is neither a string nor nil
function admin.base_url(url)
  if url == nil then return default_base_url() end
  if type(url) ~= "string" then error("moltflow.base_url: 'url' must be a string or nil", 2) end
  return admin.normalize_base_url(url)
end

local function nonempty(s)
  if s == "" then return nil end
  return s
end

-- The transports: how a built request reaches the server. Each is
-- {send = function(client, req) -> value, res | nil, err; sleep = function(s)}.
local blocking_io = {
  send = function(c, req)
    local v, r = c._core:send(req)
    local loop = c._loop
    if loop.watching then loop:_after_blocking() end
    return v, r
  end,
  sleep = core.sleep,
}

local transports = {curl = blocking_io}
local transport_names = {[blocking_io] = "curl"}

--- Registers a transport by name (used by moltflow.transport.* modules).
-- @tparam string name the name for the `transport` option
-- @tparam table io `{send = function(client, req) -> value, res | nil, err, sleep = function(seconds)}`
function admin.register_transport(name, io)
  transports[name] = io
  transport_names[io] = name
end

local function pick_transport(opts)
  local t = opts.transport
  if type(t) == "table" then return t end
  -- in nginx, also for clients made in init_by_lua: the ngx transport uses
  -- libcurl itself in the phases where cosockets are unavailable
  if t == nil and ngx and ngx.socket and ngx.get_phase then t = "ngx" end
  t = t or "curl"
  if t == "ngx" and not transports.ngx then require "moltflow.transport.ngx" end
  local io = transports[t]
  if not io then error(("moltflow.new: unknown transport '%s'"):format(t), 3) end
  return io
end

------------------------------------------------------------------ loops

local async = require "moltflow.async"
local default_loop

--- The Lua state's default loop: one curl multi handle (connections, TLS
-- sessions, DNS) that every client of this Lua state uses unless given
-- `loop = other` or `pool = false`. Nothing is shared across Lua states.
-- @return the loop: `loop:poll([timeout])`, `loop:watch{socket, timer}`,
--   `loop:action([fd, what])`, `loop:running()`
function admin.loop()
  if not default_loop then default_loop = async.new_loop(core.loop_new()) end
  return default_loop
end

--- A new loop, for clients that should not share the default one's pool.
-- @param[opt] opts `pool_size`: connections kept per host (8)
function admin.new_loop(opts)
  if opts ~= nil and type(opts) ~= "table" then error("moltflow.new_loop: expected a table of options", 2) end
  return async.new_loop(core.loop_new(opts))
end

--- Drives the default loop's calls: `admin.loop():poll(timeout)`.
-- @return the number of calls still running
function admin.poll(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    error("moltflow.poll: 'timeout' must be a number of seconds", 2)
  end
  return admin.loop():poll(math.max(0, timeout or 0))
end

local function pick_loop(opts)
  local loop = opts.loop
  if loop ~= nil then
    if getmetatable(loop) ~= async.Loop or not loop._core then
      error("moltflow.new: field 'loop' must be a loop (admin.loop() or admin.new_loop())", 3)
    end
    if opts.pool == false then error("moltflow.new: 'loop' and 'pool = false' exclude each other", 3) end
    return loop
  end
  if opts.pool == false then return admin.new_loop() end
  return admin.loop()
end

local group_mts = {}

--- Creates a client.
-- @param opts options: `base_url`, `api_key`, `access_token`, `refresh_token`,
--   `timeout` (30 s), `connect_timeout` (10 s), `max_response_bytes` (8 MiB),
--   `user_agent`, `ca_file`, `proxy`, `insecure_http`, `retry` (policy table or
--   false), `on_tokens`, `on_request`, `on_response`, `on_hook_error`, `sleep`, `pace`,
--   `refresh_skew` (60 s), `token_store`, `transport`, `loop` (default
--   `admin.loop()`), `pool` (false: a loop of its own), `http_version`
--   ("2": HTTP/2 when the server offers it over TLS, the default; "1.1").
-- @return the client (docs/client.md, "Options", lists defaults)
-- @raise on an unknown option or a wrong type, before any I/O
function admin.new(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error("moltflow.new: expected a table of options", 2) end
  check_options(opts)
  local io = pick_transport(opts)
  local loop = pick_loop(opts)
  local store = opts.token_store
  if store then tokens.check_store(store) end
  local pace = opts.pace
  if type(pace) == "table" and (type(pace.reserve) ~= "function" or type(pace.record) ~= "function") then
    error("moltflow.new: field 'pace' must be true, false or a store with reserve and record "
          .. "(admin.redis_store)", 2)
  end
  local access, refresh = opts.access_token, opts.refresh_token
  if store and not access and not refresh then access, refresh = tokens.initial(store) end
  local api_key = opts.api_key
  if api_key == nil then api_key = nonempty(os.getenv("MOLTFLOW_API_KEY")) end
  -- the transport's own checks (ngx: proxy, ca_file), before any I/O
  local io_conf = io.configure and io.configure(opts)
  local cc = core.new{
    base_url = opts.base_url and admin.normalize_base_url(opts.base_url) or default_base_url(),
    api_key = api_key,
    access_token = access,
    refresh_token = refresh,
    timeout = opts.timeout,
    connect_timeout = opts.connect_timeout,
    max_response_bytes = opts.max_response_bytes,
    user_agent = opts.user_agent or ("moltflow-lua/%s (%s; %s)"):format(core.version, LUA_NAME,
                                                                       core.curl_version:match("^%S+") or "libcurl"),
    ca_file = opts.ca_file,
    proxy = opts.proxy,
    insecure_http = opts.insecure_http,
    http_version = opts.http_version,
    loop = loop._core,
  }
  local settings = cc:info()
  local self = setmetatable({
    _core = cc,
    _loop = loop,
    _timeout = settings.timeout,
    _connect_timeout = settings.connect_timeout,
    _retry = retry.policy(opts.retry),
    _io = io,
    _coio = setmetatable({}, {__mode = "k"}), -- coroutine -> io while it runs async
    _sleep = opts.sleep,
    _on_tokens = opts.on_tokens,
    _on_request = opts.on_request or false, -- false, not nil: a nil field is also looked up in Client
    _on_response = opts.on_response or false,
    _on_hook_error = opts.on_hook_error,
    _pace = pace or false,
    _pace_store = type(pace) == "table" and pace or nil,
    _pace_key = api_key and core.sha256("moltflow-rate-budget\0key\0" .. api_key) or false,
    _skew = opts.refresh_skew or 60,
    _store = store,
    _rate = {},
    _token_gen = 0,
    _io_conf = io_conf, -- the transport's settings (ngx: the proxy)
    _blocking = opts.blocking, -- false: raise where a call could only block (nginx's log phase...)
  }, Client)
  for group, mt in pairs(group_mts) do
    self[group] = setmetatable({_client = self}, mt)
  end
  return self
end

function Client:__tostring()
  return tostring(self._core)
end

--- Closes the client: connections and secrets are released. Idempotent;
-- also runs from `__close` and the garbage collector.
function Client:close()
  self._core:close()
  async.client_closed(self) -- its calls in flight end with kind "closed"
end
Client.__close = Client.close

--- Settings that hold no secret: `{base_url, timeout, connect_timeout,
-- max_response_bytes, user_agent}`.
-- @treturn table the settings
function Client:info()
  return self._core:info()
end

--- The name of the client's transport: `"curl"` (libcurl, blocking), `"ngx"`
-- (cosockets, picked by itself inside nginx), another name given to
-- `admin.register_transport`, or `"custom"` for a table passed as the
-- `transport` option. Calls inside `c:batch`/`c:spawn` run on the async
-- scheduler whatever this says.
-- @treturn string the name
function Client:transport_name()
  return transport_names[self._io] or "custom"
end

--- Whether `close()` has run.
-- @treturn boolean
function Client:is_closed()
  return self._core:is_closed()
end

--- The current tokens.
-- @return `{access_token, refresh_token, expires_at}`, or nil when there are none
function Client:tokens()
  return self._core:tokens()
end

--- Replaces the tokens: `c:set_tokens{access_token = ..., refresh_token = ...}`
-- (nil clears them). Calls `on_tokens` and the `token_store`'s `save`.
-- @param t a table of tokens, or nil
-- @raise when `t` is neither, or a token is not a string
function Client:set_tokens(t)
  if t ~= nil and type(t) ~= "table" then error("moltflow: set_tokens: expected a table or nil", 2) end
  t = t or {}
  tokens.set(self, t.access_token, t.refresh_token)
end

--- Forgets the login: clears the tokens in memory and in the `token_store`,
-- and calls `on_tokens(nil)`, whether or not tokens were held. No request.
function Client:forget_tokens()
  tokens.forget(self)
end

--- Replaces the API key (nil removes it).
-- @param key a string or nil
-- @raise when `key` is neither
function Client:set_api_key(key)
  self._core:set_api_key(key)
  self._pace_key = key and core.sha256("moltflow-rate-budget\0key\0" .. key) or false
end

--- The last rate-limit headers seen.
-- @return `{remaining = n, reset = unix}` (fields nil before any answer)
function Client:rate_limit()
  return {remaining = self._rate.remaining, reset = self._rate.reset}
end

-- Client:_current_io(), the I/O of the running coroutine (async inside
-- c:batch/c:spawn, `self._coio[co]`, else the client's transport), is
-- defined by moltflow.async.

-- Sleeps `seconds` (async io sleeps by yielding; the blocking transport uses
-- the `sleep` option when given). Returns the seconds asked for.
function Client:_wait(io, seconds)
  if seconds <= 0 then return 0 end
  if io ~= self._io then io.sleep(seconds) else (self._sleep or io.sleep)(seconds) end
  return seconds
end

-- Pacing: with no request left in the window, wait for its reset (plus
-- retry.RESET_MARGIN). Windows last a minute, so a longer wait (clocks that
-- disagree) is cut to 60 s. A wait that would end after the call's deadline
-- is not made: the call ends at once with kind "rate_limited".
-- Returns the seconds waited, or nil and that error.
function Client:_pace_wait(io, req, deadline)
  local r = self._rate
  if r.remaining and r.remaining <= 0 and r.reset then
    local wait = r.reset - core.time()
    wait = wait > 0 and math.min(wait + retry.RESET_MARGIN, 60) or 0
    if wait > 0 then
      if core.monotime() + wait > deadline then
        local method, path = req:info()
        return nil, admin.error{kind = "rate_limited", method = method, path = path, retry_after = wait,
                                rate_limit = {remaining = r.remaining, reset = r.reset},
                                message = ("no request left until the rate limit resets in %.0f s, "
                                           .. "after the call's deadline"):format(wait)}
      end
      return self:_wait(io, wait)
    end
  end
  return 0
end

-- The budget a call counts against, as a hash: the API key's when the client
-- has one, else the logged-in user's (its access token's `sub`). Nil when
-- neither is known.
function Client:_budget_id()
  if self._pace_key then return self._pace_key end
  if self._budget_gen ~= self._token_gen then
    local t = self._core:tokens()
    local claims = t and t.access_token and core.jwt_claims(t.access_token)
    local sub = type(claims) == "table" and claims.sub
    self._budget_gen = self._token_gen
    self._budget_user = sub and core.sha256("moltflow-rate-budget\0user\0" .. tostring(sub)) or false
  end
  return self._budget_user or nil
end

-- Pacing through a shared store (`pace = store`): one request reserved from
-- the budget the server last announced to any client of the store, or a
-- wait for the reset. A wait past the call's deadline ends the call
-- (kind "rate_limited"). A store that fails means per-client pacing (one
-- warning). Returns the seconds waited, or nil and an error.
function Client:_pace_shared(io, req, deadline)
  local store, id = self._pace_store, self:_budget_id()
  if not id then return self:_pace_wait(io, req, deadline) end
  local waited = 0
  -- a probe (the request that learns a new window's budget) may take as long as one attempt
  local probe_ttl = self._connect_timeout + self._timeout
  while true do
    local ok, go, wait, reset = pcall(store.reserve, store, id, core.time(), retry.RESET_MARGIN, probe_ttl)
    if not ok or go == nil then
      self:_store_trouble(ok and wait or go, "pace")
      return self:_pace_wait(io, req, deadline)
    end
    self:_store_ok()
    if go then return waited end
    wait = math.min(wait, 60)
    if core.monotime() + waited + wait > deadline then -- waits count in full, as in _run
      local method, path = req:info()
      return nil, admin.error{kind = "rate_limited", method = method, path = path, retry_after = wait,
                              rate_limit = {remaining = 0, reset = reset},
                              message = ("no request left in the shared budget until the rate limit resets in "
                                         .. "%.0f s, after the call's deadline"):format(wait)}
    end
    waited = waited + self:_wait(io, wait)
  end
end

-- Tells the shared budget what the server announced (or, with no rate
-- headers, that this request learned nothing).
function Client:_pace_record(rate)
  local store, id = self._pace_store, self:_budget_id()
  if not id then return end
  local ok, done, err
  if rate and rate.remaining and rate.reset then
    ok, done, err = pcall(store.record, store, id, rate.remaining, rate.reset)
  elseif store.release_probe then
    ok, done, err = pcall(store.release_probe, store, id)
  else
    return
  end
  if not ok or not done then self:_store_trouble(ok and err or done, "pace") else self:_store_ok() end
end

-- A hook raised: `on_hook_error{hook = name, message = ...}` hears of it, or
-- else a warning goes to nginx's log or stderr. The call goes on.
function Client:_hook_failed(name, err, line)
  local report = self._on_hook_error
  local message = tostring(err)
  if report and pcall(report, {hook = name, message = message}) then return end
  line = line or ("moltflow: the %s hook raised an error (the call went on): %s"):format(name, message)
  if ngx and ngx.log then ngx.log(ngx.WARN, line) else io.stderr:write(line, "\n") end
end

-- Adds what a reader needs to the message of an error: a 404 names the full
-- URL requested (secret query values come REDACTED), so a doubled or
-- missing /api/v2 shows; inside nginx, "no credentials" names the `env`
-- directive, without which nginx hides $MOLTFLOW_API_KEY from the workers.
function Client:_explain(err, req)
  if err.status == 404 then
    local _, path = req:info()
    err.message = ("%s (requested %s%s)"):format(tostring(err.message), self._core:info().base_url, path)
  elseif ngx and err.kind == "auth" and not err.status and tostring(err.message):find("^no credentials") then
    err.message = err.message .. " (nginx passes a variable such as MOLTFLOW_API_KEY to its workers only when "
                  .. "nginx.conf declares it: env MOLTFLOW_API_KEY;)"
  end
end

-- A shared store (token_store, or pace) failed: the client goes on locally
-- (its own lock, its own pacing). One warning per outage, through the same
-- channel as hook errors (hook "token_store" or "pace"); the next success
-- ends the outage.
function Client:_store_trouble(err, name)
  if self._store_down then return end
  self._store_down = true
  local message = tostring(err)
  self:_hook_failed(name or "token_store", message,
                    ("moltflow: warning: the shared store failed, going on locally: %s"):format(message))
end

function Client:_store_ok()
  self._store_down = false
end

-- Runs a hook; an error it raises is reported, never raised.
function Client:_hook(name, fn, arg)
  local ok, err = pcall(fn, arg)
  if not ok then self:_hook_failed(name, err) end
end

-- Runs a built request to its end: proactive and reactive token refresh,
-- retries with backoff, pacing and hooks. All transports share it.
-- Hooks get {method, path, attempt} before each attempt and, after it,
-- the same plus status, kind (on errors), request_id and duration; never
-- headers, bodies or tokens. `once` (the endpoint flag): one attempt only,
-- no retry and no replay after a 401 (it may mean a wrong password).
-- Waiting for a token refresh or for the rate limit's reset ends at the
-- call's deadline (`max_elapsed`, or `timeout` without retries). A hook that
-- raises is reported (`on_hook_error`) and the call goes on.
function Client:_run(req, method, auth, io, once)
  io = io or self:_current_io()
  local policy = self._retry
  -- The deadline counts the waits asked for even when the sleep function
  -- returns early (or only records them).
  local started, slept = core.monotime(), 0
  local deadline = tokens.deadline(self, started)
  local attempt, replayed = 0, false
  while true do
    attempt = attempt + 1
    if auth ~= "none" then
      local err = tokens.ensure_fresh(self, io, deadline)
      if err then return nil, err end
    end
    if self._pace then
      local waited, err
      if self._pace_store then
        waited, err = self:_pace_shared(io, req, deadline - slept)
      else
        waited, err = self:_pace_wait(io, req, deadline - slept)
      end
      if not waited then
        err.attempts = attempt
        return nil, err
      end
      slept = slept + waited
    end
    local path, t0
    if self._on_request or self._on_response then
      local _
      _, path = req:info() -- secret query values come REDACTED
      if self._on_request then
        self:_hook("on_request", self._on_request, {method = method, path = path, attempt = attempt})
      end
      t0 = core.monotime()
    end
    local gen = self._token_gen
    local v, r = io.send(self, req)
    if self._on_response and t0 then
      local e = v == nil and r or nil
      self:_hook("on_response", self._on_response,
                 {method = method, path = path, attempt = attempt, status = r and r.status,
                  kind = e and e.kind, request_id = r and r.request_id, duration = core.monotime() - t0})
    end
    if r and r.rate_limit and r.rate_limit.remaining then self._rate = r.rate_limit end
    if self._pace_store then self:_pace_record(r and r.rate_limit) end
    if v ~= nil then return v, r end
    local err = r
    err.attempts = attempt
    self:_explain(err, req)
    local replay = false
    if err.status == 401 and auth ~= "none" and not replayed and not once and self._core:credentials() then
      -- the access token was refused (expired, revoked): renew once, replay once
      replayed = true
      local wait_err
      replay, wait_err = tokens.on_unauthorized(self, io, gen, deadline - slept)
      if wait_err then
        wait_err.attempts = attempt
        return nil, wait_err
      end
    end
    if not replay then
      local elapsed = math.max(core.monotime() - started, slept) -- no closure: the hot path allocates none
      local wait = policy and not once and retry.delay(policy, method, err, attempt, elapsed, core.time())
      if not wait then return nil, err end
      slept = slept + self:_wait(io, wait)
    end
  end
end

function Client:_call(ep, ...)
  local req = self._core:build(ep.ud, ...)
  return self:_run(req, ep.method, ep.auth, nil, ep.once)
end

local raw_endpoints = {}

--- Calls an endpoint that has no method yet.
-- syntax: `value, res = c:request(method, path, {query = {...}, body = {...}, auth = "any"})`
-- @param method "GET", "POST", "PUT", "PATCH" or "DELETE"
-- @param path relative to the base URL, e.g. "/usage/current"
-- @param[opt] opts `query` (table), `body` (table), `auth` ("none", "any" or "token"; default "any")
-- @return value, res on success; nil and an error table on failure
-- @raise on a bad method, path or opts, before any I/O
function Client:request(method, path, opts)
  if type(method) ~= "string" or not ({GET = 1, POST = 1, PUT = 1, PATCH = 1, DELETE = 1})[method] then
    error("moltflow: request: 'method' must be GET, POST, PUT, PATCH or DELETE", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("moltflow: request: 'opts' must be a table", 2) end
  local auth = opts and opts.auth or "any"
  local key = method .. " " .. auth
  local ep = raw_endpoints[key]
  if not ep then
    ep = core.endpoint{label = "request", method = method, path = "/", auth = auth, raw = true}
    raw_endpoints[key] = ep
  end
  local req = self._core:build(ep, path, opts)
  return self:_run(req, method, auth)
end

------------------------------------------------------- endpoint methods

local special = {}

local function store_tokens(self, v)
  if type(v) == "table" and v.access_token then tokens.set(self, v.access_token, v.refresh_token) end
end

special["auth.login"] = function(ep)
  return function(g, args)
    local self = g._client
    local v, r = self:_call(ep, args)
    if v ~= nil then store_tokens(self, v) end
    return v, r
  end
end
special["auth.magic_link_verify"] = special["auth.login"]

-- `c.auth:refresh()`: sends the stored refresh token and stores the new pair.
special["auth.refresh"] = function()
  return function(g)
    local self = g._client
    local ok, v, res = tokens.refresh(self, self:_current_io(), tokens.deadline(self, core.monotime()))
    if not ok then return nil, v end
    return v, res
  end
end

-- `c.auth:logout()`: revokes both tokens on the server and forgets them.
special["auth.logout"] = function(ep)
  return function(g)
    local self = g._client
    local io = self:_current_io()
    -- so the body names the refresh token in use
    tokens.ensure_fresh(self, io, tokens.deadline(self, core.monotime()))
    local held = self._core:tokens()
    local v, r = self:_call(ep, {refresh_token = held and held.refresh_token})
    tokens.clear(self) -- whatever the server said: on_tokens(nil)
    return v, r
  end
end

-- `c.gdpr:delete_account{current_password = ...}`: sent once; after the
-- server confirmed, the client forgets its tokens and its token_store's.
special["gdpr.delete_account"] = function(ep)
  return function(g, args)
    local self = g._client
    local v, r = self:_call(ep, args)
    if v ~= nil then self:forget_tokens() end
    return v, r
  end
end

local FLAGS = {body = true, once = true}

local compiled = {}
for _, e in ipairs(endpoints) do
  local group, name, method, path, auth, scope, fields = e[1], e[2], e[3], e[4], e[5], e[6], e[7]
  local label = group .. "." .. name
  local flags = {}
  for word in (e[8] or ""):gmatch("%S+") do
    if not FLAGS[word] then error(("moltflow.endpoints: %s: unknown flag '%s'"):format(label, word)) end
    flags[word] = true
  end
  local ep = {ud = core.endpoint{label = label, method = method, path = path, auth = auth, fields = fields,
                                 body = flags.body, once = flags.once},
              group = group, name = name, method = method, path = path, auth = auth, scope = scope,
              label = label, once = flags.once or nil}
  compiled[#compiled + 1] = ep
  local mt = group_mts[group]
  if not mt then
    mt = {__name = "moltflow." .. group}
    mt.__index = mt
    group_mts[group] = mt
  end
  local impl = special[label] and special[label](ep)
  mt[name] = function(g, ...)
    if getmetatable(g) ~= mt then
      error(("moltflow: %s: call it with ':' (c.%s:%s(...))"):format(label, group, name), 2)
    end
    if impl then return impl(g, ...) end
    return g._client:_call(ep, ...)
  end
  if label == "auth.refresh" then Client._eps = {refresh = ep.ud} end
end

--- The compiled endpoint list, for generated docs and tools.
-- @return a list of `{label, group, name, method, path, auth, scope, body, once,
--   params, fields = {{name, type, required}, ...}}`, in the order of
--   `moltflow.endpoints` (`body`: the fields go in a JSON body; `once`: never
--   retried)
function admin.describe()
  local out = {}
  for i, ep in ipairs(compiled) do
    local d = ep.ud:describe()
    d.group, d.name, d.scope = ep.group, ep.name, ep.scope
    out[i] = d
  end
  return out
end

--- The method tables: `admin.Client` for clients, `admin.groups.api_keys`
-- and so on for endpoint groups. Helper modules add methods here.
admin.Client = Client
admin.groups = group_mts
tokens.install(admin)
async.extend(admin) -- c:batch, c:spawn, c:poll, c:set_scheduler, admin.batch
require("moltflow.shdict_store").install(admin) -- admin.shdict_store: tokens shared by nginx workers
require("moltflow.helpers").install(admin) -- c:quota(), c.api_keys:ensure{...}, ...
return admin
