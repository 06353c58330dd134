-- An nginx with two workers serving through the SDK, for load specs: each
-- request to http://127.0.0.1:PORT/call makes one call (`c.usage:current()`)
-- with a client of its worker, and answers the call's status (200, or the
-- error's status, or 502 for an error without one) and `key <version>`.
--
--   local n = sdk_nginx.start{base_url = ..., redis = url, prefix = "p:"}  -- api_key_store = redis_store
--   n.url                      -- http://127.0.0.1:PORT/call
--   n.log()                    -- nginx's error log
--   n.stop()                   -- by pid (the master's)
local proc = require "spec.support.process"
local dkjson = require "dkjson"

local M = {}

local quote, sh, slurp = proc.quote, proc.sh, proc.slurp
local NGINX = os.getenv("NGINX") or "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/support/sdk_nginx%.lua$") or "."

function M.start(cfg)
  local real_root = io.popen("realpath " .. quote(root)):read("*l")
  local prefix = proc.tmpdir()
  local port = proc.free_port()
  proc.spit(prefix .. "/cfg.json", dkjson.encode(cfg))
  local user = io.popen("id -u"):read("*l") == "0" and "user root;\n" or ""
  proc.spit(prefix .. "/nginx.conf", ([[
load_module %s/ndk_http_module.so;
load_module %s/ngx_http_lua_module.so;
%sworker_processes 2;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 512; }
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
    lua_shared_dict moltflow_shared_key 64k;
    init_worker_by_lua_block {
        local admin = require "moltflow.admin"
        local f = assert(io.open(%q, "rb"))
        local cfg = admin.json_decode(f:read("*a"))
        f:close()
        local store = admin.redis_store{url = cfg.redis, prefix = cfg.prefix, seal_key = cfg.seal_key or false}
        CLIENT = admin.new{base_url = cfg.base_url, api_key_store = store,
                           api_key_shdict = "moltflow_shared_key"}
    }
    server {
        listen 127.0.0.1:%d;
        location = /call {
            content_by_lua_block {
                local v, err = CLIENT.usage:current()
                if v then
                    ngx.say("ok")
                else
                    ngx.log(ngx.WARN, "call failed: ", tostring(err), " (kind ", tostring(err.kind), ")")
                    ngx.status = err.status or 502
                    ngx.say(tostring(err))
                end
            }
        }
    }
}
]]):format(MODULES, MODULES, user, prefix, prefix, prefix, prefix, prefix, prefix, prefix,
           real_root, real_root, real_root, real_root, prefix .. "/cfg.json", port))
  os.execute("mkdir -p " .. quote(prefix .. "/tmp"))
  assert(sh(("%s -p %s -c %s -e %s 2>&1"):format(NGINX, quote(prefix), quote(prefix .. "/nginx.conf"),
                                                  quote(prefix .. "/error.log"))),
         "nginx did not start: " .. slurp(prefix .. "/error.log"))
  -- listening before the caller's load starts (wrk gives up on a refused
  -- connection); else the error log says why
  local socket = require "socket"
  local listening = proc.wait_for(function()
    local c = socket.tcp()
    c:settimeout(0.5)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    return ok ~= nil
  end, 10)
  assert(listening, ("nginx does not listen on %d: %s (nginx.pid: %s)"):format(port, slurp(prefix .. "/error.log"),
    slurp(prefix .. "/nginx.pid")))
  local self = {prefix = prefix, url = ("http://127.0.0.1:%d/call"):format(port)}
  function self.log() return slurp(prefix .. "/error.log") end
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
