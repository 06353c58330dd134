--- moltflow.helpers: convenience functions for the everyday admin jobs.
-- Plain functions of a client (or of its endpoint group); the client's
-- method tables reference them, so they are called as `c:quota()`,
-- `c:will_exceed{...}`, `c.api_keys:find{...}`, `c.api_keys:ensure{...}`,
-- `c.usage:daily_rows{...}`, and `admin.to_csv` is `helpers.to_csv`.
-- Like every SDK method they raise on bad arguments before any I/O and
-- return `nil, err` (an error table) when the server or the network fails.
-- @module moltflow.helpers

local core = require "moltflow.core"
local errors = require "moltflow.errors"

local helpers = {}

--- The plan limits `c:quota()` reports, in display order: `{name, limit
-- field, usage field}` with the field names of the subscription's `limits`
-- and `usage` tables.
helpers.LIMITS = {
  {"sessions", "max_sessions", "sessions"},
  {"messages", "max_messages_per_month", "messages_this_month"},
  {"groups", "max_groups", "groups"},
  {"labels", "max_labels", "labels"},
  {"ai_replies", "ai_replies_per_month", "ai_replies_this_month"},
}

--- The columns of `c.usage:daily_rows()`, in CSV order.
helpers.DAILY_COLUMNS = {"date", "messages_sent", "messages_received", "total_messages", "api_calls"}

local function fail(fn, msg)
  error(errors.message(fn, msg), 3)
end

local function check_table(fn, args, optional)
  if args == nil and optional then return {} end
  if type(args) ~= "table" then fail(fn, "expected a table of arguments") end
  return args
end

local function check_known(fn, args, known)
  for k in pairs(args) do
    if not known[k] then fail(fn, ("unknown field '%s'"):format(tostring(k))) end
  end
end

local function is_count(v)
  return type(v) == "number" and v >= 0 and v == math.floor(v) and v < 2 ^ 53
end

local function round2(x)
  return math.floor(x * 100 + 0.5) / 100
end

local function number_or_nil(v)
  if type(v) == "number" then return v end
  return nil
end

-- One limit: used, limit, remaining, percent. A missing (or null) limit
-- means unlimited: limit, remaining and percent are nil.
local function measure(name, limit_field, usage_field, limits, usage)
  local used = number_or_nil(usage[usage_field]) or 0
  local limit = number_or_nil(limits[limit_field])
  local item = {name = name, used = used, limit = limit, limit_field = limit_field,
                usage_field = usage_field}
  if limit then
    item.remaining = math.max(0, limit - used)
    if limit > 0 then
      item.percent = round2(used * 100 / limit)
    else
      item.percent = used > 0 and 100 or 0 -- a zero limit is only "used" once something was used
    end
  end
  return item
end

-- Whether `v` is an object of the class named `name` (a client,
-- "moltflow.client", or an endpoint group, "moltflow.api_keys"...).
local function is_a(v, name)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__name") == name
end

--- The plan's limits and how much of each is used, from one
-- `GET /billing/subscription`.
-- syntax: `q, res = c:quota()`
-- @function Client:quota
-- @return a quota table: `q.sessions`, `q.messages`, `q.groups`,
--   `q.labels`, `q.ai_replies`, each `{name, used, limit, remaining,
--   percent, limit_field, usage_field}` (`limit`, `remaining` and `percent`
--   are nil for an unlimited limit; `percent` has two decimals), `q.items`
--   (the same tables in display order), `q.plan_id`, `q.status`,
--   `q.current_period_end` and `q.subscription` (the raw answer); and the
--   response table
-- @return[2] nil and an error table when the call fails
function helpers.quota(self)
  if not is_a(self, "moltflow.client") then fail("quota", "call it with ':' (c:quota())") end
  local sub, res = self.billing:subscription()
  if sub == nil then return nil, res end
  local limits = type(sub.limits) == "table" and sub.limits or {}
  local usage = type(sub.usage) == "table" and sub.usage or {}
  local q = {plan_id = sub.plan_id, status = sub.status, current_period_end = sub.current_period_end,
             subscription = sub, items = {}}
  for i, l in ipairs(helpers.LIMITS) do
    local item = measure(l[1], l[2], l[3], limits, usage)
    q[l[1]] = item
    q.items[i] = item
  end
  return q, res
end

local QUOTA_NAMES = {}
for _, l in ipairs(helpers.LIMITS) do QUOTA_NAMES[l[1]] = true end

--- Whether planned usage would pass a plan limit: call it before a campaign.
-- syntax: `exceeds, detail = c:will_exceed{messages = 2000}`
-- @function Client:will_exceed
-- @tparam table plan how much more of each limit you intend to use:
--   any of `messages`, `sessions`, `groups`, `labels`, `ai_replies`
--   (non-negative integers; at least one)
-- @return `true` when some planned amount is above what remains, else `false`
-- @return detail: `detail.exceeded` (names of the limits passed, in display
--   order), `detail.quota` (as from `c:quota()`) and, per planned limit,
--   `detail.messages = {requested, used, limit, remaining, short_by, exceeds}`
--   (`short_by` = requested - remaining, at least 0; an unlimited limit never
--   exceeds)
-- @return[2] nil and an error table when the subscription cannot be read
-- @raise on a missing or malformed plan, before any I/O
function helpers.will_exceed(self, plan)
  if not is_a(self, "moltflow.client") then fail("will_exceed", "call it with ':' (c:will_exceed{...})") end
  check_table("will_exceed", plan)
  local any = false
  for k, v in pairs(plan) do
    if not QUOTA_NAMES[k] then fail("will_exceed", ("unknown field '%s'"):format(tostring(k))) end
    if not is_count(v) then
      fail("will_exceed", ("field '%s' must be a non-negative integer"):format(k))
    end
    any = true
  end
  if not any then fail("will_exceed", "name at least one of messages, sessions, groups, labels, ai_replies") end
  local q, res = self:quota()
  if q == nil then return nil, res end
  local detail = {quota = q, exceeded = {}}
  for _, item in ipairs(q.items) do
    local requested = plan[item.name]
    if requested then
      local check = {requested = requested, used = item.used, limit = item.limit,
                     remaining = item.remaining, short_by = 0, exceeds = false}
      if item.remaining then
        check.short_by = math.max(0, requested - item.remaining)
        check.exceeds = check.short_by > 0
      end
      detail[item.name] = check
      if check.exceeds then detail.exceeded[#detail.exceeded + 1] = item.name end
    end
  end
  return #detail.exceeded > 0, detail
end

local function find_by_name(g, name)
  local list, res = g:list()
  if list == nil then return nil, res end
  local inactive
  for _, key in ipairs(list) do
    if key.name == name then
      if key.is_active ~= false then return key, res end
      inactive = inactive or key
    end
  end
  return inactive or false, res
end

local function check_name(fn, args)
  if type(args.name) ~= "string" or args.name == "" then
    fail(fn, "field 'name' must be a non-empty string")
  end
end

--- The API key with a given name (one `GET /api-keys`).
-- syntax: `key, res = c.api_keys:find{name = "client-acme"}`
-- @function api_keys:find
-- @tparam table args `name` (string, required)
-- @return the key object (an active one first, else an inactive one with
--   that name; never a `raw_key`), or `false` when no key has that name; and
--   the response table
-- @return[2] nil and an error table when the list cannot be read
-- @raise on a missing name, before any I/O
function helpers.find_key(g, args)
  if not is_a(g, "moltflow.api_keys") then fail("api_keys.find", "call it with ':' (c.api_keys:find{...})") end
  check_table("api_keys.find", args)
  check_known("api_keys.find", args, {name = true})
  check_name("api_keys.find", args)
  return find_by_name(g, args.name)
end

-- The failures after which nobody knows whether the server created the
-- key: an answer lost (network, timeout; not a connection that never
-- opened), or a server error (5xx) that may come after it acted.
local function outcome_unknown(err)
  if err.kind == "network" or err.kind == "timeout" then return not err.connect_failed end
  return type(err.status) == "number" and err.status >= 500
end

local function left_behind(err, left, text)
  err.left = left
  err.message = ("%s; api_keys.ensure: %s"):format(tostring(err.message), text)
  return nil, err
end

-- Creates the key. When the answer is lost, lists the keys by name: a key
-- of that name that appeared is the orphan of that create (its secret never
-- reached the caller), so it is revoked and the key created again, up to
-- three creates. Returns the created key and its response, or nil and the
-- last error with `err.left`: the keys of that name this call leaves live
-- on the server without their secret (empty when none), or
-- `err.left_unknown = true` when the keys could not be listed.
local ENSURE_CREATES = 3
local function create_reconciled(g, name, body)
  for round = 1, ENSURE_CREATES do
    local created, err = g:create(body)
    if created ~= nil then return created, err end
    if not outcome_unknown(err) then -- refused: nothing was created
      err.left = {}
      return nil, err
    end
    local key, lerr = find_by_name(g, name)
    if key == nil then
      err.left_unknown = true
      return left_behind(err, nil, ("the key may have been created with its secret lost, and the keys could "
                                    .. "not be listed (%s): find the key named '%s' and revoke it")
                                   :format(tostring(lerr and lerr.message), name))
    end
    if key and key.is_active ~= false then
      local gone, rerr = g:revoke(key.id)
      if gone == nil and rerr.status ~= 404 then -- 404: already revoked
        return left_behind(err, {key}, ("key %s was created but its secret was lost, and revoking it failed "
                                         .. "(%s): revoke it (c.api_keys:revoke)")
                                        :format(tostring(key.id), tostring(rerr.message)))
      end
    end
    if round == ENSURE_CREATES then
      return left_behind(err, {}, ("no key created after %d tries; none is left on the server"):format(round))
    end
  end
end

--- Creates an API key unless an active key with that name exists already.
-- A raw key is never shown twice: an existing key comes back without
-- `raw_key`.
-- syntax: `key, res = c.api_keys:ensure{name = "client-acme", scopes = {"usage:read"}, expires_in_days = 90}`
-- @function api_keys:ensure
-- @tparam table args `name` (string, required), `scopes` (non-empty list of
--   strings, required), `expires_in_days` (positive integer, optional)
-- @return the key object with `created = true` and its one-time `raw_key`
--   when it was created now; or the existing key with `created = false`, no
--   `raw_key`, and `scopes_differ = true` when its scopes are not the ones
--   asked for; and the response table
-- @return[2] nil and an error table when listing or creating fails, with
--   `err.left`: the keys of that name the call leaves live on the server
--   without their secret (`{}` when none), or `err.left_unknown = true` when
--   it could not tell (the message names the key to look for). A create whose
--   answer was lost is reconciled: the keys are listed by name, the orphan
--   (created, its secret lost) revoked and the key created again, up to three
--   creates (docs/tokens-and-retries.md, "Creates whose answer was lost").
-- @raise on bad arguments, before any I/O
function helpers.ensure_key(g, args)
  if not is_a(g, "moltflow.api_keys") then fail("api_keys.ensure", "call it with ':' (c.api_keys:ensure{...})") end
  check_table("api_keys.ensure", args)
  check_known("api_keys.ensure", args, {name = true, scopes = true, expires_in_days = true})
  check_name("api_keys.ensure", args)
  if type(args.scopes) ~= "table" or #args.scopes == 0 then
    fail("api_keys.ensure", "field 'scopes' must be a non-empty list of strings")
  end
  local wanted = {}
  for i, s in ipairs(args.scopes) do
    if type(s) ~= "string" then fail("api_keys.ensure", ("field 'scopes[%d]' must be a string"):format(i)) end
    wanted[s] = true
  end
  local days = args.expires_in_days
  if days ~= nil and (not is_count(days) or days < 1) then
    fail("api_keys.ensure", "field 'expires_in_days' must be a positive integer")
  end
  local key, res = find_by_name(g, args.name)
  if key == nil then
    res.left = {} -- nothing created
    return nil, res
  end
  if key and key.is_active ~= false then
    key.raw_key = nil
    key.created = false
    local have, differ = {}, false
    for _, s in ipairs(type(key.scopes) == "table" and key.scopes or {}) do
      have[s] = true
      if not wanted[s] then differ = true end
    end
    for s in pairs(wanted) do if not have[s] then differ = true end end
    if differ then key.scopes_differ = true end
    return key, res
  end
  local scopes = core.json_array({})
  for i, s in ipairs(args.scopes) do scopes[i] = s end
  local created, cres = create_reconciled(g, args.name, {name = args.name, scopes = scopes, expires_in_days = days})
  if created == nil then return nil, cres end
  created.created = true
  return created, cres
end

--- Daily usage as flat rows, ready for CSV (`admin.to_csv(rows)`).
-- syntax: `rows, res = c.usage:daily_rows{days = 7}` or `c.usage:daily_rows{month = true}`
-- @function usage:daily_rows
-- @tparam[opt] table args `days` (1-31, the server's default 30 when
--   absent) or `month = true` (every day of the current month, by the
--   server's calendar: the month of the last day it reports)
-- @return rows, oldest first: `{date, messages_sent, messages_received,
--   total_messages, api_calls}` each (columns in `helpers.DAILY_COLUMNS`);
--   and the response table
-- @return[2] nil and an error table when the call fails
-- @raise on bad arguments, before any I/O
function helpers.daily_rows(g, args)
  if not is_a(g, "moltflow.usage") then fail("usage.daily_rows", "call it with ':' (c.usage:daily_rows{...})") end
  args = check_table("usage.daily_rows", args, true)
  check_known("usage.daily_rows", args, {days = true, month = true})
  if args.month ~= nil and type(args.month) ~= "boolean" then
    fail("usage.daily_rows", "field 'month' must be a boolean")
  end
  if args.days ~= nil and (not is_count(args.days) or args.days < 1 or args.days > 31) then
    fail("usage.daily_rows", "field 'days' must be an integer from 1 to 31")
  end
  if args.month and args.days then fail("usage.daily_rows", "give 'days' or 'month', not both") end
  local days = args.days
  if args.month then days = 31 end
  local v, res = g:daily(days and {days = days} or nil)
  if v == nil then return nil, res end
  local list = type(v.days) == "table" and v.days or {}
  local month = args.month and #list > 0 and tostring(list[#list].date):sub(1, 7)
  local rows = core.json_array({})
  for _, d in ipairs(list) do
    if not month or tostring(d.date):sub(1, 7) == month then
      local sent = number_or_nil(d.messages_sent) or 0
      local received = number_or_nil(d.messages_received) or 0
      rows[#rows + 1] = {date = d.date, messages_sent = sent, messages_received = received,
                         total_messages = sent + received, api_calls = number_or_nil(d.api_calls) or 0}
    end
  end
  return rows, res
end

local function csv_field(v)
  if v == nil or v == core.null then return "" end
  if type(v) == "number" and v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
    v = ("%d"):format(v)
  end
  v = tostring(v)
  if v:find('[",\r\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

--- Renders rows as CSV (RFC 4180: a header line, CRLF-free `\n` line ends,
-- fields with commas, quotes or newlines quoted).
-- syntax: `text = admin.to_csv(rows, columns)`
-- @function helpers.to_csv (also admin.to_csv)
-- @tparam table rows a list of tables
-- @tparam[opt] table columns the column names, in order (default
--   `helpers.DAILY_COLUMNS`)
-- @treturn string the CSV text, ending with a newline
-- @raise when rows or columns are not lists
function helpers.to_csv(rows, columns)
  if type(rows) ~= "table" then error("moltflow.to_csv: 'rows' must be a list of tables", 2) end
  columns = columns or helpers.DAILY_COLUMNS
  if type(columns) ~= "table" or #columns == 0 then
    error("moltflow.to_csv: 'columns' must be a non-empty list of names", 2)
  end
  local out = {}
  local line = {}
  for i, name in ipairs(columns) do line[i] = csv_field(name) end
  out[1] = table.concat(line, ",")
  for r, row in ipairs(rows) do
    if type(row) ~= "table" then error(("moltflow.to_csv: row %d is not a table"):format(r), 2) end
    for i, name in ipairs(columns) do line[i] = csv_field(row[name]) end
    out[#out + 1] = table.concat(line, ",")
  end
  return table.concat(out, "\n") .. "\n"
end

return helpers
