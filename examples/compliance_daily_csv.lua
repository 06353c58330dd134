-- A compliance officer exports this month's daily usage as CSV for the audit
-- file: one row per day (date, messages sent and received, their total, API
-- calls), oldest first, then totals on stderr.
--
--   MOLTFLOW_API_KEY=mf_... lua5.4 examples/compliance_daily_csv.lua usage-2026-11.csv
--
-- Without a file name the CSV goes to stdout. A key with usage:read is enough.
local admin = require "moltflow.admin"

local c = admin.new{}
if not os.getenv("MOLTFLOW_API_KEY") or os.getenv("MOLTFLOW_API_KEY") == "" then
  local ok, err = c.auth:login{email = os.getenv("MOLTFLOW_EMAIL") or "owner@acme.test",
                               password = os.getenv("MOLTFLOW_PASSWORD") or "owner-pass-1"}
  if not ok then
    io.stderr:write("login failed: ", tostring(err), "\n")
    os.exit(1)
  end
end

local rows, err = c.usage:daily_rows{month = true}
c:close()
if not rows then
  io.stderr:write("cannot read daily usage: ", tostring(err), "\n")
  os.exit(1)
end

local csv = admin.to_csv(rows)
if arg[1] then
  local f = assert(io.open(arg[1], "w"))
  f:write(csv)
  f:close()
else
  io.stdout:write(csv)
end

local sent, received, calls = 0, 0, 0
for _, r in ipairs(rows) do
  sent, received, calls = sent + r.messages_sent, received + r.messages_received, calls + r.api_calls
end
io.stderr:write(("%d days from %s: %d sent, %d received, %d API calls\n"):format(#rows,
  rows[1] and rows[1].date or "-", sent, received, calls))
