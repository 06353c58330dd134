-- A data-protection officer answers GDPR requests from a script: exports all
-- of the account's data (Art. 20) to a file only they can read, and erases a
-- contact's messages (Art. 17) for each --erase PHONE.
--
--   MOLTFLOW_API_KEY=mf_... lua5.4 examples/gdpr_export.lua [FILE] [--erase PHONE]...
--
-- FILE (default moltflow-export.json) is created with mode 0600 and never
-- overwritten. PHONE as 972501234567, +972501234567 or 972501234567@c.us.
-- A key with the gdpr:manage scope is enough.
local admin = require "moltflow.admin"

local function fail(...)
  io.stderr:write(...)
  io.stderr:write("\n")
  os.exit(1)
end

local path, phones = nil, {}
local i = 1
while arg[i] do
  if arg[i] == "--erase" then
    if not arg[i + 1] then fail("--erase needs a phone number") end
    phones[#phones + 1] = arg[i + 1]
    i = i + 2
  else
    path = arg[i]
    i = i + 1
  end
end
path = path or "moltflow-export.json"

-- Personal data: the file is private (mode 0600) from its creation, and an
-- existing file is never replaced.
local function exists(file)
  local f = io.open(file, "rb")
  if f then f:close() end
  return f ~= nil
end

local c = admin.new{}
if not os.getenv("MOLTFLOW_API_KEY") or os.getenv("MOLTFLOW_API_KEY") == "" then
  local ok, err = c.auth:login{email = os.getenv("MOLTFLOW_EMAIL") or "owner@acme.test",
                               password = os.getenv("MOLTFLOW_PASSWORD") or "owner-pass-1"}
  if not ok then fail("login failed: ", tostring(err)) end
end

if exists(path) then fail("cannot create ", path, " (it must not exist yet)") end
local data, err = c.gdpr:export()
if not data then fail("export failed: ", tostring(err)) end
local ok, werr = admin.write_private(path, admin.json_encode(data) .. "\n")
if not ok then fail("cannot write ", path, ": ", werr) end
print(("exported %s (%s) to %s, mode 0600: %d API keys, %d consent records"):format(
  data.user.email, data.tenant.name, path, #data.api_keys, #(data.consents or {})))

local failed = 0
for _, phone in ipairs(phones) do
  local report, e = c.gdpr:contact_erasure{phone = phone, reason = "gdpr_request"}
  if report then
    print(("erased %s: %d messages, %d reviews deleted; %d chats, %d group members anonymized"):format(
      report.phone, report.messages_deleted, report.reviews_deleted, report.chats_anonymized,
      report.group_members_anonymized))
  else
    failed = failed + 1
    io.stderr:write("cannot erase ", phone, ": ", tostring(e), "\n")
  end
end
c:close()
os.exit(failed == 0 and 0 or 1)
