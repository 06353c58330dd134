--- moltflow.client.methods: the client's endpoint methods and its ways to
-- run many calls. Every endpoint of `moltflow.endpoints` becomes a method of
-- its group (`c.api_keys:create{...}`), a few with more to do (login and
-- logout keep the tokens); the helpers (moltflow.helpers) join the client
-- and its groups; `c:batch`, `c:spawn`, `c:poll` and `c:set_scheduler` run
-- calls on the async scheduler (moltflow.async.*).
-- @module moltflow.client.methods

local core = require "moltflow.core"
local endpoints = require "moltflow.endpoints"
local helpers = require "moltflow.helpers"
local aio = require "moltflow.async.io"
local batch = require "moltflow.async.batch"
local handle = require "moltflow.async.handle"

local unpack = table.unpack or unpack
local pack = table.pack or function(...) return {n = select("#", ...), ...} end

local M = {}

------------------------------------------------------- endpoint methods

local special = {}

local function store_tokens(self, v)
  if type(v) == "table" and v.access_token then self._tokens:set(v.access_token, v.refresh_token) end
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
    local ok, v, res = self._tokens:refresh(self:_current_io(), self:_deadline(core.monotime()))
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
    self._tokens:ensure_fresh(io, self:_deadline(core.monotime()))
    local held = self._core:tokens()
    local v, r = self:_call(ep, {refresh_token = held and held.refresh_token})
    self._tokens:clear() -- whatever the server said: on_tokens(nil)
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

local FLAGS = {body = true, once = true, idempotent = true}

--- The method tables of the endpoint groups, by group name (`groups.api_keys`...).
M.groups = {}
--- The compiled endpoints, in the order of `moltflow.endpoints`.
M.compiled = {}

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
              label = label, once = flags.once or nil, idempotent = flags.idempotent == true}
  M.compiled[#M.compiled + 1] = ep
  local mt = M.groups[group]
  if not mt then
    mt = {__name = "moltflow." .. group}
    mt.__index = mt
    M.groups[group] = mt
  end
  local impl = special[label] and special[label](ep)
  mt[name] = function(g, ...)
    if getmetatable(g) ~= mt then
      error(("moltflow: %s: call it with ':' (c.%s:%s(...))"):format(label, group, name), 2)
    end
    if impl then return impl(g, ...) end
    return g._client:_call(ep, ...)
  end
  -- the compiled `auth.refresh`, for the token keeper's refresh call
  if label == "auth.refresh" then M.refresh_endpoint = ep.ud end
end

-- the helpers that are group methods
M.groups.api_keys.find = helpers.find_key
M.groups.api_keys.ensure = helpers.ensure_key
M.groups.usage.daily_rows = helpers.daily_rows

------------------------------------------------------------ client methods

local Client = {}
M.client_methods = Client

Client.quota = helpers.quota
Client.will_exceed = helpers.will_exceed

--- Runs calls concurrently over libcurl multi and waits for all of them.
-- syntax: `results = c:batch(calls, {concurrency = 8})`
-- @param calls a list; each a function (`function() return c.usage:current() end`)
--   or a table `{"group.name", args...}` (or `{other_client, "group.name", args...}`)
-- @param opts `concurrency`: calls in flight at once (8)
-- @return a list in the order of `calls`: `results[i] = {value, res}` or
--   `{nil, err}` (with `n`, the count of values the call returned). A Lua error
--   in a call cancels the others and is raised.
function Client:batch(calls, opts)
  return batch.run(calls, opts, self, "batch", self._host.threads)
end

--- Starts a call without waiting; `c:poll()` drives it.
-- syntax: `h = c:spawn(fn, ...)` or `h = c:spawn("usage.current", args...)`
-- @return a handle: `h.done`, `h:result()`, `h:on_done(fn)`, `h:cancel()`
function Client:spawn(fn, ...)
  local f, args
  if type(fn) == "function" then
    f, args = fn, pack(...)
  elseif type(fn) == "string" then
    local call = pack(self, fn, ...)
    local g, name, first, n = batch.resolve(call, self, "spawn")
    f = function() return g[name](g, unpack(call, first + 1, n)) end
    args = {n = 0}
  else
    error("moltflow.spawn: expected a function or \"group.name\"", 2)
  end
  return handle.spawn(self._loop, f, args)
end

--- Drives the calls spawned on this client's loop (its own and those of
-- the loop's other clients): resumes those whose I/O finished,
-- then waits for the network at most `timeout` seconds (default 0) and
-- returns as soon as no call is left. A Lua error in a call is raised here.
-- @return the number of calls still running
function Client:poll(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    error("moltflow.poll: 'timeout' must be a number of seconds", 2)
  end
  return self._loop:poll(math.max(0, timeout or 0))
end

--- Makes calls made inside a host's own coroutines yield instead of block.
-- While a call waits, it calls `yield(what)` (`what.kind` is "io" or "sleep",
-- `what.deadline` the monotonic time a sleep ends) and checks again when the
-- host resumes it. `c:set_scheduler(coroutine.yield)` suits most schedulers;
-- nil turns it off. Calls from the main thread still block.
function Client:set_scheduler(yield)
  if yield ~= nil and type(yield) ~= "function" then
    error("moltflow.set_scheduler: expected a function or nil", 2)
  end
  self._host_io = yield and aio.host_io(yield) or false
end

--- The compiled endpoint list, for generated docs and tools (`admin.describe`).
function M.describe()
  local out = {}
  for i, ep in ipairs(M.compiled) do
    local d = ep.ud:describe()
    d.group, d.name, d.scope, d.idempotent = ep.group, ep.name, ep.scope, ep.idempotent
    out[i] = d
  end
  return out
end

return M
