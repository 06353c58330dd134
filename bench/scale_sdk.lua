-- The SDK side of `make bench-scale` (bench/scale.lua): N tenant clients, one
-- key each, one call each through `admin.batch` at concurrency 64. Prints
-- "key value" lines: wall_s, cpu_s (its CPU time during the batch), and RSS (KiB, /proc/self/statm) and Lua heap
-- (KiB, after a full collection) at three points: base (the SDK loaded, the
-- keys read), idle (N clients made, no call yet) and after (every call
-- answered, the results dropped, the clients kept).
--   scale_sdk.lua N URL CA_FILE KEYS_FILE [CONCURRENCY]
-- KEYS_FILE holds one raw key a line (at least N).
local admin = require "moltflow.admin"
local core = require "moltflow.core"

local n, url, ca, keys_file = tonumber(arg[1]), arg[2], arg[3], arg[4]
local concurrency = tonumber(arg[5] or "64")
assert(n and url and ca and keys_file, "usage: scale_sdk.lua N URL CA_FILE KEYS_FILE [CONCURRENCY]")

local keys = {}
for line in assert(io.open(keys_file)):lines() do
  if #keys == n then break end
  keys[#keys + 1] = line
end
assert(#keys == n, "scale_sdk.lua: fewer keys than tenants")

local PAGE_KIB = 4 -- statm counts pages
local function rss_kib()
  local f = assert(io.open("/proc/self/statm"))
  local resident = f:read("*l"):match("^%d+ (%d+)")
  f:close()
  return tonumber(resident) * PAGE_KIB
end

local function measure(label)
  collectgarbage("collect")
  collectgarbage("collect")
  print(("rss_%s_kib %d"):format(label, rss_kib()))
  print(("heap_%s_kib %.1f"):format(label, collectgarbage("count")))
end

admin.loop() -- the default loop every client shares: part of the base
measure("base")
local clients = {}
for i = 1, n do
  clients[i] = admin.new{base_url = url, api_key = keys[i], ca_file = ca, retry = false}
end
measure("idle")

local calls = {}
for i, c in ipairs(clients) do calls[i] = {c, "usage.current"} end
local t0, cpu0 = core.monotime(), os.clock()
local results = admin.batch(calls, {concurrency = concurrency})
local wall, cpu = core.monotime() - t0, os.clock() - cpu0
assert(#results == n, "batch: missing results")
for _, r in ipairs(results) do
  if r[1] == nil then error(tostring(r[2])) end
end
print(("wall_s %.4f"):format(wall))
print(("cpu_s %.4f"):format(cpu)) -- this process's user + system time during the batch
results, calls = nil, nil -- luacheck: ignore 311 (dropped for the collector)
measure("after")
assert(#clients == n) -- the clients stay alive through the last measurement
