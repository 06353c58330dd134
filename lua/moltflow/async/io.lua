--- moltflow.async.io: the I/O of a call that must not block, and how a
-- call picks its I/O. Inside a loop's coroutine a call does task I/O
-- (moltflow.async.loop); inside a host's own coroutine, with a scheduler set
-- (`c:set_scheduler(yield)`), it yields to the host (`host_io`); elsewhere
-- it uses the I/O registered for its coroutine, or its client's transport.
-- Every I/O takes the client's transport link (`link.core`, `link.loop`).
-- @module moltflow.async.io

local core = require "moltflow.core"
local loops = require "moltflow.async.loop"
local runner = require "moltflow.async.runner"

local co_running, co_isyieldable = coroutine.running, coroutine.isyieldable
local monotime = core.monotime
local drive, finish_request = loops.drive, runner.finish_request

local M = {}

--- The I/O of a host coroutine: `yield(what)` until the wait is over.
-- @param yield the host's yield (`coroutine.yield` suits most)
function M.host_io(yield)
  local io = {}
  function io.send(link, req)
    local cc = link.core
    local key, err = cc:start(req)
    if not key then return nil, err end
    local lp = link.loop
    local w = {ready = false, wclient = link}
    lp:add_waiter(key, w)
    lp:flush()
    local what = {kind = "io"}
    while true do
      if not lp.watching then drive(lp, 0) end
      if w.ready or cc:is_closed() then break end
      yield(what)
    end
    lp:drop_waiter(key, w)
    return finish_request(link, req, w.signal)
  end
  function io.sleep(seconds)
    local deadline = monotime() + seconds
    local what = {kind = "sleep", deadline = deadline}
    while monotime() < deadline do yield(what) end
  end
  -- The host resumes it when it likes: "io" (check again soon), as for a request.
  function io.wait(link, cond, deadline)
    local what = {kind = "io"}
    while not cond.signalled and monotime() < deadline do
      if not link.loop.watching then drive(link.loop, 0) end
      yield(what)
    end
    return cond.signalled
  end
  return io
end

--- The I/O of the running coroutine: a loop task's, else the host
-- scheduler's (`host`, when given and the coroutine can yield), else the one
-- registered for it in `by_coroutine`, else `default`.
function M.current(default, host, by_coroutine)
  local co, is_main = co_running()
  if not co then return default end -- LuaJIT's main thread
  if not is_main then
    local io = runner.task_io(co)
    if io then return io end
    if host and (not co_isyieldable or co_isyieldable()) then return host end
  end
  return by_coroutine[co] or default
end

--- Blocks until `cond` is signalled or `deadline` (monotonic): drives the
-- loop's spawned calls meanwhile (the one `cond` waits for may be among
-- them), also when the caller is a completion callback that a poll or a
-- host's dispatch is running: the outer poll cannot go on until this
-- returns, so only this wait can finish the call it waits for. Returns
-- whether it was signalled.
function M.wait_blocking(loop, cond, deadline)
  while not cond.signalled do
    local left = deadline - monotime()
    if left <= 0 then break end
    if loop.live > 0 then
      loop:poll(left, cond)
    else
      -- nothing this thread can run would signal it: wait out the deadline
      core.sleep(left)
    end
  end
  return cond.signalled
end

return M
