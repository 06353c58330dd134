--- moltflow.cli.commands.billing: `subscription`, `plans` and `quota`.
-- @module moltflow.cli.commands.billing

local admin = require "moltflow.admin"
local failure = require "moltflow.cli.failure"
local output = require "moltflow.cli.output"
local Session = require "moltflow.cli.session"

local out, show, print_json, print_table = output.out, output.show, output.print_json, output.print_table

local commands = {}

commands.subscription = function(args)
  local s = Session.open(args):call("billing.subscription")
  if args.json then return print_json(s) end
  output.print_fields(s, {"plan_id", "display_name", "status", "billing_cycle", "current_period_end",
                          "cancel_at_period_end"})
  local rows = {}
  for i, l in ipairs(admin.helpers.LIMITS) do
    rows[i] = {l[1], type(s.usage) == "table" and s.usage[l[3]], type(s.limits) == "table" and s.limits[l[2]]}
  end
  out("")
  print_table({"LIMIT", "USED", "OF"}, rows)
end

commands.plans = function(args)
  local v = Session.open(args, false):call("billing.plans")
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
  local q = Session.open(args):call("quota")
  if #args.limit > 0 then -- only the limits named, in display order
    local wanted, items = {}, {}
    for _, name in ipairs(args.limit) do wanted[name] = true end
    for _, item in ipairs(q.items) do
      if wanted[item.name] then items[#items + 1] = item end
    end
    q.items = items
  end
  if args.json then
    print_json{plan_id = q.plan_id, status = q.status, current_period_end = q.current_period_end,
               limits = admin.array(q.items)}
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
      return failure.new("quota", ("quota above %s%%: %s"):format(show(args.fail_above), table.concat(over, ", ")))
    end
  end
end

return commands
