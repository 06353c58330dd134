-- The SDK in headless Neovim (Debian neovim 0.7, LuaJIT, vim.loop), as a
-- plugin uses it: spec/support/nvim_host.lua starts calls from a vim.loop
-- timer and writes each result into a buffer through vim.schedule. Asserts
-- what the buffer holds and what the emulator saw; prints the chain's time
-- and whether completion callbacks run in the fast context.
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"
local driver = require "spec.support.host_driver"

local has_nvim = proc.sh("command -v nvim >/dev/null 2>&1")
local has_core = io.open(emu.root .. "/build/luajit/moltflow/core.so") ~= nil

local function report(line)
  io.stderr:write("\n  [nvim] ", line)
end

describe("the SDK in headless Neovim", function()
  if not has_nvim then
    pending("nvim is not installed (apt-get install neovim)")
    return
  end
  if not has_core then
    pending("build/luajit/moltflow/core.so is missing (make LUA=luajit)")
    return
  end

  for _, d in ipairs(driver.drivers) do
    it("chains calls from vim.loop and fills a buffer via vim.schedule, driven by " .. d.name, function()
      emu.reset()
      local dir = proc.tmpdir()
      local out = dir .. "/out.json"
      local r = proc.run({"timeout", "60", "nvim", "--headless", "--clean", "-u", "NONE", "-i", "NONE",
                          "-c", "luafile " .. emu.root .. "/spec/support/nvim_host.lua"},
                         {env = {MOLTFLOW_SPEC_ROOT = emu.root, MOLTFLOW_SPEC_URL = emu.url,
                                 MOLTFLOW_SPEC_KEY = emu.seed.keys.all, MOLTFLOW_SPEC_OUT = out,
                                 MOLTFLOW_SPEC_DRIVER = d.name, HOME = dir}})
      local result = dkjson.decode(proc.slurp(out))
      os.execute("rm -rf " .. proc.quote(dir))
      assert.is_table(result, "no result from nvim (exit " .. tostring(r.code) .. "): " .. r.stderr .. r.stdout)
      assert.is_nil(result.error)
      local expected = {}
      for i = 1, 20 do expected[i] = ("call %d: limit_messages=5000"):format(i) end
      assert.are.same(expected, result.lines)
      assert.are.equal(20, #emu.requests_for("GET", "/usage/current"))
      report(("%s: %s"):format(d.name, driver.target("20 chained calls, total", result.chain_ms, 150, "ms")))
      report(("%s: on_done in the fast context: %s; a direct buffer edit there: %s"):format(
        d.name, tostring(result.fast_context), result.direct_buffer_edit))
    end)
  end
end)
