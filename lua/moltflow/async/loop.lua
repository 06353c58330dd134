--- moltflow.async.loop: the scheduler under every call that does not block.
-- A loop runs coroutines (runners) whose SDK calls suspend instead of
-- blocking, over one core loop (a curl multi handle) or, for a batch's
-- scheduler, over the loops its waiters' requests run on.
--
-- Waking is by key: a request in flight is registered, by its `req:key()`,
-- in its loop's table of waiters; a poll of that loop (or a host's
-- `loop:action`) wakes exactly the waiters whose requests finished,
-- whichever scheduler (a batch's, a loop's) they belong to.
--
-- I/O goes through a client's transport link (`link.core`, `link.loop`):
-- the task I/O here suspends its coroutine until the loop wakes it.
-- @module moltflow.async.loop

local core = require "moltflow.core"
local errors = require "moltflow.errors"

local unpack = table.unpack or unpack
local co_resume, co_yield = coroutine.resume, coroutine.yield
local co_status = coroutine.status
local monotime = core.monotime
local M = {}

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

-- The results of a canceled call.
local function canceled()
  return pack(nil, errors.call("canceled", "the call was canceled"))
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
  if any and lp.watching and lp.qhead <= lp.qtail then lp:after_blocking() end
  return any
end

-- The end of a request's wait: its result, or the error of a canceled call.
local function finish_request(link, req, signal)
  local cc = link.core
  if signal == CLOSED or cc:is_closed() then
    return nil, errors.call("closed", "the client was closed during the call", req)
  end
  if signal == CANCELED then
    cc:cancel(req)
    error(CANCELED, 0)
  end
  return cc:finish(req)
end

-- The I/O of calls that run on a loop: the loop does the waiting.
local task_io = {}
function task_io.send(link, req)
  local cc = link.core
  local key, err = cc:start(req)
  if not key then return nil, err end
  local signal = co_yield(WAIT_IO, link, key)
  -- (resume files it under the link's loop)
  if signal == nil and not cc:is_closed() then return cc:finish(req) end
  return finish_request(link, req, signal)
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
M.Loop = Loop
M.new = new_loop

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


-- The runner has ended; a spawned call's handle gets its results.
local function retire(r, results)
  r.done = true
  local loop = r.loop
  loop.live = loop.live - 1
  loop.runners[r] = nil
  task_ios[r.co] = nil
  local settle = r.settle -- a spawned call's handle
  if settle then
    r.results = results
    settle(results)
  end
end

-- Resumes a runner once and files it by what it yielded; a Lua error in it
-- is raised from here.
local function resume(loop, r, ...)
  local ok, a, b, c = co_resume(r.co, ...)
  if not ok then
    if a == CANCELED then return retire(r, canceled()) end
    local msg = debug.traceback(r.co, tostring(a))
    retire(r, pack(nil, errors.call("error", tostring(a))))
    error(msg, 0)
  end
  if a == WAIT_IO then
    local lp = b.loop
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
  self:flush()
  return self.live
end

------------------------------------------------- event-driven (watch)

-- Tells the host what changed (sockets, the timer) when it watches.
function Loop:flush()
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
  self:flush()
end

-- After a blocking call drove the loop: transfers that finished meanwhile
-- wait in its queue, so the host is asked for an action at once.
function Loop:after_blocking()
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
  self:flush()
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


--- Registers a host coroutine's waiter for the request of `key`.
function Loop:add_waiter(key, w) self.waits[key] = w end

--- Drops that waiter, unless another took its place.
function Loop:drop_waiter(key, w)
  if self.waits[key] == w then self.waits[key] = nil end
end

--- The core loop under it (nil for a batch's scheduler).
function Loop:core_loop() return self._core end

--- Wakes the waiters of a link's requests: its client was closed, its
-- transfers are gone.
function Loop:link_closed(link)
  local waits = self.waits
  for key, w in pairs(waits) do
    if w.wclient == link then
      waits[key] = nil
      wake(w, CLOSED)
    end
  end
end

--- The async I/O of a coroutine this module runs calls on, or nil.
function M.task_io(co) return task_ios[co] end

M.DONE, M.CANCELED = DONE, CANCELED
M.drive, M.finish_request = drive, finish_request
M.add_runner, M.start, M.retire, M.cancel_runner, M.canceled = add_runner, start, retire, cancel_runner, canceled
return M
