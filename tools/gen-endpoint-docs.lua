-- Renders the generated parts of the docs from the endpoint table
-- (admin.describe(), compiled from lua/moltflow/endpoints.lua):
--   docs/api.md, between <!-- endpoints:begin --> and <!-- endpoints:end -->:
--     one entry per method with its HTTP call, auth, scope, a `syntax:` line,
--     its path ids and fields, and an example;
--   README.md, between <!-- cli-credentials:begin --> and <!-- cli-credentials:end -->:
--     the credentials and API-key scope each CLI command needs
--     (moltflow.cli.COMMAND_ENDPOINTS + the endpoint table).
-- A file gets every section whose markers it has (and must have one).
--
--   lua5.4 tools/gen-endpoint-docs.lua [FILE...]          rewrite (default docs/api.md README.md)
--   lua5.4 tools/gen-endpoint-docs.lua --check [FILE...]  exit 1 when one is stale
--   lua5.4 tools/gen-endpoint-docs.lua --stdout           print the endpoint section
--
-- Needs the built core on LUA_CPATH (`make docs` sets it).
local admin = require "moltflow.admin"
local cli = require "moltflow.cli"

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
  add(("`%s %s` · auth: %s%s · %s"):format(d.method, d.path, AUTH_TEXT[d.auth],
                                           d.scope and (" · API-key scope: `" .. d.scope .. "`") or "",
                                           d.idempotent and "idempotent" or "not idempotent"))
  add("")
  local syntax = call_text(d, function(x, kind)
    if kind == "param" then return x end
    return ("%s = %s%s"):format(x.name, x.type, x.required and "" or "?")
  end)
  add(("syntax: `value, res = %s`"):format(syntax))
  add("")
  if not special.call and #d.params > 0 then
    local parts = {}
    for _, p in ipairs(d.params) do parts[#parts + 1] = ("`%s` (string, positional, required)"):format(p) end
    add("Path: " .. table.concat(parts, ", ") .. ".")
    add("")
  end
  if not special.call and #d.fields > 0 then
    local parts = {}
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
  add("<!-- fragment: needs a client c -->")
  add("```lua")
  add(("local value, res = %s"):format(example))
  add("```")
  add("")
  return table.concat(lines, "\n")
end

--- The endpoint reference (without the markers).
local function render_endpoints()
  local out = {
    "Generated from `lua/moltflow/endpoints.lua` by `tools/gen-endpoint-docs.lua` (`make docs`); "
    .. "edit the table, not this text. Every method returns `value, res` on success and `nil, err` on "
    .. "failure (see client.md, Results and Errors); bad arguments raise before any I/O. "
    .. "`field = type?` marks an optional field; "
    .. "a `secret` is a string the SDK never puts in errors, hooks or `tostring()` and wipes from memory. "
    .. "An **idempotent** call (sending it twice leaves the server as sending it once) is sent again after an "
    .. "ambiguous failure (a reset, a cut or garbled answer, a timeout), under the client's `retry` policy; a "
    .. "**not idempotent** one only when the server certainly did not act (see tokens-and-retries.md, Retries).",
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

--- The CLI's credentials table (without the markers).
local function render_cli()
  local out = {
    "Generated from `lua/moltflow/endpoints.lua` and `moltflow.cli.COMMAND_ENDPOINTS` by "
    .. "`tools/gen-endpoint-docs.lua`. A key with `*` has every scope.",
    "",
    "| command | credentials | API-key scope |",
    "| --- | --- | --- |",
  }
  local AUTH = {none = "none", any = "a login or an API key", token = "a login (API keys cannot)"}
  for _, entry in ipairs(cli.COMMAND_ENDPOINTS) do
    local auth, scopes = cli.needs(entry[1])
    local names = {}
    for i, s in ipairs(scopes) do names[i] = "`" .. s .. "`" end
    out[#out + 1] = ("| `%s` | %s | %s |"):format(entry[1], AUTH[auth],
                                                 #names > 0 and table.concat(names, ", ") or "-")
  end
  return table.concat(out, "\n")
end

local SECTIONS = {
  {"<!-- endpoints:begin -->", "<!-- endpoints:end -->", render_endpoints},
  {"<!-- cli-credentials:begin -->", "<!-- cli-credentials:end -->", render_cli},
}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The text with every section it has markers for replaced; errors when it has none.
local function splice(path, text)
  local found = false
  for _, sec in ipairs(SECTIONS) do
    local begin, finish = sec[1], sec[2]
    local b = text:find(begin, 1, true)
    local e = text:find(finish, 1, true)
    if b or e then
      if not b or not e or e < b then error(path .. ": unbalanced " .. begin .. " ... " .. finish .. " markers") end
      text = text:sub(1, b + #begin - 1) .. "\n" .. sec[3]() .. "\n" .. text:sub(e)
      found = true
    end
  end
  if not found then error(path .. ": no generated section (markers such as <!-- endpoints:begin -->)") end
  return text
end

local check, stdout, paths = false, false, {}
for _, a in ipairs(arg) do
  if a == "--check" then check = true
  elseif a == "--stdout" then stdout = true
  else paths[#paths + 1] = a end
end
if #paths == 0 then paths = {"docs/api.md", "README.md"} end

if stdout then
  io.write(render_endpoints(), "\n")
  os.exit(0)
end
local stale = false
for _, path in ipairs(paths) do
  local text = read(path)
  local updated = splice(path, text)
  if updated ~= text then
    if check then
      io.stderr:write(path .. ": the generated reference is out of date; run 'make docs'\n")
      stale = true
    else
      local f = assert(io.open(path, "wb"))
      f:write(updated)
      f:close()
      print("updated " .. path)
    end
  end
end
os.exit(stale and 1 or 0)
