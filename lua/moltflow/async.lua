--- moltflow.async: many calls at once over libcurl multi, and calls that
-- never block a host loop. Loaded by `moltflow.admin`, which gets:
--
--   results = c:batch(calls, {concurrency = 8})   -- blocking, results in order
--   results = admin.batch(calls, opts)            -- calls on several clients
--   h = c:spawn(fn_or_"group.name", ...)          -- start without waiting
--   c:poll(timeout)                               -- drive; never blocks longer
--   c:set_scheduler(yield)                        -- yield inside a host coroutine
--
-- Every call runs the same `Client:_run` loop as a blocking call (refresh,
-- retries, pacing, hooks); only its I/O differs: `send` starts the request on
-- the client's curl multi handle and suspends until `poll` reports it done,
-- `sleep` suspends until a deadline. A task is a coroutine; a call made from
-- a coroutine the task itself created is not a task and blocks. Inside nginx
-- `c:batch` runs its calls on light threads over the cosocket transport.
-- @module moltflow.async

local core = require "moltflow.core"

local unpack = table.unpack or unpack
local async = {}

local WAIT = {}          -- yielded by a task: "resume me when this wait is over"
local CANCELED = setmetatable({}, {__tostring = function() return "moltflow: the call was canceled" end})
local tasks = setmetatable({}, {__mode = "k"}) -- coroutine -> task

local function pack(...) return {n = select("#", ...), ...} end

local admin -- set by async.extend

-- nginx phases where light threads and cosockets work
local NGX_THREAD_PHASES = {rewrite = true, access = true, content = true, timer = true}

------------------------------------------------------------ per client

-- Requests reported finished by cc:poll, by key, until their waiter finishes them.
local function finished(client)
  local done = client._async_done
  if not done then
    done = {}
    client._async_done = done
  end
  return done
end

-- Drives one client's transfers for at most `timeout` seconds.
local function drive(client, timeout)
  local cc = client._core
  if cc:is_closed() or cc:running() == 0 then return false end
  local keys = cc:poll(timeout)
  local done = finished(client)
  for i = 1, #keys do done[keys[i]] = true end
  return #keys > 0
end

-- w = {client = c, req = r, key = k} (a request) or {deadline = t} (a sleep)
local function ready(w)
  if w.deadline then return core.monotime() >= w.deadline end
  return finished(w.client)[w.key] or w.client._core:is_closed()
end

local function call_error(kind, message, req)
  local method, path
  if req then method, path = req:info() end
  return admin.error{kind = kind, message = message, method = method, path = path}
end

-- The async I/O over a wait function: `wait(w)` returns once `w` is over, or
-- returns CANCELED.
local function make_io(wait)
  local io = {}
  function io.send(client, req)
    local cc = client._core
    local ok, err = cc:start(req)
    if not ok then return nil, err end
    local key = req:key()
    local w = {client = client, req = req, key = key}
    local signal = wait(w)
    finished(client)[key] = nil
    if cc:is_closed() then return nil, call_error("closed", "the client was closed during the call", req) end
    if signal == CANCELED then
      cc:cancel(req)
      error(CANCELED, 0)
    end
    return cc:finish(req)
  end
  function io.sleep(seconds)
    if wait({deadline = core.monotime() + seconds}) == CANCELED then error(CANCELED, 0) end
  end
  return io
end

local task_io = make_io(function(w) return coroutine.yield(WAIT, w) end)

------------------------------------------------------------------ loops

-- A loop runs tasks: coroutines whose SDK calls suspend instead of blocking.
local Loop = {}
Loop.__index = Loop

local function new_loop()
  return setmetatable({tasks = {}, tick = 0}, Loop)
end

local Handle = {}
Handle.__index = Handle
Handle.__name = "moltflow.handle"

local function finish(task, results)
  task.done = true
  task.results = results
  tasks[task.co] = nil
  local h = task.handle
  h.done = true
  if h._on_done then h._on_done(unpack(results, 1, results.n)) end
end

-- Resumes a task once; a Lua error in it is raised from here.
local function step(task, signal)
  local ok, a, b
  if task.started then
    ok, a, b = coroutine.resume(task.co, signal)
  else
    task.started = true
    ok, a, b = coroutine.resume(task.co, unpack(task.args, 1, task.args.n))
  end
  task.wait, task.plain = nil, nil
  if not ok then
    if a == CANCELED then return finish(task, pack(nil, call_error("canceled", "the call was canceled"))) end
    local msg = debug.traceback(task.co, tostring(a))
    finish(task, pack(nil, call_error("error", tostring(a))))
    error(msg, 0)
  end
  if coroutine.status(task.co) == "dead" then return finish(task, a) end
  if a == WAIT then
    task.wait = b
  else
    task.plain = task.loop.tick -- the function yielded by itself: resume it next poll
  end
end

function Loop:add(fn, args)
  local task = {loop = self, args = args}
  task.co = coroutine.create(function(...) return pack(fn(...)) end)
  task.handle = setmetatable({done = false, _task = task}, Handle)
  tasks[task.co] = task
  self.tasks[#self.tasks + 1] = task
  return task
end

local function runnable(task, tick)
  if task.done then return false end
  if not task.started then return true end
  if task.plain then return task.plain ~= tick end
  return task.wait ~= nil and ready(task.wait)
end

-- Resumes every runnable task once; drops finished ones.
function Loop:resume_ready()
  local list, i = self.tasks, 1
  while i <= #list do -- callbacks may append tasks while we walk
    local task = list[i]
    if runnable(task, self.tick) then step(task) end
    i = i + 1
  end
  local kept = {}
  for _, task in ipairs(list) do
    if not task.done then kept[#kept + 1] = task end
  end
  self.tasks = kept
end

-- Waits for the network or a sleeper for at most `wait` seconds.
function Loop:drive(wait)
  local clients, seen, wake = {}, {}, nil
  for _, task in ipairs(self.tasks) do
    local w = task.wait
    if w and w.client and not seen[w.client] then
      seen[w.client] = true
      clients[#clients + 1] = w.client
    elseif w and w.deadline and (not wake or w.deadline < wake) then
      wake = w.deadline
    elseif not task.started or (task.plain and task.plain ~= self.tick) then
      wait = 0
    end
  end
  if wake then wait = math.max(0, math.min(wait, wake - core.monotime())) end
  if #clients == 1 then return drive(clients[1], wait) end
  local any = false
  for _, client in ipairs(clients) do any = drive(client, 0) or any end
  if any or #clients == 0 then
    if not any and wait > 0 then core.sleep(wait) end
    return any
  end
  -- several clients: one curl multi handle each, so wait on them in turn
  self.turn = (self.turn or 0) % #clients + 1
  return drive(clients[self.turn], math.min(wait, 0.005))
end

--- Runs the tasks for at most `timeout` seconds: returns as soon as all are
-- done, and never later than the timeout (plus the time to run Lua code).
-- @return the number of tasks still running
function Loop:poll(timeout)
  self.tick = self.tick + 1
  local deadline = core.monotime() + (timeout or 0)
  while true do
    self:resume_ready()
    if #self.tasks == 0 then return 0 end
    local left = deadline - core.monotime()
    self:drive(left > 0 and left or 0)
    if core.monotime() >= deadline then
      self:resume_ready()
      return #self.tasks
    end
  end
end

function Loop:cancel_all()
  for _, task in ipairs(self.tasks) do
    if not task.done then task.handle:cancel() end
  end
  self.tasks = {}
end

---------------------------------------------------------------- handles

--- Whether the call has finished (also a field: `h.done`).
function Handle:is_done() return self.done end

--- The call's results (`value, res` or `nil, err`); raises while it runs.
function Handle:result()
  local task = self._task
  if not task.done then error("moltflow: handle:result(): the call has not finished; poll first", 2) end
  return unpack(task.results, 1, task.results.n)
end

--- Calls `fn(value, res)` (or `fn(nil, err)`) when the call finishes, at
-- once when it already has.
function Handle:on_done(fn)
  if type(fn) ~= "function" then error("moltflow: handle:on_done: expected a function", 2) end
  self._on_done = fn
  if self.done then fn(self:result()) end
  return self
end

--- Cancels the call: its running request is aborted and it finishes with
-- `nil, err` (`err.kind == "canceled"`). No effect once it has finished.
function Handle:cancel()
  local task = self._task
  if task.done then return end
  local status = coroutine.status(task.co)
  if status == "running" or status == "normal" then
    error("moltflow: handle:cancel(): a call cannot cancel itself", 2)
  end
  if not task.started or task.plain then
    finish(task, pack(nil, call_error("canceled", "the call was canceled")))
  else
    step(task, CANCELED)
  end
end

---------------------------------------------------------------- calls

local function is_client(v)
  return getmetatable(v) == admin.Client
end

-- A call of a batch or spawn as a function and its arguments.
local function resolve(call, default, where)
  if type(call) == "function" then return call, {n = 0} end
  if type(call) ~= "table" then error(("moltflow: %s: expected a function or a table"):format(where), 4) end
  local client, first = default, 1
  if is_client(call[1]) then client, first = call[1], 2 end
  local label = call[first]
  if not client then error(("moltflow: %s: a table call needs a client first: {c, \"group.name\", ...}"):format(where), 4) end
  if type(label) ~= "string" then error(("moltflow: %s: expected \"group.name\" at [%d]"):format(where, first), 4) end
  local group, name = label:match("^([%w_]+)%.([%w_]+)$")
  local g = group and rawget(client, group)
  if not g or type(g[name]) ~= "function" then
    error(("moltflow: %s: unknown method '%s'"):format(where, label), 4)
  end
  local n = call.n or #call
  local args = {n = n - first}
  for i = first + 1, n do args[i - first] = call[i] end
  return function(...) return g[name](g, ...) end, args
end

local function check_concurrency(opts, where)
  if opts == nil then return 8 end
  if type(opts) ~= "table" then error(("moltflow: %s: 'opts' must be a table"):format(where), 3) end
  local n = opts.concurrency
  if n == nil then return 8 end
  if type(n) ~= "number" or n < 1 or n ~= math.floor(n) then
    error(("moltflow: %s: field 'concurrency' must be an integer >= 1"):format(where), 3)
  end
  return n
end

local function run_batch(calls, opts, default, where)
  if type(calls) ~= "table" then error(("moltflow: %s: 'calls' must be a list"):format(where), 3) end
  local concurrency = check_concurrency(opts, where)
  local jobs = {}
  for i = 1, #calls do
    local fn, args = resolve(calls[i], default, ("%s: call %d"):format(where, i))
    jobs[i] = {fn = fn, args = args}
  end
  local results, next_job = {}, 1
  if ngx and ngx.thread and ngx.get_phase and NGX_THREAD_PHASES[ngx.get_phase()] then
    -- inside nginx: light threads over the cosocket transport, never curl multi
    local function worker()
      while next_job <= #jobs do
        local i = next_job
        next_job = i + 1
        results[i] = pack(jobs[i].fn(unpack(jobs[i].args, 1, jobs[i].args.n)))
      end
    end
    local threads = {}
    for w = 1, math.min(concurrency, #jobs) do threads[w] = ngx.thread.spawn(worker) end
    local failure
    for w = 1, #threads do
      local ok, err = ngx.thread.wait(threads[w])
      if not ok and not failure then
        failure = err
        next_job = #jobs + 1 -- start no more calls
      end
    end
    if failure then error(failure, 0) end
    return results
  end
  local loop = new_loop()
  local function start_next()
    if next_job > #jobs then return end
    local i = next_job
    next_job = i + 1
    local task = loop:add(jobs[i].fn, jobs[i].args)
    task.handle._on_done = function(...)
      results[i] = pack(...)
      start_next()
    end
  end
  for _ = 1, math.min(concurrency, #jobs) do start_next() end
  local ok, err = pcall(function()
    while loop:poll(1) > 0 do end
  end)
  if not ok then
    loop:cancel_all()
    error(err, 0)
  end
  return results
end

------------------------------------------------------------- installing

--- Adds the async methods to `admin.Client` and `admin.batch`.
function async.extend(a)
  admin = a
  local Client = a.Client
  local base_current_io = Client._current_io

  -- Inside a task every client does async I/O; inside a host coroutine a
  -- client with a scheduler yields to it; elsewhere the client's transport.
  function Client:_current_io()
    local co, is_main = coroutine.running()
    if co and not is_main then
      if tasks[co] then return task_io end
      if self._host_io and (not coroutine.isyieldable or coroutine.isyieldable()) then
        return self._host_io
      end
    end
    return base_current_io(self)
  end

  --- Runs calls concurrently over libcurl multi and waits for all of them.
  -- syntax: `results = c:batch(calls, {concurrency = 8})`
  -- @param calls a list; each a function (`function() return c.usage:current() end`)
  --   or a table `{"group.name", args...}` (or `{other_client, "group.name", args...}`)
  -- @param opts `concurrency`: calls in flight at once (8)
  -- @return a list in the order of `calls`: `results[i] = {value, res}` or
  --   `{nil, err}` (with `n`, the count of values the call returned). A Lua error
  --   in a call cancels the others and is raised.
  function Client:batch(calls, opts)
    return run_batch(calls, opts, self, "batch")
  end

  --- `c:batch` for calls on several clients: table calls name their client,
  -- `{c, "usage.current"}`; functions may use any clients.
  function a.batch(calls, opts)
    return run_batch(calls, opts, nil, "admin.batch")
  end

  --- Starts a call without waiting; `c:poll()` drives it.
  -- syntax: `h = c:spawn(fn, ...)` or `h = c:spawn("usage.current", args...)`
  -- @return a handle: `h.done`, `h:result()`, `h:on_done(fn)`, `h:cancel()`
  function Client:spawn(fn, ...)
    local call
    if type(fn) == "string" then call = pack(self, fn, ...) elseif type(fn) == "function" then call = fn
    else error("moltflow: spawn: expected a function or \"group.name\"", 2) end
    local f, args = resolve(call, self, "spawn")
    if type(fn) == "function" then args = pack(...) end
    self._loop = self._loop or new_loop()
    return self._loop:add(f, args).handle
  end

  --- Drives this client's spawned calls: resumes those whose I/O finished,
  -- then waits for the network at most `timeout` seconds (default 0) and
  -- returns as soon as no call is left. A Lua error in a call is raised here.
  -- @return the number of calls still running
  function Client:poll(timeout)
    if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
      error("moltflow: poll: 'timeout' must be a number of seconds", 2)
    end
    local loop = self._loop
    if loop then return loop:poll(math.max(0, timeout or 0)) end
    drive(self, 0) -- host coroutines with a scheduler wait on this client too
    return 0
  end

  --- Makes calls made inside a host's own coroutines yield instead of block.
  -- While a call waits, it calls `yield(what)` (`what.kind` is "io" or "sleep",
  -- `what.deadline` the monotonic time a sleep ends) and checks again when the
  -- host resumes it. `c:set_scheduler(coroutine.yield)` suits most schedulers;
  -- nil turns it off. Calls from the main thread still block.
  function Client:set_scheduler(yield)
    if yield ~= nil and type(yield) ~= "function" then
      error("moltflow: set_scheduler: expected a function or nil", 2)
    end
    self._host_io = yield and make_io(function(w)
      local what = w.deadline and {kind = "sleep", deadline = w.deadline} or {kind = "io"}
      while true do
        if w.client then drive(w.client, 0) end
        if ready(w) then return end
        yield(what)
      end
    end)
  end
end

async.CANCELED = CANCELED
return async
