--- moltflow.tokens: the life of a login's tokens, in one place.
-- Each client holds a keeper (`tokens.keeper{...}`) over its core; the
-- client's public methods (`c:tokens()`, `c:set_tokens()`,
-- `c:forget_tokens()`, `c.auth:refresh()`) and its call pipeline
-- (moltflow.client.pipeline) call the keeper's methods. The keeper knows the
-- client only through what it is given: the core, the store, the hooks'
-- reporter, the transport link and a function that posts the refresh.
--
-- * Stores. A store is an object with `store:load()` (the saved tokens or
--   nil) and `store:save(tokens_or_nil)` (true, or nil and a message), and
--   optionally `store:try_lock(ttl_seconds)` (a handle, or nil when another
--   holder has it; never blocks) and `store:unlock(handle)`. `save` runs after
--   every change; `load` once in `admin.new`, and again after taking the lock.
-- * Proactive refresh: an access token with less than `refresh_skew` seconds
--   left by its `exp` (or a refresh token alone) is renewed before a call.
-- * Reactive refresh: a 401 renews once and replays once.
-- * Single flight. Refresh tokens are single-use: a second refresh with the
--   token the first one spent is refused and logs the user out. Within a Lua
--   state one refresh runs at a time (a "flight"); the other callers wait on
--   its condition and take its outcome. A waiter gives up at its call's
--   deadline (kind "timeout"). A flight ends by itself at its own deadline
--   (the longest the refresh call can take), so an owner that is gone (a
--   dropped coroutine) does not hold it forever: the next caller takes over.
--   Across processes, a store with `try_lock` is locked for the refresh
--   with that same deadline as its expiry; a process that finds it taken waits
--   (within its call's deadline), then reloads the tokens the winner saved.
--   A lock that fails (Redis down) means this client's own single flight
--   only, with one warning (the reporter's `store_trouble`) until the store answers;
--   a refresh refused meanwhile keeps the tokens (another process may have
--   won it: its pair is loaded from the store once it is back).
-- * A refused refresh (4xx) clears the tokens (memory and store) and calls
--   `on_tokens(nil)`.
-- @module moltflow.tokens

local core = require "moltflow.core"
local compat = require "moltflow.compat"
local condition = require "moltflow.async.condition"
local aio = require "moltflow.async.io"
local errors = require "moltflow.errors"

local monotime = core.monotime
local tokens = {}

local Keeper = {}
Keeper.__index = Keeper
Keeper.__name = "moltflow.tokens"
tokens.Keeper = Keeper

-- Added to a flight's (and a store lock's) deadline: the refresh's own
-- deadline is counted from its start, the lock's a little earlier.
local LOCK_MARGIN = 2

--- A store keeping tokens in memory (the default). It can be shared by
-- several clients.
-- @return a store for the `token_store` option
function tokens.memory_store()
  local saved
  return {
    load = function() return saved end,
    save = function(_, t) saved = t return true end,
  }
end

--- Raises unless `store` has the store methods.
function tokens.check_store(store)
  if type(store.load) ~= "function" or type(store.save) ~= "function" then
    error("moltflow.new: field 'token_store' needs load and save functions", 3)
  end
  -- Stores were called as store.save(tokens) before 0.2.0: such a save would
  -- now receive the store as its tokens, so it is refused (where the VM can
  -- tell a function's parameter count; Lua 5.1 cannot).
  local info = debug.getinfo(store.save, "u")
  if info.nparams == 1 and not info.isvararg then
    error("moltflow.new: field 'token_store' must define save as a method, "
          .. "save(self, tokens): stores are called with ':'", 3)
  end
  if (store.try_lock ~= nil or store.unlock ~= nil)
     and (type(store.try_lock) ~= "function" or type(store.unlock) ~= "function") then
    error("moltflow.new: field 'token_store' needs both try_lock and unlock, or neither", 3)
  end
end

local function refresh_error(kind, message)
  return errors.new{kind = kind, message = message, method = "POST", path = "/auth/refresh"}
end

-- Every token change goes through here: it first drops ensure_fresh's
-- cached reading of the credentials (also when the core refuses a token).
local function core_set(self, access, refresh)
  self.cred_gen = false
  self.core:set_tokens(access, refresh)
end

-- The tokens changed: the store and on_tokens learn it (`to_store` false
-- when they came from the store).
local function changed(self, to_store)
  self.gen = self.gen + 1
  local t = self.core:tokens()
  local store = self.store
  if store and to_store ~= false then
    local ok, saved, err = pcall(store.save, store, t)
    if not ok then self.report:failed("token_store", saved)
    elseif not saved then self.report:store_trouble(err or "save failed")
    else self.report:store_ok() end
  end
  if self.on_tokens then self.report:hook("on_tokens", self.on_tokens, t) end
end

--- Sets both tokens (nil clears) and tells the store and on_tokens.
function Keeper:set(access, refresh)
  core_set(self, access, refresh)
  changed(self)
end

--- Clears the tokens when there are any.
function Keeper:clear()
  if self.core:tokens() then self:set(nil, nil) end
end

--- Clears memory and store, and calls on_tokens(nil), whatever was held.
function Keeper:forget()
  core_set(self, nil, nil)
  changed(self)
end

-- Takes tokens another process saved in the store.
local function adopt(self, saved)
  core_set(self, saved.access_token, saved.refresh_token)
  changed(self, false)
end

--- The store's tokens for a new client: access, refresh (or nil).
function tokens.initial(store)
  local saved = store:load()
  if type(saved) == "table" then return saved.access_token, saved.refresh_token end
end

--- A client's keeper of tokens.
-- @tparam table o `core` (the core client holding the tokens), `store`
--   (or nil), `on_tokens` (or nil), `skew` (refresh_skew), `call_budget`
--   (the longest a refresh call can take: its attempts and the waits between
--   them), `report` (the hooks' reporter: `hook`, `failed`, `store_trouble`,
--   `store_ok`, `store_down`), `link` and `io` (the client's transport link
--   and transport), `host` (the host's services: `wait`), `post` (a
--   function(io, refresh_token) that sends POST /auth/refresh)
function tokens.keeper(o)
  return setmetatable({
    core = o.core, store = o.store, on_tokens = o.on_tokens, skew = o.skew,
    budget = o.call_budget + LOCK_MARGIN, report = o.report, link = o.link, io = o.io,
    host = o.host, post = o.post,
    gen = 0,            -- the generation of the tokens: +1 at every change
    cred_gen = false,   -- ensure_fresh's reading of the credentials, for generation cred_gen
    cred_access = false, cred_refresh = false, cred_exp = false,
    -- and, set when they happen (not listed here: a constructor of more than
    -- 16 fields doubles the table, and an agency holds thousands of keepers):
    -- flight, the refresh in flight in this Lua state; early_exp, the exp of
    -- a token that arrived already near expiry
  }, Keeper)
end

--- The generation of the tokens (it grows at every change).
function Keeper:generation()
  return self.gen
end

--- The tokens held: `{access_token, refresh_token, expires_at}` or nil.
function Keeper:held()
  return self.core:tokens()
end

-- Waits until `cond` is signalled or `deadline`; returns whether signalled.
-- Loop tasks and host coroutines suspend (their io's `wait`), a host that
-- can wait does (nginx: a semaphore), blocking callers drive this client's
-- spawned calls (the refresh may be one of them).
local function wait(self, io, cond, deadline)
  if cond.signalled then return true end
  if io.wait then return io.wait(self.link, cond, deadline) end
  local signalled = self.host.wait(cond, deadline, monotime())
  if signalled ~= nil then return signalled end
  if io == self.io then return aio.wait_blocking(self.link.loop, cond, deadline) end
  -- a transport of the caller's own without `wait`: suspend through its sleep
  local step = 0.002
  while not cond.signalled do
    local left = deadline - monotime()
    if left <= 0 then break end
    io.sleep(math.min(step, left))
    step = math.min(step * 2, 0.05)
  end
  return cond.signalled
end

-- Takes the store's lock for a refresh of at most `ttl` seconds. Another
-- process gives no signal when it is done: this one checks again after
-- growing pauses, until `deadline`. Returns the handle and whether it
-- waited; or false when the store cannot lock now (Redis down: the refresh
-- goes on under this client's own single flight, and one warning is
-- reported until the store answers again); or nil and an error.
local function lock_store(self, io, store, ttl, deadline)
  local step, waited = 0.005, false
  while true do
    local ok, handle, err = pcall(store.try_lock, store, ttl)
    if not ok or (not handle and err) then
      self.report:store_trouble(("the token store's lock failed, refreshing without it: %s")
                          :format(tostring(ok and err or handle)))
      return false
    end
    if handle then
      self.report:store_ok()
      return handle, waited
    end
    local left = deadline - monotime()
    if left <= 0 then
      return nil, refresh_error("timeout", "timed out waiting for another process's token refresh")
    end
    waited = true
    io.sleep(math.min(step, left)) -- a real wait (not the `sleep` option, which tests stub out)
    step = math.min(step * 2, 0.1)
  end
end

-- POST /auth/refresh under the store's lock; sets the new tokens. Returns
-- true, value, res or false, err.
local function post_refresh(self, io, flight, deadline)
  local store = self.store
  local handle
  if store and store.try_lock then
    local held = self.core:tokens()
    local waited
    handle, waited = lock_store(self, io, store, math.ceil(flight.budget), math.min(deadline, flight.expires))
    if handle == nil then return false, waited end
    -- Another process may have refreshed: its tokens replace ours, which are
    -- spent. An empty store (a winner that was refused, a Redis restarted
    -- empty) proves nothing: our own refresh token decides.
    local ok, saved = false, nil
    if handle then ok, saved = pcall(store.load, store) end
    saved = ok and type(saved) == "table" and saved or nil
    if saved and saved.access_token and saved.refresh_token
       and saved.refresh_token ~= (held and held.refresh_token) then
      pcall(store.unlock, store, handle)
      adopt(self, saved)
      return true, self.core:tokens(), {status = 200}
    end
  end
  local t = self.core:tokens()
  local rt = t and t.refresh_token
  if not rt then
    if handle then pcall(store.unlock, store, handle) end
    return false, refresh_error("auth", "no refresh token: log in first")
  end
  local ok, v, err = compat.pcall(self.post, io, rt)
  if not ok then
    if handle then pcall(store.unlock, store, handle) end
    error(v, 0)
  end
  if v ~= nil and (type(v) ~= "table" or type(v.access_token) ~= "string") then
    v, err = nil, errors.new{kind = "decode", message = "the refresh answer holds no access_token",
                             status = err.status, method = "POST", path = "/auth/refresh"}
  end
  local current = self.flight == flight -- else a caller took over from this (late) owner
  if v == nil then
    -- refused: the tokens are spent, unless the shared store is failing (then
    -- another process may have refreshed them, and its pair will be loaded
    -- from the store when it answers again)
    if current and err.status and err.status >= 400 and err.status < 500 and not self.report.store_down then
      self:clear()
    end
  else
    self:set(v.access_token, v.refresh_token or rt)
    -- Clocks that disagree by more than the skew would make every call refresh
    -- again: a token that arrives already "near expiry" is not renewed early.
    local exp = select(4, self.core:credentials())
    self.early_exp = exp and exp - core.time() < self.skew and exp or nil
  end
  if handle then pcall(store.unlock, store, handle) end
  if v == nil then return false, err end
  return true, v, err -- err is the response table here
end

--- Renews the access token, single flight (see the module's notes).
-- @param io the caller's I/O
-- @param deadline the caller's deadline (monotonic)
-- @return true, value, res when a new access token is held; false, err otherwise
function Keeper:refresh(io, deadline)
  local me = coroutine.running() or "main"
  local flight = self.flight
  if flight then
    -- a hook of the refresh call itself calling the API cannot wait for it
    if flight.owner == me then return false, refresh_error("auth", "token refresh re-entered from a hook") end
    if monotime() < flight.expires then
      local gen = self.gen
      wait(self, io, flight.cond, math.min(deadline, flight.expires))
      if flight.done and not flight.aborted then
        if self.gen ~= gen and self.core:credentials() then return true, self.core:tokens(), {status = 200} end
        return false, flight.err or refresh_error("auth", "the token refresh failed")
      end
      if not flight.done and monotime() < flight.expires then
        return false, refresh_error("timeout", "timed out waiting for the token refresh in flight")
      end
    end
    -- its owner is gone (or stuck) past the longest a refresh can take, or
    -- its call ended by a Lua error (canceled): take over
    if self.flight and self.flight ~= flight then return self:refresh(io, deadline) end
  end
  local budget = self.budget
  flight = {owner = me, budget = budget, expires = monotime() + budget, cond = condition.new()}
  self.flight = flight
  local ok, a, b, c = compat.pcall(post_refresh, self, io, flight, deadline)
  if self.flight == flight then self.flight = nil end
  flight.done, flight.aborted = true, not ok
  if ok and not a then flight.err = b end
  flight.cond:signal()
  if not ok then error(a, 0) end
  return a, b, c
end

--- Proactive refresh before a call: an access token with less than
-- `refresh_skew` seconds left (by the core's reading of its exp, kept until
-- the tokens change), or a refresh token alone, is renewed first.
-- @return nil, or an error when waiting for a refresh passed the deadline
function Keeper:ensure_fresh(io, deadline)
  if self.cred_gen ~= self.gen then
    local has_access, has_refresh, _, exp = self.core:credentials()
    self.cred_gen, self.cred_access, self.cred_refresh, self.cred_exp =
      self.gen, has_access, has_refresh, exp or false
  end
  if not self.cred_refresh then return nil end
  local exp = self.cred_exp
  if not self.cred_access or (exp and exp ~= self.early_exp and exp - core.time() < self.skew) then
    local ok, err = self:refresh(io, deadline)
    if not ok and err.kind == "timeout" then return err end
  end
  return nil
end

--- After a 401 to a call sent with the tokens of generation `gen`: renews
-- once (or takes what another call renewed meanwhile).
-- @return true to replay the call; or false and, when waiting for a refresh
--   passed the deadline, that error (else the call returns its 401)
function Keeper:on_unauthorized(io, gen, deadline)
  if gen ~= self.gen then
    return self.core:credentials() and true or false -- another call renewed (or cleared) them meanwhile
  end
  if not select(2, self.core:credentials()) then return false end
  local ok, err = self:refresh(io, deadline)
  if ok then return true end
  if err.kind == "timeout" then return false, err end
  if not self.report.store_down then self:clear() end -- the call returns the original 401
  return false
end

return tokens
