-- spec/support/http_proxy_server.lua as a spec helper: a forward HTTP proxy
-- (CONNECT and absolute form) on a free loopback port.
--
--   local http_proxy = require "spec.support.http_proxy"
--   local p = http_proxy.start{auth = "user:password"}   -- auth optional
--   p.port, p.pid, p.url ("http://[user:password@]127.0.0.1:PORT")
--   http_proxy.start{host = http_proxy.outside_address()} -- a non-loopback proxy
--   (outside_address() is nil on a machine with loopback alone)
--   p:lines()   -- {{status = 200, line = "CONNECT 127.0.0.1:443 HTTP/1.1"}, ...}
--   p:stop()    -- by pid; it also exits when this process dies
-- Needs luv for Lua 5.4 (Debian lua-luv).
local proc = require "spec.support.process"

local M = {}

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/support/http_proxy%.lua$") or "."
M.script = root .. "/spec/support/http_proxy_server.lua"
M.lua = os.getenv("HTTP_PROXY_LUA") or "lua5.4"

local Proxy = {}
Proxy.__index = Proxy

function Proxy:lines()
  local out = {}
  for status, line in proc.slurp(self.log):gmatch("(%d+) ([^\n]*)\n") do
    out[#out + 1] = {status = tonumber(status), line = line}
  end
  return out
end

function Proxy:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  os.execute("rm -rf " .. proc.quote(self.dir))
end

function M.start(opts)
  opts = opts or {}
  local dir = proc.tmpdir()
  local port_file, log = dir .. "/port", dir .. "/proxy.log"
  local owner = opts.owner_pid or assert(io.popen("echo $PPID")):read("*l")
  local host = opts.host or "127.0.0.1"
  os.execute(("%s %s --port-file %s --log %s --owner-pid %s --host %s %s </dev/null >/dev/null 2>%s &")
    :format(M.lua, proc.quote(M.script), proc.quote(port_file), proc.quote(log), owner, proc.quote(host),
            opts.auth and ("--auth " .. proc.quote(opts.auth)) or "", proc.quote(dir .. "/stderr")))
  local port, pid = proc.await_port_file(port_file, dir, "http proxy")
  local p = setmetatable({port = port, pid = pid, dir = dir, log = log}, Proxy)
  p.url = ("http://%s%s:%d"):format(opts.auth and (opts.auth .. "@") or "", host, p.port)
  p.sentinel = proc.on_collect(function() p:stop() end)
  return p
end

-- This machine's first IPv4 address that is not loopback, or nil.
function M.outside_address()
  local p = io.popen("hostname -I 2>/dev/null")
  local all = p:read("*a") or ""
  p:close()
  for a in all:gmatch("%S+") do
    if a:match("^%d+%.%d+%.%d+%.%d+$") and not a:match("^127%.") then return a end
  end
  return nil
end

return M
