-- make bench-scale: agency scale (issue 26). N tenant clients with one key
-- each (N = 100, 1,000, 10,000), one call each through `admin.batch` at
-- concurrency 64, TLS through bench/delay_proxy.lua (25 ms each way) to a
-- local nginx (spec/support/tls_nginx.lua) in front of the emulator (rate
-- limits off, the tenants seeded by POST /_emulator/tenants). Beside it, the
-- 32-call batch of the WAN bench (bench/wan_sdk.lua batch) against an
-- HTTP/2 server and an HTTP/1.1-only one, with default settings, once in a
-- fresh process and once after a first batch on the same loop.
--   lua5.4 bench/scale.lua            (from the checkout; needs lua-luv, gnuplot)
--   BENCH_SCALE_N      tenant counts ("100 1000 10000")
--   BENCH_SCALE_REPS   runs of each 32-call batch; the median counts (3)
--   BENCH_WAN_DELAY    one-way delay in ms (25)
--   BENCH_SCALE_SPLICE 0: leave BENCHMARKS.md alone
-- Writes build/bench/scale.md, scale.dat, bench/scale.png, and the section
-- "## Agency scale" of BENCHMARKS.md.
-- luacheck: no max line length (markdown table rows are one line each)
package.path = "./?.lua;" .. package.path
local uv = require "luv"
local proc = require "spec.support.process"
local http = require "spec.support.http"
local dkjson = require "dkjson"
local tls_nginx = require "spec.support.tls_nginx"
local delay_proxy = require "spec.support.delay_proxy"

local COUNTS = {}
for v in (os.getenv("BENCH_SCALE_N") or "100 1000 10000"):gmatch("%d+") do COUNTS[#COUNTS + 1] = tonumber(v) end
local REPS = tonumber(os.getenv("BENCH_SCALE_REPS") or "3")
local DELAY = tonumber(os.getenv("BENCH_WAN_DELAY") or "25")
local RTT = 2 * DELAY / 1000
local CONCURRENCY = 64
local root = assert(io.popen("pwd")):read("*l")
local out_dir = "build/bench"
os.execute("mkdir -p " .. out_dir)
local LUA_PATH = ("%s/lua/?.lua;%s/lua/?/init.lua;;"):format(root, root)
local SDK = ("LUA_PATH=%s LUA_CPATH=%s lua5.4"):format(proc.quote(LUA_PATH), proc.quote(root .. "/build/5.4/?.so;;"))

local function now() return uv.hrtime() / 1e9 end
local function kb(kib) return kib * 1.024 end -- KiB -> kB (the targets are in kB)

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>" .. out_dir .. "/scale-stderr.txt"))
  local output = p:read("*a")
  if not p:close() then
    error(("failed: %s\n%s%s"):format(cmd, output, proc.slurp(out_dir .. "/scale-stderr.txt")))
  end
  local v = {}
  for k, x in output:gmatch("(%S+) ([%d.]+)") do v[k] = tonumber(x) end
  return v
end

if not delay_proxy.available() then error("bench-scale needs lua-luv for " .. delay_proxy.lua) end

-- The emulator, rate limits off, in a private prefix (its nginx.pid: the one
-- process that serves, master_process off)
local secrets_dir = proc.tmpdir()
local emu_prefix = secrets_dir .. "/emulator"
assert(proc.sh("mkdir -m 700 " .. proc.quote(emu_prefix)))
local emu_url = assert(io.popen(("bin/moltflow-emulator --daemon --port 0 --prefix %s --no-rate-limit --quiet")
  :format(proc.quote(emu_prefix)))):read("*l")
assert(emu_url and emu_url:match("^http://"), "the emulator did not start")
local emu_pid = tonumber(proc.slurp(emu_prefix .. "/nginx.pid"):match("%d+"))
local function stop_emulator()
  os.execute(("bin/moltflow-emulator --stop --prefix %s --quiet"):format(proc.quote(emu_prefix)))
end
local function control(method, path, body)
  local res = assert(http.request{method = method, url = emu_url:gsub("/api/v2$", "") .. "/_emulator/" .. path,
    headers = {["Content-Type"] = "application/json",
               ["X-Emulator-Token"] = proc.slurp(emu_prefix .. "/control-token"):match("%S+")},
    body = body and dkjson.encode(body) or nil})
  return dkjson.decode(res.body), res.status
end

-- CPU seconds (user + system) a process has used so far
local TICKS = tonumber(assert(io.popen("getconf CLK_TCK")):read("*l")) or 100
local function cpu_of(pid)
  local stat = proc.slurp("/proc/" .. pid .. "/stat"):match("%) (.*)$") or ""
  local fields = {}
  for f in stat:gmatch("%S+") do fields[#fields + 1] = f end
  return ((tonumber(fields[12]) or 0) + (tonumber(fields[13]) or 0)) / TICKS
end

local max_n = math.max(table.unpack(COUNTS))
local tenants, status = control("POST", "tenants", {count = max_n})
assert(status == 201, "could not seed the tenants")
local keys_file = secrets_dir .. "/keys"
do
  local lines = {}
  for i, t in ipairs(tenants) do lines[i] = t.api_key end
  os.execute("umask 077; : > " .. proc.quote(keys_file))
  local f = assert(io.open(keys_file, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
end
tenants = nil -- luacheck: ignore 311 (10,000 raw keys: dropped once written)

-- curl, the reference client: the same N calls, one key each, in one
-- `--parallel --parallel-max 64` invocation (HTTP/2 by ALPN, PIPEWAIT as
-- curl does by default); timed around the process.
local function curl_calls(n, url, ca)
  local lines = {}
  local keys = assert(io.open(keys_file))
  for _ = 1, n do
    lines[#lines + 1] = ('url = "%s/usage/current"\ncacert = "%s"\noutput = "/dev/null"\n' ..
                         'write-out = "%%{http_code}\\n"\nheader = "X-API-Key: %s"\n' ..
                         'header = "Accept: application/json"\nnext'):format(url, ca, keys:read("*l"))
  end
  keys:close()
  lines[#lines] = lines[#lines]:gsub("\nnext$", "")
  local cfg = secrets_dir .. "/curl.cfg"
  local f = assert(io.open(cfg, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local t0 = now()
  -- bash's `times`: the CPU time of its children (curl), user then system
  local p = assert(io.popen(("bash -c %s"):format(proc.quote(
    ("curl -s --no-progress-meter --parallel --parallel-max %d -K %s; times"):format(CONCURRENCY, proc.quote(cfg))))))
  local out = p:read("*a")
  assert(p:close(), "curl failed")
  local wall = now() - t0
  local good = select(2, out:gsub("200\n", ""))
  assert(good == n, ("curl: %d of %d calls answered 200"):format(good, n))
  local cpu = 0
  local children = out:match("[^\n]+\n([^\n]+)\n?$")
  for m, sec in children:gmatch("(%d+)m([%d.]+)s") do cpu = cpu + tonumber(m) * 60 + tonumber(sec) end
  os.remove(cfg)
  return wall, cpu
end

local servers = {
  -- nginx closes a connection after keepalive_requests (1000 by default):
  -- raised, so that 10,000 calls can share one
  h2 = {label = "HTTP/2 offered", server = tls_nginx.start{upstream = emu_url, http2 = true,
                                                          keepalive_requests = 100000, keepalive_timeout = "1s"}},
  -- idle connections closed after 1 s: the later batch finds none open
  h1 = {label = "HTTP/1.1 only", server = tls_nginx.start{upstream = emu_url, keepalive_requests = 100000,
                                                         keepalive_timeout = "1s"}},
}
local scale_rows, batch_rows, dat = {}, {}, {}
local ok, err = pcall(function()
  for _, sv in pairs(servers) do
    sv.proxy = delay_proxy.start{target = sv.server.port, delay_ms = DELAY}
    sv.url = ("https://127.0.0.1:%d/api/v2"):format(sv.proxy.port)
  end
  local h2 = servers.h2
  local function servers_cpu() return cpu_of(emu_pid) + cpu_of(h2.server.pid) + cpu_of(h2.proxy.pid) end
  for _, n in ipairs(COUNTS) do
    local mark = h2.server:mark()
    local server_cpu0 = servers_cpu()
    local v = run(("%s bench/scale_sdk.lua %d %s %s %s %d"):format(SDK, n, h2.url, proc.quote(h2.server.ca),
                                                                proc.quote(keys_file), CONCURRENCY))
    local s = h2.server:summary(mark, n)
    local server_cpu_us = (servers_cpu() - server_cpu0) / n * 1e6
    local floor = (2 + math.ceil(n / CONCURRENCY)) * RTT
    mark = h2.server:mark()
    local curl_wall, curl_cpu = curl_calls(n, h2.url, h2.server.ca)
    local curl_conns = h2.server:summary(mark, n).connections
    local row = {n = n, curl_wall = curl_wall, curl_conns = curl_conns, cpu_us = v.cpu_s / n * 1e6, server_cpu_us = server_cpu_us, curl_cpu_us = curl_cpu / n * 1e6, wall = v.wall_s, floor = floor, connections = s.connections, requests = s.requests,
                 rss_idle = kb(v.rss_idle_kib - v.rss_base_kib) / n, rss_after = kb(v.rss_after_kib - v.rss_base_kib) / n,
                 heap_idle = kb(v.heap_idle_kib - v.heap_base_kib) / n,
                 heap_after = kb(v.heap_after_kib - v.heap_base_kib) / n,
                 rss_total = kb(v.rss_after_kib) / 1000, protocols = s.protocols,
                 raw_idle = kb(v.rss_idle_kib), raw_after = kb(v.rss_after_kib)}
    scale_rows[#scale_rows + 1] = row
    io.stderr:write(("  %6d tenants: %.3f s (floor %.2f, %.2f x)  %d conn  RSS/client %.1f / %.1f kB  " ..
                     "heap/client %.1f / %.1f kB  RSS %.1f MB  curl %.3f s (%.2f x) %d conn  CPU %.0f us/call (curl %.0f, servers %.0f)\n")
      :format(n, row.wall, floor, row.wall / floor, row.connections, row.rss_idle, row.rss_after,
              row.heap_idle, row.heap_after, row.rss_total, curl_wall, curl_wall / floor, curl_conns, row.cpu_us, row.curl_cpu_us, row.server_cpu_us))
    dat[#dat + 1] = ("%d %.4f %.4f %.3f %.3f %.3f %.3f %.2f %.4f"):format(n, row.wall, floor, row.rss_idle,
      row.rss_after, row.heap_idle, row.heap_after, row.rss_total, curl_wall)
  end
  -- the 32-call batch: the first calls of a process, and a batch after one
  -- call met the server and the server closed that idle connection
  for _, key in ipairs({"h2", "h1"}) do
    local sv = servers[key]
    for _, mode in ipairs({"batch", "batch-later"}) do
      local samples = {}
      for _ = 1, REPS do
        local mark = sv.server:mark()
        local v = run(("%s bench/wan_sdk.lua %s %s %s"):format(SDK, mode, sv.url, proc.quote(sv.server.ca)))
        local s = sv.server:summary(mark, mode == "batch" and 32 or 33)
        samples[#samples + 1] = {wall = v.wall_s, connections = s.connections, full = s.full}
      end
      table.sort(samples, function(a, b) return a.wall < b.wall end)
      local m = samples[math.floor((#samples + 1) / 2)]
      m.server, m.mode, m.floor = sv.label, mode, 4 * RTT
      batch_rows[#batch_rows + 1] = m
      io.stderr:write(("  batch of 32, %-14s %-10s %.3f s (%.2f x)  %d conn\n")
        :format(sv.label, mode, m.wall, m.wall / m.floor, m.connections))
    end
  end
end)
for _, sv in pairs(servers) do
  if sv.proxy then sv.proxy:stop() end
  sv.server:stop()
end
stop_emulator()
os.execute("rm -rf " .. proc.quote(secrets_dir))
if not ok then error(err, 0) end

local function verdict(good) return good and "met" or "**missed**" end
local load = io.open("/proc/loadavg"):read("*l"):match("^(%S+ %S+ %S+)")
local md = {
  "## Agency scale: tenants × 1 call at concurrency 64, TLS at 50 ms", "",
  ("Generated by `make bench-scale` (bench/scale.lua, bench/scale_sdk.lua), run %s, load %s. " ..
   "N tenant clients (Lua 5.4, the default loop), one API key each, one `usage.current` each through " ..
   "`admin.batch` at concurrency %d, over TLS 1.3 through bench/delay_proxy.lua (%d ms each way) to a " ..
   "local nginx offering HTTP/2, in front of the emulator (rate limits off; tenants seeded by " ..
   "`POST /_emulator/tenants`). The floor is one TCP and one TLS round trip plus ceil(N/%d) waves of " ..
   "one round trip. Memory per client is (measure − base) / N: RSS from /proc/self/statm, the Lua " ..
   "heap after a full collection; base is the SDK loaded with its default loop and the keys read; " ..
   "idle is after N `admin.new`, after calls once every answer came back and the results were " ..
   "dropped (clients kept). Connections are nginx's distinct `$connection`s.")
    :format(os.date("!%Y-%m-%d %H:%M UTC"), load, CONCURRENCY, DELAY, CONCURRENCY), "",
  "| tenants | time s | floor s | × floor | connections | client CPU per call | curl, same calls: s (× floor, connections) | curl's CPU per call | servers' CPU per call (emulator, TLS nginx, delay proxy) | RSS per client idle | after calls | Lua heap per client idle | after calls | RSS in all |",
  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
}
for _, r in ipairs(scale_rows) do
  md[#md + 1] = ("| %d | %.2f | %.2f | %.2f | %d | %.0f µs | %.2f (%.2f, %d) | %.0f µs | %.0f µs | %.1f kB | %.1f kB | %.1f kB | %.1f kB | %.1f MB |"):format(
    r.n, r.wall, r.floor, r.wall / r.floor, r.connections, r.cpu_us, r.curl_wall, r.curl_wall / r.floor, r.curl_conns, r.curl_cpu_us, r.server_cpu_us,
    r.rss_idle, r.rss_after, r.heap_idle, r.heap_after, r.rss_total)
end
if #scale_rows >= 2 then
  local a, b = scale_rows[#scale_rows - 1], scale_rows[#scale_rows]
  md[#md + 1] = ""
  md[#md + 1] = ("Each client more, from %d to %d tenants (what a client adds, the loop's shared pool of " ..
    "transfers left out): RSS %.1f kB idle, %.1f kB after its call."):format(a.n, b.n,
    (b.raw_idle - a.raw_idle) / (b.n - a.n), (b.raw_after - a.raw_after) / (b.n - a.n))
end
md[#md + 1] = ""
md[#md + 1] = "![time and memory against tenants](bench/scale.png)"
md[#md + 1] = ""
md[#md + 1] = ("The 32-call batch (`c:batch` of 32 GETs at concurrency 16, bench/wan_sdk.lua), default " ..
  "settings, median of %d fresh processes. *first* is the first batch of a process; *later* a batch " ..
  "in a process whose one earlier call met the server, after the server closed that idle connection " ..
  "(keepalive_timeout 1 s; the loop remembers what the host speaks). Floor: TCP + TLS + 2 waves = " ..
  "%.2f s."):format(REPS, 4 * RTT)
md[#md + 1] = ""
md[#md + 1] = "| server | batch | time s | × floor | connections |"
md[#md + 1] = "| --- | --- | ---: | ---: | ---: |"
for _, b in ipairs(batch_rows) do
  md[#md + 1] = ("| %s | %s | %.2f | %.2f | %d |"):format(b.server, b.mode == "batch" and "first" or "later",
    b.wall, b.wall / b.floor, b.connections)
end
md[#md + 1] = ""
md[#md + 1] = "### Scale targets (issue 26), this run"
md[#md + 1] = ""
md[#md + 1] = "| target | measured | wanted | |"
md[#md + 1] = "| --- | ---: | ---: | --- |"
local function target(name, measured, wanted, good)
  md[#md + 1] = ("| %s | %s | %s | %s |"):format(name, measured, wanted, verdict(good))
end
local biggest = scale_rows[#scale_rows]
for _, r in ipairs(scale_rows) do
  target(("idle client, RSS (%d tenants)"):format(r.n), ("%.1f kB"):format(r.rss_idle), "≤ 4 kB", r.rss_idle <= 4)
  target(("client after its call, RSS (%d tenants)"):format(r.n), ("%.1f kB"):format(r.rss_after), "≤ 8 kB",
         r.rss_after <= 8)
end
target(("%d tenants, RSS in all"):format(biggest.n), ("%.1f MB"):format(biggest.rss_total), "< 100 MB",
       biggest.rss_total < 100)
target(("%d tenants × 1 call, time"):format(biggest.n), ("%.2f × floor"):format(biggest.wall / biggest.floor),
       "≤ 1.10 × floor", biggest.wall / biggest.floor <= 1.10)
target(("%d tenants × 1 call, connections (HTTP/2)"):format(biggest.n), tostring(biggest.connections), "1",
       biggest.connections == 1)
for _, b in ipairs(batch_rows) do
  target(("32-call batch, %s, %s batch"):format(b.server, b.mode == "batch" and "first" or "later"),
         ("%.2f × floor"):format(b.wall / b.floor), "≤ 1.10 × floor", b.wall / b.floor <= 1.10)
end

local f = assert(io.open(out_dir .. "/scale.md", "w"))
f:write(table.concat(md, "\n"), "\n")
f:close()
f = assert(io.open(out_dir .. "/scale.dat", "w"))
f:write("# tenants wall_s floor_s rss_idle_kB rss_after_kB heap_idle_kB heap_after_kB rss_total_MB curl_wall_s\n")
f:write(table.concat(dat, "\n"), "\n")
f:close()
assert(proc.sh(("gnuplot -e %s bench/scale.gp"):format(proc.quote(
  ("datafile='%s/scale.dat'; outfile='bench/scale.png'"):format(out_dir)))), "gnuplot failed")
io.stdout:write(table.concat(md, "\n"), "\n")

-- BENCHMARKS.md: this section (and bench/scale-commentary.md) replaces the
-- one there, up to the next "## " heading (make bench rewrites the whole file
-- with it, from build/bench/scale.md, through bench/report.lua)
if os.getenv("BENCH_SCALE_SPLICE") ~= "0" then
  require("bench.splice")("BENCHMARKS.md", "## Agency scale", table.concat(md, "\n") .. "\n",
                          proc.slurp("bench/scale-commentary.md"))
end
