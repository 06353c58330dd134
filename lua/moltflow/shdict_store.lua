--- moltflow.shdict_store: tokens shared by every nginx worker through a
-- `lua_shared_dict`, with single-flight refresh across workers.
--
--   lua_shared_dict moltflow_tokens 1m;                       -- nginx.conf, http {}
--   local c = admin.new{base_url = ..., token_store = admin.shdict_store("moltflow_tokens")}
--
-- Refresh tokens rotate: two workers refreshing with the same one would see
-- the second refused, and the tokens cleared. A store with `lock` (this one)
-- makes `Client:_refresh` take a lock in the dict first; once it holds the
-- lock it reloads the store, and when another worker (or another client of
-- this one) has already refreshed, it adopts those tokens instead of
-- refreshing again.
-- @module moltflow.shdict_store

local core = require "moltflow.core"

local M = {}

--- A token store in `ngx.shared[dict_name]`.
-- @param dict_name the `lua_shared_dict` name
-- @param opts `key` (default "moltflow:tokens": one store per account), `lock_timeout`
--   (seconds to wait for another worker's refresh, default 10)
function M.new(dict_name, opts)
  if type(dict_name) ~= "string" then error("moltflow.shdict_store: 'dict_name' must be a string", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("moltflow.shdict_store: 'opts' must be a table", 2) end
  opts = opts or {}
  local dict = ngx and ngx.shared and ngx.shared[dict_name]
  if not dict then
    error(("moltflow.shdict_store: no lua_shared_dict named '%s'"):format(dict_name), 2)
  end
  local key = opts.key or "moltflow:tokens"
  local lock_key = key .. ":refresh-lock"
  local lock_timeout = opts.lock_timeout or 10
  local store = {}
  function store.load()
    local text = dict:get(key)
    local t = text and core.json_decode(text)
    return type(t) == "table" and t or nil
  end
  function store.save(tokens)
    if tokens == nil then
      dict:delete(key)
      return
    end
    local ok, err = dict:set(key, core.json_encode({access_token = tokens.access_token,
                                                    refresh_token = tokens.refresh_token,
                                                    expires_at = tokens.expires_at}))
    if not ok then error("moltflow.shdict_store: cannot save the tokens: " .. tostring(err)) end
  end
  --- Takes the refresh lock (waiting with ngx.sleep); returns an unlock
  -- function, or nil and a message after `lock_timeout`.
  function store.lock()
    local token = tostring(ngx.worker.pid()) .. ":" .. core.sha256(core.random_bytes(16))
    local deadline = ngx.now() + lock_timeout
    local wait = 0.002
    -- the lock expires by itself should its holder die mid-refresh
    while not dict:add(lock_key, token, lock_timeout) do
      if ngx.now() >= deadline then return nil, "timed out waiting for another worker's token refresh" end
      ngx.sleep(wait)
      wait = math.min(wait * 2, 0.05)
    end
    return function()
      if dict:get(lock_key) == token then dict:delete(lock_key) end
    end
  end
  return store
end

--- Adds `admin.shdict_store` and makes `Client:_refresh` honour stores that
-- have a `lock` function.
function M.install(admin)
  admin.shdict_store = M.new
  local Client = admin.Client
  local base_refresh = Client._refresh
  function Client:_refresh(io)
    local store = self._store
    if not (store and store.lock) or self._refreshing then return base_refresh(self, io) end
    local before = self._core:tokens()
    local gen = self._token_gen
    local unlock, err = store.lock()
    if not unlock then
      return false, admin.error{kind = "auth", message = err, method = "POST", path = "/auth/refresh"}
    end
    if self._token_gen ~= gen then -- this client was refreshed while we waited
      unlock()
      if self._core:credentials() then return true, self._core:tokens(), {status = 200} end
      return false, admin.error{kind = "auth", message = "the token refresh failed",
                                method = "POST", path = "/auth/refresh"}
    end
    local saved = store.load()
    if saved and saved.refresh_token and saved.access_token
       and saved.refresh_token ~= (before and before.refresh_token) then
      -- another worker refreshed: take its tokens, the one we hold is spent
      self._core:set_tokens(saved.access_token, saved.refresh_token)
      self._token_gen = self._token_gen + 1
      unlock()
      if self._on_tokens then self._on_tokens(self._core:tokens()) end
      return true, self._core:tokens(), {status = 200}
    end
    local ok, a, b, c = pcall(base_refresh, self, io)
    unlock()
    if not ok then error(a, 0) end
    return a, b, c
  end
end

return M
