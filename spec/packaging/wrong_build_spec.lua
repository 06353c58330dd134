-- A core built for one Lua loaded by another (the Lua 5.4 build from LuaJIT
-- or Neovim, say) fails at load time with the dynamic linker's own words
-- (`undefined symbol: lua_rotate`). The SDK says which Lua it was built for
-- and how to build the right one. `make test` builds every core first.
local proc = require "spec.support.process"

local root = assert(io.popen("pwd")):read("*l")

local function load_with(interpreter, build)
  return proc.run({interpreter, "-e", 'require "moltflow.admin"'}, {env = {
    LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;",
    LUA_CPATH = root .. "/build/" .. build .. "/?.so"}})
end

describe("a core built for another Lua", function()
  if not proc.reference_run then
    pending("runs every interpreter itself: once, in the Lua 5.4 pass")
    return
  end

  it("loaded by LuaJIT (or Neovim): names the build, the Lua running, and make LUA=luajit", function()
    local r = load_with("luajit", "5.4")
    assert.not_equal(0, r.code)
    assert.matches("build/5.4/moltflow/core.so was built for another Lua (5.4), and this is LuaJIT", r.stderr, 1, true)
    assert.matches("make LUA=luajit, which writes build/luajit/moltflow/core.so", r.stderr, 1, true)
    assert.matches("undefined symbol: lua", r.stderr, 1, true) -- the loader's own words are kept
  end)

  it("loaded by Lua 5.4: points at make LUA=lua5.4", function()
    local r = load_with("lua5.4", "luajit")
    assert.not_equal(0, r.code)
    assert.matches("build/luajit/moltflow/core.so was built for another Lua (luajit), and this is Lua 5.4",
      r.stderr, 1, true)
    assert.matches("make LUA=lua5.4, which writes build/5.4/moltflow/core.so", r.stderr, 1, true)
  end)

  it("loads the right build as before", function()
    local r = proc.run({"luajit", "-e", 'io.write(require "moltflow.admin".VERSION)'}, {env = {
      LUA_PATH = root .. "/lua/?.lua;;", LUA_CPATH = root .. "/build/luajit/?.so"}})
    assert.equal(0, r.code, r.stderr)
    assert.matches("^%d+%.%d+%.%d+$", r.stdout)
  end)
end)
