-- Renders the endpoint reference of README.md from the endpoint table
-- (admin.describe(), compiled from lua/moltflow/endpoints.lua): one entry per
-- method with its HTTP call, auth, scope, a `syntax:` line, its fields and an
-- example. Written between <!-- endpoints:begin --> and <!-- endpoints:end -->.
--
--   lua5.4 tools/gen-endpoint-docs.lua [README.md]          rewrite the section
--   lua5.4 tools/gen-endpoint-docs.lua --check [README.md]  exit 1 when it is stale
--   lua5.4 tools/gen-endpoint-docs.lua --stdout             print the section
--
-- Needs the built core on LUA_CPATH (`make docs` sets it).
local admin = require "moltflow.admin"

local BEGIN, END = "<!-- endpoints:begin -->", "<!-- endpoints:end -->"

local GROUP_TITLES = {
  auth = "Authentication (`c.auth`)", users = "Users (`c.users`)", api_keys = "API keys (`c.api_keys`)",
  billing = "Billing (`c.billing`)", usage = "Usage (`c.usage`)", tenant = "Tenant settings (`c.tenant`)",
  gdpr = "GDPR (`c.gdpr`)",
}

local AUTH_TEXT = {none = "public", any = "bearer token or API key", token = "bearer token only"}

-- Example values by field name; by type when the name is not listed.
local SAMPLES = {
  email = '"owner@acme.test"', password = '"owner-pass-1"', new_password = '"a-new-pass-9"',
  token = 'token_from_the_email', refresh_token = 'refresh_token', full_name = '"Olivia Owner"',
  name = '"ci"', scopes = '{"usage:read"}', expires_in_days = "30", plan_id = '"business"',
  billing_cycle = '"monthly"', return_url = '"https://example.com/account"', months = "12", days = "7",
  allowed_numbers = '{"+5511999999999"}', require_approval = "true", ai_consent_enabled = "true",
  phone = '"972501234567@c.us"', reason = '"gdpr_request"', current_password = "password",
  description = '"CI for the billing team"',
}
local TYPE_SAMPLES = {string = '"text"', secret = "secret", integer = "1", number = "1.5", boolean = "true",
                      array = '{"a"}', table = "{}", any = "value"}
local PARAM_SAMPLES = {id = '"key_0123456789abcdef"'}

-- Methods whose Lua side differs from the wire (see the special table in admin.lua).
local SPECIAL = {
  ["auth.login"] = {note = "Stores the returned tokens in the client (and its `token_store`)."},
  ["auth.magic_link_verify"] = {note = "Stores the returned tokens in the client, like `login`."},
  ["auth.refresh"] = {call = "c.auth:refresh()",
                      note = "Sends the client's stored refresh token and stores the new pair; the SDK "
                             .. "also does this by itself before a token expires and after a 401."},
  ["auth.logout"] = {call = "c.auth:logout()",
                     note = "Sends the stored refresh token, then forgets both tokens (also in the `token_store`)."},
  ["gdpr.contact_erasure"] = {note = "`phone` as digits (`972501234567`), `+` digits (`+972501234567`) or a "
                                     .. "WhatsApp chat id (`972501234567@c.us`)."},
  ["gdpr.export"] = {note = "All of the account's data as one table (GDPR Art. 20): `exported_at`, `user`, "
                            .. "`tenant`, `subscription`, `api_keys` (never their secrets), `settings`, `usage`, "
                            .. "`consents`, `sessions`, `chats`, `messages`, `groups`, `labels`, `webhooks`."},
  ["gdpr.delete_account"] = {note = "Deletes the account and its tenant for good (GDPR Art. 17; role `owner`): "
                                    .. "every token and API key of it stops working at once. A wrong password is "
                                    .. "a 401 (`Incorrect password`). After the server confirmed, the client "
                                    .. "forgets its tokens (and its `token_store`'s)."},
}

local TYPE_TEXT = {secret = "secret string", array = "array of strings"}

local function call_text(d, values)
  local special = SPECIAL[d.label]
  if special and special.call then return special.call end
  local target = ("c.%s:%s"):format(d.group, d.name)
  local args = {}
  for _, p in ipairs(d.params) do args[#args + 1] = values(p, "param") end
  if #d.fields > 0 then
    local fields = {}
    for _, f in ipairs(d.fields) do fields[#fields + 1] = values(f, "field") end
    local t = "{" .. table.concat(fields, ", ") .. "}"
    if #args == 0 then return target .. t end
    args[#args + 1] = t
  end
  return target .. "(" .. table.concat(args, ", ") .. ")"
end

local function render_endpoint(d)
  local lines = {}
  local function add(s) lines[#lines + 1] = s end
  local special = SPECIAL[d.label] or {}
  add(("#### `c.%s:%s`"):format(d.group, d.name))
  add("")
  add(("`%s %s` · auth: %s%s"):format(d.method, d.path, AUTH_TEXT[d.auth],
                                      d.scope and (" · API-key scope: `" .. d.scope .. "`") or ""))
  add("")
  local syntax = call_text(d, function(x, kind)
    if kind == "param" then return x end
    return ("%s = %s%s"):format(x.name, x.type, x.required and "" or "?")
  end)
  add(("syntax: `value, res = %s`"):format(syntax))
  add("")
  if not special.call and (#d.params > 0 or #d.fields > 0) then
    local parts = {}
    for _, p in ipairs(d.params) do parts[#parts + 1] = ("`%s` (string, positional, required)"):format(p) end
    for _, f in ipairs(d.fields) do
      parts[#parts + 1] = ("`%s` (%s%s)"):format(f.name, TYPE_TEXT[f.type] or f.type, f.required and ", required" or "")
    end
    add((d.body and "Body" or "Query") .. (d.body and d.method == "DELETE" and " (JSON, on a DELETE): " or ": ")
        .. table.concat(parts, ", ") .. ".")
    add("")
  end
  if d.once then
    add("Sent once: never retried, nor replayed after a 401, whatever the client's `retry` policy.")
    add("")
  end
  if special.note then
    add(special.note)
    add("")
  end
  local example = call_text(d, function(x, kind)
    if kind == "param" then return PARAM_SAMPLES[x] or '"value"' end
    return ("%s = %s"):format(x.name, SAMPLES[x.name] or TYPE_SAMPLES[x.type] or "value")
  end)
  add("```lua")
  add(("local value, res = %s"):format(example))
  add("```")
  add("")
  return table.concat(lines, "\n")
end

--- The generated markdown (without the markers).
local function render()
  local out = {
    "Generated from `lua/moltflow/endpoints.lua` by `tools/gen-endpoint-docs.lua` (`make docs`); "
    .. "edit the table, not this text. Every method returns `value, res` on success and `nil, err` on "
    .. "failure (see Usage); bad arguments raise before any I/O. `field = type?` marks an optional field; "
    .. "a `secret` is a string the SDK never puts in errors, hooks or `tostring()` and wipes from memory.",
    "",
  }
  local group
  for _, d in ipairs(admin.describe()) do
    if d.group ~= group then
      group = d.group
      out[#out + 1] = "### " .. (GROUP_TITLES[group] or group)
      out[#out + 1] = ""
    end
    out[#out + 1] = render_endpoint(d)
  end
  return table.concat(out, "\n")
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- README text with the section replaced; errors when a marker is missing.
local function splice(text, section)
  local b = text:find(BEGIN, 1, true)
  local e = text:find(END, 1, true)
  if not b or not e or e < b then error("README: missing " .. BEGIN .. " ... " .. END .. " markers") end
  return text:sub(1, b + #BEGIN - 1) .. "\n" .. section .. "\n" .. text:sub(e)
end

local check, stdout, path = false, false, nil
for _, a in ipairs(arg) do
  if a == "--check" then check = true
  elseif a == "--stdout" then stdout = true
  else path = a end
end
path = path or "README.md"

local section = render()
if stdout then
  io.write(section, "\n")
  os.exit(0)
end
local text = read(path)
local updated = splice(text, section)
if check then
  if updated ~= text then
    io.stderr:write(path .. ": the endpoint reference is out of date; run 'make docs'\n")
    os.exit(1)
  end
  os.exit(0)
end
if updated ~= text then
  local f = assert(io.open(path, "wb"))
  f:write(updated)
  f:close()
  print("updated " .. path)
end
