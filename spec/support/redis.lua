-- A private redis-server on a free 127.0.0.1 port, in a temp dir, with no
-- persistence, for the shared-store specs.
--
--   local redis_server = require "spec.support.redis"
--   local r = redis_server.start{password = "..."}  -- r.url ("redis://127.0.0.1:PORT/0"), r.port, r.pid
--   r:cli("GET", "moltflow:tokens")                 -- a command through redis-cli; its output
--   r:kill()                                        -- SIGKILL, as a crash would
--   r:freeze(), r:thaw()                            -- SIGSTOP/SIGCONT: a server that times out
--   r:restart()                                     -- the same port, empty
--   r:stop()                                        -- by pid; also when the Lua state closes
local proc = require "spec.support.process"

local M = {}

local quote, sh = proc.quote, proc.sh

local function read(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local Server = {}
Server.__index = Server

-- Starts redis-server daemonized and waits until it answers PING.
function Server:_launch()
  os.remove(self.dir .. "/redis.pid")
  local args = {"redis-server", "--port", tostring(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "no", "--daemonize", "yes",
                "--pidfile", self.dir .. "/redis.pid", "--logfile", self.dir .. "/redis.log"}
  if self.password then args[#args + 1] = "--requirepass" args[#args + 1] = self.password end
  local words = {}
  for i, a in ipairs(args) do words[i] = quote(a) end
  assert(sh(table.concat(words, " ")), "redis-server did not start")
  local socket = require "socket"
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    local pid = proc.slurp(self.dir .. "/redis.pid"):match("%d+")
    if pid and self:cli("PING") == "PONG" then
      self.pid = tonumber(pid)
      return
    end
    socket.sleep(0.02)
  end
  error("redis-server did not answer PING:\n" .. proc.slurp(self.dir .. "/redis.log"))
end

function Server:cli(...)
  local words = {"redis-cli", "-h", "127.0.0.1", "-p", tostring(self.port)}
  if self.password then words[#words + 1] = "--no-auth-warning" words[#words + 1] = "-a"
    words[#words + 1] = self.password end
  for _, a in ipairs({...}) do words[#words + 1] = a end
  for i, w in ipairs(words) do words[i] = quote(w) end
  return read(table.concat(words, " ") .. " 2>/dev/null")
end

-- Waits until the process `pid` is gone.
local function await_exit(pid)
  local socket = require "socket"
  local deadline = socket.gettime() + 10
  while sh("kill -0 " .. pid .. " 2>/dev/null") do
    if socket.gettime() > deadline then error("redis-server " .. pid .. " did not exit") end
    socket.sleep(0.01)
  end
end

function Server:kill()
  if not self.pid then return end
  sh("kill -9 " .. self.pid)
  await_exit(self.pid)
  self.pid = nil
end

function Server:freeze() assert(sh("kill -STOP " .. self.pid)) end
function Server:thaw() assert(sh("kill -CONT " .. self.pid)) end

function Server:restart()
  self:kill()
  self:_launch()
end

function Server:stop()
  if self.pid then
    sh("kill " .. self.pid)
    await_exit(self.pid)
    self.pid = nil
  end
  if self.dir then sh("rm -rf " .. quote(self.dir)) self.dir = nil end
end

function M.start(opts)
  opts = opts or {}
  local self = setmetatable({port = proc.free_port(), password = opts.password, dir = proc.tmpdir()}, Server)
  self:_launch()
  self.url = ("redis://127.0.0.1:%d/%d"):format(self.port, opts.db or 0)
  -- stopped with the Lua state (busted exits with os.exit(code, true))
  local function stop() self:stop() end
  if newproxy then
    self._sentinel = newproxy(true)
    getmetatable(self._sentinel).__gc = stop
  else
    self._sentinel = setmetatable({}, {__gc = stop})
  end
  return self
end

return M
