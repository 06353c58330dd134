--- moltflow.client: the client object: its options, its constructor
-- (`admin.new`), its lifecycle, and every field it holds, declared in
-- `client.new`. Its other methods come from its parts:
-- `moltflow.client.pipeline` (a call's way: refresh, pace, send, retry) and
-- `moltflow.client.methods` (the endpoint methods, batch and spawn).
-- @module moltflow.client

local core = require "moltflow.core"
local retry = require "moltflow.retry"
local tokens = require "moltflow.tokens"
local shared_key = require "moltflow.shared_key"
local pacing = require "moltflow.pacing"
local loops = require "moltflow.async.loop"
local transport = require "moltflow.transport"
local hooks = require "moltflow.client.hooks"
local pipeline = require "moltflow.client.pipeline"
local methods = require "moltflow.client.methods"

local M = {}

M.DEFAULT_BASE_URL = "https://apiv2.waiflow.app/api/v2"
local LUA_NAME = jit and jit.version or _VERSION

local Client = {}
local group_mts = methods.groups
-- A client's endpoint groups (c.usage, c.api_keys...) are made on first use
-- and kept: an agency's thousands of clients each use one or two of them.
Client.__index = function(self, k)
  local v = Client[k]
  if v ~= nil then return v end
  local mt = group_mts[k]
  if mt then
    local group = setmetatable({_client = self}, mt)
    rawset(self, k, group)
    return group
  end
end
Client.__name = "moltflow.client"
M.Client = Client

-- The client's methods from its parts: the class is put together here.
for _, part in ipairs{pipeline.methods, methods.client_methods} do
  for name, fn in pairs(part) do Client[name] = fn end
end

local WEAK_KEYS = {__mode = "k"} -- one metatable for every client's _coio

local OPTIONS = {
  blocking = "boolean", -- false: in nginx, a call from a phase without cosockets raises instead of blocking
  base_url = "string", api_key = "string|boolean", access_token = "string", refresh_token = "string",
  timeout = "number", connect_timeout = "number", max_response_bytes = "number",
  user_agent = "string", ca_file = "string", proxy = "string", insecure_http = "boolean",
  retry = "table|boolean", on_tokens = "function", on_request = "function",
  on_response = "function", on_hook_error = "function", sleep = "function", pace = "boolean|table",
  refresh_skew = "number", token_store = "table", transport = "string|table", api_key_store = "table",
  api_key_shdict = "string",
  loop = "table", pool = "boolean", http_version = "string",
  pool_size = "number", -- inside nginx: connections kept per worker and host (the cosocket transport)
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
function M.normalize_base_url(url)
  if type(url) ~= "string" then error("moltflow.normalize_base_url: 'url' must be a string", 2) end
  url = url:gsub("/+$", "")
  if url:match("^%a[%w+.-]*://[^/]*$") then url = url .. "/api/v2" end
  return url
end

--- The base URL a client made with `base_url = url` would use: `url`
-- normalised; without it (nil), `$MOLTFLOW_API_URL` normalised when set and
-- not empty, else the default.
-- @tparam[opt] string url the URL
-- @treturn string the normalised URL
-- @raise when `url` is neither a string nor nil
function M.base_url(url)
  if url ~= nil then
    if type(url) ~= "string" then error("moltflow.base_url: 'url' must be a string or nil", 2) end
    return M.normalize_base_url(url)
  end
  local env = os.getenv("MOLTFLOW_API_URL")
  if env and env ~= "" then return M.normalize_base_url(env) end
  return M.DEFAULT_BASE_URL
end

local function nonempty(s)
  if s == "" then return nil end
  return s
end

local function pick_transport(opts)
  local io, name = transport.pick(opts.transport)
  if not io then error(("moltflow.new: unknown transport '%s'"):format(name), 3) end
  return io
end


local default_loop

--- The Lua state's default loop: one curl multi handle (connections, TLS
-- sessions, DNS) that every client of this Lua state uses unless given
-- `loop = other` or `pool = false`. Nothing is shared across Lua states.
-- @return the loop: `loop:poll([timeout])`, `loop:watch{socket, timer}`,
--   `loop:action([fd, what])`, `loop:running()`
function M.loop()
  if not default_loop then default_loop = loops.new(core.loop_new()) end
  return default_loop
end

--- A new loop, for clients that should not share the default one's pool.
-- @param[opt] opts `pool_size`: connections kept per host (8)
function M.new_loop(opts)
  if opts ~= nil and type(opts) ~= "table" then error("moltflow.new_loop: expected a table of options", 2) end
  return loops.new(core.loop_new(opts))
end

local function pick_loop(opts)
  local loop = opts.loop
  if loop ~= nil then
    if getmetatable(loop) ~= loops.Loop or not loop:core_loop() then
      error("moltflow.new: field 'loop' must be a loop (admin.loop() or admin.new_loop())", 3)
    end
    if opts.pool == false then error("moltflow.new: 'loop' and 'pool = false' exclude each other", 3) end
    return loop
  end
  if opts.pool == false then return M.new_loop() end
  return M.loop()
end


--- Creates a client (`admin.new`).
-- @param opts options: `base_url`, `api_key`, `access_token`, `refresh_token`,
--   `timeout` (30 s), `connect_timeout` (10 s), `max_response_bytes` (8 MiB),
--   `user_agent`, `ca_file`, `proxy`, `insecure_http`, `retry` (policy table or
--   false), `on_tokens`, `on_request`, `on_response`, `on_hook_error`, `sleep`, `pace`,
--   `refresh_skew` (60 s), `token_store`, `transport`, `loop` (default
--   `admin.loop()`), `pool` (false: a loop of its own), `http_version`
--   ("2": HTTP/2 when the server offers it over TLS, the default; "1.1"),
--   `pool_size` (inside nginx: connections kept alive per worker to the API
--   host, 64; libcurl clients keep their loop's, `admin.new_loop{pool_size = n}`).
-- @return the client (docs/client.md, "Options", lists defaults)
-- @raise on an unknown option or a wrong type, before any I/O
function M.new(opts)
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
  -- false: no key at all, not even $MOLTFLOW_API_KEY (a client that only logs in)
  local api_key = opts.api_key
  if api_key == true then error("moltflow.new: field 'api_key' must be a string or false", 2) end
  if api_key == nil then api_key = nonempty(os.getenv("MOLTFLOW_API_KEY")) end
  if api_key == false then api_key = nil end
  local key_store = opts.api_key_store
  if key_store ~= nil then shared_key.check_store(key_store, "moltflow.new") end
  if opts.api_key_shdict ~= nil and key_store == nil then
    error("moltflow.new: field 'api_key_shdict' needs api_key_store", 2)
  end
  -- the transport's own checks (nginx's cosockets: proxy, ca_file), before any I/O
  local io_conf = io.configure and io.configure(opts)
  local cc = core.new{
    base_url = M.base_url(opts.base_url),
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
    loop = loop:core_loop(),
  }
  local settings = cc:info()
  local policy = retry.policy(opts.retry)
  local host = transport.host()
  -- What a transport and the async I/O get of the client (see moltflow.transport.curl).
  local link = {
    core = cc,
    loop = loop,
    settings = settings,
    conf = io_conf,             -- the transport's settings (nginx's cosockets: the proxy, the pool size)
    blocking = opts.blocking,   -- false: raise where a call could only block (nginx's log phase...)
  }
  local report = hooks.new(opts.on_hook_error, host.log)
  local self
  local keeper = tokens.keeper{
    core = cc, store = store, on_tokens = opts.on_tokens, skew = opts.refresh_skew or 60,
    call_budget = settings.connect_timeout + settings.timeout + (policy and policy.max_elapsed or 0),
    report = report, link = link, io = io, host = host,
    post = function(call_io, refresh_token)
      return self:_run(cc:build(methods.refresh_endpoint, {refresh_token = refresh_token}), "POST", "none", call_io)
    end,
  }
  self = setmetatable({
    _core = cc,
    _loop = loop,
    _link = link,
    _io = io,                   -- the transport
    _host = host,               -- the host's services (log, wait, threads, explain)
    _coio = setmetatable({}, WEAK_KEYS), -- coroutine -> io while it runs async
    _host_io = false,           -- the I/O of host coroutines (c:set_scheduler)
    _timeout = settings.timeout,
    _retry = policy,
    _sleep = opts.sleep,
    _on_request = opts.on_request or false, -- false, not nil: a nil field is also looked up in Client
    _on_response = opts.on_response or false,
    _report = report,
    _tokens = keeper,
    _pacer = false,
    _shared_key = false,        -- the keeper of the key from api_key_store (moltflow.shared_key)
    _key_version = false,       -- the version of that key the core holds
  }, Client)
  self._pacer = pacing.new{pace = pace, api_key = api_key, tokens = keeper, report = report,
                           probe_ttl = settings.connect_timeout + settings.timeout,
                           wait = function(call_io, seconds) return self:_wait(call_io, seconds) end}
  if key_store then
    -- inside nginx with a shared dict: every call reads the version there,
    -- one worker reads the store once a second; else a store read a second
    local dict = opts.api_key_shdict
    local cached = dict and host.cached_number(dict, "moltflow-api-key-version:" .. tostring(key_store), 1,
                                               function() return key_store:api_key_version() end)
    self._shared_key = shared_key.new(key_store, {
      check_every = cached and 0 or 1, cached_version = cached,
      warn = function(line) report:failed("api_key_store", line, line) end,
    })
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
  local loop = self._loop
  if loop then loop:link_closed(self._link) end -- its calls in flight end with kind "closed"
end
Client.__close = Client.close

--- Settings that hold no secret: `{base_url, timeout, connect_timeout,
-- max_response_bytes, user_agent}`.
-- @treturn table the settings
function Client:info()
  return self._core:info()
end

--- The name of the client's transport: the name of a built-in one
-- (moltflow.transport: libcurl, blocking; nginx's cosockets, picked by
-- itself inside nginx), another name given to
-- `admin.register_transport`, or `"custom"` for a table passed as the
-- `transport` option. Calls inside `c:batch`/`c:spawn` run on the async
-- scheduler whatever this says.
-- @treturn string the name
function Client:transport_name()
  return transport.name_of(self._io) or "custom"
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
  if t ~= nil and type(t) ~= "table" then error("moltflow.set_tokens: expected a table or nil", 2) end
  t = t or {}
  self._tokens:set(t.access_token, t.refresh_token)
end

--- Forgets the login: clears the tokens in memory and in the `token_store`,
-- and calls `on_tokens(nil)`, whether or not tokens were held. No request.
function Client:forget_tokens()
  self._tokens:forget()
end

--- Replaces the API key (nil removes it).
-- @param key a string or nil
-- @raise when `key` is neither
function Client:set_api_key(key)
  self._core:set_api_key(key)
  self._pacer:set_key(key)
end

--- The last rate-limit headers seen.
-- @return `{remaining = n, reset = unix}` (fields nil before any answer)
function Client:rate_limit()
  return self._pacer:rate_limit()
end

return M
