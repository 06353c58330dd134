--- moltflow.shdict_store: tokens shared by every nginx worker through a
-- `lua_shared_dict`.
--
--   lua_shared_dict moltflow_tokens 1m;                       -- nginx.conf, http {}
--   local c = admin.new{base_url = ..., token_store = admin.shdict_store("moltflow_tokens")}
--
-- A store like any other (see `moltflow.tokens`): `load`, `save`, and a
-- refresh lock (`try_lock`, `unlock`) that makes the refresh single-flight
-- across workers. The lock is a dict key added with an expiry: the token
-- module asks for one longer than the refresh can take, so it outlives the
-- refresh, and a worker that dies mid-refresh leaves a lock that expires.
--
-- With a seal key (`seal_key`, or $MOLTFLOW_SEAL_KEY; see `moltflow.seal`)
-- the tokens are kept sealed: for a dict that other code in the same nginx
-- (another application's Lua) could read.
-- @module moltflow.shdict_store

local core = require "moltflow.core"
local nginx = require "moltflow.transport.ngx.host"
local seal = require "moltflow.seal"

local M = {}

--- A token store in `ngx.shared[dict_name]`.
-- @param dict_name the `lua_shared_dict` name
-- @param opts `key` (default "moltflow:tokens": one store per account),
--   `seal_key` and `old_seal_keys` (see `moltflow.seal`)
function M.new(dict_name, opts)
  if type(dict_name) ~= "string" then error("moltflow.shdict_store: 'dict_name' must be a string", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("moltflow.shdict_store: 'opts' must be a table", 2) end
  opts = opts or {}
  local dict = nginx.shared_dict(dict_name)
  if not dict then
    error(("moltflow.shdict_store: no lua_shared_dict named '%s'"):format(dict_name), 2)
  end
  local sealer = seal.from_options(opts, "moltflow.shdict_store", 2)
  local key = opts.key or "moltflow:tokens"
  local lock_key = key .. ":refresh-lock"
  local store = {}
  local warned = false
  function store.load()
    local text = dict:get(key)
    if not text then return nil end
    local json, err_or_stale = seal.decode(sealer, text)
    if not json then
      local err = err_or_stale
      if not warned then -- once, until a load succeeds
        warned = true
        nginx.log("moltflow: warning: the shared dict's tokens could not be loaded: " .. tostring(err))
      end
      return nil, err
    end
    warned = false
    local t = core.json_decode(json)
    if type(t) ~= "table" then return nil end
    if err_or_stale then store.save(store, t) end -- opened by an old seal key: sealed again with the current one
    return t
  end
  function store.save(_, tokens)
    if tokens == nil then
      dict:delete(key)
      return true
    end
    local text, serr = seal.encode(sealer, core.json_encode({access_token = tokens.access_token,
                                                            refresh_token = tokens.refresh_token,
                                                            expires_at = tokens.expires_at}))
    if not text then return nil, "moltflow.shdict_store: cannot seal the tokens: " .. tostring(serr) end
    local ok, err = dict:set(key, text)
    if not ok then return nil, "moltflow.shdict_store: cannot save the tokens: " .. tostring(err) end
    return true
  end
  --- Takes the refresh lock for `ttl` seconds without waiting: a handle, or
  -- nil when another holder has it (nil and a message on a dict error).
  function store.try_lock(_, ttl)
    local handle = tostring(nginx.worker_pid()) .. ":" .. core.sha256(core.random_bytes(16))
    local ok, err = dict:add(lock_key, handle, ttl)
    if ok then return handle end
    if err == "exists" then return nil end
    return nil, err
  end
  --- Releases the lock when this handle still holds it.
  function store.unlock(_, handle)
    if dict:get(lock_key) == handle then dict:delete(lock_key) end
  end
  return store
end

return M
