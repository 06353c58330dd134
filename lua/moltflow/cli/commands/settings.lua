--- moltflow.cli.commands.settings: `settings get|set` (the tenant settings).
-- @module moltflow.cli.commands.settings

local admin = require "moltflow.admin"
local failure = require "moltflow.cli.failure"
local output = require "moltflow.cli.output"
local Session = require "moltflow.cli.session"

local print_json = output.print_json

local commands = {}

local SETTINGS_FIELDS = {"allowed_numbers", "require_approval", "ai_consent_enabled"}

local function print_settings(s)
  output.print_fields(s, SETTINGS_FIELDS)
end

commands["settings.get"] = function(args)
  local s = Session.open(args):call("tenant.settings")
  if args.json then print_json(s) else print_settings(s) end
end

commands["settings.set"] = function(args)
  local change, any = {}, false
  if args.no_allowed_numbers then
    if #args.allowed_number > 0 then
      return failure.new("usage", "settings set: --allowed-number and --no-allowed-numbers exclude each other")
    end
    change.allowed_numbers, any = admin.array({}), true
  elseif #args.allowed_number > 0 then
    change.allowed_numbers, any = admin.array({}), true
    for i, n in ipairs(args.allowed_number) do change.allowed_numbers[i] = n end
  end
  if args.require_approval then change.require_approval, any = args.require_approval == "on", true end
  if args.ai_consent then change.ai_consent_enabled, any = args.ai_consent == "on", true end
  if not any then
    return failure.new("usage", "settings set: nothing to change (give --allowed-number, --no-allowed-numbers, "
                                .. "--require-approval or --ai-consent)")
  end
  local s = Session.open(args):call("tenant.update_settings", change)
  if args.json then print_json(s) else print_settings(s) end
end

return commands
