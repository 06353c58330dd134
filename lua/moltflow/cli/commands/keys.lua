--- moltflow.cli.commands.keys: `keys list|create|show|rotate|revoke`.
-- @module moltflow.cli.commands.keys

local admin = require "moltflow.admin"
local failure = require "moltflow.cli.failure"
local output = require "moltflow.cli.output"
local Session = require "moltflow.cli.session"

local out, warn, print_json = output.out, output.warn, output.print_json

local commands = {}

local KEY_FIELDS = {"id", "name", "key_prefix", "scopes", "expires_at", "created_at", "last_used_at", "is_active"}

local function print_key(k)
  output.print_fields(k, KEY_FIELDS)
  if k.raw_key then
    out("raw_key       " .. k.raw_key)
    warn("warning: this is the only time the raw key is shown: store it now (the server keeps only its SHA-256)")
  end
end

commands["keys.list"] = function(args)
  local list = Session.open(args):call("api_keys.list")
  if args.json then return print_json(list) end
  local rows = {}
  for i, k in ipairs(list) do
    rows[i] = {k.id, k.name, k.key_prefix, k.scopes, k.expires_at, k.last_used_at, k.is_active and "yes" or "no"}
  end
  output.print_table({"ID", "NAME", "PREFIX", "SCOPES", "EXPIRES", "LAST USED", "ACTIVE"}, rows)
end

commands["keys.create"] = function(args)
  local scopes = admin.array({})
  for _, s in ipairs(args.scope) do
    for part in s:gmatch("[^,%s]+") do scopes[#scopes + 1] = part end
  end
  if #scopes == 0 then return failure.new("usage", "keys create: --scope must name at least one scope") end
  local k = Session.open(args):call("api_keys.create", {name = args.name, scopes = scopes,
                                                        expires_in_days = args.expires_in_days})
  if args.json then
    print_json(k)
    warn("warning: raw_key is shown only this once: store it now")
  else
    print_key(k)
  end
end

commands["keys.show"] = function(args)
  local k = Session.open(args):call("api_keys.get", args.id)
  if args.json then print_json(k) else print_key(k) end
end

commands["keys.rotate"] = function(args)
  local k = Session.open(args):call("api_keys.rotate", args.id)
  if args.json then
    print_json(k)
    warn("warning: raw_key is shown only this once: store it now; the old key no longer works")
  else
    print_key(k)
  end
end

commands["keys.revoke"] = function(args)
  Session.open(args):call("api_keys.revoke", args.id)
  if args.json then print_json{revoked = args.id} else out("Revoked " .. args.id) end
end

return commands
