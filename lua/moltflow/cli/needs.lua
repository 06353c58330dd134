--- moltflow.cli.needs: what each command needs, from the endpoint table:
-- the endpoints it calls, the credentials and the API-key scopes. Its
-- --help and README's command table take them from here.
-- @module moltflow.cli.needs

local admin = require "moltflow.admin"

local needs = {}

--- The endpoints each command calls (`group.name` labels of
-- `moltflow.endpoints`), from which its --help and README's command table
-- take the API-key scope it needs.
needs.COMMAND_ENDPOINTS = {
  {"login", {"auth.login"}}, {"logout", {"auth.logout"}}, {"whoami", {"auth.me"}},
  {"keys list", {"api_keys.list"}}, {"keys create", {"api_keys.create"}}, {"keys show", {"api_keys.get"}},
  {"keys rotate", {"api_keys.rotate"}}, {"keys revoke", {"api_keys.revoke"}},
  {"keys rotate-shared", {"api_keys.get", "api_keys.list", "api_keys.create", "api_keys.revoke"}},
  {"subscription", {"billing.subscription"}}, {"plans", {"billing.plans"}}, {"quota", {"billing.subscription"}},
  {"usage current", {"usage.current"}}, {"usage history", {"usage.history"}}, {"usage daily", {"usage.daily"}},
  {"settings get", {"tenant.settings"}}, {"settings set", {"tenant.update_settings"}},
  {"export", {"gdpr.export"}}, {"account delete", {"auth.me", "gdpr.delete_account"}},
}

local by_label = {}
for _, e in ipairs(admin.endpoints) do by_label[e[1] .. "." .. e[2]] = e end

--- What a command needs, from the endpoint table.
-- @tparam string command as in `COMMAND_ENDPOINTS`, e.g. `"keys create"`
-- @treturn string "none" (public), "token" (a login; API keys are refused),
--   or "any" (a login or an API key)
-- @treturn {string,...} the API-key scopes needed (empty for none)
-- @raise for an unknown command
function needs.needs(command)
  for _, entry in ipairs(needs.COMMAND_ENDPOINTS) do
    if entry[1] == command then
      local auth, scopes, seen = "none", {}, {}
      for _, label in ipairs(entry[2]) do
        local e = assert(by_label[label], label)
        if e[5] == "token" then auth = "token" elseif e[5] == "any" and auth == "none" then auth = "any" end
        if e[6] and not seen[e[6]] then
          seen[e[6]] = true
          scopes[#scopes + 1] = e[6]
        end
      end
      return auth, scopes
    end
  end
  error("moltflow.cli.needs: unknown command", 2)
end

--- The --help line saying what a command needs.
-- @tparam string command as in `COMMAND_ENDPOINTS`
-- @treturn string the line
function needs.text(command)
  local auth, scopes = needs.needs(command)
  if auth == "none" then return "Credentials: none needed." end
  if auth == "token" then return "Credentials: a login (API keys cannot do this)." end
  if #scopes == 0 then return "Credentials: a login, or an API key with any scope." end
  return ("Credentials: a login, or an API key with the scope %s (or *)."):format(table.concat(scopes, " and "))
end

return needs
