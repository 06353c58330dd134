-- The chaos harness: a few hundred mixed SDK calls through the fault proxy
-- (spec/support/fault_proxy.lua) in front of the emulator, then the
-- invariants, checked against what the emulator recorded.
--
--   local chaos = require "spec.support.chaos"
--   local report = chaos.run{seed = 1, calls = 200, proxy = p}
--   report.kinds.read = {calls = n, ok = n, errors = {network = n, ...}}
--   report.violations   -- a list of sentences; empty when every invariant held
--   chaos.summary(report) -- one line: the seed and each kind's success rate
--
-- One seed gives the same calls and the same faults, attempt by attempt: the
-- harness draws both from its own generator (Park-Miller, the same on every
-- Lua) and hands the proxy each call's plan before the call. The kinds of call:
--   read              GETs (usage, settings, the key list, the user, the subscription)
--   idempotent_write  tenant.update_settings and users.update_me, each with a value of its own
--   create            api_keys.create, a name of its own per call
--   ensure            api_keys:ensure, each name twice in a row
-- The invariants (report.violations names the call and what broke):
--   * every call returns a value or an SDK error (a raise is a violation), within
--     its deadline (the retry policy's max_elapsed plus one timeout, per request
--     the call is made of);
--   * no create reaches the server twice (one request in its log per name), and
--     none is applied twice;
--   * every acknowledged write was applied: a create once (a 201, and a live key
--     whose hash is that of the raw key returned), an idempotent write at least
--     once, and the last value the server holds is the last acknowledged one or
--     that of a later call that failed;
--   * ensure leaves at most one live key per name; a name whose ensure succeeded
--     has exactly one, whose secret the caller holds; an ensure that failed
--     names what it left on the server (`err.left`, the keys' ids), and that is
--     what the server holds, or says it could not tell (`err.left_unknown`);
--     the caller then revokes what was left, as the message says.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"

local M = {}

M.KINDS = {"read", "idempotent_write", "create", "ensure"}
M.WEIGHTS = {read = 40, idempotent_write = 25, create = 15, ensure = 20}
-- The chance that an attempt meets a fault: the first of a call more often
-- (about a quarter of calls meet one), retries less.
M.FAULT_CHANCE = {0.28, 0.15, 0.10}
-- Which fault, by weight.
M.FAULT_MIX = {
  {"reset_before", 15}, {"stall_before", 4}, {"reset_after", 25}, {"truncate", 20},
  {"garbage_status", 12}, {"garbage", 12}, {"stall_after", 4},
}
-- The requests one call's plan covers (ensure makes several).
local PLAN_LENGTH = 8

--- The client options of the run: quick retries, a short timeout.
function M.client_options(base_url)
  return {base_url = base_url, api_key = emu.seed.keys.all, timeout = 0.5, connect_timeout = 1,
          retry = {max_attempts = 3, base_delay = 0.01, max_delay = 0.05, max_elapsed = 5}}
end

-- Park-Miller: the same sequence on every Lua (exact in doubles).
local function generator(seed)
  local x = (seed * 7919 + 12345) % 2147483647
  if x == 0 then x = 1 end
  return function()
    x = x * 16807 % 2147483647
    return (x - 1) / 2147483646
  end
end

local function pick(random, weighted)
  local total = 0
  for _, w in ipairs(weighted) do total = total + w[2] end
  local r = random() * total
  for _, w in ipairs(weighted) do
    r = r - w[2]
    if r < 0 then return w[1] end
  end
  return weighted[#weighted][1]
end

local function plan_for(random)
  local plan = {}
  for i = 1, PLAN_LENGTH do
    local chance = M.FAULT_CHANCE[math.min(i, #M.FAULT_CHANCE)]
    plan[i] = random() < chance and pick(random, M.FAULT_MIX) or "pass"
  end
  return plan
end

local READS = {
  function(c) return c.usage:current() end,
  function(c) return c.tenant:settings() end,
  function(c) return c.api_keys:list() end,
  function(c) return c.users:me() end,
  function(c) return c.billing:subscription() end,
}

-- The requests a call of each kind is made of, at most: its deadline is that
-- many times (max_elapsed + timeout), plus a margin for a loaded machine.
local STEPS = {read = 1, idempotent_write = 1, create = 1, ensure = 10}
local MARGIN = 2

--- Runs one seed. opts: seed, calls, proxy (a started fault proxy),
-- client (options for admin.new; default M.client_options).
function M.run(opts)
  local seed, calls, proxy = opts.seed, opts.calls or 200, opts.proxy
  local random = generator(seed)
  emu.reset()
  emu.control("POST", "config", {rate_limit = false})
  proxy:clear()
  local copts = opts.client or M.client_options(proxy.url .. "/api/v2")
  local c = admin.new(copts)
  local policy = copts.retry or {}
  local per_request = (policy.max_elapsed or 30) + (copts.timeout or 30)

  local report = {seed = seed, kinds = {}, violations = {}, faults = 0, calls = {}}
  for _, k in ipairs(M.KINDS) do report.kinds[k] = {calls = 0, ok = 0, errors = {}} end
  local function violation(fmt, ...)
    report.violations[#report.violations + 1] = ("seed %d: " .. fmt):format(seed, ...)
  end

  local weighted = {}
  for _, k in ipairs(M.KINDS) do weighted[#weighted + 1] = {k, M.WEIGHTS[k]} end
  local secrets, ensures = {}, 0 -- ensure name -> the raw key the caller holds
  local ensured = {} -- the names ensure was called for

  for i = 1, calls do
    local kind = pick(random, weighted)
    local call = {i = i, kind = kind}
    local fn
    if kind == "read" then
      local which = math.floor(random() * #READS) + 1
      fn = function() return READS[which](c) end
    elseif kind == "idempotent_write" then
      if random() < 0.5 then
        call.op, call.value = "settings", ("+1%02d%07d"):format(seed % 100, i)
        fn = function() return c.tenant:update_settings{allowed_numbers = admin.array{call.value}} end
      else
        call.op, call.value = "me", ("chaos %d %d"):format(seed, i)
        fn = function() return c.users:update_me{full_name = call.value} end
      end
    elseif kind == "create" then
      call.name = ("chaos-%d-c%d"):format(seed, i)
      fn = function() return c.api_keys:create{name = call.name, scopes = admin.array{"usage:read"}} end
    else
      ensures = ensures + 1
      call.name = ("chaos-%d-e%d"):format(seed, math.floor((ensures + 1) / 2))
      fn = function() return c.api_keys:ensure{name = call.name, scopes = {"usage:read"}} end
    end
    call.plan = plan_for(random)
    proxy:plan(call.plan)
    local t0 = core.monotime()
    local ok, v, err = pcall(fn)
    call.elapsed = core.monotime() - t0
    local stats = report.kinds[kind]
    stats.calls = stats.calls + 1
    if not ok then
      violation("call %d (%s) raised: %s", i, kind, tostring(v))
      v = nil
    elseif v == nil and not admin.is_error(err) then
      violation("call %d (%s) failed without an SDK error: %s", i, kind, tostring(err))
    elseif v == nil then
      stats.errors[err.kind] = (stats.errors[err.kind] or 0) + 1
      call.err = err
    end
    local bound = STEPS[kind] * per_request + MARGIN
    if call.elapsed > bound then
      violation("call %d (%s) took %.1f s, past its deadline of %.1f s", i, kind, call.elapsed, bound)
    end
    call.ok = v ~= nil
    if kind == "create" and v ~= nil then call.raw_key = v.raw_key end
    if kind == "ensure" and v ~= nil then
      if v.created and type(v.raw_key) == "string" then
        secrets[call.name] = v.raw_key
      elseif not secrets[call.name] then
        call.ok = false -- a key the caller cannot use
        violation("call %d: ensure '%s' returned a live key whose secret the caller never got", i, call.name)
      end
    end
    if kind == "ensure" then
      ensured[call.name] = true
      if call.err then M.after_failed_ensure(call, secrets[call.name], violation) end
    end
    if call.ok then stats.ok = stats.ok + 1 end
    report.calls[i] = call
  end
  c:close()
  for _, entry in ipairs(proxy:log()) do
    if entry.fault ~= "pass" then report.faults = report.faults + 1 end
  end
  proxy:clear()
  M.check_server(report, secrets, ensured, violation)
  return report
end

local function live_keys(name)
  local out = {}
  for _, k in ipairs(emu.control("GET", "api-keys")) do
    if k.is_active and k.name == name then out[#out + 1] = k end
  end
  return out
end

-- A failed ensure must have said what it left on the server (`err.left`),
-- or that it could not tell (`err.left_unknown`, the message naming the key
-- to look for). Then the caller does as the message says, here without
-- faults: it revokes the keys of that name it holds no secret for, so that
-- the next ensure of the name starts clean.
function M.after_failed_ensure(call, held, violation)
  local keys = {}
  for _, k in ipairs(live_keys(call.name)) do
    if not (held and k.key_hash == core.sha256(held)) then keys[#keys + 1] = k end -- not an earlier call's
  end
  if not call.err.left_unknown then
    local said = {}
    for _, k in ipairs(type(call.err.left) == "table" and call.err.left or {}) do said[k.id] = true end
    for _, k in ipairs(keys) do
      if not said[k.id] then
        violation("call %d: ensure '%s' failed (%s) and left key %s on the server without saying so", call.i,
                  call.name, tostring(call.err), k.id)
      end
    end
  end
  if #keys > 0 then
    local direct = admin.new{base_url = emu.url, api_key = emu.seed.keys.all}
    for _, k in ipairs(keys) do assert(direct.api_keys:revoke(k.id)) end
    direct:close()
  end
end

local function decode(body)
  if type(body) ~= "string" or body == "" then return nil end
  local v = dkjson.decode(body)
  return type(v) == "table" and v or nil
end

-- The invariants against the emulator's request log and stored keys.
function M.check_server(report, secrets, ensured, violation)
  local sent, applied = {}, {} -- create name -> requests that reached the server, 201s
  local patched = {} -- idempotent write value -> 200s
  for _, r in ipairs(emu.requests()) do
    local body = decode(r.body)
    if r.method == "POST" and r.path == "/api/v2/api-keys" and body and body.name then
      sent[body.name] = (sent[body.name] or 0) + 1
      if r.status == 201 then applied[body.name] = (applied[body.name] or 0) + 1 end
    elseif r.method == "PATCH" and body and r.status == 200 then
      local value = r.path == "/api/v2/tenant/settings" and type(body.allowed_numbers) == "table"
                    and body.allowed_numbers[1] or r.path == "/api/v2/users/me" and body.full_name
      if value then patched[value] = (patched[value] or 0) + 1 end
    end
  end
  local live = {} -- name -> list of live stored keys
  for _, k in ipairs(emu.control("GET", "api-keys")) do
    if k.is_active then
      live[k.name] = live[k.name] or {}
      table.insert(live[k.name], k)
    end
  end

  local last_acked, later_failed = {}, {settings = {}, me = {}}
  for _, call in ipairs(report.calls) do
    if call.kind == "create" then
      local n, a = sent[call.name] or 0, applied[call.name] or 0
      if n > 1 then violation("call %d: create '%s' reached the server %d times", call.i, call.name, n) end
      if a > 1 then violation("call %d: create '%s' was applied %d times", call.i, call.name, a) end
      if call.ok then
        local keys = live[call.name] or {}
        if a ~= 1 then violation("call %d: acknowledged create '%s' applied %d times", call.i, call.name, a) end
        if #keys ~= 1 or keys[1].key_hash ~= core.sha256(call.raw_key or "") then
          violation("call %d: acknowledged create '%s' has no live key with the secret returned", call.i, call.name)
        end
      end
    elseif call.kind == "idempotent_write" then
      if call.ok then
        if not patched[call.value] then
          violation("call %d: acknowledged %s write '%s' is not in the server's log", call.i, call.op, call.value)
        end
        last_acked[call.op] = call.value
        later_failed[call.op] = {}
      else
        table.insert(later_failed[call.op], call.value)
      end
    end
  end

  -- the values the server ends with
  local direct = admin.new{base_url = emu.url, api_key = emu.seed.keys.all}
  local settings = assert(direct.tenant:settings())
  local me = assert(direct.users:me())
  direct:close()
  local final = {settings = settings.allowed_numbers[1], me = me.full_name}
  for op, want in pairs(last_acked) do
    local fine = final[op] == want
    for _, v in ipairs(later_failed[op]) do fine = fine or final[op] == v end
    if not fine then
      violation("the server holds %s '%s', not the last acknowledged '%s' nor a later attempt", op,
                tostring(final[op]), want)
    end
  end

  for name in pairs(ensured) do
    local keys = live[name] or {}
    if #keys > 1 then violation("ensure '%s' left %d live keys", name, #keys) end
    if secrets[name] and (#keys ~= 1 or keys[1].key_hash ~= core.sha256(secrets[name])) then
      violation("ensure '%s': the caller holds a secret, but no live key has it", name)
    end
  end
end

--- Adds a run's counts to a total (for several seeds).
function M.add(total, report)
  total.faults = (total.faults or 0) + report.faults
  total.kinds = total.kinds or {}
  total.violations = total.violations or {}
  for _, k in ipairs(M.KINDS) do
    local t = total.kinds[k] or {calls = 0, ok = 0, errors = {}}
    total.kinds[k] = t
    local r = report.kinds[k]
    t.calls, t.ok = t.calls + r.calls, t.ok + r.ok
    for e, n in pairs(r.errors) do t.errors[e] = (t.errors[e] or 0) + n end
  end
  for _, v in ipairs(report.violations) do total.violations[#total.violations + 1] = v end
  return total
end

function M.rate(stats)
  return stats.calls > 0 and stats.ok / stats.calls or 1
end

--- One line per run: each kind's successes and rate, the faults injected.
function M.summary(report, label)
  local parts = {}
  for _, k in ipairs(M.KINDS) do
    local s = report.kinds[k]
    local errs = {}
    for e, n in pairs(s.errors) do errs[#errs + 1] = e .. "=" .. n end
    table.sort(errs)
    parts[#parts + 1] = ("%s %d/%d (%.1f %%%s)"):format(k, s.ok, s.calls, 100 * M.rate(s),
                                                         #errs > 0 and "; " .. table.concat(errs, " ") or "")
  end
  return ("%s: %s; %d faults, %d violations"):format(label or ("seed " .. tostring(report.seed)),
                                                     table.concat(parts, ", "), report.faults, #report.violations)
end

return M
