--- moltflow.cli.config: where a command's settings come from: the command
-- line, the environment and the CLI's files (the config directory, its
-- `config.json` recording the server of the last login, private files).
-- @module moltflow.cli.config

local admin = require "moltflow.admin"
local failure = require "moltflow.cli.failure"
local sys = require("moltflow.core").sys

local config = {}

--- `s`, or nil when it is nil or empty (an unset option or variable).
function config.nonempty(s)
  if s == nil or s == "" then return nil end
  return s
end

local nonempty = config.nonempty

--- The directory holding the CLI's files: `$MOLTFLOW_CONFIG_DIR`, else
-- `$XDG_CONFIG_HOME/moltflow`, else `~/.config/moltflow`.
-- @treturn string the path
function config.dir()
  local dir = nonempty(os.getenv("MOLTFLOW_CONFIG_DIR"))
  if dir then return dir end
  local xdg = nonempty(os.getenv("XDG_CONFIG_HOME"))
  if xdg then return xdg .. "/moltflow" end
  return (os.getenv("HOME") or ".") .. "/.config/moltflow"
end

--- The token file written by `login` (mode 0600): `config.dir() .. "/credentials"`.
-- @treturn string the path
function config.credentials_path()
  return config.dir() .. "/credentials"
end

local function settings_path()
  return config.dir() .. "/config.json"
end

--- The saved settings (`config.json`): a table, empty when there is none
-- or it is unreadable.
function config.read_settings()
  local f = io.open(settings_path(), "rb")
  if not f then return {} end
  local text = f:read("*a")
  f:close()
  local ok, t = pcall(admin.json_decode, text or "")
  return ok and type(t) == "table" and t or {}
end

--- Creates the config directory (mode 0700) unless it exists; the command
-- fails when it cannot.
function config.ensure_dir()
  local ok, err = sys.mkdir_private(config.dir())
  if not ok then error(failure.new("usage", "cannot use the config directory: " .. err), 0) end
end

--- Replaces the saved settings; the command fails when it cannot.
function config.write_settings(t)
  config.ensure_dir()
  local ok, err = sys.write_private(settings_path(), admin.json_encode(t))
  if not ok then error(failure.new("usage", err), 0) end
end

--- Writes `text` to `path` as a file only its owner can read (mode 0600,
-- core.sys: a new O_EXCL file renamed over `path`); the command fails when
-- it cannot.
function config.write_private_file(path, text)
  local ok, err = sys.write_private(path, text)
  if not ok then error(failure.new("usage", "cannot write " .. path .. ": " .. tostring(err)), 0) end
end

--- The base URL a command talks to, as the SDK spells it: `--base-url`,
-- else `$MOLTFLOW_API_URL`, else the server of the last login, else the
-- SDK's default (`admin.base_url`).
-- @param args the parsed command line
-- @treturn string the URL
function config.base_url(args)
  local url = nonempty(args.base_url) or nonempty(os.getenv("MOLTFLOW_API_URL")) or config.read_settings().base_url
  return failure.call(admin.base_url, url)
end

return config
