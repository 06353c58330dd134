--- moltflow.cli.commands.keys: `keys list|create|show|rotate|revoke|rotate-shared`.
-- @module moltflow.cli.commands.keys

local admin = require "moltflow.admin"
local config = require "moltflow.cli.config"
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

-- The store of a fleet's shared key: a redis:// or rediss:// url (its
-- password, when the url has none, from $MOLTFLOW_REDIS_PASSWORD: a command
-- line is visible to other users), else a file path; sealed with
-- $MOLTFLOW_SEAL_KEY when it is set.
local function shared_store(args)
  if args.store:match("^rediss?://") then
    return failure.call(admin.redis_store, {url = args.store, prefix = args.prefix, ca_file = args.ca_file,
                                            password = config.nonempty(os.getenv("MOLTFLOW_REDIS_PASSWORD")),
                                            on_warning = warn})
  end
  return failure.call(admin.file_store, args.store)
end

local STEPS = {
  publish = function(i) return "created " .. tostring(i.new_id) end,
  drain = function(i, grace)
    return ("published %s as version %s; draining (up to %d s)"):format(tostring(i.new_id), tostring(i.version), grace)
  end,
  revoke = function(i) return "drained; revoking " .. tostring(i.old_id) end,
}

commands["keys.rotate-shared"] = function(args)
  local store = shared_store(args)
  local session = Session.open(args)
  local r, err = failure.call(admin.rotate_shared_key, {client = session.client, store = store, id = args.id,
    grace = args.grace, on_step = function(step, info)
      if STEPS[step] then warn(STEPS[step](info, args.grace)) end
    end})
  if not r then
    if err.kind == "store" or err.kind == "usage" or err.kind == "conflict" then
      -- the steps so far are recorded: the same command goes on from there
      error(failure.new(err.kind == "store" and "network" or "usage",
                        tostring(err) .. " (run the same command again to finish the rotation)"), 0)
    end
    failure.check(r, err)
  end
  if args.json then return print_json(r) end
  out(("Rotated %s -> %s (version %d, drained by %s)"):format(r.old_id, r.new_id, r.version, r.drained))
end

return commands
