--- moltflow.cli: the `moltflow-admin` command line.
-- `bin/moltflow-admin` runs `os.exit(require("moltflow.cli").main(arg))`.
-- Commands: `login`, `logout`, `whoami`, `keys list|create|show|rotate|revoke`,
-- `subscription`, `plans`, `quota`, `usage current|history|daily`,
-- `settings get|set`, `export`, `account delete`; options `--json`,
-- `--base-url`, `--api-key` everywhere.
-- Errors are one line on stderr; the exit status says what went wrong
-- (`cli.EXIT`).
-- @module moltflow.cli

local argparse = require "argparse"
local admin = require "moltflow.admin"
local sys = require("moltflow.core").sys

local cli = {}

--- Exit statuses: `ok` 0, `http` 1 (the server refused: 4xx other than 401,
-- 5xx, or an unreadable answer), `usage` 2 (bad command line), `quota` 3
-- (`quota --fail-above` passed), `auth` 4 (not logged in, or the credentials
-- were refused: 401), `network` 5 (no connection, timeout), `interrupted` 130
-- (Ctrl-C; a signal at the password prompt exits 128 + its number, as shells
-- report it).
cli.EXIT = {ok = 0, http = 1, usage = 2, quota = 3, auth = 4, network = 5, interrupted = 130}

local EXIT = cli.EXIT
local NAME = "moltflow-admin"

local EPILOG = [[
Credentials: --api-key, else $MOLTFLOW_API_KEY, else the tokens saved by 'login'
in $MOLTFLOW_CONFIG_DIR/credentials (default ~/.config/moltflow/credentials, mode
0600; refreshed automatically). Server: --base-url, else $MOLTFLOW_API_URL (host;
/api/v2 is appended), else the one used at login, else https://apiv2.waiflow.app/api/v2.

Exit status: 0 ok, 1 HTTP error, 2 usage error, 3 quota above --fail-above,
4 authentication (not logged in, or credentials refused), 5 network or timeout,
130 interrupted (Ctrl-C).
Run 'moltflow-admin COMMAND --help' for the options of a command.]]

---------------------------------------------------------------- output

-- Server text may hold terminal control sequences (a key named
-- "\27]0;title\7" would retitle the window): C0 controls, DEL and C1
-- controls (U+0080-U+009F, also as stray bytes) are shown as \xNN or \uNNNN.
-- Idempotent, so text escaped once can pass through again.
local function escape_controls(s)
  s = s:gsub("[%z\1-\31\127]", function(c) return ("\\x%02x"):format(c:byte()) end)
  -- each run of a byte >= 0x80 and the continuation bytes after it
  return (s:gsub("[\128-\255][\128-\191]*", function(run)
    local lead = run:byte(1)
    local want = lead >= 0xF0 and lead <= 0xF4 and 4 or lead >= 0xE0 and lead <= 0xEF and 3
                 or lead >= 0xC2 and lead <= 0xDF and 2 or 0
    if #run >= want and want > 0 then
      local char, rest = run:sub(1, want), run:sub(want + 1)
      if lead == 0xC2 and char:byte(2) <= 0x9F then char = ("\\u%04x"):format(char:byte(2)) end
      return char .. rest:gsub("[\128-\159]", function(c) return ("\\x%02x"):format(c:byte()) end)
    end
    return (run:gsub("[\128-\159]", function(c) return ("\\x%02x"):format(c:byte()) end))
  end))
end
cli.escape_controls = escape_controls

local function out(s) io.stdout:write(escape_controls(s), "\n") end
local function warn(s) io.stderr:write(NAME, ": ", escape_controls(s), "\n") end

-- A failure that ends the command: an exit status and one line for stderr.
local Failure = {}
Failure.__index = Failure

local function failure(code, message)
  return setmetatable({code = code, message = message}, Failure)
end

local function show(v)
  if v == nil or v == admin.null then return "-" end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return table.concat(parts, ",")
  end
  if type(v) == "number" and v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
    return ("%d"):format(v)
  end
  return escape_controls(tostring(v))
end

-- Prints rows under a header, columns padded to their widest cell.
local function print_table(header, rows)
  local widths = {}
  for i, h in ipairs(header) do widths[i] = #h end
  for _, row in ipairs(rows) do
    for i = 1, #header do
      row[i] = show(row[i])
      if #row[i] > widths[i] then widths[i] = #row[i] end
    end
  end
  local function line(cells)
    local parts = {}
    for i = 1, #header do
      parts[i] = cells[i] .. (i < #header and (" "):rep(widths[i] - #cells[i]) or "")
    end
    out((table.concat(parts, "  "):gsub("%s+$", "")))
  end
  line(header)
  for _, row in ipairs(rows) do line(row) end
end

-- Prints "key  value" lines for the given fields, in order.
local function print_fields(t, fields)
  local width = 0
  for _, f in ipairs(fields) do if #f > width then width = #f end end
  for _, f in ipairs(fields) do
    out(f .. (" "):rep(width - #f + 2) .. show(t[f]))
  end
end

-- Exact JSON: JSON strings may hold DEL and C1 controls raw; written as
-- \u escapes they decode to the same values but cannot reach the terminal.
local function print_json(v)
  local text = admin.json_encode(v):gsub("\127", "\\u007f")
  io.stdout:write((text:gsub("\194([\128-\159])", function(c) return ("\\u%04x"):format(c:byte()) end)), "\n")
end

------------------------------------------------------------ credentials

local function nonempty(s)
  if s == nil or s == "" then return nil end
  return s
end

--- The directory holding the CLI's files: `$MOLTFLOW_CONFIG_DIR`, else
-- `$XDG_CONFIG_HOME/moltflow`, else `~/.config/moltflow`.
-- @treturn string the path
function cli.config_dir()
  local dir = nonempty(os.getenv("MOLTFLOW_CONFIG_DIR"))
  if dir then return dir end
  local xdg = nonempty(os.getenv("XDG_CONFIG_HOME"))
  if xdg then return xdg .. "/moltflow" end
  return (os.getenv("HOME") or ".") .. "/.config/moltflow"
end

--- The token file written by `login` (mode 0600): `cli.config_dir() .. "/credentials"`.
-- @treturn string the path
function cli.credentials_path()
  return cli.config_dir() .. "/credentials"
end

local function settings_path()
  return cli.config_dir() .. "/config.json"
end

local function read_saved_settings()
  local f = io.open(settings_path(), "rb")
  if not f then return {} end
  local text = f:read("*a")
  f:close()
  local ok, t = pcall(admin.json_decode, text or "")
  return ok and type(t) == "table" and t or {}
end

local function ensure_config_dir()
  local ok, err = sys.mkdir_private(cli.config_dir())
  if not ok then error(failure(EXIT.usage, "cannot use the config directory: " .. err), 0) end
end

local function write_saved_settings(t)
  ensure_config_dir()
  local ok, err = sys.write_private(settings_path(), admin.json_encode(t))
  if not ok then error(failure(EXIT.usage, err), 0) end
end

-- Writes `text` to `path` as a file only its owner can read (mode 0600,
-- core.sys: a new O_EXCL file renamed over `path`). Raises a Failure when it cannot.
local function write_private_file(path, text)
  local ok, err = sys.write_private(path, text)
  if not ok then error(failure(EXIT.usage, "cannot write " .. path .. ": " .. tostring(err)), 0) end
end

local function base_url(args)
  local url = args.base_url
  if url then
    url = url:gsub("/+$", "")
    if not url:match("^https?://[^/]+/.") then url = url .. "/api/v2" end
    return url
  end
  local host = nonempty(os.getenv("MOLTFLOW_API_URL"))
  if host then return (host:gsub("/+$", "")) .. "/api/v2" end
  return read_saved_settings().base_url -- nil: the SDK's default
end

-- The base URL a command talks to, as the SDK spells it (its default too).
local function effective_url(args)
  local probe = admin.new{base_url = base_url(args), api_key = "unused"}
  local url = probe:info().base_url
  probe:close()
  return url
end

-- The saved login as a token store, bound to the server that issued it: the
-- file records that base URL, and a command for any other server finds no
-- tokens (so it sends none, and its 401 cannot delete them) until a login
-- there replaces them. A file from before the binding belongs to the server
-- saved at login in config.json (none recorded: to no server).
-- `store.notice` holds the warning from loading it (a corrupt or unsafe
-- file), `store.other_server` the server of a login that does not apply,
-- `store.save_error` the last failed save.
local function login_store(url)
  local file = admin.file_store(cli.credentials_path())
  local store = {}
  local function method(f)
    return function(first, ...)
      if first == store then return f(...) end
      return f(first, ...)
    end
  end
  local function bound(t)
    return t.base_url or read_saved_settings().base_url or "an unrecorded server"
  end
  store.load = method(function()
    local t, warning = file.load()
    store.notice = warning
    if not t then return nil end
    if bound(t) ~= url then
      store.other_server = bound(t)
      return nil
    end
    t.base_url = nil
    return t
  end)
  store.save = method(function(tokens)
    local ok, err
    if tokens == nil then
      local t = file.load()
      if t and bound(t) ~= url then return true end -- another server's login
      ok, err = file.save(nil)
    else
      local t = {}
      for k, v in pairs(tokens) do t[k] = v end
      t.base_url = url
      ok, err = file.save(t)
    end
    if not ok then store.save_error = err end
    return ok, err
  end)
  store.try_lock = method(file.try_lock)
  store.unlock = method(file.unlock)
  return store
end

local function not_logged_in(store, url)
  if store.notice then warn("warning: " .. store.notice) end
  if store.other_server then
    return failure(EXIT.auth, ("not logged in to %s: the saved login is for %s; run 'moltflow-admin --base-url %s "
                               .. "login' to log in there"):format(url, store.other_server, url))
  end
  return failure(EXIT.auth, "not logged in: run 'moltflow-admin login', or pass --api-key or set MOLTFLOW_API_KEY")
end

-- The client for a command. `auth` false: a public endpoint, no credentials
-- needed. With no API key the saved login is the token store, so refreshed
-- tokens are written back to it.
local function client(args, auth)
  local opts = {base_url = base_url(args)}
  local key = nonempty(args.api_key) or nonempty(os.getenv("MOLTFLOW_API_KEY"))
  local store
  if key then
    opts.api_key = key
  elseif auth ~= false then
    store = login_store(effective_url(args))
    opts.token_store = store
  end
  local c = admin.new(opts)
  if store and not c:tokens() then
    local url = c:info().base_url
    c:close()
    error(not_logged_in(store, url), 0)
  end
  return c
end

-- Turns an SDK error table into a Failure.
local function sdk_failure(err)
  local code = EXIT.http
  if err.kind == "auth" then code = EXIT.auth
  elseif err.kind == "network" or err.kind == "timeout" then code = EXIT.network end
  local what = err.status and ("HTTP " .. err.status) or ((err.kind or "unknown") .. " error")
  local msg = ("%s on %s %s: %s"):format(what, tostring(err.method or "?"), tostring(err.path or "?"),
                                         tostring(err.message or ""))
  if code == EXIT.auth then msg = msg .. " (log in again with 'moltflow-admin login', or check the API key)" end
  return failure(code, msg)
end

-- value, res from an SDK call: the value, or the command ends with the error.
local function check(v, res)
  if v == nil then error(sdk_failure(res), 0) end
  return v, res
end

------------------------------------------------------------ prompts

-- Asks on the terminal (echo off for a secret). Ctrl-C, Ctrl-\ or another
-- terminating signal there restores the terminal first, then ends the
-- command with 128 + the signal's number.
local function ask(prompt, echo)
  local line, err, signal = sys.read_tty(prompt, echo)
  if signal then error(failure(128 + signal, "interrupted"), 0) end
  if not line and err ~= "end of input" then error(failure(EXIT.usage, err), 0) end
  return line
end

-- A line typed on the terminal, or the next line of stdin (after a password
-- read from it).
local function read_line(prompt, from_stdin)
  if not from_stdin then return ask(prompt, true) end
  io.stderr:write(prompt)
  io.stderr:flush()
  local line = io.stdin:read("*l")
  return line and (line:gsub("\r$", ""))
end

------------------------------------------------------------ commands

local commands = {}

local function print_user(u, via)
  print_fields(u, {"id", "email", "full_name", "role", "tenant_id"})
  if via then out("auth       " .. via) end
end

commands.login = function(args)
  local email = args.email or nonempty(os.getenv("MOLTFLOW_EMAIL"))
  local password
  if args.password_stdin then
    if not email then
      return failure(EXIT.usage, "login --password-stdin needs --email or MOLTFLOW_EMAIL")
    end
    password = io.stdin:read("*l")
    password = password and password:gsub("\r$", "")
  else
    password = nonempty(os.getenv("MOLTFLOW_PASSWORD"))
    if not password or not email then
      if not sys.isatty(0) then
        return failure(EXIT.usage, "no terminal to ask for the " .. (email and "password" or "email") ..
                                   ": use --email with --password-stdin, or MOLTFLOW_EMAIL and MOLTFLOW_PASSWORD")
      end
      email = email or ask("Email: ", true)
      password = password or ask("Password: ", false)
    end
  end
  if not nonempty(email) or not nonempty(password) then
    return failure(EXIT.usage, "login needs an email and a password")
  end
  ensure_config_dir()
  local url = effective_url(args)
  local store = login_store(url)
  local c = admin.new{base_url = url, token_store = store}
  c:set_api_key(nil) -- this session is the login's, not $MOLTFLOW_API_KEY's
  local v = check(c.auth:login{email = email, password = password})
  c:close()
  if store.save_error then
    return failure(EXIT.usage, "logged in, but the tokens could not be saved: " .. tostring(store.save_error))
  end
  write_saved_settings{base_url = url}
  if args.json then
    print_json{user = v.user, credentials = cli.credentials_path()}
  else
    out(("Logged in as %s <%s> (%s, tenant %s); tokens saved to %s"):format(
      show(v.user.full_name), show(v.user.email), show(v.user.role), show(v.user.tenant_id), cli.credentials_path()))
  end
end

commands.logout = function(args)
  local url = effective_url(args)
  local store = login_store(url)
  if not store.load() then
    if store.notice then warn("warning: " .. store.notice) end
    if args.json then print_json{logged_out = false} else out("Not logged in" .. (store.other_server and (" to "
      .. url .. " (the saved login is for " .. store.other_server .. ", left as it is)") or "") .. ".") end
    return
  end
  local c = admin.new{base_url = url, token_store = store}
  c:set_api_key(nil)
  local v, res = c.auth:logout() -- forgets the saved tokens whatever the server says
  c:close()
  if v == nil then
    local f = sdk_failure(res)
    f.message = f.message .. "; the saved tokens were removed"
    return f
  end
  if args.json then print_json{logged_out = true} else out("Logged out; the saved tokens were removed.") end
end

commands.whoami = function(args)
  local c = client(args)
  local via = c:tokens() and "saved login" or "API key"
  local u = check(c.auth:me())
  if args.json then print_json(u) else print_user(u, via) end
end

local KEY_FIELDS = {"id", "name", "key_prefix", "scopes", "expires_at", "created_at", "last_used_at", "is_active"}

local function print_key(k)
  print_fields(k, KEY_FIELDS)
  if k.raw_key then
    out("raw_key       " .. k.raw_key)
    warn("warning: this is the only time the raw key is shown: store it now (the server keeps only its SHA-256)")
  end
end

commands["keys.list"] = function(args)
  local c = client(args)
  local list = check(c.api_keys:list())
  if args.json then return print_json(list) end
  local rows = {}
  for i, k in ipairs(list) do
    rows[i] = {k.id, k.name, k.key_prefix, k.scopes, k.expires_at, k.last_used_at, k.is_active and "yes" or "no"}
  end
  print_table({"ID", "NAME", "PREFIX", "SCOPES", "EXPIRES", "LAST USED", "ACTIVE"}, rows)
end

commands["keys.create"] = function(args)
  local scopes = admin.array({})
  for _, s in ipairs(args.scope) do
    for part in s:gmatch("[^,%s]+") do scopes[#scopes + 1] = part end
  end
  if #scopes == 0 then return failure(EXIT.usage, "keys create: --scope must name at least one scope") end
  local c = client(args)
  local k = check(c.api_keys:create{name = args.name, scopes = scopes, expires_in_days = args.expires_in_days})
  if args.json then
    print_json(k)
    warn("warning: raw_key is shown only this once: store it now")
  else
    print_key(k)
  end
end

commands["keys.show"] = function(args)
  local k = check(client(args).api_keys:get(args.id))
  if args.json then print_json(k) else print_key(k) end
end

commands["keys.rotate"] = function(args)
  local k = check(client(args).api_keys:rotate(args.id))
  if args.json then
    print_json(k)
    warn("warning: raw_key is shown only this once: store it now; the old key no longer works")
  else
    print_key(k)
  end
end

commands["keys.revoke"] = function(args)
  check(client(args).api_keys:revoke(args.id))
  if args.json then print_json{revoked = args.id} else out("Revoked " .. args.id) end
end

commands.subscription = function(args)
  local s = check(client(args).billing:subscription())
  if args.json then return print_json(s) end
  print_fields(s, {"plan_id", "display_name", "status", "billing_cycle", "current_period_end", "cancel_at_period_end"})
  local rows = {}
  for i, l in ipairs(admin.helpers.LIMITS) do
    rows[i] = {l[1], type(s.usage) == "table" and s.usage[l[3]], type(s.limits) == "table" and s.limits[l[2]]}
  end
  out("")
  print_table({"LIMIT", "USED", "OF"}, rows)
end

commands.plans = function(args)
  local v = check(client(args, false).billing:plans())
  if args.json then return print_json(v) end
  local rows = {}
  for i, p in ipairs(v.plans or {}) do
    local l = type(p.limits) == "table" and p.limits or {}
    rows[i] = {p.id, p.display_name, p.price_monthly, p.price_yearly, l.max_sessions, l.max_messages_per_month,
               l.max_groups, l.max_labels, l.ai_replies_per_month}
  end
  print_table({"ID", "NAME", "MONTHLY", "YEARLY", "SESSIONS", "MESSAGES/MO", "GROUPS", "LABELS", "AI/MO"}, rows)
end

commands.quota = function(args)
  local q = check(client(args):quota())
  if args.json then
    print_json{plan_id = q.plan_id, status = q.status, current_period_end = q.current_period_end,
               limits = q.items}
  else
    out(("plan %s (%s), period ends %s"):format(show(q.plan_id), show(q.status), show(q.current_period_end)))
    local rows = {}
    for i, item in ipairs(q.items) do
      rows[i] = {item.name, item.used, item.limit or "unlimited", item.remaining,
                 item.percent and ("%.2f%%"):format(item.percent)}
    end
    print_table({"LIMIT", "USED", "OF", "REMAINING", "USED%"}, rows)
  end
  if args.fail_above then
    local over = {}
    for _, item in ipairs(q.items) do
      if item.percent and item.percent > args.fail_above then
        over[#over + 1] = ("%s %.2f%%"):format(item.name, item.percent)
      end
    end
    if #over > 0 then
      return failure(EXIT.quota, ("quota above %s%%: %s"):format(show(args.fail_above), table.concat(over, ", ")))
    end
  end
end

commands["usage.current"] = function(args)
  local u = check(client(args).usage:current())
  if args.json then return print_json(u) end
  print_fields(u, {"period", "messages_sent", "messages_received", "total_messages", "leads_detected",
                   "api_calls", "usage_percentage", "limit_messages"})
end

commands["usage.history"] = function(args)
  local v = check(client(args).usage:history{months = args.months})
  if args.json then return print_json(v) end
  local rows = {}
  for i, m in ipairs(v.months or {}) do
    rows[i] = {m.period, m.messages_sent, m.messages_received, m.total_messages, m.api_calls}
  end
  print_table({"PERIOD", "SENT", "RECEIVED", "TOTAL", "API CALLS"}, rows)
end

local function utf8_terminal()
  local lang = os.getenv("LC_ALL") or os.getenv("LC_CTYPE") or os.getenv("LANG") or ""
  return lang:upper():find("UTF%-?8") ~= nil
end

commands["usage.daily"] = function(args)
  local rows = check(client(args).usage:daily_rows{days = args.days})
  if args.json then return print_json(rows) end
  if args.csv then
    io.stdout:write(admin.to_csv(rows))
    return
  end
  local max = 0
  for _, r in ipairs(rows) do if r.total_messages > max then max = r.total_messages end end
  local width, block = 40, utf8_terminal() and "\226\150\136" or "#"
  out(("%-10s  %-" .. width .. "s  %s"):format("DATE", "MESSAGES (sent + received)",
                                              "TOTAL  SENT  RECEIVED  API CALLS"))
  for _, r in ipairs(rows) do
    local n = max > 0 and math.floor(r.total_messages * width / max + 0.5) or 0
    if n == 0 and r.total_messages > 0 then n = 1 end
    out(("%-10s  %s%s  %5d  %4d  %8d  %9d"):format(r.date, block:rep(n), (" "):rep(width - n), r.total_messages,
                                                   r.messages_sent, r.messages_received, r.api_calls))
  end
end

local SETTINGS_FIELDS = {"allowed_numbers", "require_approval", "ai_consent_enabled"}

local function print_settings(s)
  print_fields(s, SETTINGS_FIELDS)
end

commands["settings.get"] = function(args)
  local s = check(client(args).tenant:settings())
  if args.json then print_json(s) else print_settings(s) end
end

commands["settings.set"] = function(args)
  local change, any = {}, false
  if args.no_allowed_numbers then
    if #args.allowed_number > 0 then
      return failure(EXIT.usage, "settings set: --allowed-number and --no-allowed-numbers exclude each other")
    end
    change.allowed_numbers, any = admin.array({}), true
  elseif #args.allowed_number > 0 then
    change.allowed_numbers, any = admin.array({}), true
    for i, n in ipairs(args.allowed_number) do change.allowed_numbers[i] = n end
  end
  if args.require_approval then change.require_approval, any = args.require_approval == "on", true end
  if args.ai_consent then change.ai_consent_enabled, any = args.ai_consent == "on", true end
  if not any then
    return failure(EXIT.usage, "settings set: nothing to change (give --allowed-number, --no-allowed-numbers, "
                               .. "--require-approval or --ai-consent)")
  end
  local s = check(client(args).tenant:update_settings(change))
  if args.json then print_json(s) else print_settings(s) end
end

commands.export = function(args)
  local v = check(client(args).gdpr:export())
  local text = admin.json_encode(v) .. "\n"
  if not args.output or args.output == "-" then
    io.stdout:write(text)
    return
  end
  write_private_file(args.output, text)
  if args.json then
    print_json{exported = args.output}
  else
    out(("Exported the account's data to %s (mode 0600: it is personal data)"):format(args.output))
  end
end

-- The deletion's own failures: whether the account is gone is the one thing
-- the user must learn from the message.
local function deletion_failure(err)
  local f = sdk_failure(err)
  if err.status == 401 then
    return failure(EXIT.auth, ("HTTP 401 on DELETE /users/me: %s; nothing was deleted"):format(tostring(err.message)))
  elseif err.status and err.status < 500 then
    f.message = f.message .. "; nothing was deleted"
  else
    f.message = f.message .. "; the server did not confirm: check with 'moltflow-admin whoami' before trying again"
  end
  return f
end

commands["account.delete"] = function(args)
  if not args.password_stdin and not sys.isatty(0) then
    return failure(EXIT.usage, "account delete: no terminal to ask for the password: use --password-stdin")
  end
  local c = client(args)
  local me = check(c.auth:me())
  local password
  if args.password_stdin then
    password = io.stdin:read("*l")
    password = password and password:gsub("\r$", "")
  else
    password = ask(("Password of %s: "):format(show(me.email)), false)
  end
  if not nonempty(password) then return failure(EXIT.usage, "account delete needs the account's password") end
  if not args.yes then
    io.stderr:write(("This deletes the account %s and every record of tenant %s for good; every token and "
                     .. "API key stops working.\n"):format(show(me.email), show(me.tenant_id)))
    local typed = read_line("Type the account's email to confirm: ", args.password_stdin)
    if not typed or typed:lower():match("^%s*(.-)%s*$") ~= tostring(me.email):lower() then
      return failure(EXIT.usage, "account delete: the email typed does not match; nothing was deleted")
    end
  end
  local v, err = c.gdpr:delete_account{current_password = password}
  c:close()
  if v == nil then return deletion_failure(err) end
  -- the client forgot its tokens: a saved login's file is gone with them
  if args.json then
    print_json{deleted = true, email = me.email, tenant_id = me.tenant_id}
  else
    out(("Deleted the account %s and tenant %s."):format(show(me.email), show(me.tenant_id)))
  end
end

------------------------------------------------------------ the parser

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
function cli.parser()
  local p = argparse(NAME, "Administer a MoltFlow account: log in, API keys, billing, quota, usage, tenant "
                           .. "settings and GDPR export and deletion, from a shell, cron or CI.")
  p:epilog(EPILOG)
  p:flag("--json", "Print machine-readable JSON on stdout.")
  p:option("--base-url", "API base URL, e.g. http://127.0.0.1:8787/api/v2 (/api/v2 is added to a bare host).")
   :argname("<url>")
  p:option("--api-key", "Authenticate with this API key (prefer $MOLTFLOW_API_KEY: arguments are visible to "
                        .. "other users in ps).")
   :argname("<key>")
  p:flag("--version", "Print the version and exit."):action(function()
    out(NAME .. " " .. admin.VERSION)
    os.exit(0)
  end)
  p:command_target("command")

  local login = p:command("login", "Log in with email and password and save the tokens (mode 0600).")
  login:option("--email", "Account email (default $MOLTFLOW_EMAIL, else asked).")
  login:flag("--password-stdin", "Read the password from the first line of stdin (default $MOLTFLOW_PASSWORD, "
                                 .. "else asked with echo off).")
  p:command("logout", "Revoke the saved tokens on the server and delete them.")
  p:command("whoami", "Show the user behind the current credentials.")

  local keys = p:command("keys", "Manage API keys: list, create, show, rotate, revoke.")
  keys:command_target("subcommand")
  keys:command("list", "List the tenant's API keys (never their secrets).")
  local create = keys:command("create", "Create a key; its raw secret is printed once.")
  create:option("--name", "Key name (unique among active keys)."):args(1):count(1)
  create:option("--scope", "A scope such as usage:read (repeat, or separate with commas)."):count("+")
  create:option("--expires-in-days", "Expire after this many days (default: never)."):convert(int_in(1))
  keys:command("show", "Show one key."):argument("id", "Key id (key_...).")
  keys:command("rotate", "Give a key a new secret, printed once; the old one stops working.")
      :argument("id", "Key id.")
  keys:command("revoke", "Delete a key; it stops working at once."):argument("id", "Key id.")

  p:command("subscription", "Show the plan, its status, limits and usage.")
  p:command("plans", "List the plans and their limits (no login needed).")
  local quota = p:command("quota", "Show used and remaining amounts per plan limit.")
  quota:option("--fail-above", "Exit with status 3 when any limit is more than PERCENT used.")
       :argname("<percent>"):convert(percent)

  local usage = p:command("usage", "Usage: this month, monthly history, daily chart or CSV.")
  usage:command_target("subcommand")
  usage:command("current", "This month's usage.")
  usage:command("history", "Usage per month, oldest first."):option("--months", "Months back, 1-24 (default 6).")
       :convert(int_in(1, 24))
  local daily = usage:command("daily", "Usage per day as a bar chart, or CSV with --csv.")
  daily:option("--days", "Days back, 1-31 (default 30)."):convert(int_in(1, 31))
  daily:flag("--csv", "Write CSV (date, messages_sent, messages_received, total_messages, api_calls).")

  local settings = p:command("settings", "Tenant settings: allowed numbers, approval, AI consent.")
  settings:command_target("subcommand")
  settings:command("get", "Show the tenant settings.")
  local set = settings:command("set", "Change some tenant settings (owner or admin).")
  set:option("--allowed-number", "An allowed E.164 number (repeat; replaces the list)."):count("*")
  set:flag("--no-allowed-numbers", "Empty the allowed numbers list.")
  set:option("--require-approval", "Require approval: on or off."):choices({"on", "off"})
  set:option("--ai-consent", "AI processing consent: on or off (on records a GDPR consent entry).")
     :choices({"on", "off"})

  local export = p:command("export", "Export all of the account's data as JSON (GDPR Art. 20).")
  export:option("-o --output", "Write it to this file, created with mode 0600 (default: stdout)."):argname("<file>")

  local account = p:command("account", "The account itself: delete it (GDPR Art. 17).")
  account:command_target("subcommand")
  local delete = account:command("delete", "Delete the account and its tenant for good (owner only): asks the "
                                           .. "password with echo off, then the account's email to confirm.")
  delete:flag("--password-stdin", "Read the password from the first line of stdin (then the confirmation from "
                                  .. "the next line, unless --yes).")
  delete:flag("--yes", "Do not ask for the email to confirm.")
  return p
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
    warn("error: " .. tostring(args) .. " (see 'moltflow-admin --help')")
    return EXIT.usage
  end
  local name = args.command .. (args.subcommand and "." .. args.subcommand or "")
  local run = commands[name]
  local done, result = pcall(run, args)
  if not done then
    if getmetatable(result) == Failure then
      warn(result.message)
      return result.code
    end
    -- the interpreter's SIGINT handler raises this in the running Lua code
    if tostring(result):match("interrupted!$") then
      warn("interrupted")
      return EXIT.interrupted
    end
    -- a raised argument error from the SDK: the command line gave a bad value
    local msg = tostring(result):gsub("^[^:]*%.lua:%d+: ", "")
    warn("error: " .. msg)
    return msg:match("^moltflow") and EXIT.usage or EXIT.http
  end
  if getmetatable(result) == Failure then
    warn(result.message)
    return result.code
  end
  return EXIT.ok
end

return cli
