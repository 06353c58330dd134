--- moltflow.loop.uv: runs a moltflow loop inside a libuv loop (lua-luv,
-- Neovim's `vim.loop`, luvit): the sockets and the timer libcurl asks for
-- become uv poll and timer handles, so nothing runs while nothing is in
-- flight and a call's answer is handled as soon as it arrives.
--
--   local detach = require("moltflow.loop.uv").attach(admin.loop(), vim.loop,
--                                                      {schedule = vim.schedule})
--
-- With `schedule` (a function that runs a function later, outside libuv's
-- fast context: `vim.schedule`), the calls' completion callbacks run there;
-- libcurl's own work still runs in the uv callbacks. The returned function
-- detaches: the loop goes back to `loop:poll`.
-- @module moltflow.loop.uv

local M = {}

local EVENTS = {["in"] = "r", out = "w", inout = "rw"}

--- Attaches `loop` to the uv loop of `uv`.
-- @param loop `admin.loop()` or `admin.new_loop()`
-- @param uv the luv module (`require "luv"`, `vim.loop`)
-- @param[opt] opts `schedule`: runs completion callbacks outside the fast context
-- @return a function that detaches
function M.attach(loop, uv, opts)
  if type(loop) ~= "table" or type(loop.watch) ~= "function" then
    error("moltflow.loop.uv.attach: 'loop' must be a loop (admin.loop())", 2)
  end
  if type(uv) ~= "table" or type(uv.new_timer) ~= "function" then
    error("moltflow.loop.uv.attach: 'uv' must be the luv module (require \"luv\", vim.loop)", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("moltflow.loop.uv.attach: 'opts' must be a table", 2) end
  local schedule = opts and opts.schedule
  if schedule ~= nil and type(schedule) ~= "function" then
    error("moltflow.loop.uv.attach: field 'schedule' must be a function", 2)
  end
  local new_poll = uv.new_socket_poll or uv.new_poll
  local polls, timer, attached, scheduled = {}, uv.new_timer(), true, false

  local function dispatch()
    scheduled = false
    if attached then loop:dispatch() end
  end
  -- libcurl's part at once (it also tells us about sockets), the calls'
  -- Lua callbacks now or, with `schedule`, outside the fast context
  local function act(fd, what)
    if not attached then return end
    loop:transfer(fd, what)
    if not schedule then
      loop:dispatch()
    elseif not scheduled then
      scheduled = true
      schedule(dispatch)
    end
  end

  local function close_poll(fd)
    local p = polls[fd]
    if not p then return end
    polls[fd] = nil
    p:stop()
    if not p:is_closing() then p:close() end
  end

  local function on_socket(fd, what)
    if what == "remove" then return close_poll(fd) end
    local p = polls[fd]
    if not p then
      p = new_poll(fd)
      polls[fd] = p
    end
    local ok = p:start(EVENTS[what], function(err, events)
      local ready = "inout" -- an error: libcurl finds out which
      if not err and events then
        local r, w = events:find("r", 1, true), events:find("w", 1, true)
        ready = r and w and "inout" or r and "in" or w and "out" or "inout"
      end
      act(fd, ready)
    end)
    if not ok then close_poll(fd) end -- libuv refused the descriptor: libcurl times out on it
  end

  local function on_timer(ms)
    if ms < 0 then
      timer:stop()
    else
      timer:start(ms, 0, function() act(nil) end)
    end
  end

  loop:watch{socket = on_socket, timer = on_timer}
  return function()
    if not attached then return end
    attached = false
    loop:watch(nil)
    for fd in pairs(polls) do close_poll(fd) end
    timer:stop()
    if not timer:is_closing() then timer:close() end
  end
end

return M
