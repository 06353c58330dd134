-- A first session with the MoltFlow admin API: log in, create a scoped API
-- key, read the subscription and this month's usage, update tenant settings.
--
--   MOLTFLOW_API_URL=http://127.0.0.1:8787 lua5.4 examples/quickstart.lua
--
-- `make demo` runs it against the bundled emulator with its seed owner.
local admin = require "moltflow.admin"

local email = os.getenv("MOLTFLOW_EMAIL") or "owner@acme.test"
local password = os.getenv("MOLTFLOW_PASSWORD") or "owner-pass-1"

local c = admin.new{retry = {max_attempts = 3}}

local function step(title, value, err)
  if value == nil then
    io.stderr:write(("%-28s FAILED: %s\n"):format(title, tostring(err)))
    os.exit(1)
  end
  print(("%-28s ok"):format(title))
  return value
end

print("MoltFlow admin quick start against " .. c:info().base_url)

local login = step("1. log in as " .. email, c.auth:login{email = email, password = password})
print(("   %s (%s), tenant %s"):format(login.user.full_name, login.user.role, login.user.tenant_id))

local name = ("quickstart-%d"):format(os.time())
local key = step("2. create a scoped API key",
  c.api_keys:create{name = name, scopes = {"usage:read", "billing:manage"}, expires_in_days = 30})
print(("   %s  prefix %s  scopes %s  expires %s"):format(key.name, key.key_prefix,
  table.concat(key.scopes, ","), tostring(key.expires_at)))
print("   raw key shown once; the server keeps only its SHA-256: "
      .. admin.key_fingerprint(key.raw_key):sub(1, 16) .. "...")

-- the new key works on its own, with only the scopes it was given
local keyed = admin.new{api_key = key.raw_key}
local sub = step("3. subscription (with the key)", keyed.billing:subscription())
print(("   plan %s (%s), %s; messages %d of %d this month"):format(sub.display_name, sub.plan_id,
  sub.status, sub.usage.messages_this_month, sub.limits.max_messages_per_month))

local usage = step("4. usage this month", keyed.usage:current())
print(("   period %s: %d sent, %d received, %d API calls, %.1f%% of the limit"):format(usage.period,
  usage.messages_sent, usage.messages_received, usage.api_calls, usage.usage_percentage))
keyed:close()

local settings = step("5. update tenant settings", c.tenant:update_settings{
  allowed_numbers = {"+5511999999999", "+14155550123"}, require_approval = true})
print(("   allowed numbers %s; approval %s; AI consent %s"):format(
  table.concat(settings.allowed_numbers, ", "), tostring(settings.require_approval),
  tostring(settings.ai_consent_enabled)))

step("6. revoke the demo key", c.api_keys:revoke(key.id))
step("7. log out", c.auth:logout())
c:close()
print("done")
