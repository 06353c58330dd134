--- moltflow.async.handle: calls started without waiting (`c:spawn`) and
-- their handles: `h.done`, `h:result()`, `h:on_done(fn)`, `h:cancel()`.
-- @module moltflow.async.handle

local loops = require "moltflow.async.loop"
local runner = require "moltflow.async.runner"

local unpack = table.unpack or unpack
local co_create, co_status = coroutine.create, coroutine.status
local pack = table.pack or function(...) return {n = select("#", ...), ...} end
local DONE = runner.DONE

local Handle = {}
Handle.__index = Handle
Handle.__name = "moltflow.handle"

local M = {Handle = Handle}

--- Whether the call has finished (also a field: `h.done`).
function Handle:is_done() return self.done end

--- The call's results (`value, res` or `nil, err`); raises while it runs.
function Handle:result()
  local task = self._task
  if not task.done then error("moltflow.handle:result(): the call has not finished; poll first", 2) end
  return unpack(task.results, 1, task.results.n)
end

--- Calls `fn(value, res)` (or `fn(nil, err)`) when the call finishes, at
-- once when it already has.
function Handle:on_done(fn)
  if type(fn) ~= "function" then error("moltflow.handle:on_done: expected a function", 2) end
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
    error("moltflow.handle:cancel(): a call cannot cancel itself", 2)
  end
  if not runner.cancel_runner(task.loop, task) then runner.retire(task, runner.canceled()) end
end


--- Starts `f(args...)` on `loop` without waiting: its request is on the
-- wire when this returns. A Lua error in it is raised by the loop's next
-- poll, as for its later steps.
-- @return the handle
function M.spawn(loop, f, args)
  local task = {co = co_create(function(...) return DONE, pack(f(...)) end), args = args}
  local h = setmetatable({done = false, _task = task}, Handle)
  function task.settle(results)
    h.done = true
    if h._on_done then h._on_done(unpack(results, 1, results.n)) end
  end
  runner.add_runner(loop, task, true)
  -- started at once, so a chain of calls costs no poll per hop
  local ok, err = pcall(runner.start, loop, task)
  if not ok then loop.pending_error = err end
  -- and on the wire: one turn of libcurl (a watching host gets a timer of 0 instead)
  if loop.watching then loop:flush() elseif loop:running() > 0 then loops.drive(loop, 0) end
  return h
end

return M
