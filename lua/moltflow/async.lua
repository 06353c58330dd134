--- moltflow.async: many calls at once over libcurl multi, and calls that
-- never block a host loop. Loaded by `moltflow.admin`, which gets:
--
--   results = c:batch(calls, {concurrency = 8})   -- blocking, results in order
--   results = admin.batch(calls, opts)            -- calls on several clients
--   h = c:spawn(fn_or_"group.name", ...)          -- start without waiting
--   c:poll(timeout)                               -- drive; never blocks longer
--   admin.poll(timeout), loop:poll(timeout)       -- the same for a loop's (all its clients')
--   loop:watch{socket = fn, timer = fn}           -- event-driven: the host calls loop:action
--   c:set_scheduler(yield)                        -- yield inside a host coroutine
--
-- Every call runs the same `Client:_run` loop as a blocking call (refresh,
-- retries, pacing, hooks); only its I/O differs: `send` starts the request on
-- the client's curl multi handle and suspends until `poll` reports it done,
-- `sleep` suspends until a deadline. Calls run on a loop's coroutines: a
-- spawned call on one of its own, a batch on one worker per slot in flight
-- that takes the next call when its call ends. A call made from a coroutine
-- such a call itself created is not a task and blocks. Inside nginx `c:batch`
-- runs its calls on light threads over the cosocket transport.
--
-- Every client runs its transfers on a loop (`admin.loop()`, the Lua
-- state's default, unless given another): one curl multi handle under all
-- of them. The loop object is also the scheduler of the calls spawned on
-- its clients. Waking is by key: a request in flight is registered, by its
-- `req:key()`, in its loop's table of waiters; a poll of that loop (or a
-- host's `loop:action`) wakes exactly the waiters whose requests finished,
-- whichever scheduler (a batch's, a loop's) they belong to.
--
-- A call waiting for another call's token refresh waits on a condition
-- (`async.condition()`) that the refresh signals when it ends: a loop task
-- sleeps until it or its deadline, a blocking caller drives this client's
-- spawned calls meanwhile (`async.wait_blocking`).
-- @module moltflow.async

local core = require "moltflow.core"

local unpack = table.unpack or unpack
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_running, co_status, co_isyieldable = coroutine.running, coroutine.status, coroutine.isyieldable
local monotime = core.monotime
local async = {}

-- What a loop coroutine yields: WAIT_IO (loop, key), WAIT_SLEEP (deadline),
-- WAIT_COND (condition, deadline) or DONE (results) as its last word.
-- Anything else is a plain yield.
local WAIT_IO, WAIT_SLEEP, WAIT_COND, DONE = {}, {}, {}, {}
-- Resume signals: the call is canceled; its client was closed while it waited.
local CANCELED = setmetatable({}, {__tostring = function() return "moltflow: the call was canceled" end})
local CLOSED = {}
-- coroutine -> the async io, for the coroutines loops run calls on
local task_ios = setmetatable({}, {__mode = "k"})

local pack = table.pack or function(...) return {n = select("#", ...), ...} end

local admin -- set by async.extend

-- nginx phases where light threads and cosockets work
local NGX_THREAD_PHASES = {rewrite = true, access = true, content = true, timer = true}

local function call_error(kind, message, req)
  local method, path
  if req then method, path = req:info() end
  return admin.error{kind = kind, message = message, method = method, path = path}
end

-- The results of a canceled call.
local function canceled()
  return pack(nil, call_error("canceled", "the call was canceled"))
end

------------------------------------------------------------ conditions

-- A condition: signalled once (the end of a token refresh), it wakes
-- every waiter. Waiters are functions registered with `on_signal`.
local Condition = {}
Condition.__index = Condition

--- A new condition: `cond.signalled`, `cond:signal()`, `cond:on_signal(fn)`.
function async.condition()
  return setmetatable({signalled = false, waiters = {}}, Condition)
end

function Condition:on_signal(fn)
  local w = self.waiters
  w[#w + 1] = fn
end

function Condition:signal()
  self.signalled = true
  local w = self.waiters
  self.waiters = {}
  for i = 1, #w do w[i]() end
end

------------------------------------------------------------ per loop

-- A loop's requests in flight that someone waits for (`loop.waits`): key ->
-- waiter. Weak values: a waiter collected with its coroutine (and request)
-- drops out.

-- A waiter's wait is over: loop waiters join their loop's ready queue.
local function wake(w, signal)
  if w.ready then return end
  w.ready, w.signal, w.wloop = true, signal, nil
  local loop = w.loop
  if loop then
    local tail = loop.qtail + 1
    loop.qtail = tail
    loop.queue[tail] = w
  end
end

local keys_scratch = {} -- cc:poll fills it; read before any other Lua code runs

-- Wakes the waiters of the keys[1..n] that finished on `lp`.
local function wake_keys(lp, keys, n)
  local waits = lp.waits
  for i = 1, n do
    local key = keys[i]
    local w = waits[key]
    if w then
      waits[key] = nil
      wake(w)
    end
  end
  return n > 0
end

-- Drives a loop's transfers for at most `timeout` seconds and wakes the
-- waiters of the requests that finished. Returns whether any finished.
local function drive(lp, timeout)
  local keys, n = lp._core:poll(timeout, keys_scratch)
  local any = wake_keys(lp, keys, n)
  -- calls of a watched loop woken by another driver (a batch): the host's
  -- next action runs them
  if any and lp.watching and lp.qhead <= lp.qtail then lp:_after_blocking() end
  return any
end

--- Wakes the waiters of a client's requests: the client was closed, its
-- transfers are gone.
function async.client_closed(client)
  local lp = client._loop
  if not lp then return end
  for key, w in pairs(lp.waits) do
    if w.wclient == client then
      lp.waits[key] = nil
      wake(w, CLOSED)
    end
  end
end

-- The end of a request's wait: its result, or the error of a canceled call.
local function finish_request(client, req, signal)
  local cc = client._core
  if signal == CLOSED or cc:is_closed() then
    return nil, call_error("closed", "the client was closed during the call", req)
  end
  if signal == CANCELED then
    cc:cancel(req)
    error(CANCELED, 0)
  end
  return cc:finish(req)
end

-- The I/O of calls that run on a loop: the loop does the waiting.
local task_io = {}
function task_io.send(client, req)
  local cc = client._core
  local key, err = cc:start(req)
  if not key then return nil, err end
  local signal = co_yield(WAIT_IO, client, key)
  -- (resume files it under the client's loop)
  if signal == nil and not cc:is_closed() then return cc:finish(req) end
  return finish_request(client, req, signal)
end
function task_io.sleep(seconds)
  if co_yield(WAIT_SLEEP, monotime() + seconds) == CANCELED then error(CANCELED, 0) end
end
-- Suspends until `cond` is signalled or `deadline`; returns whether signalled.
function task_io.wait(_, cond, deadline)
  if cond.signalled then return true end
  if co_yield(WAIT_COND, cond, deadline) == CANCELED then error(CANCELED, 0) end
  return cond.signalled
end

-- The I/O of a host coroutine: `yield(what)` until the wait is over.
local function host_io(yield)
  local io = {}
  function io.send(client, req)
    local cc = client._core
    local key, err = cc:start(req)
    if not key then return nil, err end
    local lp = client._loop
    local waits = lp.waits
    local w = {ready = false, wclient = client}
    waits[key] = w
    lp:_flush()
    local what = {kind = "io"}
    while true do
      if not lp.watching then drive(lp, 0) end
      if w.ready or cc:is_closed() then break end
      yield(what)
    end
    if waits[key] == w then waits[key] = nil end
    return finish_request(client, req, w.signal)
  end
  function io.sleep(seconds)
    local deadline = monotime() + seconds
    local what = {kind = "sleep", deadline = deadline}
    while monotime() < deadline do yield(what) end
  end
  -- The host resumes it when it likes: "io" (check again soon), as for a request.
  function io.wait(client, cond, deadline)
    local what = {kind = "io"}
    while not cond.signalled and monotime() < deadline do
      if not client._loop.watching then drive(client._loop, 0) end
      yield(what)
    end
    return cond.signalled
  end
  return io
end

------------------------------------------------------------------ loops

-- A loop runs coroutines (runners) whose SDK calls suspend instead of
-- blocking. A runner is either waiting for a request (registered with its
-- client), sleeping or yielded by itself (in `idle`), queued to run (in
-- `queue`), or running.
local Loop = {}
Loop.__index = Loop

-- `lp_core`: a core loop (core.loop_new) makes a loop object that clients
-- run on; a batch's scheduler has none and drives its waiters' loops.
local function new_loop(lp_core)
  return setmetatable({
    _core = lp_core,
    waits = lp_core and setmetatable({}, {__mode = "v"}), -- key -> waiter, of this loop's transfers
    queue = {}, qhead = 1, qtail = 0, -- runners to resume, in order
    idle = {},                        -- sleeping (r.deadline) or plain-yielded (r.plain = tick)
    loops = {}, watched = {},         -- the loops to drive (while they have waiters)
    live = 0, runners = {},           -- unfinished runners
    tick = 0,
  }, Loop)
end
async.Loop = Loop

local function enqueue(loop, r)
  local tail = loop.qtail + 1
  loop.qtail = tail
  loop.queue[tail] = r
end

-- `now`: the caller starts it at once, so it is not queued.
local function add_runner(loop, r, now)
  r.loop, r.ready, r.started = loop, not now, false
  loop.live = loop.live + 1
  loop.runners[r] = true
  task_ios[r.co] = task_io
  if not now then enqueue(loop, r) end
  return r
end

local Handle = {}
Handle.__index = Handle
Handle.__name = "moltflow.handle"

-- The runner has ended; a spawned call's handle gets its results.
local function retire(r, results)
  r.done = true
  local loop = r.loop
  loop.live = loop.live - 1
  loop.runners[r] = nil
  task_ios[r.co] = nil
  local h = r.handle
  if h then
    r.results = results
    h.done = true
    if h._on_done then h._on_done(unpack(results, 1, results.n)) end
  end
end

-- Resumes a runner once and files it by what it yielded; a Lua error in it
-- is raised from here.
local function resume(loop, r, ...)
  local ok, a, b, c = co_resume(r.co, ...)
  if not ok then
    if a == CANCELED then return retire(r, canceled()) end
    local msg = debug.traceback(r.co, tostring(a))
    retire(r, pack(nil, call_error("error", tostring(a))))
    error(msg, 0)
  end
  if a == WAIT_IO then
    local lp = b._loop
    lp.waits[c] = r
    r.wclient, r.wloop, r.wkey = b, lp, c
    if not loop.watched[lp] then
      loop.watched[lp] = true
      loop.loops[#loop.loops + 1] = lp
    end
  elseif a == DONE then
    retire(r, b)
  elseif a == WAIT_COND then
    -- a sleep until the deadline that the signal cuts short
    r.deadline = c
    b:on_signal(function()
      if r.deadline == c then r.deadline = 0 end
    end)
    loop.idle[#loop.idle + 1] = r
  else
    if a == WAIT_SLEEP then r.deadline = b else r.plain = loop.tick end
    loop.idle[#loop.idle + 1] = r
  end
end

local function start(loop, r)
  r.started = true
  if r.batch then return resume(loop, r, r.batch) end
  return resume(loop, r, unpack(r.args, 1, r.args.n))
end

-- Queues the sleepers whose time has come and the plain yielders of an
-- earlier tick.
function Loop:wake_idle()
  local idle = self.idle
  local n = #idle
  if n == 0 then return end
  local now, kept = nil, 0
  for i = 1, n do
    local r = idle[i]
    idle[i] = nil
    local due = false
    if r.deadline then
      now = now or monotime()
      due = now >= r.deadline
    elseif r.plain then
      due = r.plain ~= self.tick
    end
    if due then
      r.deadline, r.plain, r.ready = nil, nil, true
      enqueue(self, r)
    elseif (r.deadline or r.plain) and not r.done then
      kept = kept + 1
      idle[kept] = r
    end
  end
end

-- Resumes every runner that can go on, in the order they became ready.
function Loop:run_ready()
  if self.idle[1] then self:wake_idle() end
  local queue = self.queue
  while self.qhead <= self.qtail do -- runners may queue others while we walk
    local i = self.qhead
    local r = queue[i]
    queue[i] = nil
    self.qhead = i + 1
    if r.ready and not r.done then
      r.ready = false
      if r.started then
        local signal = r.signal
        r.signal = nil
        resume(self, r, signal)
      else
        start(self, r)
      end
    end
  end
  self.qhead, self.qtail = 1, 0
end

-- Waits for the network or a sleeper for at most `wait` seconds.
function Loop:drive(wait)
  if self.qhead <= self.qtail then wait = 0 end -- woken meanwhile (another loop polled)
  local idle, wake_at = self.idle, nil
  for i = 1, #idle do
    local r = idle[i]
    if r.deadline then
      if not wake_at or r.deadline < wake_at then wake_at = r.deadline end
    elseif r.plain and r.plain ~= self.tick then
      wait = 0
    end
  end
  if wake_at then wait = math.max(0, math.min(wait, wake_at - monotime())) end
  local loops, watched = self.loops, self.watched
  local count = 0
  for i = 1, #loops do -- drop the loops nobody waits on (any scheduler's waiters may be woken)
    local lp = loops[i]
    loops[i] = nil
    if next(lp.waits) ~= nil then
      count = count + 1
      loops[count] = lp
    else
      watched[lp] = nil
    end
  end
  if count == 0 and self._core and self._core:running() > 0 then
    -- host coroutines' requests on this loop: drive them too
    return drive(self, wait)
  end
  if count == 1 then return drive(loops[1], wait) end
  local any = false
  for i = 1, count do any = drive(loops[i], 0) or any end
  if any or count == 0 then
    if not any and wait > 0 then core.sleep(wait) end
    return any
  end
  -- several loops (clients given loops of their own): wait on them in turn
  self.turn = (self.turn or 0) % count + 1
  return drive(loops[self.turn], math.min(wait, 0.005))
end

--- Runs the runners for at most `timeout` seconds: returns as soon as all
-- are done (or `cond`, when given, is signalled), and never later than the
-- timeout (plus the time to run Lua code).
-- @return the number of runners still running
function Loop:poll(timeout, cond)
  local failed = self.pending_error
  if failed then
    self.pending_error = nil
    error(failed, 0)
  end
  self.tick = self.tick + 1
  self.polling = true
  local deadline = monotime() + (timeout or 0)
  while true do
    self:run_ready()
    if self.live == 0 or (cond and cond.signalled) then break end
    local left = deadline - monotime()
    self:drive(left > 0 and left or 0)
    if monotime() >= deadline then
      self:run_ready()
      break
    end
  end
  self.polling = false
  if self.live == 0 and self._core and next(self.waits) ~= nil then drive(self, 0) end -- host coroutines'
  self:_flush()
  return self.live
end

------------------------------------------------- event-driven (watch)

-- Tells the host what changed (sockets, the timer) when it watches.
function Loop:_flush()
  if self.watching then
    self._core:flush()
    self:_retime()
  end
end

-- The host's timer: libcurl's next timeout or the first sleeper's wake-up,
-- whichever comes first; -1 when neither.
function Loop:_retime()
  local due = self.curl_due
  for i = 1, #self.idle do
    local d = self.idle[i].deadline
    if d and (not due or d < due) then due = d end
  end
  -- (a one-shot host timer is set again each time: the same ms later is a later time)
  if not due and self.timer_ms == -1 then return end
  local ms = due and math.max(0, math.ceil((due - monotime()) * 1000)) or -1
  self.timer_ms = ms
  self.watch_timer(ms)
end

--- Event-driven integration: the host watches the sockets and the timer the
-- loop asks for, and calls `loop:action` when one is ready.
-- syntax: `loop:watch{socket = function(fd, what) end, timer = function(ms) end}`
-- (`what`: "in", "out", "inout" or "remove"; `ms`: the next timeout, -1
-- cancels it); `loop:watch(nil)` goes back to polling.
function Loop:watch(fns)
  if fns == nil then
    self._core:watch()
    self.watching, self.watch_timer, self.curl_due, self.timer_ms = false, nil, nil, nil
    return
  end
  if type(fns) ~= "table" or type(fns.socket) ~= "function" or type(fns.timer) ~= "function" then
    error("moltflow: loop:watch: expected {socket = function(fd, what), timer = function(ms)}", 2)
  end
  self.watching, self.watch_timer, self.timer_ms = true, fns.timer, nil
  self._core:watch(fns.socket, function(ms)
    self.curl_due = ms >= 0 and monotime() + ms / 1000 or nil
    self:_retime()
  end)
  self:_flush()
end

-- After a blocking call drove the loop: transfers that finished meanwhile
-- wait in its queue, so the host is asked for an action at once.
function Loop:_after_blocking()
  self._core:flush()
  self.curl_due = monotime()
  self:_retime()
end

-- libcurl's part of an action: no Lua callback of a call runs.
function Loop:_io(fd, what)
  if fd == nil then
    -- libcurl's timer is one-shot: fired, it is consumed (libcurl sets
    -- another through the callback if it wants one; a stale one would
    -- make the host fire at once, again and again)
    self.curl_due = nil
    self._core:action()
  else
    self._core:action(fd, what)
  end
  self._core:flush()
end

-- Runs the calls whose wait ended: their callbacks run here.
function Loop:dispatch()
  local failed = self.pending_error
  if failed then
    self.pending_error = nil
    error(failed, 0)
  end
  self.tick = self.tick + 1
  local keys, n = self._core:collect(keys_scratch)
  wake_keys(self, keys, n)
  repeat
    self:run_ready()
    self:wake_idle()
  until self.qhead > self.qtail
  self:_flush()
  return self.live
end

--- The host's call when a watched socket is ready (`loop:action(fd, what)`)
-- or the timer fired (`loop:action()`); runs the calls that can go on.
-- @return the number of calls still running
function Loop:action(fd, what)
  if fd ~= nil and (type(fd) ~= "number" or (what ~= "in" and what ~= "out" and what ~= "inout")) then
    error("moltflow: loop:action: expected (fd, \"in\"|\"out\"|\"inout\") or no argument", 2)
  end
  self:_io(fd, what)
  return self:dispatch()
end

--- Transfers in flight on the loop (spawned calls and others).
function Loop:running() return self._core:running() end

--- Blocks until `cond` is signalled or `deadline` (monotonic): drives the
-- client's spawned calls meanwhile (the one `cond` waits for may be among
-- them). Returns whether it was signalled.
function async.wait_blocking(client, cond, deadline)
  while not cond.signalled do
    local left = deadline - monotime()
    if left <= 0 then break end
    local loop = client._loop
    if loop.live > 0 and not loop.polling then
      local ok, err = pcall(loop.poll, loop, left, cond)
      if not ok then loop.polling = false error(err, 0) end
    else
      -- nothing this thread can run would signal it: wait out the deadline
      core.sleep(left)
    end
  end
  return cond.signalled
end

-- Stops a runner that has not ended: a waiting one is resumed with CANCELED
-- (its request is aborted), one that never ran or yielded by itself is
-- dropped. Returns whether it was resumed.
local function cancel_runner(loop, r)
  if r.wloop then
    local waits = r.wloop.waits
    if waits[r.wkey] == r then waits[r.wkey] = nil end
    r.wclient, r.wloop = nil, nil
  end
  if not r.started or r.plain then
    r.ready, r.plain = false, nil
    return false
  end
  r.ready, r.deadline, r.signal = false, nil, nil
  resume(loop, r, CANCELED)
  return true
end

function Loop:cancel_all()
  local list = {}
  for r in pairs(self.runners) do list[#list + 1] = r end
  for _, r in ipairs(list) do
    if not r.done and co_status(r.co) == "suspended" then
      if not cancel_runner(self, r) and not r.done then retire(r, canceled()) end
    end
  end
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
  local status = co_status(task.co)
  if status == "running" or status == "normal" then
    error("moltflow: handle:cancel(): a call cannot cancel itself", 2)
  end
  if not cancel_runner(task.loop, task) then retire(task, canceled()) end
end

---------------------------------------------------------------- calls

-- "group.name" -> group and name, for the labels that named a method
local label_groups, label_names = {}, {}

local function where_of(where, index)
  if index then return ("%s: call %d"):format(where, index) end
  return where
end

-- A call of a batch or spawn: a function (returned alone), or a table call
-- as its group table, method name and where its arguments are in `call`
-- (first + 1 .. n). `index` is the call's place in a batch (for messages).
local function resolve(call, default, where, index)
  local kind = type(call)
  if kind == "function" then return call, false, 0, 0 end
  if kind ~= "table" then
    error(("moltflow: %s: expected a function or a table"):format(where_of(where, index)), 4)
  end
  local client, first = default, 1
  if getmetatable(call[1]) == admin.Client then client, first = call[1], 2 end
  local label = call[first]
  if not client then
    error(("moltflow: %s: a table call needs a client first: {c, \"group.name\", ...}")
          :format(where_of(where, index)), 4)
  end
  local group, name = label_groups[label], label_names[label] -- (keys are strings)
  local known = group ~= nil
  if not known then
    if type(label) ~= "string" then
      error(("moltflow: %s: expected \"group.name\" at [%d]"):format(where_of(where, index), first), 4)
    end
    group, name = label:match("^([%w_]+)%.([%w_]+)$")
  end
  local g = group and rawget(client, group)
  if not g or type(g[name]) ~= "function" then
    error(("moltflow: %s: unknown method '%s'"):format(where_of(where, index), label), 4)
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
  if type(opts) ~= "table" then error(("moltflow: %s: 'opts' must be a table"):format(where), 3) end
  local n = opts.concurrency
  if n == nil then return 8 end
  if type(n) ~= "number" or n < 1 or n ~= math.floor(n) then
    error(("moltflow: %s: field 'concurrency' must be an integer >= 1"):format(where), 3)
  end
  return n
end

-- Inside nginx: light threads over the cosocket transport, never curl multi.
local function run_on_ngx_threads(b, concurrency)
  local function thread()
    while b.next <= b.count do
      local i = b.next
      b.next = i + 1
      b.results[i] = run_call(b, i)
    end
  end
  local threads = {}
  for w = 1, math.min(concurrency, b.count) do threads[w] = ngx.thread.spawn(thread) end
  local failure
  for w = 1, #threads do
    local ok, err = ngx.thread.wait(threads[w])
    if not ok and not failure then
      failure = err
      b.next = b.count + 1 -- start no more calls
    end
  end
  if failure then error(failure, 0) end
  return b.results
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

local function run_batch(calls, opts, default, where)
  if type(calls) ~= "table" then error(("moltflow: %s: 'calls' must be a list"):format(where), 3) end
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
  if ngx and ngx.thread and ngx.get_phase and NGX_THREAD_PHASES[ngx.get_phase()] then
    return run_on_ngx_threads(b, concurrency)
  end
  local loop = new_loop()
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

------------------------------------------------------------- installing

--- Adds the async methods to `admin.Client` and `admin.batch`.
function async.extend(a)
  admin = a
  local Client = a.Client

  -- Inside a loop's coroutine every client does async I/O; inside a host
  -- coroutine a client with a scheduler yields to it; elsewhere the I/O
  -- registered for the coroutine in `c._coio`, or the client's transport.
  function Client:_current_io()
    local co, is_main = co_running()
    if not co then return self._io end -- LuaJIT's main thread
    if not is_main then
      local io = task_ios[co]
      if io then return io end
      if self._host_io and (not co_isyieldable or co_isyieldable()) then return self._host_io end
    end
    return self._coio[co] or self._io
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
    local f, args
    if type(fn) == "function" then
      f, args = fn, pack(...)
    elseif type(fn) == "string" then
      local call = pack(self, fn, ...)
      local g, name, first, n = resolve(call, self, "spawn")
      f = function() return g[name](g, unpack(call, first + 1, n)) end
      args = {n = 0}
    else
      error("moltflow: spawn: expected a function or \"group.name\"", 2)
    end
    local loop = self._loop
    local task = {co = co_create(function(...) return DONE, pack(f(...)) end), args = args}
    task.handle = setmetatable({done = false, _task = task}, Handle)
    add_runner(loop, task, true)
    -- started at once (its request is on the wire when spawn returns), so
    -- a chain of calls costs no poll per hop; a Lua error in it is raised
    -- by the next poll, as for the later steps
    local ok, err = pcall(start, loop, task)
    if not ok then loop.pending_error = err end
    -- and on the wire: one turn of libcurl (a watching host gets a timer of 0 instead)
    if loop.watching then loop:_flush() elseif loop._core:running() > 0 then drive(loop, 0) end
    return task.handle
  end

  --- Drives the calls spawned on this client's loop (its own and those of
  -- the loop's other clients): resumes those whose I/O finished,
  -- then waits for the network at most `timeout` seconds (default 0) and
  -- returns as soon as no call is left. A Lua error in a call is raised here.
  -- @return the number of calls still running
  function Client:poll(timeout)
    if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
      error("moltflow: poll: 'timeout' must be a number of seconds", 2)
    end
    return self._loop:poll(math.max(0, timeout or 0))
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
    self._host_io = yield and host_io(yield)
  end
end

--- A loop object over a core loop (core.loop_new): `admin.new_loop`.
function async.new_loop(lp_core) return new_loop(lp_core) end

async.CANCELED = CANCELED
return async
