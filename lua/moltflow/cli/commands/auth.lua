--- moltflow.cli.commands.auth: `login`, `logout` and `whoami`.
-- Each command is a function of the parsed command line; it prints its
-- result, or returns or raises a failure (`moltflow.cli.failure`).
-- @module moltflow.cli.commands.auth

local config = require "moltflow.cli.config"
local failure = require "moltflow.cli.failure"
local LoginStore = require "moltflow.cli.login_store"
local output = require "moltflow.cli.output"
local prompt = require "moltflow.cli.prompt"
local Session = require "moltflow.cli.session"
local sys = require("moltflow.core").sys

local nonempty = config.nonempty
local out, warn, show, print_json = output.out, output.warn, output.show, output.print_json

local commands = {}

commands.login = function(args)
  local email = args.email or nonempty(os.getenv("MOLTFLOW_EMAIL"))
  local password
  if args.password_stdin then
    if not email then
      return failure.new("usage", "login --password-stdin needs --email or MOLTFLOW_EMAIL")
    end
    password = prompt.stdin_line()
  else
    password = nonempty(os.getenv("MOLTFLOW_PASSWORD"))
    if not password or not email then
      if not sys.isatty(0) then
        return failure.new("usage", "no terminal to ask for the " .. (email and "password" or "email") ..
                                    ": use --email with --password-stdin, or MOLTFLOW_EMAIL and MOLTFLOW_PASSWORD")
      end
      email = email or prompt.ask("Email: ", true)
      password = password or prompt.ask("Password: ", false)
    end
  end
  if not nonempty(email) or not nonempty(password) then
    return failure.new("usage", "login needs an email and a password")
  end
  config.ensure_dir()
  local url = config.base_url(args)
  local store = LoginStore.new(url)
  local session = Session.login(url, store) -- this session is the login's, not $MOLTFLOW_API_KEY's
  local v = session:call("auth.login", {email = email, password = password})
  session:close()
  if store.save_error then
    return failure.new("usage", "logged in, but the tokens could not be saved: " .. tostring(store.save_error))
  end
  config.write_settings{base_url = url}
  if args.json then
    print_json{user = v.user, credentials = config.credentials_path()}
  else
    out(("Logged in as %s <%s> (%s, tenant %s); tokens saved to %s"):format(
      show(v.user.full_name), show(v.user.email), show(v.user.role), show(v.user.tenant_id),
      config.credentials_path()))
  end
end

commands.logout = function(args)
  local url = config.base_url(args)
  local store = LoginStore.new(url)
  local session = Session.login(url, store) -- checks the URL as every command does
  if not store:load() then
    session:close()
    if store.notice then warn("warning: " .. store.notice) end
    if args.json then print_json{logged_out = false} else out("Not logged in" .. (store.other_server and (" to "
      .. url .. " (the saved login is for " .. store.other_server .. ", left as it is)") or "") .. ".") end
    return
  end
  local v, res = session:try("auth.logout") -- forgets the saved tokens whatever the server says
  session:close()
  if v == nil then
    local f = failure.from_sdk(res)
    f.message = f.message .. "; the saved tokens were removed"
    return f
  end
  if args.json then print_json{logged_out = true} else out("Logged out; the saved tokens were removed.") end
end

commands.whoami = function(args)
  local session = Session.open(args)
  local via = session:credentials()
  local u = session:call("auth.me")
  if args.json then
    print_json(u)
  else
    output.print_fields(u, {"id", "email", "full_name", "role", "tenant_id"})
    out("auth       " .. via)
  end
end

return commands
