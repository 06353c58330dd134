-- One member of a fleet for spec/hosts/fleet_spec.lua: a client on a shared store
-- making calls. Run as a script (`lua fleet_worker.lua CONFIG.json OUT.json`)
-- or, inside nginx, as a module (`require("spec.support.fleet_worker").run`).
--
-- CONFIG: base_url; one store: `redis` (url, with `prefix`, and `ca_file` for
-- rediss:// outside nginx, `server_name`) or `file` (path);
-- `api_key` (else the store's login); `pace` (pace = the store); `calls` (a
-- number of calls), or `stop` (a path: call until it exists, `pause` seconds
-- apart); `go` (a path: wait until it exists before the first call);
-- `progress` (a path: the number of calls made so far, rewritten after each).
-- OUT: {statuses = {...}, warnings = {...}, logged_in = bool, first_at, last_at}.
local M = {}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function write(path, text)
  local f = assert(io.open(path .. ".tmp", "wb"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

function M.run(cfg, sleep)
  local admin = require "moltflow.admin"
  local core = require "moltflow.core"
  local store
  if cfg.redis then
    store = admin.redis_store{url = cfg.redis, prefix = cfg.prefix, timeout = 0.5, ca_file = cfg.ca_file,
                                server_name = cfg.server_name}
  else
    store = admin.file_store(cfg.file)
  end
  local warnings = {}
  local c = admin.new{base_url = cfg.base_url, api_key = cfg.api_key,
                      token_store = not cfg.api_key and store or nil, pace = cfg.pace and store or nil,
                      on_hook_error = function(e) warnings[#warnings + 1] = e.hook .. ": " .. e.message end}
  if cfg.go then while not exists(cfg.go) do sleep(0.005) end end
  local out = {statuses = {}, warnings = warnings, first_at = core.time()}
  local i = 0
  while true do
    if cfg.calls and i >= cfg.calls then break end
    if cfg.stop and exists(cfg.stop) then break end
    i = i + 1
    local v, err
    if cfg.api_key then v, err = c.usage:current() else v, err = c.auth:me() end
    out.statuses[i] = v and 200 or (err.status or err.kind)
    if not v then warnings[#warnings + 1] = "call " .. i .. ": " .. tostring(err) end
    if cfg.progress then write(cfg.progress, tostring(i)) end
    if cfg.pause then sleep(cfg.pause) end
  end
  out.last_at = core.time()
  if not cfg.api_key then out.logged_in = c:tokens() ~= nil end
  if store.close then store.close() end
  return out
end

if not ngx and arg and arg[1] and arg[2] then
  local admin = require "moltflow.admin"
  local f = assert(io.open(arg[1], "rb"))
  local cfg = admin.json_decode(f:read("*a"))
  f:close()
  write(arg[2], admin.json_encode(M.run(cfg, require("moltflow.core").sleep)))
end

return M
