--- moltflow.shared_key: the API key a fleet takes from a store
-- (`admin.new{api_key_store = store}`), kept current as it is rotated
-- (`moltflow.key_rotation`).
--
-- The store publishes a versioned record `{version, id, key}`. A keeper
-- checks the version at most once a second (`check_every`): one small read
-- (`store:api_key_version()`, a Redis GET of an integer); inside nginx the
-- check can read a shared dict instead (`cached_version`, filled by the
-- transport). Only a newer version loads the record. A 401 on a key older
-- than the store's makes the client reload it (`refresh`) and replay once.
-- The keeper reports the version it uses (`store:report_api_key`), on
-- adoption and every `report_every` seconds, so that a rotation's drain ends
-- as soon as every live worker has the new key.
--
-- While the store fails, the keeper keeps the key it has (one warning, until
-- the store answers); with no key published, the client's own `api_key`
-- (or `$MOLTFLOW_API_KEY`) is used.
-- @module moltflow.shared_key

local core = require "moltflow.core"

local M = {}

local Keeper = {}
Keeper.__index = Keeper
Keeper.__name = "moltflow.shared_key"
function Keeper:__tostring()
  return ("moltflow.shared_key(version %s)"):format(tostring(self.version))
end

--- Raises unless `store` has the shared-key methods.
function M.check_store(store, fn)
  if type(store) ~= "table" or type(store.api_key_version) ~= "function" or type(store.load_api_key) ~= "function" then
    error(("%s: field 'api_key_store' must be a store with api_key_version and load_api_key "
           .. "(admin.redis_store)"):format(fn or "moltflow.new"), 3)
  end
end

--- A keeper of the key published in `store`.
-- @param store the store
-- @param opts `check_every` (seconds between version checks, default 1),
--   `report_every` (seconds between reports, default 5), `worker` (this
--   worker's name in the reports; default a random one), `warn`
--   (function(message): a failing store, once until it answers again),
--   `cached_version` (function() -> the version a host cache holds, or nil to
--   ask the store)
function M.new(store, opts)
  opts = opts or {}
  local self = setmetatable({store = store, version = 0, checked_at = -math.huge, reported_at = -math.huge,
                             check_every = opts.check_every or 1, report_every = opts.report_every or 5,
                             worker = opts.worker or ("w-" .. core.sha256(core.random_bytes(16)):sub(1, 12)),
                             warn = opts.warn or function() end, cached_version = opts.cached_version,
                             failing = false}, Keeper)
  local key -- the raw key stays in this closure: no field shows it
  function self._set(rec) key = rec and rec.key or nil end
  function self._key() return key end
  return self
end

function Keeper:_trouble(err)
  if self.failing then return end
  self.failing = true
  pcall(self.warn, ("moltflow: warning: the shared API key's store failed, keeping the key in use: %s")
                    :format(tostring(err)))
end

-- Loads the published record: true when it changed the key.
function Keeper:_load()
  local rec, err = self.store:load_api_key()
  if rec == nil then self:_trouble(err) return false end
  self.failing = false
  if not rec or rec.version <= self.version and self._key() then return false end
  self._set(rec)
  self.version, self.id = rec.version, rec.id
  self:_report(true)
  return true
end

function Keeper:_report(now_too)
  local now = core.monotime()
  if not now_too and now - self.reported_at < self.report_every then return end
  if not self.store.report_api_key then return end
  self.reported_at = now
  self.store:report_api_key(self.worker, self.version, core.time())
end

--- The key to send: raw key and version, or nil when none is published (the
-- client's own key then). Checks the store's version when one is due.
function Keeper:current()
  local now = core.monotime()
  if now - self.checked_at >= self.check_every then
    self.checked_at = now
    local v, err
    if self.cached_version then
      v = self.cached_version()
      -- another worker is reading the store: keep the key in use (a first key is read here)
      if v == nil and self._key() then return self._key(), self.version end
    end
    if v == nil then v, err = self.store:api_key_version() end
    if v == nil then
      self:_trouble(err)
    else
      self.failing = false
      if v > self.version or (v > 0 and not self._key()) then self:_load() end
      self:_report(false)
    end
  end
  return self._key(), self.version
end

--- After a 401 on `version`: reloads if the store has a newer key. Returns
-- the key and version to replay with, or nil when there is nothing newer.
function Keeper:refresh(version)
  version = version or 0
  self.checked_at = core.monotime()
  if self.version <= version then self:_load() end
  if self.version > version and self._key() then return self._key(), self.version end
  return nil
end

return M
