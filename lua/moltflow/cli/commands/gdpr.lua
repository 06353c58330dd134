--- moltflow.cli.commands.gdpr: `export` (GDPR Art. 20) and `account delete`
-- (Art. 17).
-- @module moltflow.cli.commands.gdpr

local admin = require "moltflow.admin"
local config = require "moltflow.cli.config"
local failure = require "moltflow.cli.failure"
local output = require "moltflow.cli.output"
local prompt = require "moltflow.cli.prompt"
local Session = require "moltflow.cli.session"
local sys = require("moltflow.core").sys

local out, show, print_json = output.out, output.show, output.print_json

local commands = {}

commands.export = function(args)
  local v = Session.open(args):call("gdpr.export")
  local text = admin.json_encode(v) .. "\n"
  local how = config.write_output(args.output or "-", text)
  if how == "stdout" then return end
  if args.json then
    print_json{exported = args.output}
  elseif how == "pipe" then
    out(("Exported the account's data into the pipe %s"):format(args.output))
  else
    out(("Exported the account's data to %s (mode 0600: it is personal data)"):format(args.output))
  end
end

-- The deletion's own failures: whether the account is gone is the one thing
-- the user must learn from the message.
local function deletion_failure(err)
  local f = failure.from_sdk(err)
  if err.status == 401 then
    return failure.new("auth", ("HTTP 401 on DELETE /users/me: %s; nothing was deleted"):format(tostring(err.message)))
  elseif err.status and err.status < 500 then
    f.message = f.message .. "; nothing was deleted"
  else
    f.message = f.message .. "; the server did not confirm: check with 'moltflow-admin whoami' before trying again"
  end
  return f
end

commands["account.delete"] = function(args)
  if not args.password_stdin and not sys.isatty(0) then
    return failure.new("usage", "account delete: no terminal to ask for the password: use --password-stdin")
  end
  local session = Session.open(args)
  local me = session:call("auth.me")
  local password
  if args.password_stdin then
    password = prompt.stdin_line()
  else
    password = prompt.ask(("Password of %s: "):format(show(me.email)), false)
  end
  if not config.nonempty(password) then return failure.new("usage", "account delete needs the account's password") end
  if not args.yes then
    io.stderr:write(("This deletes the account %s and every record of tenant %s for good; every token and "
                     .. "API key stops working.\n"):format(show(me.email), show(me.tenant_id)))
    local typed = prompt.read_line("Type the account's email to confirm: ", args.password_stdin)
    if not typed or typed:lower():match("^%s*(.-)%s*$") ~= tostring(me.email):lower() then
      return failure.new("usage", "account delete: the email typed does not match; nothing was deleted")
    end
  end
  local v, err = session:try("gdpr.delete_account", {current_password = password})
  session:close()
  if v == nil then return deletion_failure(err) end
  -- the client forgot its tokens: a saved login's file is gone with them
  if args.json then
    print_json{deleted = true, email = me.email, tenant_id = me.tenant_id}
  else
    out(("Deleted the account %s and tenant %s."):format(show(me.email), show(me.tenant_id)))
  end
end

return commands
