--- moltflow.async.runner: the coroutines a loop runs calls on (runners),
-- from start to end: what they yield while they wait (a request, a sleep,
-- a condition), how they are resumed, canceled and retired. Their I/O
-- (`task_io`) suspends the coroutine until its loop wakes it. A runner is a
-- record: `co`, and `args` (a spawned call) or `batch`, and `settle`
-- (function(results), a spawned call's handle).
-- @module moltflow.async.runner

local core = require "moltflow.core"
local errors = require "moltflow.errors"

local unpack = table.unpack or unpack
local co_resume, co_yield = coroutine.resume, coroutine.yield
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

--- The async I/O of a coroutine a loop runs calls on, or nil.
function M.task_io(co) return task_ios[co] end

M.DONE, M.CANCELED, M.CLOSED = DONE, CANCELED, CLOSED
M.wake, M.enqueue, M.finish_request = wake, enqueue, finish_request
M.add_runner, M.start, M.resume, M.retire, M.cancel_runner, M.canceled =
  add_runner, start, resume, retire, cancel_runner, canceled
return M
