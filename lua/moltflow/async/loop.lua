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
-- The runners themselves (their coroutines, their I/O) are
-- moltflow.async.runner's.
-- @module moltflow.async.loop

local core = require "moltflow.core"
local runner = require "moltflow.async.runner"

local co_status = coroutine.status
local monotime = core.monotime
local wake, enqueue, resume, start = runner.wake, runner.enqueue, runner.resume, runner.start
local M = {}

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
  if self.live == 0 and self._core and next(self.waits) ~= nil then drive(self, 0) end -- host coroutines'
  self:flush()
  return self.live
end


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
    error("moltflow.loop:watch: expected {socket = function(fd, what), timer = function(ms)}", 2)
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

--- libcurl's part of an action: no Lua callback of a call runs (a host
-- adapter that must not run Lua callbacks in its context calls this, then
-- `loop:dispatch()` later; `loop:action` is both).
function Loop:transfer(fd, what)
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

--- Runs the calls whose wait ended: their callbacks run here.
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
    error("moltflow.loop:action: expected (fd, \"in\"|\"out\"|\"inout\") or no argument", 2)
  end
  self:transfer(fd, what)
  return self:dispatch()
end

--- Transfers in flight on the loop (spawned calls and others).
function Loop:running() return self._core:running() end

function Loop:cancel_all()
  local list = {}
  for r in pairs(self.runners) do list[#list + 1] = r end
  for _, r in ipairs(list) do
    if not r.done and co_status(r.co) == "suspended" then
      if not runner.cancel_runner(self, r) and not r.done then runner.retire(r, runner.canceled()) end
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
      wake(w, runner.CLOSED)
    end
  end
end

M.drive = drive
return M
