--- moltflow.file_store: tokens in a private file (`admin.file_store(path)`).
--
--   local c = admin.new{token_store = admin.file_store(os.getenv("HOME") .. "/.moltflow-tokens.json")}
--
-- Every save writes a new mode-0600 file under an unpredictable name in the
-- same directory (O_EXCL), checks every write, syncs it and renames it over
-- the old one: a reader sees the old file or the new one, never a mix, and a
-- failed save leaves the old file as it was. No shell is involved.
--
-- With a seal key (`admin.file_store(path, {seal_key = ...})`, or
-- $MOLTFLOW_SEAL_KEY) the file holds the tokens sealed (`moltflow.seal`):
-- for a file on a disk or in a backup that others can read.
-- @module moltflow.file_store

local core = require "moltflow.core"
local seal = require "moltflow.seal"

local sys = core.sys
local M = {}

-- Scalar fields are kept (access_token, refresh_token, expires_at, and
-- whatever else the caller binds to them, such as the CLI's base_url).
local function scalars(t)
  local out = {}
  for k, v in pairs(t) do
    local kind = type(v)
    if type(k) == "string" and (kind == "string" or kind == "number" or kind == "boolean") then out[k] = v end
  end
  return out
end

local function store_error(message, path)
  return core.new_error{kind = "store", message = message, path = path}
end

local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("*a")
  f:close()
  return text or ""
end

--- A token store in a private file.
-- Its methods can be called as `store.load()` or `store:load()`.
-- @tparam string path the file (its directory must exist)
-- @tparam[opt] table opts `seal_key` (32 random bytes in base64; default
--   $MOLTFLOW_SEAL_KEY; false: none) and `old_seal_keys` (see `moltflow.seal`)
-- @return the store:
--   `load()` → the saved tokens, or nil (none saved), or nil and a warning
--   naming the file and the fix (a corrupt file, or one that another user owns
--   or that group or others may read or write: it is not used; or sealed
--   tokens this process cannot open: no seal key, another key, tampered);
--   `save(tokens)` → true, or nil and an error (`kind = "store"`), the old file
--   kept; `save(nil)` deletes the file;
--   `try_lock(ttl_seconds)` → a handle, or nil while another process holds the
--   lock (an fcntl lock on `<path>.lock`, released by the kernel if its holder
--   dies, so the ttl is not needed); `unlock(handle)`.
-- @raise when `path` is not a non-empty string, or a seal key is malformed
function M.new(path, opts)
  if type(path) ~= "string" or path == "" or path:find("\0", 1, true) then
    error("moltflow.file_store: 'path' must be a string", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("moltflow.file_store: 'opts' must be a table", 2) end
  local sealer = seal.from_options(opts, "moltflow.file_store", 2)
  local store = {path = path}
  local lock_path = path .. ".lock"

  -- store.f(x) and store:f(x) both reach f with x
  local function args(first, ...)
    if first == store then return ... end
    return first, ...
  end

  function store.load()
    local st, err, errno = sys.stat(path)
    if not st then
      if errno == sys.ENOENT then return nil end
      return nil, ("cannot read the token file: %s"):format(err)
    end
    if st.kind ~= "file" or not st.owned then
      return nil, ("ignoring the token file %s: it is not a regular file of this user; remove it and log in again")
                  :format(path)
    end
    if st.mode % 64 ~= 0 then -- any group or other permission bit
      return nil, ("ignoring the token file %s: group or others may read or write it (mode %03o); "
                   .. "remove it and log in again (then it is written with mode 600)"):format(path, st.mode)
    end
    local text, rerr = read_all(path)
    if not text then return nil, ("cannot read the token file: %s"):format(rerr) end
    local json, reseal = seal.decode(sealer, text)
    if not json then
      return nil, ("ignoring the token file %s: %s"):format(path, tostring(reseal.message))
    end
    local t = core.json_decode(json)
    if type(t) ~= "table" or (type(t.access_token) ~= "string" and type(t.refresh_token) ~= "string") then
      return nil, ("ignoring the token file %s: it is corrupt (not the JSON tokens this store writes); "
                   .. "remove it and log in again"):format(path)
    end
    t = scalars(t)
    if reseal then sys.write_private(path, sealer:seal(core.json_encode(t))) end -- opened by an old key
    return t
  end

  function store.save(...)
    local tokens = args(...)
    if tokens == nil then
      local ok, err = os.remove(path)
      if not ok and sys.stat(path, true) then return nil, store_error("cannot delete: " .. tostring(err), path) end
      return true
    end
    if type(tokens) ~= "table" then error("moltflow.file_store: save: 'tokens' must be a table or nil", 2) end
    local text, serr = seal.encode(sealer, core.json_encode(scalars(tokens)))
    if not text then return nil, store_error(tostring(serr), path) end
    local ok, err = sys.write_private(path, text)
    if not ok then return nil, store_error(err, path) end
    return true
  end

  function store.try_lock(...)
    local ttl = args(...)
    if ttl ~= nil and type(ttl) ~= "number" then
      error("moltflow.file_store: try_lock: 'ttl_seconds' must be a number", 2)
    end
    local handle, err = sys.try_lock(lock_path)
    if handle then return handle end
    if handle == false then return nil end -- another process holds it
    return nil, store_error(err, lock_path)
  end

  function store.unlock(...)
    local handle = args(...)
    if handle ~= nil then handle:unlock() end
  end

  -- The shared API key (admin.new{api_key_store = store}, admin.rotate_shared_key):
  -- `<path>.api-key` (the record {version, id, key}), `<path>.api-key-reports`
  -- (worker -> {version, at}) and `<path>.rotation` (a rotation in progress),
  -- each written like the tokens (mode 0600, atomic, sealed with a seal key).
  local key_path, reports_path, rotation_path = path .. ".api-key", path .. ".api-key-reports", path .. ".rotation"

  local function read_record(file, purpose)
    local text, err = read_all(file)
    if not text then
      if not sys.stat(file, true) then return false end -- none yet
      return nil, store_error(("cannot read %s: %s"):format(file, tostring(err)), file)
    end
    local json, serr = seal.decode(sealer, text, purpose)
    if not json then return nil, store_error(tostring(serr.message), file) end
    local rec = core.json_decode(json)
    if type(rec) ~= "table" then return nil, store_error("not the JSON this store writes", file) end
    return rec
  end

  local function write_record(file, rec, purpose)
    local text, serr = seal.encode(sealer, core.json_encode(rec), purpose)
    if not text then return nil, store_error(tostring(serr), file) end
    local ok, err = sys.write_private(file, text)
    if not ok then return nil, store_error(err, file) end
    return true
  end

  -- Runs fn under the store's lock (waiting up to 2 s for it).
  local function locked(fn)
    local deadline = core.monotime() + 2
    while true do
      local handle, err = sys.try_lock(lock_path)
      if handle then
        local ok, a, b = pcall(fn)
        handle:unlock()
        if not ok then error(a, 0) end
        return a, b
      end
      if handle == nil then return nil, store_error(err, lock_path) end
      if core.monotime() > deadline then return nil, store_error("the lock stayed taken", lock_path) end
      core.sleep(0.005)
    end
  end

  function store.api_key_version()
    local rec, err = read_record(key_path, "api key")
    if rec == nil then return nil, err end
    return rec and tonumber(rec.version) or 0
  end

  function store.load_api_key()
    local rec, err = read_record(key_path, "api key")
    if rec == nil then return nil, err end
    if rec and (type(rec.key) ~= "string" or type(rec.version) ~= "number") then
      return nil, store_error("the stored API key record is malformed", key_path)
    end
    return rec
  end

  function store.publish_api_key(...)
    local rec, after = args(...)
    return locked(function()
      local cur, err = read_record(key_path, "api key")
      if cur == nil then return nil, err end
      local version = cur and cur.version or 0
      if version ~= after then return false, version end
      return write_record(key_path, rec, "api key")
    end)
  end

  function store.report_api_key(...)
    local worker, version, now = args(...)
    return locked(function()
      local reports = read_record(reports_path, "reports") or {}
      reports[worker] = {version = version, at = now}
      return write_record(reports_path, reports, "reports")
    end)
  end

  function store.api_key_reports()
    local reports, err = read_record(reports_path, "reports")
    if reports == nil then return nil, err end
    return reports or {}
  end

  function store.load_rotation()
    return read_record(rotation_path, "rotation")
  end

  function store.save_rotation(...)
    local state = args(...)
    if state == nil then
      os.remove(rotation_path)
      if sys.stat(rotation_path, true) then return nil, store_error("cannot delete", rotation_path) end
      return true
    end
    return write_record(rotation_path, state, "rotation")
  end

  return store
end

return M
