-- make bench-ngx: the SDK inside nginx under load (issue 26). A host nginx
-- with 2 workers (reuseport: wrk's connections split evenly) runs a handler
-- that makes one API call per request, through the SDK's cosocket transport
-- or, as the baseline, through a plain cosocket HTTP/1.1 request with
-- keep-alive (bench/ngx_pool_handler.lua). wrk keeps 50 requests per worker
-- in flight. The API is a 1-worker nginx answering the fixed subscription
-- after BENCH_NGX_DELAY_MS (5) of ngx.sleep, so that calls overlap; its
-- access log ($connection) counts the connections the host opened, and
-- /proc/net/tcp those still open when wrk ends (opened − open = churn).
--   lua5.4 bench/ngx_pool.lua       (from the checkout; needs wrk, nginx's Lua module)
--   BENCH_NGX_SECONDS  seconds per wrk run (10)
--   BENCH_NGX_POOLS    the SDK's pool sizes to measure ("16 32 64 128")
--   BENCH_NGX_BASELINE the baseline's pool size (64)
--   BENCH_NGX_SPLICE   0: leave BENCHMARKS.md alone
-- Writes build/bench/ngx.md and the section "## nginx" of BENCHMARKS.md.
-- luacheck: no max line length (markdown table rows are one line each)
package.path = "./?.lua;" .. package.path
local proc = require "spec.support.process"

local quote, sh, slurp = proc.quote, proc.sh, proc.slurp
local NGINX = os.getenv("NGINX") or "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"
local SECONDS = tonumber(os.getenv("BENCH_NGX_SECONDS") or "10")
local DELAY_MS = tonumber(os.getenv("BENCH_NGX_DELAY_MS") or "5")
local POOLS = {}
for v in (os.getenv("BENCH_NGX_POOLS") or "16 32 64 128"):gmatch("%d+") do POOLS[#POOLS + 1] = tonumber(v) end
local BASELINE_POOL = tonumber(os.getenv("BENCH_NGX_BASELINE") or "64")
local WORKERS, PER_WORKER = 2, 50
local root = assert(io.popen("pwd")):read("*l")
local out_dir = "build/bench"
os.execute("mkdir -p " .. out_dir)
local USER = assert(io.popen("id -u")):read("*l") == "0" and "user root;\n" or "" -- workers read the checkout

local function start_nginx(conf, master)
  local prefix = proc.tmpdir()
  os.execute("mkdir -p " .. quote(prefix .. "/tmp"))
  for _ = 1, 20 do
    local port = tonumber(proc.free_port())
    proc.spit(prefix .. "/nginx.conf", conf(prefix, port))
    if sh(("%s -p %s -c %s/nginx.conf -e %s/error.log 2>%s/startup.log")
          :format(NGINX, quote(prefix), quote(prefix), quote(prefix), quote(prefix))) then
      local pid
      for _ = 1, 100 do
        pid = tonumber(slurp(prefix .. "/nginx.pid"):match("%d+"))
        if pid then break end
        os.execute("sleep 0.02")
      end
      local s = {prefix = prefix, port = port, pid = pid, master = master}
      function s.stop()
        sh("kill -TERM " .. s.pid .. " 2>/dev/null")
        for _ = 1, 250 do
          if not sh("kill -0 " .. s.pid .. " 2>/dev/null") then break end
          os.execute("sleep 0.02")
        end
        sh("kill -KILL " .. s.pid .. " 2>/dev/null")
        os.execute("rm -rf " .. quote(s.prefix))
      end
      return s
    end
    if not slurp(prefix .. "/startup.log"):find("Address already in use", 1, true) then break end
  end
  error("nginx did not start: " .. slurp(prefix .. "/startup.log") .. slurp(prefix .. "/error.log"))
end

local function temp_paths(p)
  return ("client_body_temp_path %s/tmp; proxy_temp_path %s/tmp; fastcgi_temp_path %s/tmp; " ..
          "uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;"):format(p, p, p, p, p)
end

-- The API: the subscription after DELAY_MS, with the emulator's headers.
local body = slurp("bench/subscription.json")
local api = start_nginx(function(p, port)
  proc.spit(p .. "/subscription.json", body)
  return ([[
load_module %s/ndk_http_module.so;
load_module %s/ngx_http_lua_module.so;
worker_processes 1;
master_process off;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 4096; }
http {
  log_format conn '$connection';
  access_log %s/access.log conn;
  %s
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {
    listen 127.0.0.1:%d backlog=4096;
    location = /api/v2/billing/subscription {
      content_by_lua_block {
        ngx.sleep(%g)
        ngx.header["Content-Type"] = "application/json"
        ngx.header["X-Request-Id"] = "req_00000000000000000000beef"
        ngx.header["X-RateLimit-Remaining"] = "39"
        ngx.header["X-RateLimit-Reset"] = "1795886880"
        ngx.header["Content-Length"] = %d
        ngx.print(%q)
      }
    }
  }
}
]]):format(MODULES, MODULES, p, p, p, temp_paths(p), port, DELAY_MS / 1000, #body, body)
end)
local api_url = ("http://127.0.0.1:%d/api/v2"):format(api.port)

-- The host: 2 workers, /run calls the handler with the pool size of this run.
local function start_host(handler, pool_size)
  return start_nginx(function(p, port)
    return ([[
load_module %s/ndk_http_module.so;
load_module %s/ngx_http_lua_module.so;
%sworker_processes %d;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  %s
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua;;";
  lua_package_cpath "%s/build/luajit/?.so;;";
  lua_socket_log_errors off;
  server {
    listen 127.0.0.1:%d reuseport;
    location = /run {
      default_type text/plain;
      content_by_lua_block { require("bench.ngx_pool_handler").%s(%q, %d) }
    }
  }
}
]]):format(MODULES, MODULES, USER, WORKERS, p, p, temp_paths(p), root, root, root, root, port, handler,
           api_url, pool_size)
  end, true)
end

-- Server-side sockets of the API in state ESTABLISHED (01), IPv4.
local function api_connections_open()
  local n, hex = 0, ("%04X"):format(api.port)
  for line in io.lines("/proc/net/tcp") do
    local lport, state = line:match("^%s*%d+: %x+:(%x+) %x+:%x+ (%x+)")
    if lport == hex and state == "01" then n = n + 1 end
  end
  return n
end

local function log_size()
  local f = io.open(api.prefix .. "/access.log", "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

local function run(handler, pool_size)
  local host = start_host(handler, pool_size)
  local url = ("http://127.0.0.1:%d/run"):format(host.port)
  local answered
  for _ = 1, 100 do -- the workers start after the master wrote its pid
    answered = sh(("curl -sf -o /dev/null %s && curl -sf -o /dev/null %s"):format(quote(url), quote(url)))
    if answered then break end
    os.execute("sleep 0.05")
  end
  if not answered then
    local why = assert(io.popen("curl -s " .. quote(url))):read("*a") .. slurp(host.prefix .. "/error.log")
    host.stop()
    error(handler .. ": the handler does not answer 200: " .. why)
  end
  os.execute("sleep 0.2")
  local open_before = api_connections_open()
  local mark = log_size()
  local p = assert(io.popen(("wrk -t%d -c%d -d%ds --latency %s 2>&1"):format(WORKERS, WORKERS * PER_WORKER,
                                                                         SECONDS, quote(url))))
  local out = p:read("*a")
  p:close()
  local open_after = api_connections_open()
  local f = assert(io.open(api.prefix .. "/access.log", "rb"))
  f:seek("set", mark)
  local seen, opened, requests = {}, 0, 0
  for c in (f:read("*a") or ""):gmatch("(%d+)\n") do
    requests = requests + 1
    if not seen[c] then
      seen[c] = true
      opened = opened + 1
    end
  end
  f:close()
  host.stop()
  local rps = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
  local p99, unit = out:match("%s99%%%s+([%d.]+)(%a+)")
  p99 = tonumber(p99)
  if p99 and unit == "us" then p99 = p99 / 1000 elseif p99 and unit == "s" then p99 = p99 * 1000 end
  local errors = out:match("Non%-2xx or 3xx responses: (%d+)")
  local r = {handler = handler, pool = pool_size, rps = rps, p99_ms = p99, opened = opened,
             open_end = open_after, open_before = open_before, requests = requests, errors = tonumber(errors) or 0}
  io.stderr:write(("  %-5s pool %3d: %7.0f req/s  p99 %6.1f ms  connections: %d used in the run " ..
                   "(%d already open), %d open at the end  %d non-2xx\n")
    :format(handler, pool_size, rps or 0, p99 or 0, opened, open_before, open_after, r.errors))
  if not rps then error("wrk: " .. out) end
  return r
end

local rows = {}
local ok, err = pcall(function()
  rows[#rows + 1] = run("plain", BASELINE_POOL)
  for _, size in ipairs(POOLS) do rows[#rows + 1] = run("sdk", size) end
end)
api.stop()
if not ok then error(err, 0) end

local load = io.open("/proc/loadavg"):read("*l"):match("^(%S+ %S+ %S+)")
local md = {
  "## nginx: the cosocket transport under wrk", "",
  ("Generated by `make bench-ngx` (bench/ngx_pool.lua, bench/ngx_pool_handler.lua), run %s, load %s. " ..
   "A host nginx, %d workers, one handler making one API call per request (GET /billing/subscription, " ..
   "decoded); `wrk -t%d -c%d -d%ds` (%d requests in flight per worker). The API: a 1-worker nginx that " ..
   "answers after %g ms (`ngx.sleep`), whose access log counts the connections the host used " ..
   "(distinct `$connection`); /proc/net/tcp counts those open when wrk ended. Baseline: the same " ..
   "handler with a plain cosocket HTTP/1.1 request on a keep-alive pool of %d.")
    :format(os.date("!%Y-%m-%d %H:%M UTC"), load, WORKERS, WORKERS, WORKERS * PER_WORKER, SECONDS, PER_WORKER,
            DELAY_MS, BASELINE_POOL), "",
  "| handler | pool size per worker | req/s | × baseline | p99 ms | connections used | open at the end | closed during the run (churn) | non-2xx |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
}
local base = rows[1]
for _, r in ipairs(rows) do
  md[#md + 1] = ("| %s | %d | %.0f | %.2f | %.1f | %d | %d | %d | %d |"):format(
    r.handler == "plain" and "plain cosocket request (baseline)" or "SDK, cosocket transport", r.pool, r.rps,
    r.rps / base.rps, r.p99_ms or 0, r.opened, r.open_end, math.max(0, r.opened - r.open_end), r.errors)
end
local f = assert(io.open(out_dir .. "/ngx.md", "w"))
f:write(table.concat(md, "\n"), "\n")
f:close()
io.stdout:write(table.concat(md, "\n"), "\n")
-- BENCHMARKS.md: this section (and bench/ngx-commentary.md) replaces the one
-- there (make bench rewrites the whole file with it through bench/report.lua)
if os.getenv("BENCH_NGX_SPLICE") ~= "0" then
  require("bench.splice")("BENCHMARKS.md", "## nginx", table.concat(md, "\n") .. "\n",
                          proc.slurp("bench/ngx-commentary.md"))
end
