-- spec/support/fault_proxy_server.lua as a spec helper: a loopback TCP proxy
-- in front of a server (the emulator) that resets, truncates, garbles and
-- stalls the requests it is told to, in order.
--
--   local fault_proxy = require "spec.support.fault_proxy"
--   local p = fault_proxy.start{target = PORT}
--   p.port, p.pid, p.url ("http://127.0.0.1:PORT")
--   p:plan{"reset_after", "pass", "truncate"}  -- the next requests' faults, one each
--   p:log()     -- {{n, fault, method, path}, ...} per request since the last clear
--   p:clear()   -- forgets the log and the plan
--   p:stop()    -- by pid; it also exits when this process dies
-- fault_proxy.FAULTS lists the fault names (the server's header explains each).
-- Needs luv for Lua 5.4 (Debian lua-luv).
local http = require "spec.support.http"
local proc = require "spec.support.process"

local M = {}

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/support/fault_proxy%.lua$") or "."
M.script = root .. "/spec/support/fault_proxy_server.lua"
M.lua = os.getenv("FAULT_PROXY_LUA") or "lua5.4"

--- Faults that leave the server without the request, and those after which it acted.
M.BEFORE = {"reset_before", "stall_before"}
M.AFTER = {"reset_after", "truncate", "garbage_status", "garbage", "stall_after"}
M.FAULTS = {"pass"}
for _, f in ipairs(M.BEFORE) do M.FAULTS[#M.FAULTS + 1] = f end
for _, f in ipairs(M.AFTER) do M.FAULTS[#M.FAULTS + 1] = f end

--- available() -> true when the proxy's Lua can load luv.
function M.available()
  return proc.sh(M.lua .. " -e 'require \"luv\"' >/dev/null 2>&1")
end

local Proxy = {}
Proxy.__index = Proxy

function Proxy:control(method, path, body)
  local res, err = http.request{method = method, url = self.url .. "/_fault_proxy/" .. path, body = body}
  if not res then error("fault proxy " .. method .. " " .. path .. ": " .. tostring(err)) end
  if res.status ~= 200 then error("fault proxy " .. method .. " " .. path .. ": " .. res.body) end
  return res.body
end

function Proxy:plan(faults)
  self:control("POST", "plan", table.concat(faults, " "))
end

function Proxy:log()
  local out = {}
  for n, fault, method, path in self:control("GET", "log"):gmatch("(%d+) (%S+) (%S+) (%S+)") do
    out[#out + 1] = {n = tonumber(n), fault = fault, method = method, path = path}
  end
  return out
end

function Proxy:clear()
  self:control("DELETE", "plan")
  self:control("DELETE", "log")
end

function Proxy:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  os.execute("rm -rf " .. proc.quote(self.dir))
end

function M.start(opts)
  assert(type(opts) == "table" and type(opts.target) == "number", "fault_proxy.start: target port required")
  local dir = proc.tmpdir()
  local port_file = dir .. "/port"
  local owner = opts.owner_pid or assert(io.popen("echo $PPID")):read("*l")
  os.execute(("%s %s --target %d --lifetime %d --owner-pid %s --port-file %s </dev/null >/dev/null 2>%s &")
    :format(M.lua, proc.quote(M.script), opts.target, opts.lifetime or 600, owner, proc.quote(port_file),
            proc.quote(dir .. "/stderr")))
  local port, pid = proc.await_port_file(port_file, dir, "fault proxy")
  local p = setmetatable({port = port, pid = pid, dir = dir, url = "http://127.0.0.1:" .. port}, Proxy)
  p.sentinel = proc.on_collect(function() p:stop() end)
  return p
end

return M
