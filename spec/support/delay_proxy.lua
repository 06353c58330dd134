-- bench/delay_proxy.lua as a spec helper: a loopback proxy that adds a fixed
-- one-way delay (default 25 ms) per chunk in each direction.
--
--   local delay_proxy = require "spec.support.delay_proxy"
--   local p = delay_proxy.start{target = PORT, delay_ms = 25}
--   p.port, p.pid, p:stop()   -- by pid; it also exits when this process dies
--                             -- or after `lifetime` seconds (default 600)
-- Needs luv for Lua 5.4 (Debian lua-luv).
local proc = require "spec.support.process"

local M = {}

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/support/delay_proxy%.lua$") or "."
M.script = root .. "/bench/delay_proxy.lua"
M.lua = os.getenv("DELAY_PROXY_LUA") or "lua5.4"

--- available() -> true when the proxy's Lua can load luv.
function M.available()
  return proc.sh(M.lua .. " -e 'require \"luv\"' >/dev/null 2>&1")
end

local Proxy = {}
Proxy.__index = Proxy

function Proxy:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  os.execute("rm -rf " .. proc.quote(self.dir))
end

function M.start(opts)
  assert(type(opts) == "table" and type(opts.target) == "number", "delay_proxy.start: target port required")
  local dir = proc.tmpdir()
  local port_file = dir .. "/port"
  local owner = opts.owner_pid or assert(io.popen("echo $PPID")):read("*l")
  os.execute(("%s %s --target %d --delay %s --lifetime %d --owner-pid %s --port-file %s " ..
              "</dev/null >/dev/null 2>%s &")
    :format(M.lua, proc.quote(M.script), opts.target, tostring(opts.delay_ms or 25), opts.lifetime or 600,
            owner, proc.quote(port_file), proc.quote(dir .. "/stderr")))
  local port, pid = proc.await_port_file(port_file, dir, "delay proxy")
  local p = setmetatable({port = port, pid = pid, dir = dir, delay_ms = opts.delay_ms or 25}, Proxy)
  p.sentinel = proc.on_collect(function() p:stop() end)
  return p
end

return M
