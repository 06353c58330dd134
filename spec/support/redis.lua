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
--
-- TLS and ACL users, as managed Redis services run it:
--   local r = redis_server.start{tls = true, users = {{name = "app", password = "..."}}}
--   -- only the TLS port listens (r.port); r.url is "rediss://app:...@localhost:PORT/0"; the ACL
--   -- file turns the `default` user off. r.ca_file trusts the server's certificate (CN and
--   -- subjectAltName localhost and 127.0.0.1); r.other_ca_file is a CA that did not sign it.
--   -- Certificates are made with the openssl command in the server's temp dir.
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
  local args = {"redis-server", "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "no", "--daemonize", "yes",
                "--pidfile", self.dir .. "/redis.pid", "--logfile", self.dir .. "/redis.log"}
  local function add(...) for _, a in ipairs{...} do args[#args + 1] = a end end
  if self.tls then
    add("--port", "0", "--tls-port", tostring(self.port), "--tls-cert-file", self.dir .. "/server.crt",
        "--tls-key-file", self.dir .. "/server.key", "--tls-ca-cert-file", self.ca_file,
        "--tls-auth-clients", "no")
  else
    add("--port", tostring(self.port))
  end
  if self.users then add("--aclfile", self.dir .. "/users.acl") end
  if self.password then add("--requirepass", self.password) end
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
  local function add(...) for _, a in ipairs{...} do words[#words + 1] = a end end
  if self.tls then add("--tls", "--cacert", self.ca_file, "--sni", "localhost") end
  if self.users then
    add("--no-auth-warning", "--user", self.users[1].name, "-a", self.users[1].password)
  elseif self.password then
    add("--no-auth-warning", "-a", self.password)
  end
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

-- A CA and a server certificate for localhost and 127.0.0.1, and a second
-- CA that signed nothing, made by the openssl command in `dir`.
local function make_certificates(dir)
  local q = quote
  local script = table.concat({
    "cd " .. q(dir),
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=moltflow-test-ca -keyout ca.key -out ca.crt",
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=moltflow-other-ca -keyout other.key"
      .. " -out other.crt",
    "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr",
    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext",
    "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext"
      .. " -out server.crt",
  }, " && ")
  assert(sh("(" .. script .. ") >" .. q(dir .. "/openssl.log") .. " 2>&1"),
         "openssl could not make the test certificates")
end

-- The ACL file: `default` off, each user on with its password and every key and command.
local function write_acl(dir, users)
  local f = assert(io.open(dir .. "/users.acl", "wb"))
  f:write("user default off\n")
  for _, u in ipairs(users) do
    -- as a SHA-256 (#hex): a password may hold spaces, which the ACL file cannot
    f:write(("user %s on #%s ~* &* +@all\n"):format(u.name, require("moltflow.core").sha256(u.password)))
  end
  f:close()
end

local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

function M.start(opts)
  opts = opts or {}
  local self = setmetatable({port = proc.free_port(), password = opts.password, dir = proc.tmpdir(),
                             tls = opts.tls, users = opts.users}, Server)
  if self.tls then
    make_certificates(self.dir)
    self.ca_file, self.other_ca_file = self.dir .. "/ca.crt", self.dir .. "/other.crt"
  end
  if self.users then write_acl(self.dir, self.users) end
  self:_launch()
  local userinfo = self.users and (escape(self.users[1].name) .. ":" .. escape(self.users[1].password) .. "@") or ""
  self.url = ("%s://%s%s:%d/%d"):format(self.tls and "rediss" or "redis", userinfo,
                                        self.tls and "localhost" or "127.0.0.1", self.port, opts.db or 0)
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
