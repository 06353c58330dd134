--- moltflow.client.pipeline: the way of every call, whatever its transport:
-- refresh the tokens (proactively; after a 401, once), pace against the
-- rate limit, send through the call's I/O, retry with backoff, and the
-- hooks around each attempt. These are methods of the client
-- (moltflow.client puts them into its class).
-- @module moltflow.client.pipeline

local core = require "moltflow.core"
local retry = require "moltflow.retry"
local aio = require "moltflow.async.io"

local Client = {}

local M = {methods = Client}

-- The I/O of the running coroutine: async inside c:batch/c:spawn, the host
-- scheduler's inside a host coroutine (c:set_scheduler), `self._coio[co]`,
-- else the client's transport.
function Client:_current_io()
  return aio.current(self._io, self._host_io, self._coio)
end

--- A call's deadline (monotonic) from its start: `max_elapsed` of the
-- retry policy, or the client's `timeout` when retries are off.
function Client:_deadline(started)
  local policy = self._retry
  return started + (policy and policy.max_elapsed or self._timeout)
end

-- Sleeps `seconds` (async io sleeps by yielding; the blocking transport uses
-- the `sleep` option when given). Returns the seconds asked for.
function Client:_wait(io, seconds)
  if seconds <= 0 then return 0 end
  if io ~= self._io then io.sleep(seconds) else (self._sleep or io.sleep)(seconds) end
  return seconds
end

-- Adds what a reader needs to the message of an error: a 404 names the full
-- URL requested (secret query values come REDACTED), so a doubled or
-- missing /api/v2 shows; the host adds its own hints (nginx: the `env`
-- directive that passes $MOLTFLOW_API_KEY to the workers).
function Client:_explain(err, req)
  if err.status == 404 then
    local _, path = req:info()
    err.message = ("%s (requested %s%s)"):format(tostring(err.message), self._core:info().base_url, path)
  else
    self._host.explain(err)
  end
end

-- Runs a built request to its end: proactive and reactive token refresh,
-- retries with backoff, pacing and hooks. All transports share it.
-- Hooks get {method, path, attempt} before each attempt and, after it,
-- the same plus status, kind (on errors), request_id and duration; never
-- headers, bodies or tokens. `once` (the endpoint flag): one attempt only,
-- no retry and no replay after a 401 (it may mean a wrong password).
-- `idempotent` (the endpoint's flag, or a raw request's declaration or
-- method rule; absent: not idempotent, as for the token refresh) is what the
-- retry policy decides by.
-- Waiting for a token refresh or for the rate limit's reset ends at the
-- call's deadline (`max_elapsed`, or `timeout` without retries). A hook that
-- raises is reported (`on_hook_error`) and the call goes on.
function Client:_run(req, method, auth, io, once, idempotent)
  io = io or self:_current_io()
  local policy, keeper, pacer, report = self._retry, self._tokens, self._pacer, self._report
  -- The deadline counts the waits asked for even when the sleep function
  -- returns early (or only records them).
  local started, slept = core.monotime(), 0
  local deadline = self:_deadline(started)
  local attempt, replayed, key_replayed = 0, false, false
  local shared = self._shared_key
  while true do
    attempt = attempt + 1
    if shared then self:_sync_shared_key() end
    if auth ~= "none" then
      local err = keeper:ensure_fresh(io, deadline)
      if err then return nil, err end
    end
    if pacer.enabled then
      local waited, err = pacer:before(io, req, deadline - slept)
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
        report:hook("on_request", self._on_request, {method = method, path = path, attempt = attempt})
      end
      t0 = core.monotime()
    end
    local gen, key_version = keeper:generation(), self._key_version
    local v, r = io.send(self._link, req)
    if self._on_response and t0 then
      local e = v == nil and r or nil
      report:hook("on_response", self._on_response,
                  {method = method, path = path, attempt = attempt, status = r and r.status,
                   kind = e and e.kind, request_id = r and r.request_id, duration = core.monotime() - t0})
    end
    pacer:after(r and r.rate_limit)
    if v ~= nil then return v, r end
    local err = r
    err.attempts = attempt
    self:_explain(err, req)
    local replay = false
    if err.status == 401 and shared and auth ~= "none" and not key_replayed and not once
       and not self._core:credentials() then
      -- the fleet's key was refused: a newer one (the store's, or the one another call of this client
      -- took while this one was in flight) is used at once and the call replayed, once
      key_replayed = true
      replay = self:_sync_shared_key(key_version or 0)
    elseif err.status == 401 and auth ~= "none" and not replayed and not once and self._core:credentials() then
      -- the access token was refused (expired, revoked): renew once, replay once
      replayed = true
      local wait_err
      replay, wait_err = keeper:on_unauthorized(io, gen, deadline - slept)
      if wait_err then
        wait_err.attempts = attempt
        return nil, wait_err
      end
    end
    if not replay then
      local elapsed = math.max(core.monotime() - started, slept) -- no closure: the hot path allocates none
      local wait = policy and not once and retry.delay(policy, idempotent == true, err, attempt, elapsed, core.time())
      if not wait then return nil, err end
      slept = slept + self:_wait(io, wait)
    end
  end
end

-- Puts the key of api_key_store into the core when its version changed.
-- `refused`: the version of a key the server refused; the key is then
-- reloaded now if the store has a newer one. Returns whether the client
-- holds a key other than the refused one.
function Client:_sync_shared_key(refused)
  local key, version
  if refused then
    if (self._key_version or 0) ~= refused then return true end -- already replaced, by another call
    key, version = self._shared_key:refresh(refused)
  else
    key, version = self._shared_key:current()
  end
  if not key or version == self._key_version then return false end
  self:set_api_key(key)
  self._key_version = version
  return true
end

-- Runs endpoint `ep` (compiled by moltflow.client.methods) with its arguments.
function Client:_call(ep, ...)
  local req = self._core:build(ep.ud, ...)
  return self:_run(req, ep.method, ep.auth, nil, ep.once, ep.idempotent)
end

local raw_endpoints = {}

--- Calls an endpoint that has no method yet.
-- syntax: `value, res = c:request(method, path, {query = {...}, body = {...}, auth = "any"})`
-- @param method "GET", "POST", "PUT", "PATCH" or "DELETE"
-- @param path relative to the base URL, e.g. "/usage/current"
-- @param[opt] opts `query` (table), `body` (table), `auth` ("none", "any" or "token"; default "any"),
--   `idempotent` (boolean: whether sending the request twice leaves the server as once does, so
--   that it may be sent again after an ambiguous failure; default: HTTP's rule for the method,
--   `retry.method_idempotent`)
-- @return value, res on success; nil and an error table on failure
-- @raise on a bad method, path or opts, before any I/O
function Client:request(method, path, opts)
  if type(method) ~= "string" or not ({GET = 1, POST = 1, PUT = 1, PATCH = 1, DELETE = 1})[method] then
    error("moltflow.request: 'method' must be GET, POST, PUT, PATCH or DELETE", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("moltflow.request: 'opts' must be a table", 2) end
  local idempotent = opts and opts.idempotent
  if idempotent == nil then
    idempotent = retry.method_idempotent(method)
  elseif type(idempotent) ~= "boolean" then
    error("moltflow.request: field 'idempotent' must be a boolean", 2)
  end
  local auth = opts and opts.auth or "any"
  local key = method .. " " .. auth
  local ep = raw_endpoints[key]
  if not ep then
    ep = core.endpoint{label = "request", method = method, path = "/", auth = auth, raw = true}
    raw_endpoints[key] = ep
  end
  local req = self._core:build(ep, path, opts)
  return self:_run(req, method, auth, nil, nil, idempotent)
end

return M
