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

-- Whether bit `value` (16: group write, 2: others write...) is set in mode.
local function has_bit(mode, value)
  return math.floor(mode / value) % 2 == 1
end

--- Why the CLI's files cannot be trusted for where they are: the config
-- directory belongs to another user, or group or others may write to it
-- (they could plant a config.json or credentials file, or replace one).
-- @treturn string|nil the reason, or nil when the directory is fine or absent
function config.unsafe_dir()
  local dir = config.dir()
  local st = sys.stat(dir)
  if not st then return nil end -- absent: nothing in it to trust
  if st.kind ~= "directory" or not st.owned then
    return ("the config directory %s is not a directory of this user"):format(dir)
  end
  if has_bit(st.mode, 16) or has_bit(st.mode, 2) then
    return ("group or others may write to the config directory %s (mode %03o); chmod go-w it"):format(dir, st.mode)
  end
  return nil
end

-- Why a file of the CLI cannot be trusted: the credentials file's checks
-- (admin.file_store), for config.json too.
local function unsafe_file(st)
  if st.kind ~= "file" or not st.owned then return "it is not a regular file of this user; remove it" end
  if st.mode % 64 ~= 0 then
    return ("group or others may read or write it (mode %03o); remove it (a login writes it again, mode 600)")
      :format(st.mode)
  end
  return nil
end

--- The saved settings (`config.json`): a table, empty when there is none
-- or it is unreadable. They decide where the API key and the password go,
-- so a file or directory another user could have written is refused, as
-- the credentials file is (the command fails, saying why).
function config.read_settings()
  local path = settings_path()
  local st = sys.stat(path)
  if not st then return {} end
  local why = config.unsafe_dir() or unsafe_file(st)
  if why then error(failure.new("usage", ("refusing the settings file %s: %s"):format(path, why)), 0) end
  local f = io.open(path, "rb")
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

--- Writes a command's output file (`--output`) and says how: "stdout" for
-- `-`; "pipe" for a named pipe, written in place for the reader at its other
-- end; "file" for a regular file or a new name, which gets a private file
-- renamed into place (mode 0600). Anything else is refused, never replaced:
-- a symbolic link (replacing /dev/stdout's link with the data is not what
-- the user meant), a directory, a device. The command fails when it cannot.
function config.write_output(path, text)
  if path == "-" then
    io.stdout:write(text)
    return "stdout"
  end
  local st = sys.stat(path, true)
  if st and st.kind == "fifo" then
    local ok, err = sys.write_pipe(path, text)
    if not ok then error(failure.new("usage", "cannot write " .. path .. ": " .. tostring(err)), 0) end
    return "pipe"
  end
  if st and st.kind ~= "file" then
    local what = st.kind == "link" and "a symbolic link" or st.kind == "directory" and "a directory"
      or "not a regular file"
    error(failure.new("usage", ("refusing to write %s: it is %s (name a regular file, or - for stdout)")
      :format(path, what)), 0)
  end
  config.write_private_file(path, text)
  return "file"
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
