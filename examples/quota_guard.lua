-- A startup checks its plan before a campaign: will N more messages fit in
-- this month's quota? Exits 0 when they fit, 1 when they do not, 2 when the
-- check itself fails. Meant for a CI step or a cron job before a bulk send.
--
--   MOLTFLOW_API_KEY=mf_... lua5.4 examples/quota_guard.lua 2500
--
-- Needs an API key with billing:manage (or MOLTFLOW_EMAIL and MOLTFLOW_PASSWORD).
local admin = require "moltflow.admin"

local planned = tonumber(arg[1] or "")
if not planned or planned < 0 or planned ~= math.floor(planned) then
  io.stderr:write("usage: quota_guard.lua MESSAGES   (the campaign's message count)\n")
  os.exit(2)
end
planned = math.floor(planned)

local c = admin.new{}
if not os.getenv("MOLTFLOW_API_KEY") or os.getenv("MOLTFLOW_API_KEY") == "" then
  local ok, err = c.auth:login{email = os.getenv("MOLTFLOW_EMAIL") or "owner@acme.test",
                               password = os.getenv("MOLTFLOW_PASSWORD") or "owner-pass-1"}
  if not ok then
    io.stderr:write("login failed: ", tostring(err), "\n")
    os.exit(2)
  end
end

local exceeds, detail = c:will_exceed{messages = planned}
c:close()
if exceeds == nil then
  io.stderr:write("cannot read the quota: ", tostring(detail), "\n")
  os.exit(2)
end
local m = detail.messages
if exceeds then
  print(("NO: %d messages do not fit: %d of %d used on plan %s, %d remain, short by %d"):format(
    planned, m.used, m.limit, detail.quota.plan_id, m.remaining, m.short_by))
  os.exit(1)
end
print(("OK: %d messages fit: %s remain on plan %s"):format(planned,
  m.remaining and ("%d of %d"):format(m.remaining, m.limit) or "unlimited", detail.quota.plan_id))
