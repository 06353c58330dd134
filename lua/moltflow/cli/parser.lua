--- moltflow.cli.parser: the command line of `moltflow-admin`: every
-- command, its options and its --help.
-- @module moltflow.cli.parser

local argparse = require "argparse"
local admin = require "moltflow.admin"
local needs = require "moltflow.cli.needs"
local output = require "moltflow.cli.output"

local parser = {}

local NAME = output.NAME

local EPILOG = [[
Credentials: --api-key, else $MOLTFLOW_API_KEY, else the tokens saved by 'login'
in $MOLTFLOW_CONFIG_DIR/credentials (default ~/.config/moltflow/credentials, mode
0600; refreshed automatically). Server: --base-url, else $MOLTFLOW_API_URL (either
with or without /api/v2: a bare host gets it), else the one used at login, else
https://apiv2.waiflow.app/api/v2. An API key needs the scope a command names in its
--help ('keys create --help' lists them all).

Exit status: 0 ok, 1 HTTP error, 2 usage error, 3 quota above --fail-above,
4 authentication (not logged in, or credentials refused), 5 network or timeout,
130 interrupted (Ctrl-C).
Run 'moltflow-admin COMMAND --help' for the options of a command.]]

local function int_in(min, max)
  return function(s)
    local n = tonumber(s)
    if not n or n ~= math.floor(n) or n < min or (max and n > max) then
      return nil, ("'%s' must be an integer %s"):format(s, max and ("from %d to %d"):format(min, max)
                                                        or (">= %d"):format(min))
    end
    return math.floor(n)
  end
end

local function percent(s)
  local n = tonumber(s)
  if not n or n < 0 then return nil, ("'%s' is not a percentage"):format(s) end
  return n
end

--- Builds the argparse parser of `moltflow-admin` (every command, with help).
-- @return an argparse parser
function parser.new()
  local p = argparse(NAME, "Administer a MoltFlow account: log in, API keys, billing, quota, usage, tenant "
                           .. "settings and GDPR export and deletion, from a shell, cron or CI.")
  p:epilog(EPILOG)
  p:help_max_width(100) -- inherited by every command: long option texts wrap
  p:flag("--json", "Print machine-readable JSON on stdout.")
  p:option("--base-url", "API base URL, e.g. http://127.0.0.1:8787/api/v2 (/api/v2 is added to a bare host).")
   :argname("<url>")
  p:option("--api-key", "Authenticate with this API key (prefer $MOLTFLOW_API_KEY: arguments are visible to "
                        .. "other users in ps).")
   :argname("<key>")
  p:flag("--version", "Print the version and exit."):action(function()
    output.out(NAME .. " " .. admin.VERSION)
    os.exit(0)
  end)
  p:command_target("command")
  local function cmd(parent, name, summary, path)
    return parent:command(name, summary):epilog(needs.text(path or name))
  end

  local login = cmd(p, "login", "Log in with email and password and save the tokens (mode 0600).")
  login:option("--email", "Account email (default $MOLTFLOW_EMAIL, else asked).")
  login:flag("--password-stdin", "Read the password from the first line of stdin (default $MOLTFLOW_PASSWORD, "
                                 .. "else asked with echo off).")
  cmd(p, "logout", "Revoke the saved tokens on the server and delete them.")
  cmd(p, "whoami", "Show the user behind the current credentials.")

  local keys = p:command("keys", "Manage API keys: list, create, show, rotate, revoke, rotate-shared.")
  keys:command_target("subcommand")
  cmd(keys, "list", "List the tenant's API keys (never their secrets).", "keys list")
  local create = cmd(keys, "create", "Create a key; its raw secret is printed once.", "keys create")
  create:option("--name", "Key name (unique among active keys)."):args(1):count(1)
  create:option("--scope", "A scope such as usage:read (repeat, or separate with commas). Valid scopes: "
                           .. table.concat(admin.endpoints.scopes, ", ")
                           .. " (* is every scope; a key can only grant scopes it holds)."):count("+")
  create:option("--expires-in-days", "Expire after this many days (default: never)."):convert(int_in(1))
  cmd(keys, "show", "Show one key.", "keys show"):argument("id", "Key id (key_...).")
  cmd(keys, "rotate", "Give a key a new secret, printed once; the old one stops working.", "keys rotate")
      :argument("id", "Key id.")
  cmd(keys, "revoke", "Delete a key; it stops working at once.", "keys revoke"):argument("id", "Key id.")
  local shared = cmd(keys, "rotate-shared", "Rotate the key a fleet takes from a store (api_key_store): "
                     .. "create, publish, drain, revoke; run it again to finish a rotation that stopped.",
                     "keys rotate-shared")
  shared:argument("id", "Id of the key the store publishes now (or the fleet's key before it used a store).")
  shared:option("--store", "The store: redis:// or rediss:// url (password from $MOLTFLOW_REDIS_PASSWORD), "
                           .. "or a file path."):args(1):count(1)
  shared:option("--grace", "Seconds the workers get to adopt the new key before the old one is revoked "
                           .. "(default 60; less once every worker reported it)."):convert(int_in(0)):default("60")
  shared:option("--prefix", "The store's key prefix (default moltflow:)."):args(1)
  shared:option("--ca-file", "CA bundle for a rediss:// store."):args(1)

  cmd(p, "subscription", "Show the plan, its status, limits and usage.")
  cmd(p, "plans", "List the plans and their limits (no login needed).")
  local quota = cmd(p, "quota", "Show used and remaining amounts per plan limit.")
  local limit_names = {}
  for i, l in ipairs(admin.helpers.LIMITS) do limit_names[i] = l[1] end
  quota:option("--limit", "Only this limit, one of " .. table.concat(limit_names, ", ")
                          .. " (repeat for several; default: all).")
       :argname("<name>"):choices(limit_names):count("*")
  quota:option("--fail-above", "Exit with status 3 when a limit shown (see --limit) is more than PERCENT used.")
       :argname("<percent>"):convert(percent)

  local usage = p:command("usage", "Usage: this month, monthly history, daily chart or CSV.")
  usage:command_target("subcommand")
  cmd(usage, "current", "This month's usage.", "usage current")
  cmd(usage, "history", "Usage per month, oldest first.", "usage history")
       :option("--months", "Months back, 1-24 (default 6)."):convert(int_in(1, 24))
  local daily = cmd(usage, "daily", "Usage per day as a bar chart, or CSV with --csv.", "usage daily")
  daily:option("--days", "Days back, 1-31 (default 30)."):convert(int_in(1, 31))
  daily:flag("--csv", "Write CSV (date, messages_sent, messages_received, total_messages, api_calls).")
  daily:option("-o --output", "With --csv: write it to this file atomically (a new file renamed over it, mode "
                              .. "0600), so a reader never sees half of it (default: stdout)."):argname("<file>")

  local settings = p:command("settings", "Tenant settings: allowed numbers, approval, AI consent.")
  settings:command_target("subcommand")
  cmd(settings, "get", "Show the tenant settings.", "settings get")
  local set = cmd(settings, "set", "Change some tenant settings (owner or admin).", "settings set")
  set:option("--allowed-number", "An allowed E.164 number (repeat; replaces the list)."):count("*")
  set:flag("--no-allowed-numbers", "Empty the allowed numbers list.")
  set:option("--require-approval", "Require approval: on or off."):choices({"on", "off"})
  set:option("--ai-consent", "AI processing consent: on or off (on records a GDPR consent entry).")
     :choices({"on", "off"})

  local export = cmd(p, "export", "Export all of the account's data as JSON (GDPR Art. 20).")
  export:option("-o --output", "Write it to this file, created with mode 0600 (default, or -: stdout; a named pipe is "
                                  .. "written in place; a symbolic link is refused)."):argname("<file>")

  local account = p:command("account", "The account itself: delete it (GDPR Art. 17).")
  account:command_target("subcommand")
  local delete = cmd(account, "delete", "Delete the account and its tenant for good (owner only): asks the "
                                       .. "password with echo off, then the account's email to confirm.",
                     "account delete")
  delete:flag("--password-stdin", "Read the password from the first line of stdin (then the confirmation from "
                                  .. "the next line, unless --yes).")
  delete:flag("--yes", "Do not ask for the email to confirm.")
  return p
end

return parser
