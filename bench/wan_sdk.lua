-- The SDK side of `make bench-wan` (bench/wan.lua): one workload of issue 12,
-- timed from its first byte to its last answer. Prints "wall_s <seconds>".
--   wan_sdk.lua WORKLOAD URL CA_FILE [RUN_ID [HTTP_VERSION]]
--   session  one client: 10 x (GET usage, POST api-keys, PATCH settings)
--   agency   50 tenant clients x 2 rounds of admin.batch at concurrency 8
--   batch    one client: c:batch of 32 GETs at concurrency 16
--   batch-later the same after one call (untimed) met the server and the
--               server closed its idle connection (BATCH_IDLE_S seconds of
--               sleep, longer than its keepalive_timeout)
-- Clients are made before the clock starts; connections are opened inside.
-- Also a module: bench/wan_ngx.lua runs the same workloads inside nginx
-- (cosocket transport, batches on light threads) through prepare().
local admin = require "moltflow.admin"

local M = {}
local KEY = "mf_AcmeAllu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOO"

local function ok(v, err)
  if v == nil then error(tostring(err), 2) end
  return v
end

local function check_batch(results, n)
  assert(#results == n, "batch: missing results")
  for _, r in ipairs(results) do ok(r[1], r[2]) end
end

--- prepare(workload, url, ca, run_id, http_version) -> run: makes the
-- workload's clients (ca: their ca_file, nil inside nginx, where
-- lua_ssl_trusted_certificate names it; http_version: nil or "1.1") and
-- returns the function that runs it, raising on any failure.
function M.prepare(workload, url, ca, run_id, http_version)
  local function client()
    return admin.new{base_url = url, api_key = KEY, ca_file = ca, retry = false, http_version = http_version}
  end
  if workload == "session" then
    local c = client()
    return function()
      for i = 1, 10 do
        ok(c.usage:current())
        ok(c.api_keys:create{name = ("wan-%s-sdk-%d"):format(run_id, i), scopes = {"usage:read"}})
        ok(c.tenant:update_settings{require_approval = i % 2 == 0})
      end
    end
  elseif workload == "agency" then
    local tenants = {}
    for i = 1, 50 do tenants[i] = client() end
    return function()
      for _ = 1, 2 do
        local calls = {}
        for i, t in ipairs(tenants) do calls[i] = {t, "usage.current"} end
        check_batch(admin.batch(calls, {concurrency = 8}), 50)
      end
    end
  elseif workload == "batch" or workload == "batch-later" then
    local c = client()
    if workload == "batch-later" then
      ok(c.usage:current())
      require("moltflow.core").sleep(tonumber(os.getenv("BATCH_IDLE_S") or "1.5"))
    end
    return function()
      local calls = {}
      for i = 1, 32 do calls[i] = {"usage.current"} end
      check_batch(c:batch(calls, {concurrency = 16}), 32)
    end
  end
  error("wan_sdk.lua: unknown workload " .. tostring(workload))
end

if ... == "bench.wan_sdk" then return M end -- required, not run

local workload, url, ca, run_id, http_version = arg[1], arg[2], arg[3], arg[4] or tostring(os.time()), arg[5]
local core = require "moltflow.core"
local run = M.prepare(workload, url, ca, run_id, http_version)
local t0 = core.monotime()
run()
print(("wall_s %.4f"):format(core.monotime() - t0))
