-- The cosocket client of `make bench-wan` (bench/wan.lua): a single-worker
-- nginx (its own temp prefix, a free 127.0.0.1 port, stopped by pid) whose
-- handler runs one workload of bench/wan_sdk.lua through the SDK's ngx
-- transport, batches on light threads, and answers "wall_s <seconds>",
-- timed inside the handler.
--
--   local wan_ngx = require "bench.wan_ngx"
--   local h = wan_ngx.start{ca = tls_server.ca}  -- the CA cosockets trust
--   h:command(workload, api_url, run_id)          -- shell: curl the handler
--   h:stop()
-- A fresh nginx per run: its keepalive pool and TLS sessions start empty,
-- as a new process of the other clients does.
local proc = require "spec.support.process"

local M = {}

local quote, sh, slurp = proc.quote, proc.sh, proc.slurp
local NGINX = os.getenv("NGINX") or "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"

local function conf_text(root, prefix, port, ca)
  return ([[
load_module %s/ndk_http_module.so;
load_module %s/ngx_http_lua_module.so;
worker_processes 1;
master_process off;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %s/tmp;
  proxy_temp_path %s/tmp;
  fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp;
  scgi_temp_path %s/tmp;
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua;;";
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_socket_log_errors off;
  lua_ssl_trusted_certificate %s;
  lua_ssl_verify_depth 2;
  lua_ssl_protocols TLSv1.2 TLSv1.3; # nginx 1.22's Lua module offers only up to 1.2 by default
  server {
    listen 127.0.0.1:%d;
    location = /run {
      default_type text/plain;
      content_by_lua_block {
        local args = ngx.req.get_uri_args()
        local ok, run = pcall(require("bench.wan_sdk").prepare, args.workload, args.url, nil, args.id)
        local elapsed
        if ok then
          ngx.update_time()
          local t0 = ngx.now()
          ok, run = pcall(run)
          ngx.update_time()
          elapsed = ngx.now() - t0
        end
        if not ok then
          ngx.status = 500
          ngx.say(tostring(run))
          return
        end
        ngx.say(("wall_s %%.4f"):format(elapsed))
      }
    }
  }
}
]]):format(MODULES, MODULES, prefix, prefix, prefix, prefix, prefix, prefix, prefix,
           root, root, root, root, ca, port)
end

local Host = {}
Host.__index = Host

--- command(workload, api_url, run_id) -> a shell command whose stdout is
-- the handler's answer ("wall_s X"); it fails on any answer but 200.
function Host:command(workload, api_url, run_id)
  local url = ("http://127.0.0.1:%d/run?workload=%s&url=%s&id=%s"):format(self.port, workload,
    api_url:gsub("[^%w%-._~]", function(ch) return ("%%%02X"):format(ch:byte()) end), run_id)
  return ("curl -sS --max-time 120 --fail-with-body %s"):format(quote(url))
end

function Host:stop()
  if self.stopped then return end
  self.stopped = true
  if self.pid then
    sh("kill -TERM " .. self.pid .. " 2>/dev/null")
    for _ = 1, 250 do
      if not sh("kill -0 " .. self.pid .. " 2>/dev/null") then break end
      os.execute("sleep 0.02")
    end
    sh("kill -KILL " .. self.pid .. " 2>/dev/null")
  end
  os.execute("rm -rf " .. quote(self.prefix))
end

--- start{ca = PATH} -> host, once it answers.
function M.start(opts)
  local root = assert(io.popen("pwd")):read("*l")
  local prefix = proc.tmpdir()
  os.execute("mkdir -p " .. quote(prefix .. "/tmp"))
  local self = setmetatable({prefix = prefix}, Host)
  -- nginx binds before daemonizing: a port taken since free_port() fails
  -- right here, and another is tried
  for _ = 1, 20 do
    local port = tonumber(proc.free_port())
    local f = assert(io.open(prefix .. "/nginx.conf", "w"))
    f:write(conf_text(root, prefix, port, opts.ca))
    f:close()
    if sh(("%s -p %s -c %s/nginx.conf -e %s/error.log 2>%s/startup.log")
          :format(NGINX, quote(prefix), quote(prefix), quote(prefix), quote(prefix))) then
      self.port = port
      break
    end
    if not slurp(prefix .. "/startup.log"):find("Address already in use", 1, true) then break end
  end
  if not self.port then
    local why = slurp(prefix .. "/startup.log")
    self:stop()
    error("the SDK's nginx did not start: " .. why)
  end
  self.pid = tonumber(slurp(prefix .. "/nginx.pid"):match("%d+"))
  -- a watchdog stops nginx when the bench dies without stopping it
  local owner = assert(io.popen("echo $PPID")):read("*l")
  os.execute(("(while [ -e /proc/%s ] && [ -e /proc/%d ] && ! grep -q ') Z' /proc/%s/stat; do sleep 0.5; done; " ..
              "kill -TERM %d 2>/dev/null) </dev/null >/dev/null 2>&1 &"):format(owner, self.pid, owner, self.pid))
  for _ = 1, 250 do
    if sh(("curl -s -o /dev/null http://127.0.0.1:%d/"):format(self.port)) then return self end
    os.execute("sleep 0.02")
  end
  self:stop()
  error("the SDK's nginx did not answer on port " .. self.port)
end

return M
