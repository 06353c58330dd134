--- moltflow.pacing: a client's pacing against the server's rate limit.
-- The pacer keeps the last rate-limit headers seen and, when pacing is on
-- (`pace = true`), waits before a call that has no request left in the
-- window; with `pace = store` (admin.redis_store) every client of the store
-- paces against one shared budget.
-- @module moltflow.pacing

local core = require "moltflow.core"
local errors = require "moltflow.errors"
local retry = require "moltflow.retry"

local pacing = {}

local Pacer = {}
Pacer.__index = Pacer
Pacer.__name = "moltflow.pacer"
pacing.Pacer = Pacer

local function key_budget(api_key)
  return api_key and core.sha256("moltflow-rate-budget\0key\0" .. api_key) or false
end

--- A client's pacer.
-- @tparam table o `pace` (the option: true, false or a store with `reserve`
--   and `record`), `api_key` (or nil), `tokens` (the client's keeper:
--   `generation()`, `held()`), `report` (the hooks' reporter), `probe_ttl`
--   (the longest one attempt can take), `wait` (function(io, seconds) ->
--   seconds: the client's sleep)
function pacing.new(o)
  local pace = o.pace
  return setmetatable({
    enabled = pace and true or false,
    store = type(pace) == "table" and pace or nil,
    key = key_budget(o.api_key), -- the API key's budget id, or false
    tokens = o.tokens, report = o.report, probe_ttl = o.probe_ttl, wait = o.wait,
    rate = {},                   -- the last rate-limit headers seen
    user_gen = nil, user = nil,  -- the logged-in user's budget id, for token generation user_gen
  }, Pacer)
end

--- The API key changed (nil: removed).
function Pacer:set_key(api_key)
  self.key = key_budget(api_key)
end

--- The last rate-limit headers seen: `{remaining, reset}`.
function Pacer:rate_limit()
  return {remaining = self.rate.remaining, reset = self.rate.reset}
end

-- Pacing: with no request left in the window, wait for its reset (plus
-- retry.RESET_MARGIN). Windows last a minute, so a longer wait (clocks that
-- disagree) is cut to 60 s. A wait that would end after the call's deadline
-- is not made: the call ends at once with kind "rate_limited".
-- Returns the seconds waited, or nil and that error.
local function pace_local(self, io, req, deadline)
  local r = self.rate
  if r.remaining and r.remaining <= 0 and r.reset then
    local wait = r.reset - core.time()
    wait = wait > 0 and math.min(wait + retry.RESET_MARGIN, 60) or 0
    if wait > 0 then
      if core.monotime() + wait > deadline then
        local method, path = req:info()
        return nil, errors.new{kind = "rate_limited", method = method, path = path, retry_after = wait,
                               rate_limit = {remaining = r.remaining, reset = r.reset},
                               message = ("no request left until the rate limit resets in %.0f s, "
                                          .. "after the call's deadline"):format(wait)}
      end
      return self.wait(io, wait)
    end
  end
  return 0
end

-- The budget a call counts against, as a hash: the API key's when the client
-- has one, else the logged-in user's (its access token's `sub`). Nil when
-- neither is known.
local function budget_id(self)
  if self.key then return self.key end
  local gen = self.tokens:generation()
  if self.user_gen ~= gen then
    local t = self.tokens:held()
    local claims = t and t.access_token and core.jwt_claims(t.access_token)
    local sub = type(claims) == "table" and claims.sub
    self.user_gen = gen
    self.user = sub and core.sha256("moltflow-rate-budget\0user\0" .. tostring(sub)) or false
  end
  return self.user or nil
end

-- Pacing through a shared store (`pace = store`): one request reserved from
-- the budget the server last announced to any client of the store, or a
-- wait for the reset. A wait past the call's deadline ends the call
-- (kind "rate_limited"). A store that fails means per-client pacing (one
-- warning). Returns the seconds waited, or nil and an error.
local function pace_shared(self, io, req, deadline)
  local store, id = self.store, budget_id(self)
  if not id then return pace_local(self, io, req, deadline) end
  local waited = 0
  -- a probe (the request that learns a new window's budget) may take as long as one attempt
  local probe_ttl = self.probe_ttl
  while true do
    local ok, go, wait, reset = pcall(store.reserve, store, id, core.time(), retry.RESET_MARGIN, probe_ttl)
    if not ok or go == nil then
      self.report:store_trouble(ok and wait or go, "pace")
      return pace_local(self, io, req, deadline)
    end
    self.report:store_ok()
    if go then return waited end
    wait = math.min(wait, 60)
    if core.monotime() + waited + wait > deadline then -- waits count in full, as in the pipeline
      local method, path = req:info()
      return nil, errors.new{kind = "rate_limited", method = method, path = path, retry_after = wait,
                             rate_limit = {remaining = 0, reset = reset},
                             message = ("no request left in the shared budget until the rate limit resets in "
                                        .. "%.0f s, after the call's deadline"):format(wait)}
    end
    waited = waited + self.wait(io, wait)
  end
end

--- Before an attempt (pacing on): waits while the budget has no request
-- left. Returns the seconds waited, or nil and an error ("rate_limited")
-- when the wait would pass `deadline`.
function Pacer:before(io, req, deadline)
  if self.store then return pace_shared(self, io, req, deadline) end
  return pace_local(self, io, req, deadline)
end

-- Tells the shared budget what the server announced (or, with no rate
-- headers, that this request learned nothing).
local function record(self, rate)
  local store, id = self.store, budget_id(self)
  if not id then return end
  local ok, done, err
  if rate and rate.remaining and rate.reset then
    ok, done, err = pcall(store.record, store, id, rate.remaining, rate.reset)
  elseif store.release_probe then
    ok, done, err = pcall(store.release_probe, store, id)
  else
    return
  end
  if not ok or not done then self.report:store_trouble(ok and err or done, "pace") else self.report:store_ok() end
end

--- After an attempt: keeps the rate-limit headers of its answer (nil when
-- none came) and tells the shared budget.
function Pacer:after(rate)
  if rate and rate.remaining then self.rate = rate end
  if self.store then record(self, rate) end
end

return pacing
