-- README.md's generated endpoint reference must match the endpoint table:
-- the spec fails when someone changes lua/moltflow/endpoints.lua without
-- running `make docs`.
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local root = assert(io.popen("cd " .. proc.quote(emu.root) .. " && pwd")):read("*l")
local interpreter = proc.lua
local env = {LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;",
             LUA_CPATH = root .. "/" .. proc.cpath .. ";;"}

local function generator(args)
  local argv = {interpreter, root .. "/tools/gen-endpoint-docs.lua"}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return proc.run(argv, {env = env})
end

describe("README.md", function()
  local readme = proc.slurp(root .. "/README.md")

  it("has the endpoint reference of the current endpoint table", function()
    local r = generator{"--check", root .. "/README.md"}
    assert.equal(0, r.code, r.stderr)
  end)

  it("documents every endpoint method with a syntax line and an example", function()
    local section = readme:match("<!%-%- endpoints:begin %-%->(.*)<!%-%- endpoints:end %-%->")
    assert.is_string(section)
    local described = admin.describe()
    assert.equal(31, #described)
    for _, d in ipairs(described) do
      local call = ("c.%s:%s"):format(d.group, d.name)
      local entry = section:match("#### `" .. call:gsub("%p", "%%%0") .. "`\n(.-)\n####")
                    or section:match("#### `" .. call:gsub("%p", "%%%0") .. "`\n(.*)$")
      assert.is_string(entry, call)
      assert.matches("`" .. d.method .. " " .. d.path:gsub("%p", "%%%0") .. "`", entry)
      assert.matches("\nsyntax: `value, res = " .. call:gsub("%p", "%%%0"), entry)
      assert.matches("```lua\nlocal value, res = " .. call:gsub("%p", "%%%0"), entry)
      if d.scope then assert.matches("scope: `" .. d.scope .. "`", entry, 1, true) end
    end
  end)

  it("the check fails on a stale copy, and a rewrite fixes it", function()
    local dir = proc.tmpdir()
    local copy = dir .. "/README.md"
    local f = assert(io.open(copy, "wb"))
    f:write((readme:gsub("`GET /usage/daily`", "`GET /usage/days`")))
    f:close()
    local stale = generator{"--check", copy}
    assert.equal(1, stale.code)
    assert.matches("out of date", stale.stderr)
    assert.equal(0, generator{copy}.code)
    assert.equal(readme, proc.slurp(copy))
    os.execute("rm -rf " .. proc.quote(dir))
  end)

  it("has the sections this project promises", function()
    for _, heading in ipairs{"## Quick start", "## Install", "## Usage", "## Helpers", "## Command line",
                             "## Examples", "## The emulator", "## API reference"} do
      assert.truthy(readme:find("\n" .. heading .. "\n", 1, true), heading)
    end
  end)
end)
