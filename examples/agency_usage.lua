-- An agency reports every client tenant's usage at once: one client per
-- tenant key, all calls in one batch over one connection (HTTP/2) or a few.
--
--   lua5.4 examples/agency_usage.lua tenants.json
--
-- tenants.json: a JSON array of {"name": ..., "api_key": ...}, kept private
-- (mode 0600). To try it, the emulator seeds real tenants and writes exactly
-- that file:
--   url=$(bin/moltflow-emulator --daemon --port 0 --prefix "$p" --tenants 20)
--   MOLTFLOW_API_URL=${url%/api/v2} lua5.4 examples/agency_usage.lua "$p/tenants.json"
-- Exit status: 0 when every tenant answered, 1 when any failed.
local admin = require "moltflow.admin"

local path = arg[1] or os.getenv("MOLTFLOW_TENANTS_FILE")
if not path then
  io.stderr:write("usage: agency_usage.lua TENANTS.json (a JSON array of {name, api_key})\n")
  os.exit(2)
end
local f = assert(io.open(path, "rb"))
local tenants = assert(admin.json_decode(f:read("*a")))
f:close()

local calls = {}
for i, t in ipairs(tenants) do
  calls[i] = {admin.new{api_key = t.api_key}, "usage.current"}
end
local failed = 0
print(("%-16s %10s %8s"):format("tenant", "messages", "used"))
for i, r in ipairs(admin.batch(calls, {concurrency = 16})) do
  local usage, err = r[1], r[2]
  if usage then
    print(("%-16s %10d %7.1f%%"):format(tenants[i].name, usage.total_messages, usage.usage_percentage))
  else
    failed = failed + 1
    print(("%-16s FAILED: %s"):format(tenants[i].name, tostring(err)))
  end
  calls[i][1]:close()
end
os.exit(failed == 0 and 0 or 1)
