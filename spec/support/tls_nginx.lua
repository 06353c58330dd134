-- A private HTTPS nginx on a free 127.0.0.1 port, with a fresh self-signed
-- certificate for 127.0.0.1 made by openssl in a temp dir, for the TLS specs
-- and the WAN bench (bench/wan.lua).
--
--   local tls_nginx = require "spec.support.tls_nginx"
--   local s = tls_nginx.start{upstream = emu.url}   -- proxies to the emulator
--   local s = tls_nginx.start{emulator = true, http2 = true}
--                                     -- serves the emulator's handlers itself
--   keepalive_requests = n            -- requests per connection (nginx's
--                                     -- default, 1000, unless given)
--   keepalive_timeout = "1s"          -- idle connections closed after (75s)
--   keepalive = false                 -- every answer closes its connection
--   s.url ("https://127.0.0.1:PORT/api/v2"), s.origin, s.port, s.ca (cert.pem),
--   s.prefix, s.log (the access log), s.pid
--   local mark = s:mark()             -- position in the access log
--   s:summary(mark[, expect])         -- what nginx logged since (see parse_log),
--                                     -- waiting for `expect` requests
--   s:stop()                          -- by pid; also when the Lua state closes,
--                                     -- and when `owner_pid` (default: this
--                                     -- process) dies
--
-- The access log has one line per request:
--   $connection $connection_requests $ssl_session_reused $ssl_protocol
--   $server_protocol $request_method $uri $status
local proc = require "spec.support.process"

local M = {}

local quote, sh, slurp = proc.quote, proc.sh, proc.slurp
local NGINX = os.getenv("NGINX") or "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/support/tls_nginx%.lua$") or "."

local LOG_FORMAT = "$connection $connection_requests $ssl_session_reused $ssl_protocol " ..
                   "$server_protocol $request_method $uri $status"

--- parse_log(text) -> summary of access-log lines in LOG_FORMAT:
-- {requests, connections (distinct), full (connections whose first logged
-- request has no resumed session), resumed, protocols = {["HTTP/2.0"] = n
-- requests, ...}, tls = {["TLSv1.3"] = n connections}, statuses = {[200] = n},
-- by_connection = {[id] = {requests, reused, protocol, tls}}}
function M.parse_log(text)
  local s = {requests = 0, connections = 0, full = 0, resumed = 0, protocols = {}, tls = {},
             statuses = {}, by_connection = {}}
  for line in text:gmatch("[^\n]+") do
    local conn, _, reused, tls, proto, _, _, status =
      line:match("^(%d+) (%d+) (%S+) (%S+) (%S+) (%S+) (%S+) (%d+)$")
    if conn then
      s.requests = s.requests + 1
      s.protocols[proto] = (s.protocols[proto] or 0) + 1
      status = tonumber(status)
      s.statuses[status] = (s.statuses[status] or 0) + 1
      local c = s.by_connection[conn]
      if not c then
        -- a connection's handshake shows in every request it carries; the
        -- first one seen decides full or resumed
        c = {requests = 0, reused = reused == "r", protocol = proto, tls = tls}
        s.by_connection[conn] = c
        s.connections = s.connections + 1
        if c.reused then s.resumed = s.resumed + 1 else s.full = s.full + 1 end
        s.tls[tls] = (s.tls[tls] or 0) + 1
      end
      c.requests = c.requests + 1
    end
  end
  return s
end

local function alive(pid)
  local stat = slurp("/proc/" .. pid .. "/stat")
  if stat == "" then return false end
  return stat:match("%) (%a)") ~= "Z"
end

local function conf_text(o)
  local p = o.prefix
  local lua_http, location
  if o.emulator then
    lua_http = ([[
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";
  init_by_lua_block { require("moltflow.emulator").init({ rate_limit = false }) }
]]):format(root, root)
    location = [[location / { default_type application/json;
                  content_by_lua_block { require("moltflow.emulator").content() } }]]
  else
    lua_http = ([[
  upstream backend { server %s; keepalive 32; }
]]):format(o.upstream:match("^http://([^/]+)"))
    -- kept-alive upstream connections: the proxy hop costs no handshake
    location = [[location / { proxy_pass http://backend; proxy_http_version 1.1;
                  proxy_set_header Connection ""; }]]
  end
  return ([[
%s
worker_processes 1;
master_process off;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 1024; }
http {
  log_format wan '%s';
  access_log %s/access.log wan;
  client_body_temp_path %s/client_body_temp;
  proxy_temp_path %s/proxy_temp;
  fastcgi_temp_path %s/fastcgi_temp;
  uwsgi_temp_path %s/uwsgi_temp;
  scgi_temp_path %s/scgi_temp;
  client_max_body_size 32m;
  keepalive_requests %d;
  keepalive_timeout %s;
%s
  server {
    listen 127.0.0.1:%d ssl%s;
    ssl_certificate %s/cert.pem;
    ssl_certificate_key %s/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; # 1.22 leaves 1.3 out by default; real APIs offer it
    ssl_session_cache shared:tls_sessions:1m;
    ssl_session_timeout 10m;
    %s
  }
}
]]):format(o.emulator and ("load_module %s/ndk_http_module.so;\nload_module %s/ngx_http_lua_module.so;")
             :format(MODULES, MODULES) or "",
           p, p, LOG_FORMAT, p, p, p, p, p, p, o.keepalive_requests or 1000,
           o.keepalive == false and "0" or o.keepalive_timeout or "75s", lua_http,
           o.port, o.http2 and " http2" or "", p, p, location)
end

local Server = {}
Server.__index = Server

-- The log's size once it has stopped growing for 0.1 s (up to 2 s): nginx
-- logs a request after answering it, so a mark taken at once could fall
-- before the line of a request the caller already has the answer to.
function Server:mark()
  local function size()
    local f = io.open(self.log, "rb")
    if not f then return 0 end
    local n = f:seek("end")
    f:close()
    return n
  end
  local n, still = size(), 0
  for _ = 1, 100 do
    os.execute("sleep 0.02")
    local now = size()
    if now == n then
      still = still + 1
      if still >= 5 then break end
    else
      n, still = now, 0
    end
  end
  return n
end

-- nginx writes a request's log line after it has sent the answer, so a
-- client can read the log before its last request is in it: with `expect`,
-- this waits (up to 5 s) until that many requests are logged since `mark`.
function Server:summary(mark, expect)
  local deadline = os.time() + 5
  while true do
    local f = io.open(self.log, "rb")
    if not f then return M.parse_log("") end
    f:seek("set", mark or 0)
    local s = M.parse_log(f:read("*a") or "")
    f:close()
    if not expect or s.requests >= expect or os.time() > deadline then return s end
    os.execute("sleep 0.01")
  end
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  if self.pid then
    os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
    -- wait until it has exited (a daemon we did not fork: poll /proc)
    for _ = 1, 200 do
      if not alive(self.pid) then break end
      os.execute("sleep 0.02")
    end
    if alive(self.pid) then os.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  end
  os.execute("rm -rf " .. quote(self.prefix))
end

--- start{upstream = "http://127.0.0.1:P/...", emulator = bool, http2 = bool,
--        keepalive = bool, owner_pid = pid} -> server
-- Exactly one of `upstream` (proxy to that origin) or `emulator` (serve the
-- emulator's Lua handlers, rate limits off) is required.
function M.start(opts)
  opts = opts or {}
  assert((opts.upstream ~= nil) ~= (opts.emulator == true), "tls_nginx.start: give upstream or emulator")
  local prefix = assert(io.popen("mktemp -d /tmp/moltflow-tls.XXXXXX")):read("*l")
  -- DNS:127.0.0.1 too: nginx's cosockets check an IP-address host against DNS names only
  assert(sh(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 " ..
             "-addext subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost -keyout %s/key.pem -out %s/cert.pem 2>/dev/null")
            :format(quote(prefix), quote(prefix))), "openssl req failed")
  local s = setmetatable({prefix = prefix, ca = prefix .. "/cert.pem", log = prefix .. "/access.log",
                          http2 = opts.http2 == true}, Server)
  -- nginx binds before daemonizing: a port taken since free_port() fails
  -- right here, and another is tried
  local started
  for _ = 1, 20 do
    local port = tonumber(proc.free_port())
    local f = assert(io.open(prefix .. "/nginx.conf", "w"))
    f:write(conf_text{prefix = prefix, port = port, http2 = opts.http2, emulator = opts.emulator,
                      upstream = opts.upstream, keepalive_requests = opts.keepalive_requests,
                      keepalive_timeout = opts.keepalive_timeout, keepalive = opts.keepalive})
    f:close()
    if sh(("%s -p %s -c %s/nginx.conf -e %s/error.log 2>%s/startup.log")
          :format(NGINX, quote(prefix), quote(prefix), quote(prefix), quote(prefix))) then
      s.port, started = port, true
      break
    end
    if not slurp(prefix .. "/startup.log"):find("Address already in use", 1, true) then break end
  end
  if not started then
    local why = slurp(prefix .. "/startup.log")
    os.execute("rm -rf " .. quote(prefix))
    error("the TLS nginx did not start: " .. why)
  end
  s.pid = tonumber(slurp(prefix .. "/nginx.pid"):match("%d+"))
  s.origin = ("https://127.0.0.1:%d"):format(s.port)
  s.url = s.origin .. "/api/v2"
  -- a watchdog stops nginx when the owner dies without closing its state
  local owner = opts.owner_pid or assert(io.popen("echo $PPID")):read("*l")
  os.execute(("(while [ -e /proc/%s ] && [ -e /proc/%d ] && ! grep -q ') Z' /proc/%s/stat; do sleep 0.5; done; " ..
              "kill -TERM %d 2>/dev/null) </dev/null >/dev/null 2>&1 &"):format(owner, s.pid, owner, s.pid))
  local function stop() s:stop() end
  if newproxy then -- Lua 5.1/LuaJIT run __gc only for userdata
    s.sentinel = newproxy(true)
    getmetatable(s.sentinel).__gc = stop
  else
    s.sentinel = setmetatable({}, {__gc = stop})
  end
  -- wait until it answers (verification off: this is the harness, not the SDK)
  local probe = opts.emulator and (s.origin .. "/_emulator/health") or (s.url .. "/billing/plans")
  for _ = 1, 250 do
    if sh(("curl -sfk -o /dev/null %s"):format(quote(probe))) then
      -- nginx logs a request after answering it: wait for the probe's line,
      -- so that a caller's first mark() comes after it
      for _ = 1, 250 do
        if (M.parse_log(slurp(s.log)).statuses[200] or 0) >= 1 then return s end
        os.execute("sleep 0.02")
      end
      return s
    end
    os.execute("sleep 0.02")
  end
  s:stop()
  error("the TLS nginx did not answer on " .. probe)
end

return M
