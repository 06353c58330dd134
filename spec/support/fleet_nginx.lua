-- An nginx with two workers hosting the SDK, for spec/hosts/fleet_spec.lua: each
-- worker runs spec/support/fleet_worker.lua once, in a timer started by
-- init_worker_by_lua (so both workers take part, whatever the kernel does
-- with connections), on cosockets. No port is opened.
--
--   local n = fleet_nginx.start(cfg)  -- cfg as for fleet_worker (go, calls, redis, ...)
--   n:wait()                          -- both workers' outputs
--   n:stop()                          -- by pid (the master's)
-- cfg.trusted_certificate: the CA file nginx trusts for cosocket TLS
-- (lua_ssl_trusted_certificate), for a rediss:// store.
local proc = require "spec.support.process"
local dkjson = require "dkjson"

local M = {}

local quote, sh, slurp = proc.quote, proc.sh, proc.slurp
local NGINX = os.getenv("NGINX") or "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/support/fleet_nginx%.lua$") or "."

local WORKERS = 2

function M.start(cfg)
  local real_root = io.popen("realpath " .. quote(root)):read("*l")
  local prefix = proc.tmpdir()
  local f = assert(io.open(prefix .. "/cfg.json", "wb"))
  f:write(dkjson.encode(cfg))
  f:close()
  f = assert(io.open(prefix .. "/nginx.conf", "wb"))
  -- a master running as root would hand the workers to "nobody"
  local user = io.popen("id -u"):read("*l") == "0" and "user root;\n" or ""
  f:write(([[
load_module %s/ndk_http_module.so;
load_module %s/ngx_http_lua_module.so;
%sworker_processes %d;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 64; }
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
    %s
    init_worker_by_lua_block {
        local prefix = %q
        ngx.timer.at(0, function()
            local admin = require "moltflow.admin"
            local f = assert(io.open(prefix .. "/cfg.json", "rb"))
            local cfg = admin.json_decode(f:read("*a"))
            f:close()
            local ok, out = pcall(require("spec.support.fleet_worker").run, cfg, ngx.sleep)
            if not ok then out = {error = tostring(out)} end
            local path = prefix .. "/out." .. ngx.worker.id()
            f = assert(io.open(path .. ".tmp", "wb"))
            f:write(admin.json_encode(out))
            f:close()
            os.rename(path .. ".tmp", path)
        end)
    }
}
]]):format(MODULES, MODULES, user, WORKERS, prefix, prefix, prefix, prefix, prefix, prefix, prefix,
           real_root, real_root, real_root, real_root,
           cfg.trusted_certificate and ("lua_ssl_trusted_certificate %s; lua_ssl_verify_depth 2;")
             :format(cfg.trusted_certificate) or "",
           prefix))
  f:close()
  assert(sh(("%s -p %s -c %s -e %s 2>&1"):format(NGINX, quote(prefix), quote(prefix .. "/nginx.conf"),
                                                  quote(prefix .. "/error.log"))),
         "nginx did not start: " .. slurp(prefix .. "/error.log"))
  local self = {prefix = prefix}
  function self.log() return slurp(prefix .. "/error.log") end

  function self.wait()
    local core = require "moltflow.core"
    local deadline = core.monotime() + 60
    local outs = {}
    for id = 0, WORKERS - 1 do
      local path = prefix .. "/out." .. id
      while not io.open(path) do
        if core.monotime() > deadline then
          error("nginx worker " .. id .. " wrote nothing:\n" .. slurp(prefix .. "/error.log"))
        end
        core.sleep(0.01)
      end
      local out = dkjson.decode(slurp(path))
      assert(out and not out.error, "nginx worker " .. id .. ": " .. tostring(out and out.error))
      outs[#outs + 1] = out
    end
    return outs
  end

  function self.stop()
    local pid = slurp(prefix .. "/nginx.pid"):match("%d+")
    if pid then
      sh("kill " .. pid)
      local core = require "moltflow.core"
      local deadline = core.monotime() + 10
      while sh("kill -0 " .. pid .. " 2>/dev/null") and core.monotime() < deadline do core.sleep(0.01) end
    end
    sh("rm -rf " .. quote(prefix))
  end

  return self
end

return M
