-- The Lua Language Server annotations (lua/moltflow/types/admin.lua) are
-- generated from the endpoint table: the committed file must be what
-- tools/gen-annotations.lua writes now (`make docs`), must parse as Lua, and
-- must describe every endpoint with its arguments. (The language server is
-- not installed here; these are the checks that do not need it.)
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local root = assert(io.popen("cd " .. proc.quote(emu.root) .. " && pwd")):read("*l")
local FILE = root .. "/lua/moltflow/types/admin.lua"
local env = {LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;",
             LUA_CPATH = root .. "/" .. proc.cpath .. ";;"}

local function generator(args)
  local argv = {proc.lua, root .. "/tools/gen-annotations.lua"}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return proc.run(argv, {env = env, cwd = root})
end

local function camel(s)
  return (s:gsub("^%l", string.upper):gsub("_(%l)", string.upper))
end

describe("the LuaLS annotations", function()
  local text = proc.slurp(FILE)

  it("are the generator's current output (run `make docs` after changing the endpoint table)", function()
    local r = generator({"--check"})
    assert.equal(0, r.code, r.stderr)
    local fresh = generator({"--stdout"})
    assert.equal(0, fresh.code, fresh.stderr)
    assert.equal(text, fresh.stdout)
  end)

  it("--check fails on a stale copy", function()
    local dir = proc.tmpdir()
    local f = assert(io.open(dir .. "/admin.lua", "wb"))
    f:write((text:gsub("function ApiKeys:create%(args%) end\n", "")))
    f:close()
    local r = generator({"--check", dir .. "/admin.lua"})
    os.execute("rm -rf " .. proc.quote(dir))
    assert.equal(1, r.code)
    assert.matches("out of date; run 'make docs'", r.stderr)
  end)

  it("parse as Lua and are a meta file for moltflow.admin", function()
    assert.is_function(assert(loadfile(FILE)))
    assert.equal("---@meta moltflow.admin", text:match("^[^\n]*"))
  end)

  it("describe every endpoint method with its positional parameters and argument fields", function()
    for _, d in ipairs(admin.describe()) do
      local class = camel(d.group)
      assert.truthy(text:find("---@field " .. d.group .. " moltflow." .. d.group .. "\n", 1, true), d.group)
      assert.truthy(text:find("\n---@class moltflow." .. d.group .. "\nlocal " .. class .. " = {}\n", 1, true), d.group)
      local sig = text:match("\nfunction " .. class .. ":" .. d.name .. "%(([^)]*)%) end\n")
      assert.is_string(sig, d.label)
      for _, p in ipairs(d.params) do assert.truthy(sig:find(p, 1, true), d.label .. " " .. p) end
      if #d.fields > 0 and d.label ~= "auth.refresh" and d.label ~= "auth.logout" then
        assert.truthy(sig:find("args", 1, true), d.label)
        local class_block = text:match("\n%-%-%-@class moltflow%." .. d.group .. "%." .. d.name .. "%.Args\n(.-)\n\n")
        assert.is_string(class_block, d.label)
        for _, f in ipairs(d.fields) do
          assert.truthy(class_block:find("---@field " .. f.name .. (f.required and " " or "? "), 1, true),
                        d.label .. " " .. f.name)
        end
      end
    end
  end)

  it("describe the client, the results and the error", function()
    for _, class in ipairs{"moltflow.Client", "moltflow.Response", "moltflow.Error", "moltflow.Options",
                           "moltflow.admin", "moltflow.Handle"} do
      assert.truthy(text:find("---@class " .. class .. "\n", 1, true), class)
    end
    for _, m in ipairs{"close", "info", "tokens", "request", "batch", "spawn", "poll", "quota"} do
      assert.truthy(text:find("\nfunction Client:" .. m .. "%("), m)
    end
    for _, field in ipairs{"kind", "status", "message", "method", "path", "attempts", "request_id"} do
      assert.truthy(text:match("---@class moltflow%.Error\n.-%-%-%-@field " .. field .. "%??%s"), field)
    end
    -- every documented client option is an annotated one
    for name in pairs(admin.new{base_url = "http://127.0.0.1:1/api/v2"}:info()) do
      assert.truthy(text:match("---@class moltflow%.Options\n.-%-%-%-@field " .. name .. "%?%s"), name)
    end
  end)
end)
