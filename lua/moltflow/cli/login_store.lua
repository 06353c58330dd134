--- moltflow.cli.login_store: the saved login as a token store, bound to
-- the server that issued it. The file (`config.credentials_path()`, an
-- `admin.file_store`) records that base URL, and a command for any other
-- server finds no tokens (so it sends none, and its 401 cannot delete them)
-- until a login there replaces them. A file from before the binding belongs
-- to the server saved at login in config.json (none recorded: to no server).
-- @module moltflow.cli.login_store

local admin = require "moltflow.admin"
local config = require "moltflow.cli.config"

local LoginStore = {}
LoginStore.__index = LoginStore

--- The store of the login to `url`. After a `load`, `store.notice` holds
-- its warning (a corrupt or unsafe file) and `store.other_server` the server
-- of a login that does not apply; `store.save_error` the last failed save.
-- @tparam string url the base URL the command talks to
-- @return the store
function LoginStore.new(url)
  return setmetatable({url = url, file = admin.file_store(config.credentials_path())}, LoginStore)
end

-- The server a saved login belongs to (settings that cannot be trusted
-- record none).
local function bound(t)
  local ok, settings = pcall(config.read_settings)
  return t.base_url or (ok and settings.base_url) or "an unrecorded server"
end

--- The saved tokens, or nil (none, or another server's, or in a directory
-- another user could have written to).
function LoginStore:load()
  local unsafe = config.unsafe_dir()
  if unsafe then
    self.notice = ("ignoring the token file %s: %s"):format(config.credentials_path(), unsafe)
    return nil
  end
  local t, warning = self.file:load()
  self.notice = warning
  if not t then return nil end
  if bound(t) ~= self.url then
    self.other_server = bound(t)
    return nil
  end
  t.base_url = nil
  return t
end

--- Saves the tokens bound to this server; nil deletes this server's login
-- (another server's is left alone).
function LoginStore:save(tokens)
  local ok, err
  if tokens == nil then
    local t = self.file:load()
    if t and bound(t) ~= self.url then return true end -- another server's login
    ok, err = self.file:save(nil)
  else
    local t = {}
    for k, v in pairs(tokens) do t[k] = v end
    t.base_url = self.url
    ok, err = self.file:save(t)
  end
  if not ok then self.save_error = err end
  return ok, err
end

--- The file's lock (`admin.file_store`'s `try_lock`).
function LoginStore:try_lock(ttl)
  return self.file:try_lock(ttl)
end

--- Releases the lock.
function LoginStore:unlock(handle)
  return self.file:unlock(handle)
end

return LoginStore
