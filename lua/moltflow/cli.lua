--- moltflow.cli: the `moltflow-admin` command line.
-- `bin/moltflow-admin` runs `os.exit(require("moltflow.cli").main(arg))`.
-- Commands: `login`, `logout`, `whoami`, `keys list|create|show|rotate|revoke`,
-- `subscription`, `plans`, `quota`, `usage current|history|daily`,
-- `settings get|set`, `export`, `account delete`; options `--json`,
-- `--base-url`, `--api-key` everywhere.
-- Errors are one line on stderr; the exit status says what went wrong
-- (`cli.EXIT`), from the kind of the error.
--
-- This module runs a command line. Its parts, in lua/moltflow/cli/:
-- `moltflow.cli.parser` (the command line and its help),
-- `moltflow.cli.needs` (what each command needs), `moltflow.cli.commands.auth`,
-- `.keys`, `.billing`, `.usage`, `.settings` and `.gdpr` (the commands, by
-- group), `moltflow.cli.session` (the client and its credentials),
-- `moltflow.cli.login_store` (the saved login), `moltflow.cli.config`
-- (settings and files), `moltflow.cli.prompt` (what the user types),
-- `moltflow.cli.output` (what is printed) and `moltflow.cli.failure`
-- (failures, their kinds and exit statuses).
-- @module moltflow.cli

local config = require "moltflow.cli.config"
local failure = require "moltflow.cli.failure"
local needs = require "moltflow.cli.needs"
local output = require "moltflow.cli.output"
local parser = require "moltflow.cli.parser"

local cli = {}

--- Exit statuses: `ok` 0, `http` 1 (the server refused: 4xx other than 401,
-- 5xx, or an unreadable answer), `usage` 2 (bad command line), `quota` 3
-- (`quota --fail-above` passed), `auth` 4 (not logged in, or the credentials
-- were refused: 401), `network` 5 (no connection, timeout), `interrupted` 130
-- (Ctrl-C; a signal at the password prompt exits 128 + its number, as shells
-- report it). (`moltflow.cli.failure.EXIT`)
cli.EXIT = failure.EXIT

--- Escapes the terminal controls in server text (`moltflow.cli.output.escape_controls`).
-- @function cli.escape_controls
cli.escape_controls = output.escape_controls

--- The directory holding the CLI's files: `$MOLTFLOW_CONFIG_DIR`, else
-- `$XDG_CONFIG_HOME/moltflow`, else `~/.config/moltflow`.
-- @function cli.config_dir
-- @treturn string the path
cli.config_dir = config.dir

--- The token file written by `login` (mode 0600): `cli.config_dir() .. "/credentials"`.
-- @function cli.credentials_path
-- @treturn string the path
cli.credentials_path = config.credentials_path

--- The endpoints each command calls (`moltflow.cli.needs.COMMAND_ENDPOINTS`).
cli.COMMAND_ENDPOINTS = needs.COMMAND_ENDPOINTS

--- What a command needs, from the endpoint table.
-- @function cli.needs
-- @tparam string command as in `cli.COMMAND_ENDPOINTS`, e.g. `"keys create"`
-- @treturn string "none" (public), "token" (a login; API keys are refused),
--   or "any" (a login or an API key)
-- @treturn {string,...} the API-key scopes needed (empty for none)
cli.needs = needs.needs

--- Builds the argparse parser of `moltflow-admin` (every command, with help).
-- @function cli.parser
-- @return an argparse parser
cli.parser = parser.new

-- Each command's function by name ("keys.create"), from its group's module.
local commands = {}
for _, group in ipairs{
  (require "moltflow.cli.commands.auth"),
  (require "moltflow.cli.commands.keys"),
  (require "moltflow.cli.commands.billing"),
  (require "moltflow.cli.commands.usage"),
  (require "moltflow.cli.commands.settings"),
  (require "moltflow.cli.commands.gdpr"),
} do
  for name, run in pairs(group) do commands[name] = run end
end

--- Runs the command line.
-- @tparam table argv the arguments (Lua's `arg`: `argv[1]` is the first)
-- @treturn integer the exit status (see `cli.EXIT`); `--help` and
--   `--version` print and exit 0 themselves
function cli.main(argv)
  local list = {}
  for i = 1, #argv do list[i] = argv[i] end
  local ok, args = cli.parser():pparse(list)
  if not ok then
    output.warn("error: " .. tostring(args) .. " (see 'moltflow-admin --help')")
    return failure.EXIT.usage
  end
  local name = args.command .. (args.subcommand and "." .. args.subcommand or "")
  local done, result = pcall(commands[name], args)
  -- raised outside an SDK call (failure.call): not the command line's fault
  if not done then result = failure.from_raise(result, "internal") end
  if failure.is(result) then
    output.warn(result.message)
    return result:exit_status()
  end
  return failure.EXIT.ok
end

return cli
