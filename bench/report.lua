-- bench/report.lua RESULTS: prints the table and the ratios of a `make bench`
-- run, regenerates BENCHMARKS.md (machine, table, ratios, the WAN section,
-- then bench/commentary.md) and draws bench/concurrency.png with gnuplot.
-- bench/report.lua --wan: replaces only BENCHMARKS.md's WAN section, after a
-- `make bench-wan` alone.

-- The WAN section: build/bench/wan.md (bench/wan.lua's table) and its
-- commentary, bench/wan-commentary.md; nil without a table.
local function wan_section()
  local wan = io.open("build/bench/wan.md")
  if not wan then return nil end
  local parts = {wan:read("*a")}
  wan:close()
  local commentary = io.open("bench/wan-commentary.md")
  if commentary then
    parts[2] = commentary:read("*a")
    commentary:close()
  end
  return table.concat(parts, "\n")
end

-- A section written by another bench (build/bench/NAME.md) and its
-- commentary (bench/NAME-commentary.md), or nil when that bench did not run.
local function bench_section(name)
  local f = io.open("build/bench/" .. name .. ".md")
  if not f then return nil end
  local parts = {f:read("*a")}
  f:close()
  local commentary = io.open("bench/" .. name .. "-commentary.md")
  if commentary then
    parts[2] = commentary:read("*a")
    commentary:close()
  end
  return table.concat(parts, "\n")
end

if arg[1] == "--wan" then
  -- from its "## WAN" heading to the next "## " heading
  local f = assert(io.open("BENCHMARKS.md"))
  local text = f:read("*a")
  f:close()
  local section = assert(wan_section(), "no build/bench/wan.md: run make bench-wan first")
  local from = assert(text:find("\n## WAN", 1, true), "BENCHMARKS.md has no WAN section")
  local to = text:find("\n## ", from + 1, true) or #text + 1
  f = assert(io.open("BENCHMARKS.md", "w"))
  f:write(text:sub(1, from), section, text:sub(to))
  f:close()
  io.stderr:write("replaced the WAN section of BENCHMARKS.md\n")
  return
end

local results_path = assert(arg[1], "usage: report.lua RESULTS | --wan")

local r = {}
for line in io.lines(results_path) do
  local k, v = line:match("^(%S+)%s+(.*)$")
  if k then r[k] = tonumber(v) or v end
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local s = p:read("*a") or ""
  p:close()
  return (s:gsub("%s+$", ""))
end

local function best(prefix)
  local b
  for round = 1, 2 do
    local v = r[prefix .. "_" .. round]
    if v and (not b or v > b) then b = v end
  end
  return b
end

local function least(prefix)
  local b
  for round = 1, 2 do
    local v = r[prefix .. "_" .. round .. "_cpu"]
    if v and (not b or v < b) then b = v end
  end
  return b
end

local cpu = {
  c = least("seq_c"), sdk54 = least("seq_sdk54"), sdkjit = least("seq_sdkjit"),
  luasocket = r.seq_luasocket_cpu, python = r.seq_python_cpu,
}

local seq = {
  c = best("seq_c"), sdk54 = best("seq_sdk54"), sdkjit = best("seq_sdkjit"),
  wrk = r.seq_wrk, luasocket = r.seq_luasocket, python = r.seq_python,
}
local CONC = {1, 4, 16, 64}

local function fmt_rps(v) return v and ("%.0f"):format(v) or "n/a" end
local function us(v) return v and ("%.1f"):format(1e6 / v) or "n/a" end
local function ratio(a, b) return (a and b and b > 0) and a / b or nil end
local function fmt_ratio(x) return x and ("%.2f"):format(x) or "n/a" end

local lines = {}
local function out(s) lines[#lines + 1] = s or "" end

out("### Sequential requests, one kept-alive connection")
out()
out("| client | req/s | µs/req | × C libcurl loop | client CPU µs/req |")
out("| --- | ---: | ---: | ---: | ---: |")
local seq_rows = {
  {"wrk -t1 -c1 (the server's limit)", seq.wrk},
  {"C libcurl easy loop (the transport's limit)", seq.c, cpu.c},
  {"SDK, Lua 5.4", seq.sdk54, cpu.sdk54},
  {"SDK, LuaJIT 2.1", seq.sdkjit, cpu.sdkjit},
  {"LuaSocket socket.http + cjson, Lua 5.4 (new connection per request)", seq.luasocket, cpu.luasocket},
  {"Python requests.Session + .json()", seq.python, cpu.python},
}
for _, row in ipairs(seq_rows) do
  out(("| %s | %s | %s | %s | %s |"):format(row[1], fmt_rps(row[2]), us(row[2]), fmt_ratio(ratio(row[2], seq.c)),
                                          row[3] and ("%.1f"):format(row[3]) or ""))
end
out()
out(("End to end against the emulator (nginx + Lua, authenticating the key and counting usage): " ..
     "C loop %s req/s, SDK (Lua 5.4) %s req/s (%s ×)."):format(fmt_rps(r.emu_c), fmt_rps(r.emu_sdk54),
                                                           fmt_ratio(ratio(r.emu_sdk54, r.emu_c))))
out()
out("### Concurrency: `c:batch` beside a C curl-multi loop")
out()
out("| in flight | C curl-multi req/s | `c:batch` Lua 5.4 req/s | × C | `c:batch` LuaJIT req/s | × C "
    .. "| core start/poll/finish, Lua 5.4 | × C |")
out("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for _, c in ipairs(CONC) do
  local m, a = r["multi_c_" .. c], r["batch_sdk54_" .. c]
  local j, k = r["batch_sdkjit_" .. c], r["core_sdk54_" .. c]
  out(("| %d | %s | %s | %s | %s | %s | %s | %s |"):format(c, fmt_rps(m), fmt_rps(a), fmt_ratio(ratio(a, m)),
    fmt_rps(j), fmt_ratio(ratio(j, m)), fmt_rps(k), fmt_ratio(ratio(k, m))))
end
out()
out("### Cost, memory, start-up")
out()
out("| measure | Lua 5.4 | LuaJIT 2.1 | C loop |")
out("| --- | ---: | ---: | ---: |")
out(("| instructions per request, sequential (callgrind) | %s | %s | %s |"):format(
  r.ir_sdk54 or "n/a", r.ir_sdkjit or "n/a", r.ir_c or "n/a"))
out(("| instructions per request, 16 in flight (`c:batch` / curl-multi) | %s | | %s |"):format(
  r.ir_batch16_54 or "n/a", r.ir_multi16 or "n/a"))
local function kib(v) return v and ("%d KiB"):format(v) or "n/a" end
out(("| RSS after 10,000 calls | %s | %s | |"):format(kib(r.rss_10000_54), kib(r.rss_10000_jit)))
out(("| RSS after 100,000 calls | %s | %s | |"):format(kib(r.rss_100000_54), kib(r.rss_100000_jit)))
local growth54 = r.rss_100000_54 and r.rss_10000_54 and r.rss_100000_54 - r.rss_10000_54
local growthjit = r.rss_100000_jit and r.rss_10000_jit and r.rss_100000_jit - r.rss_10000_jit
out(("| RSS growth, 10k → 100k calls | %s | %s | |"):format(kib(growth54), kib(growthjit)))
out(("| Lua heap after a full collection, 10k / 100k calls | %s / %s | %s / %s | |"):format(
  kib(r.lua_kib_10000_54), kib(r.lua_kib_100000_54), kib(r.lua_kib_10000_jit), kib(r.lua_kib_100000_jit)))
out(("| `require \"moltflow.admin\"` (median, fresh process) | %s ms | %s ms | |"):format(
  r.startup_ms_54 or "n/a", r.startup_ms_jit or "n/a"))
out()

-- targets
local checks = {}
-- by_cpu: the same ratio from client CPU time per request (less noisy)
local function target(name, value, op, want, by_cpu)
  local ok = value and ((op == ">=" and value >= want) or (op == "<" and value < want)
                        or (op == "<=" and value <= want))
  checks[#checks + 1] = {name, value, op, want, ok, by_cpu}
end
target("SDK (Lua 5.4) sequential / C loop", ratio(seq.sdk54, seq.c), ">=", 0.85, ratio(cpu.c, cpu.sdk54))
target("SDK (LuaJIT) sequential / C loop", ratio(seq.sdkjit, seq.c), ">=", 0.85, ratio(cpu.c, cpu.sdkjit))
for _, c in ipairs{4, 16, 64} do
  target(("batch(%d) Lua 5.4 / C multi"):format(c), ratio(r["batch_sdk54_" .. c], r["multi_c_" .. c]), ">=", 0.80)
  target(("batch(%d) LuaJIT / C multi"):format(c), ratio(r["batch_sdkjit_" .. c], r["multi_c_" .. c]), ">=", 0.80)
end
-- issue 26: the client's CPU per loopback call by instruction count (callgrind),
-- which noise cannot move; the wall-clock rate ratio is the first two rows
target("SDK (Lua 5.4) instructions per call / C loop", ratio(r.ir_sdk54, r.ir_c), "<=", 1.15)
target("SDK (LuaJIT) instructions per call / C loop", ratio(r.ir_sdkjit, r.ir_c), "<=", 1.15)
target("RSS growth 10k → 100k, Lua 5.4 (KiB)", growth54, "<", 1024)
target("RSS growth 10k → 100k, LuaJIT (KiB)", growthjit, "<", 1024)
target("SDK (Lua 5.4) / LuaSocket", ratio(seq.sdk54, seq.luasocket), ">=", 2, ratio(cpu.luasocket, cpu.sdk54))
target("SDK (Lua 5.4) / Python requests", ratio(seq.sdk54, seq.python), ">=", 20, ratio(cpu.python, cpu.sdk54))

local tl = {}
tl[#tl + 1] = "### Targets (ratios from this run)"
tl[#tl + 1] = ""
tl[#tl + 1] = "| target | measured | wanted | | the same ratio by client CPU per request |"
tl[#tl + 1] = "| --- | ---: | ---: | --- | ---: |"
for _, ck in ipairs(checks) do
  local exact = math.type and math.type(ck[2]) == "integer"
  local v = ck[2] and (exact and tostring(ck[2]) or ("%.2f"):format(ck[2])) or "n/a"
  tl[#tl + 1] = ("| %s | %s | %s %s | %s | %s |"):format(ck[1], v, ck[3], ck[4], ck[5] and "met" or "**missed**",
                                                       ck[6] and ("%.2f"):format(ck[6]) or "")
end
for _, l in ipairs(tl) do out(l) end

local tables = table.concat(lines, "\n")
print(tables)

-- the plot
local dat = results_path:gsub("[^/]*$", "") .. "concurrency.dat"
local f = assert(io.open(dat, "w"))
for _, c in ipairs(CONC) do
  f:write(("%d %s %s %s %s\n"):format(c, r["multi_c_" .. c] or "NaN", r["batch_sdk54_" .. c] or "NaN",
                                       r["batch_sdkjit_" .. c] or "NaN", r["core_sdk54_" .. c] or "NaN"))
end
f:close()
local gp = sh(("gnuplot -e \"datafile='%s'; outfile='bench/concurrency.png'; seqc=%s\" bench/concurrency.gp")
              :format(dat, seq.c or 0))
if gp ~= "" then io.stderr:write("gnuplot: ", gp, "\n") end

-- BENCHMARKS.md
local cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"):gsub("^%s+", "")
local machine = {
  ("- CPU: %s, %s cores (virtualised: %s)"):format(cpu_model, sh("nproc"),
                                                   sh("systemd-detect-virt 2>/dev/null || echo unknown")),
  ("- Kernel: %s"):format(sh("uname -sr")),
  ("- %s; %s"):format(sh("lua5.4 -v"), sh("luajit -v"):match("^(LuaJIT %S+)") or "LuaJIT"),
  ("- libcurl %s; %s; %s"):format(sh("curl-config --version"):match("(%d[%d.]*)") or "?",
                                   sh("nginx -v"):gsub("^nginx version: ", ""),
                                   sh("wrk --version | head -1"):match("^(wrk %S+)") or "wrk"),
  ("- Python %s, requests %s; %s"):format(sh("/usr/bin/python3 -c 'import sys; print(sys.version.split()[0])'"),
                                          sh("/usr/bin/python3 -c 'import requests; print(requests.__version__)'"),
                                          sh("cc --version | head -1")),
  ("- Run: %s, %s requests per sample, best of %s samples; load average when it started: %s")
    :format(r.run_date or "?", os.getenv("BENCH_N_USED") or "?", os.getenv("BENCH_REPS_USED") or "?",
            r.load_at_start or "?"),
}
local commentary = io.open("bench/commentary.md")
local md = {
  "# Benchmarks",
  "",
  "Generated by `make bench` (bench/run.sh, bench/report.lua); the commentary at the end is",
  "bench/commentary.md. Every number below comes from the same run, against one private nginx",
  "serving a fixed 422-byte subscription JSON (`bench/nginx.sh`, no Lua) on 127.0.0.1 over",
  "kept-alive connections, plus the emulator for the end-to-end line.",
  "",
  "## Machine",
  "",
  table.concat(machine, "\n"),
  "",
  "## Results",
  "",
  tables,
  "",
  "![requests per second against concurrency](bench/concurrency.png)",
  "",
}
-- the WAN, agency-scale and nginx sections: make bench runs bench/wan.lua,
-- bench/scale.lua and bench/ngx_pool.lua first
md[#md + 1] = wan_section()
md[#md + 1] = bench_section("scale")
md[#md + 1] = bench_section("ngx")
if commentary then
  md[#md + 1] = commentary:read("*a")
  commentary:close()
end
local mf = assert(io.open("BENCHMARKS.md", "w"))
mf:write(table.concat(md, "\n"))
mf:close()
io.stderr:write("wrote BENCHMARKS.md and bench/concurrency.png\n")
