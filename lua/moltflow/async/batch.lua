--- moltflow.async.batch: many calls at once (`c:batch`, `admin.batch`) and
-- the table calls (`{c, "group.name", args...}`) of a batch or a spawn.
-- A batch runs one worker per slot in flight on a scheduler of its own;
-- each worker takes the next call when its call ends. Where the host has
-- light threads of its own (nginx), the batch runs on them instead.
-- @module moltflow.async.batch

local loops = require "moltflow.async.loop"
local runner = require "moltflow.async.runner"

local unpack = table.unpack or unpack
local co_create = coroutine.create
local pack = table.pack or function(...) return {n = select("#", ...), ...} end
local DONE, add_runner = runner.DONE, runner.add_runner

local M = {}

-- "group.name" -> group and name, for the labels that named a method
local label_groups, label_names = {}, {}

local function where_of(where, index)
  if index then return ("%s: call %d"):format(where, index) end
  return where
end

-- A call of a batch or spawn: a function (returned alone), or a table call
-- as its group table, method name and where its arguments are in `call`
-- (first + 1 .. n). `index` is the call's place in a batch (for messages).
local function is_client(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__name") == "moltflow.client"
end

local function resolve(call, default, where, index)
  local kind = type(call)
  if kind == "function" then return call, false, 0, 0 end
  if kind ~= "table" then
    error(("moltflow.%s: expected a function or a table"):format(where_of(where, index)), 4)
  end
  local client, first = default, 1
  if is_client(call[1]) then client, first = call[1], 2 end
  local label = call[first]
  if not client then
    error(("moltflow.%s: a table call needs a client first: {c, \"group.name\", ...}")
          :format(where_of(where, index)), 4)
  end
  local group, name = label_groups[label], label_names[label] -- (keys are strings)
  local known = group ~= nil
  if not known then
    if type(label) ~= "string" then
      error(("moltflow.%s: expected \"group.name\" at [%d]"):format(where_of(where, index), first), 4)
    end
    group, name = label:match("^([%w_]+)%.([%w_]+)$")
  end
  local g = group and client[group] -- a client makes its groups on first use
  if type(g) ~= "table" or type(g[name]) ~= "function" then
    error(("moltflow.%s: unknown method '%s'"):format(where_of(where, index), label), 4)
  end
  if not known then label_groups[label], label_names[label] = group, name end
  return g, name, first, call.n or #call
end

-- Runs call i of batch b; returns its results, packed.
local function run_call(b, i)
  local target, name = b.targets[i], b.names[i]
  if not name then return pack(target()) end
  local first, n = b.firsts[i], b.counts[i]
  if first < n then return pack(target[name](target, unpack(b.calls[i], first + 1, n))) end
  return pack(target[name](target))
end

-- A batch worker: runs the batch's next call until none is left.
local function worker(b)
  local results = b.results
  while true do
    local i = b.next
    if i > b.count then return DONE end
    b.next = i + 1
    results[i] = run_call(b, i)
  end
end

local function check_concurrency(opts, where)
  if opts == nil then return 8 end
  if type(opts) ~= "table" then error(("moltflow.%s: 'opts' must be a table"):format(where), 3) end
  local n = opts.concurrency
  if n == nil then return 8 end
  if type(n) ~= "number" or n < 1 or n ~= math.floor(n) then
    error(("moltflow.%s: field 'concurrency' must be an integer >= 1"):format(where), 3)
  end
  return n
end

-- Runs a batch's loop until every worker has ended.
local function run_loop(loop)
  repeat
    loop.tick = loop.tick + 1
    loop:run_ready()
    if loop.live == 0 then return end
    loop:drive(1)
  until false
end

-- `threads(n, body, stop)`, when given, runs `body` on n light threads of
-- the host and returns true, or false where the host has none (see
-- the host part of the nginx transport).
local function run_batch(calls, opts, default, where, threads)
  if type(calls) ~= "table" then error(("moltflow.%s: 'calls' must be a list"):format(where), 3) end
  local concurrency = check_concurrency(opts, where)
  local count = #calls
  -- call i: targets[i] (a function, or a group table and names[i]), its
  -- arguments calls[i][firsts[i] + 1 .. counts[i]]
  local b = {next = 1, count = count, results = {},
             targets = {}, names = {}, calls = {}, firsts = {}, counts = {}}
  local targets, names, tables, firsts, counts = b.targets, b.names, b.calls, b.firsts, b.counts
  for i = 1, count do
    local call = calls[i]
    local target, name, first, n = resolve(call, default, where, i)
    targets[i], names[i], tables[i], firsts[i], counts[i] = target, name, call, first, n
  end
  if threads then
    local function thread()
      while b.next <= b.count do
        local i = b.next
        b.next = i + 1
        b.results[i] = run_call(b, i)
      end
    end
    local function stop() b.next = b.count + 1 end -- start no more calls
    if threads(math.min(concurrency, count), thread, stop) then return b.results end
  end
  local loop = loops.new()
  for _ = 1, math.min(concurrency, count) do
    add_runner(loop, {co = co_create(worker), batch = b})
  end
  local ok, err = pcall(run_loop, loop)
  if not ok then
    b.next = count + 1 -- start no more calls
    loop:cancel_all()
    error(err, 0)
  end
  return b.results
end

M.resolve, M.run = resolve, run_batch
return M
