-- make bench-wan: the workloads of issue 12 at a WAN round trip, through
-- bench/delay_proxy.lua (default 25 ms each way) to a local TLS nginx that
-- serves the emulator (spec/support/tls_nginx.lua), once with HTTP/1.1 only
-- and once with HTTP/2 offered by ALPN. nginx's access log counts the TCP
-- connections and the full and resumed TLS handshakes of every run.
--   lua5.4 bench/wan.lua          (run from the checkout; needs lua-luv,
--                                  both core builds, python3-requests, curl,
--                                  nginx's Lua module for the cosocket client)
--   BENCH_WAN_REPS   runs per workload and client; the median counts (3)
--   BENCH_WAN_DELAY  one-way delay in ms (25)
-- Writes build/bench/wan.md (a markdown table) and build/bench/wan.txt.
package.path = "./?.lua;" .. package.path
local uv = require "luv"
local proc = require "spec.support.process"
local tls_nginx = require "spec.support.tls_nginx"
local delay_proxy = require "spec.support.delay_proxy"
local wan_ngx = require "bench.wan_ngx"

local REPS = tonumber(os.getenv("BENCH_WAN_REPS") or "3")
local DELAY = tonumber(os.getenv("BENCH_WAN_DELAY") or "25")
local RTT = 2 * DELAY / 1000
local root = assert(io.popen("pwd")):read("*l")
local out_dir = "build/bench"
os.execute("mkdir -p " .. out_dir)
local KEY = "mf_AcmeAllu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOO"
local LUA_PATH = ("%s/lua/?.lua;%s/lua/?/init.lua;;"):format(root, root)

-- Sequential round trips of each workload (the floor adds one for TCP and
-- one for the TLS 1.3 handshake of the first connection).
local WORKLOADS = {
  {name = "session", title = "one client, 10 × (GET usage, POST api-keys, PATCH settings)", trips = 30,
   requests = 30},
  {name = "agency", title = "50 tenant clients × 2 rounds, `admin.batch` at concurrency 8",
   trips = 2 * math.ceil(50 / 8), requests = 100},
  {name = "batch", title = "one client, `c:batch` of 32 GETs at concurrency 16", trips = math.ceil(32 / 16),
   requests = 32},
}

local function now() return uv.hrtime() / 1e9 end

local run_seq = 0
local function run_id()
  run_seq = run_seq + 1
  return ("%d-%d"):format(os.time(), run_seq)
end

-- curl: a config file per run, one block per request (`next` starts the
-- next); --parallel for the concurrent workloads.
local function curl_config(workload, url, ca, id)
  local lines = {}
  local function request(method, path, body)
    lines[#lines + 1] = ('url = "%s%s"'):format(url, path)
    lines[#lines + 1] = ('cacert = "%s"'):format(ca)
    lines[#lines + 1] = 'output = "/dev/null"'
    lines[#lines + 1] = 'write-out = "%{http_code}\\n"'
    lines[#lines + 1] = ('header = "X-API-Key: %s"'):format(KEY)
    lines[#lines + 1] = 'header = "Accept: application/json"'
    if method ~= "GET" then
      lines[#lines + 1] = ('request = "%s"'):format(method)
      lines[#lines + 1] = 'header = "Content-Type: application/json"'
      lines[#lines + 1] = ('data = "%s"'):format(body:gsub('"', '\\"'))
    end
    lines[#lines + 1] = "next"
  end
  local parallel
  if workload == "session" then
    for i = 1, 10 do
      request("GET", "/usage/current")
      request("POST", "/api-keys", ('{"name":"wan-%s-curl-%d","scopes":["usage:read"]}'):format(id, i))
      request("PATCH", "/tenant/settings", ('{"require_approval":%s}'):format(i % 2 == 0))
    end
  elseif workload == "agency" then
    -- both rounds in one invocation: curl has no barrier between them
    for _ = 1, 100 do request("GET", "/usage/current") end
    parallel = 8
  else
    for _ = 1, 32 do request("GET", "/usage/current") end
    parallel = 16
  end
  lines[#lines] = nil -- no `next` after the last one
  local path = ("%s/curl-%s.cfg"):format(out_dir, workload)
  local f = assert(io.open(path, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  return path, parallel
end

-- Each client: cmd(workload, url, ca, id) -> shell command, and whether its
-- stdout has "wall_s X" (else the orchestrator times the command); `after`,
-- when given, runs once the run's log lines are read (and on failure);
-- `only`, when given, is the set of workloads it runs.
local CLIENTS = {
  {name = "SDK, Lua 5.4", cmd = function(w, url, ca, id)
    return ("LUA_PATH=%s LUA_CPATH=%s lua5.4 bench/wan_sdk.lua %s %s %s %s"):format(
      proc.quote(LUA_PATH), proc.quote(root .. "/build/5.4/?.so;;"), w, url, proc.quote(ca), id), true
  end},
  {name = "SDK, LuaJIT", cmd = function(w, url, ca, id)
    return ("LUA_PATH=%s LUA_CPATH=%s luajit bench/wan_sdk.lua %s %s %s %s"):format(
      proc.quote(LUA_PATH), proc.quote(root .. "/build/luajit/?.so;;"), w, url, proc.quote(ca), id), true
  end},
  -- the concurrent workloads again without CURLOPT_PIPEWAIT's wait for ALPN
  -- (see bench/wan-commentary.md)
  {name = 'SDK, Lua 5.4, http_version = "1.1"', only = {agency = true, batch = true}, cmd = function(w, url, ca, id)
    return ("LUA_PATH=%s LUA_CPATH=%s lua5.4 bench/wan_sdk.lua %s %s %s %s 1.1"):format(
      proc.quote(LUA_PATH), proc.quote(root .. "/build/5.4/?.so;;"), w, url, proc.quote(ca), id), true
  end},
  {name = "SDK, cosocket transport (nginx)", cmd = function(w, url, ca, id, client)
    client.host = wan_ngx.start{ca = ca} -- started before the log mark: it makes no request
    return client.host:command(w, url, id), true
  end, after = function(client)
    if client.host then client.host:stop() end
    client.host = nil
  end},
  {name = "Python requests.Session", cmd = function(w, url, ca, id)
    return ("/usr/bin/python3 bench/wan_requests.py %s %s %s %s"):format(w, url, proc.quote(ca), id), true
  end},
  {name = "curl", cmd = function(w, url, ca, id)
    local cfg, parallel = curl_config(w, url, ca, id)
    local flags = parallel and ("--parallel --parallel-max " .. parallel) or ""
    return ("curl -s --no-progress-meter %s -K %s"):format(flags, proc.quote(cfg)), false
  end},
}

local function measure(server, url, workload, client)
  local samples = {}
  for _ = 1, REPS do
    local id = run_id()
    local cmd, reports_wall = client.cmd(workload.name, url, server.ca, id, client)
    local mark = server:mark()
    local t0 = now()
    local p = assert(io.popen(cmd .. " 2>" .. out_dir .. "/wan-stderr.txt"))
    local output = p:read("*a")
    local okay = p:close()
    local wall = now() - t0
    local function fail(why)
      error(("%s / %s: %s\n%s%s"):format(client.name, workload.name, why, output,
                                         proc.slurp(out_dir .. "/wan-stderr.txt")))
    end
    if not okay then fail("failed") end
    if reports_wall then
      wall = tonumber(output:match("wall_s ([%d.]+)")) or fail("no wall_s")
    else -- curl writes one status a line
      for code in output:gmatch("[^\n]+") do
        if not code:match("^2%d%d$") then fail("HTTP " .. code) end
      end
    end
    local s = server:summary(mark, workload.requests)
    if client.after then client.after(client) end
    s.wall = wall
    samples[#samples + 1] = s
  end
  table.sort(samples, function(a, b) return a.wall < b.wall end)
  return samples[math.floor((#samples + 1) / 2)]
end

local function protocols(s)
  local names = {}
  for p in pairs(s.protocols) do names[#names + 1] = p end
  table.sort(names)
  return table.concat(names, ", ")
end

if not delay_proxy.available() then error("bench-wan needs lua-luv for " .. delay_proxy.lua) end
local servers = {
  {label = "HTTP/1.1", server = tls_nginx.start{emulator = true}},
  {label = "HTTP/2 offered", server = tls_nginx.start{emulator = true, http2 = true}},
}
local rows, raw = {}, {}
local ok, err = pcall(function()
  for _, sv in ipairs(servers) do
    sv.proxy = delay_proxy.start{target = sv.server.port, delay_ms = DELAY}
    local url = ("https://127.0.0.1:%d/api/v2"):format(sv.proxy.port)
    for _, w in ipairs(WORKLOADS) do
      local floor = (w.trips + 2) * RTT
      rows[#rows + 1] = ("| %s | %s | round-trip floor | %.2f | 1.00 | — | — | — | |"):format(w.title, sv.label, floor)
      for _, c in ipairs(CLIENTS) do
        if c.only and not c.only[w.name] then goto next_client end
        local s = measure(sv.server, url, w, c)
        io.stderr:write(("  %-8s %-15s %-24s %.3f s  %d conn  %d full  %d resumed  %s\n")
          :format(w.name, sv.label, c.name, s.wall, s.connections, s.full, s.resumed, protocols(s)))
        rows[#rows + 1] = ("| %s | %s | %s | %.2f | %.2f | %d | %d | %d | %s |"):format(
          w.title, sv.label, c.name, s.wall, s.wall / floor, s.connections, s.full, s.resumed, protocols(s))
        raw[#raw + 1] = ("%s %s %s wall_s=%.4f floor_s=%.3f connections=%d full=%d resumed=%d requests=%d")
          :format(w.name, sv.label:gsub("[ /]", "_"), c.name:gsub("[ ,.]+", "_"), s.wall, floor,
                  s.connections, s.full, s.resumed, s.requests)
        ::next_client::
      end
    end
  end
end)
for _, c in ipairs(CLIENTS) do
  if c.after then c.after(c) end
end
for _, sv in ipairs(servers) do
  if sv.proxy then sv.proxy:stop() end
  sv.server:stop()
end
if not ok then error(err, 0) end

local md = {
  ("## WAN: TLS at %d ms round trip"):format(DELAY * 2), "",
  ("Run %s, load %s. A local TLS nginx (TLS 1.3) serving the emulator behind bench/delay_proxy.lua " ..
   "(%d ms each way, per chunk). Wall time is the median of %d runs; connections and handshakes " ..
   "are that run's, from nginx's access log (`$connection`, `$ssl_session_reused`). The floor is " ..
   "the sequential round trips × RTT plus one TCP and one TLS round trip. curl runs the agency's " ..
   "100 calls in one `--parallel-max 8` invocation. The cosocket client is a fresh single-worker " ..
   "nginx per run (bench/wan_ngx.lua: an empty keepalive pool and TLS session cache, as a new " ..
   "process of the other clients has), timed inside its handler; it speaks HTTP/1.1 only.")
    :format(os.date("!%Y-%m-%d %H:%M UTC"),
    (io.open("/proc/loadavg"):read("*l"):match("^(%S+ %S+ %S+)")), DELAY, REPS), "",
  "| workload | server | client | wall s | × floor | TCP connections | full TLS | resumed TLS | protocol |",
  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
}
for _, r in ipairs(rows) do md[#md + 1] = r end
local f = assert(io.open(out_dir .. "/wan.md", "w"))
f:write(table.concat(md, "\n"), "\n")
f:close()
f = assert(io.open(out_dir .. "/wan.txt", "w"))
f:write(table.concat(raw, "\n"), "\n")
f:close()
io.stdout:write(table.concat(md, "\n"), "\n")
