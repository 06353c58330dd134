-- How the host-loop specs (luv, Neovim, LÖVE) let the SDK run inside a
-- libuv loop, in one place so the specs switch integrations with one edit.
--
-- Today the SDK exposes no socket or timer: a host polls each client's
-- `c:poll(0)` from a repeating uv timer (`poll_timer`). Once issue 13's
-- adapter exists (lua/moltflow/loop/uv.lua), `drivers` also holds
--   require("moltflow.loop.uv").attach(admin.loop(), uv [, {schedule = fn}])
-- (it returns the detach function, as `poll_timer` does), so every host spec
-- measures it next to the polling baseline without an edit.
local M = {}

--- poll_timer(uv, clients, interval_ms) -> detach()
-- A uv timer that polls every client every `interval_ms`.
function M.poll_timer(uv, clients, interval_ms)
  local timer = uv.new_timer()
  timer:start(interval_ms, interval_ms, function()
    for _, c in ipairs(clients) do c:poll(0) end
  end)
  return function()
    if not timer:is_closing() then
      timer:stop()
      timer:close()
    end
  end
end

--- The integrations each spec measures: {name, attach = function(uv,
-- clients, host_opts) -> detach}. host_opts: `schedule`, a function that runs
-- a callback later outside the host's fast context (Neovim: vim.schedule).
M.drivers = {
  {name = "c:poll from a 1 ms uv timer",
   attach = function(uv, clients) return M.poll_timer(uv, clients, 1) end},
  {name = "c:poll from a 16 ms uv timer",
   attach = function(uv, clients) return M.poll_timer(uv, clients, 16) end},
}
if pcall(require, "moltflow.loop.uv") then
  M.drivers[#M.drivers + 1] = {name = "moltflow.loop.uv on admin.loop()", attach = function(uv, _, host_opts)
    local admin = require "moltflow.admin"
    return require("moltflow.loop.uv").attach(admin.loop(), uv, host_opts)
  end}
end

--- run_until(uv, is_done) -> is_done()
-- Runs the uv loop until `is_done()` holds, checked after every event, or
-- for 10 s at most. The loop's clock is read first: libuv keeps the time of
-- its last iteration, which is stale when the loop has not run for a while
-- (busted loads every spec file before it runs one), and a timer started on a
-- stale clock fires that much early.
function M.run_until(uv, is_done)
  uv.update_time()
  local guard, expired = uv.new_timer(), false
  guard:start(10000, 0, function() expired = true end)
  while not is_done() and not expired do uv.run("once") end
  guard:close()
  uv.run("nowait") -- the guard's close
  return is_done()
end

--- CPU time (user + system) of this process in seconds, from luv's getrusage.
function M.cpu_seconds(uv)
  local r = uv.getrusage()
  return r.utime.sec + r.stime.sec + (r.utime.usec + r.stime.usec) / 1e6
end

--- target(label, value, limit, unit [, decimals]) -> a printable line:
-- "label: value unit (target < limit: met / NOT met)".
function M.target(label, value, limit, unit, decimals)
  return ("%s: %." .. (decimals or 1) .. "f %s (target < %s %s: %s)"):format(label, value, unit, tostring(limit),
                                                                          unit, value < limit and "met" or "NOT met")
end

return M
