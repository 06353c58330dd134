-- The one Lua-level difference between the supported VMs that the SDK meets:
-- Lua 5.1 cannot yield across pcall (5.2+ and LuaJIT can), and a refresh
-- guarded by pcall yields while it waits for its answer inside c:batch.
-- Everything else is written in the common subset (and C differences live
-- in src/compat.h).
local M = {}

local co_create, co_resume, co_status, co_yield = coroutine.create, coroutine.resume, coroutine.status, coroutine.yield

-- Known from the version rather than probed: a probe (a coroutine yielding
-- at load time) trips ngx_lua's coroutine wrappers under OpenResty.
if _VERSION ~= "Lua 5.1" or jit then
  M.pcall = pcall
else
  -- f runs in a coroutine of its own; its yields are passed on to the caller's
  -- coroutine and what that is resumed with is passed back in.
  local function step(co, ok, ...)
    if not ok then return false, ... end
    if co_status(co) == "dead" then return true, ... end
    return step(co, co_resume(co, co_yield(...)))
  end
  function M.pcall(f, ...)
    local co = co_create(f)
    return step(co, co_resume(co, ...))
  end
end

return M
