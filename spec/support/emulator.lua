-- Spec helper: one emulator per test process, over real HTTP only.
--
--   local emu = require "spec.support.emulator"
--   emu.url          -- "http://127.0.0.1:PORT/api/v2"; first use starts the emulator
--   emu.start(opts)  -- idempotent; honours MOLTFLOW_EMULATOR_URL and
--                       MOLTFLOW_EMULATOR_TOKEN (then starts nothing)
--   emu.reset(), emu.control(method, path, body), emu.requests(), emu.fault(spec),
--   emu.advance(seconds), emu.seed
--   emu.token()      -- the control token (X-Emulator-Token), read from the prefix
--
-- emu.requests() is the unredacted request log (?raw=1): specs check the
-- credentials and bodies that went over the wire.
--
-- A started emulator is stopped when the Lua state closes (busted exits with
-- os.exit(code, true), which runs the __gc sentinel below).
local dkjson = require "dkjson"
local http = require "spec.support.http"

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/spec/support/emulator%.lua$") or "."
local root = here
local launcher = root .. "/bin/moltflow-emulator"
M.root, M.launcher = root, launcher

-- The same seed module the server loads: one source of truth for credentials.
local seed = dofile(root .. "/lua/moltflow/emulator/seed.lua")
M.seed = {
  owner = seed.users.owner, admin = seed.users.admin, member = seed.users.member,
  magic = seed.users.magic, free_owner = seed.users.free_owner,
  keys = { all = seed.keys.all.raw_key, usage_only = seed.keys.usage_only.raw_key,
           solo_all = seed.keys.solo_all.raw_key },
  key_ids = { all = seed.keys.all.id, usage_only = seed.keys.usage_only.id, solo_all = seed.keys.solo_all.id },
  tenants = { acme = "t_acme", solo = "t_solo" },
}

local base_url -- "http://127.0.0.1:PORT/api/v2" once started
local control_token -- the launcher's token for /_emulator/
local sentinel -- holds the process alive-guard; its __gc stops nginx

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

function M.start(opts)
  if base_url then return base_url end
  opts = opts or {}
  local env_url = os.getenv("MOLTFLOW_EMULATOR_URL")
  if env_url and env_url ~= "" then
    base_url = env_url:gsub("/+$", "")
    control_token = os.getenv("MOLTFLOW_EMULATOR_TOKEN")
    return base_url
  end
  local prefix = assert(io.popen("mktemp -d /tmp/moltflow-spec.XXXXXX")):read("*l")
  -- The shell's parent is this Lua process: if it dies without closing the
  -- state (crash, kill -9), the launcher's watchdog still stops nginx.
  local lua_pid = assert(io.popen("echo $PPID")):read("*l")
  local cmd = string.format("%s --daemon --port 0 --prefix %s --rate-limit-scale %s --owner-pid %s --quiet",
    shell_quote(launcher), shell_quote(prefix), tostring(opts.rate_limit_scale or 1000), lua_pid)
  local p = assert(io.popen(cmd))
  local url = p:read("*l")
  local ok = p:close()
  if not ok or not url then error("could not start the emulator: " .. cmd) end
  base_url = url
  local f = assert(io.open(prefix .. "/control-token"))
  control_token = f:read("*l")
  f:close()
  local function stop()
    os.execute(string.format("%s --stop --prefix %s --quiet; rm -rf %s",
      shell_quote(launcher), shell_quote(prefix), shell_quote(prefix)))
  end
  -- Lua 5.1/LuaJIT run __gc only for userdata (newproxy); Lua 5.4 for tables.
  if newproxy then
    sentinel = newproxy(true)
    getmetatable(sentinel).__gc = stop
  else
    sentinel = setmetatable({}, { __gc = stop })
  end
  return base_url
end

-- Origin of the emulator (scheme://host:port), for the control API.
local function origin()
  return (M.start():gsub("/api/v2$", ""))
end

local function decode(body)
  if body == nil or body == "" then return nil end
  return (dkjson.decode(body))
end

function M.token()
  M.start()
  return control_token
end

-- Calls /_emulator/<path>; returns decoded JSON (or nil), status.
function M.control(method, path, body)
  local res, err = http.request({
    method = method, url = origin() .. "/_emulator/" .. path:gsub("^/", ""),
    headers = { ["Content-Type"] = "application/json", ["X-Emulator-Token"] = M.token() },
    body = body ~= nil and dkjson.encode(body) or nil,
  })
  if not res then error("emulator control " .. method .. " " .. path .. ": " .. err) end
  return decode(res.body), res.status
end

function M.reset() return M.control("POST", "reset") end
function M.requests() return (M.control("GET", "requests?raw=1")) end
function M.fault(spec) return M.control("POST", "faults", spec) end
function M.advance(seconds) return M.control("POST", "clock", { advance = seconds }) end

-- The request log's entries for method + path (after /api/v2), in order.
function M.requests_for(method, path)
  local out = {}
  for _, r in ipairs(M.requests()) do
    if r.method == method and r.path == "/api/v2" .. path then out[#out + 1] = r end
  end
  return out
end

-- The statuses the server answered for method + path, in order.
function M.statuses_for(method, path)
  local out = {}
  for i, r in ipairs(M.requests_for(method, path)) do out[i] = r.status end
  return out
end

-- The specs' one client factory: an SDK client (moltflow.admin.new) on the
-- emulator. opts are admin.new's options (copied, never changed), where
--   base_url  is the emulator's unless given (a raw server's, a TLS nginx's)
--   api_key   is the seed key with every scope unless given; false: no key at
--             all, not even $MOLTFLOW_API_KEY's
--   login     = {email =, password =}: logged in instead (no API key unless
--             one is given)
-- defaults: a spec's own options for the keys opts leaves out (retry = false,
-- a recording sleep ...).
function M.client(opts, defaults)
  local o = {}
  for k, v in pairs(defaults or {}) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.base_url == nil then o.base_url = M.start() end
  local login = o.login
  o.login = nil
  if o.api_key == nil then o.api_key = not login and M.seed.keys.all or false end
  local c = require("moltflow.admin").new(o)
  if login then assert(c.auth:login{email = login.email, password = login.password}) end
  return c
end

setmetatable(M, { __index = function(_, k)
  if k == "url" then return M.start() end
end })

return M
