-- Issue 24, finding 4: the loop userdata stays alive while it runs Lua (the
-- host's watch functions, finalisers at its allocations), as a client does
-- during its calls: a host callback that finalises the loop and closes its
-- last client cannot free the loop under loop:flush. Its metatable, and the
-- other core classes', are protected (__metatable). The use after free this
-- guards against is only seen by ASan: `make check-sanitize` runs this file.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"

describe("the loop's lifetime", function()
  it("protects the metatables of the core's classes", function()
    local lp = core.loop_new()
    local c = core.new{base_url = emu.start(), api_key = "k"}
    for _, object in ipairs{lp, c} do
      local mt = getmetatable(object)
      assert.is_not_table(mt)
      assert.has_error(function() setmetatable(object, {}) end)
    end
    c:close()
  end)

  it("survives a socket callback that finalises the loop and closes its last client", function()
    local loop = admin.new_loop()
    local c = emu.client{retry = false, loop = loop}
    local lp = loop._core
    local finalise = debug.getmetatable(lp).__gc -- what getmetatable no longer hands out
    local told = 0
    loop:watch{
      socket = function()
        told = told + 1
        if told > 1 then return end
        finalise(lp) -- the loop's own reference goes...
        c:close()    -- ...and the last client's: nothing else holds the C loop
        collectgarbage()
      end,
      timer = function() end,
    }
    local ok, err = pcall(function()
      c:spawn("usage.current")
      -- drive it until libcurl asks for a socket, which flush tells the host
      for _ = 1, 50 do
        if told > 0 then break end
        loop:action()
      end
    end)
    assert.is_true(told > 0, "no socket was told: " .. tostring(err))
    -- the loop is closed once the callback returned, not under it
    assert.equal("moltflow.loop (closed)", tostring(lp))
    assert.has_error(function() lp:running() end, "moltflow: the loop is closed")
    assert.is_true(ok or tostring(err):find("closed", 1, true) ~= nil, tostring(err))
  end)
end)
