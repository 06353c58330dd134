--- moltflow.cli.commands.usage: `usage current|history|daily` (daily: a bar
-- chart, or CSV).
-- @module moltflow.cli.commands.usage

local admin = require "moltflow.admin"
local config = require "moltflow.cli.config"
local failure = require "moltflow.cli.failure"
local output = require "moltflow.cli.output"
local Session = require "moltflow.cli.session"

local out, print_json = output.out, output.print_json

local commands = {}

commands["usage.current"] = function(args)
  local u = Session.open(args):call("usage.current")
  if args.json then return print_json(u) end
  output.print_fields(u, {"period", "messages_sent", "messages_received", "total_messages", "leads_detected",
                          "api_calls", "usage_percentage", "limit_messages"})
end

commands["usage.history"] = function(args)
  local v = Session.open(args):call("usage.history", {months = args.months})
  if args.json then return print_json(v) end
  local rows = {}
  for i, m in ipairs(v.months or {}) do
    rows[i] = {m.period, m.messages_sent, m.messages_received, m.total_messages, m.api_calls}
  end
  output.print_table({"PERIOD", "SENT", "RECEIVED", "TOTAL", "API CALLS"}, rows)
end

local function utf8_terminal()
  local lang = os.getenv("LC_ALL") or os.getenv("LC_CTYPE") or os.getenv("LANG") or ""
  return lang:upper():find("UTF%-?8") ~= nil
end

commands["usage.daily"] = function(args)
  local rows = Session.open(args):call("usage.daily_rows", {days = args.days})
  if args.json then return print_json(rows) end
  if args.output and not args.csv then
    return failure.new("usage", "usage daily: --output writes CSV: add --csv")
  end
  if args.csv then
    if args.output and args.output ~= "-" then
      config.write_output(args.output, admin.to_csv(rows))
      return
    end
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

return commands
