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

-- The running VM, as a build directory names it: build/5.4, build/luajit.
local function this_lua()
  if jit then return tostring(jit.version), "luajit" end
  local v = _VERSION:match("%d+%.%d+")
  return _VERSION, "lua" .. v
end

--- require "moltflow.core", saying which Lua to build it for when the loaded
-- file was built for another one: the dynamic linker's own message
-- (`undefined symbol: lua_rotate`) names neither. Entry modules call this
-- first; every later `require "moltflow.core"` gets the loaded module.
function M.require_core()
  local ok, core = pcall(require, "moltflow.core")
  if ok then return core end
  local message = tostring(core)
  if not message:find("undefined symbol: lua", 1, true) then error(core, 0) end
  local file = message:match("from file '([^']+)'") or "moltflow/core.so"
  local built = file:match("build/([%w.]+)/moltflow/core%.so$") or file:match("/lua/(5%.%d)/moltflow/core%.so$")
  local running, make_lua = this_lua()
  error(("moltflow: %s was built for another Lua%s, and this is %s; build the core for this one "
         .. "(make LUA=%s, which writes build/%s/moltflow/core.so, or make install LUA=%s) "
         .. "and put it on package.cpath. The loader said: %s")
    :format(file, built and (" (" .. built .. ")") or "", running, make_lua,
            make_lua == "luajit" and "luajit" or make_lua:sub(4), make_lua, message), 0)
end

return M
