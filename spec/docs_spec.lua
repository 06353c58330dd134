-- Every complete ```lua block of README.md and docs/*.md runs, as written,
-- against the emulator: LUA_PATH/LUA_CPATH reach this checkout, and
-- MOLTFLOW_API_URL (the URL the emulator prints, /api/v2 included) and
-- MOLTFLOW_API_KEY (the seed owner's key with every scope), MOLTFLOW_EMAIL
-- and MOLTFLOW_PASSWORD (the seed owner) are set, as the Quick start tells a
-- reader to export them. Each block runs in a new temporary directory (also
-- its HOME). A block that is not meant to
-- run alone says so on the line before it, with a comment starting
-- `<!-- fragment` (e.g. `<!-- fragment: needs a client c -->`).
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local root = assert(io.popen("cd " .. proc.quote(emu.root) .. " && pwd")):read("*l")

-- {file, line, code} for each block not marked as a fragment.
local function blocks(path)
  local out, lines = {}, {}
  for l in io.lines(path) do lines[#lines + 1] = l end
  local i = 1
  while i <= #lines do
    if lines[i]:match("^```lua%s*$") then
      local start, code = i, {}
      i = i + 1
      while i <= #lines and not lines[i]:match("^```%s*$") do
        code[#code + 1] = lines[i]
        i = i + 1
      end
      local marked = start > 1 and lines[start - 1]:match("^<!%-%- fragment")
      if not marked then out[#out + 1] = {line = start, code = table.concat(code, "\n") .. "\n"} end
    end
    i = i + 1
  end
  return out
end

local files = {root .. "/README.md"}
local ls = io.popen("ls " .. proc.quote(root .. "/docs") .. "/*.md 2>/dev/null")
for f in ls:lines() do files[#files + 1] = f end
ls:close()

describe("the docs' Lua blocks", function()
  it("finds docs to check, and honours the fragment marker", function()
    assert.is_true(#files >= 2)
    local dir = proc.tmpdir()
    local f = assert(io.open(dir .. "/t.md", "w"))
    f:write("```lua\nrun()\n```\n\n<!-- fragment -->\n```lua\nskip()\n```\n")
    f:close()
    local found = blocks(dir .. "/t.md")
    assert.equal(1, #found)
    assert.equal("run()\n", found[1].code)
    os.execute("rm -rf " .. proc.quote(dir))
  end)

  for _, file in ipairs(files) do
    local name = file:sub(#root + 2)
    for _, b in ipairs(blocks(file)) do
      it(("%s:%d runs against the emulator"):format(name, b.line), function()
        emu.reset()
        local dir = proc.tmpdir()
        local script = dir .. "/block.lua"
        local f = assert(io.open(script, "w"))
        f:write(b.code)
        f:close()
        local r = proc.run({"timeout", "60", proc.lua, script}, {cwd = dir, env = {
          LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;",
          LUA_CPATH = root .. "/" .. proc.cpath .. ";;",
          MOLTFLOW_API_URL = emu.url, MOLTFLOW_API_KEY = emu.seed.keys.all,
          MOLTFLOW_EMAIL = emu.seed.owner.email, MOLTFLOW_PASSWORD = emu.seed.owner.password,
          HOME = dir, PATH = os.getenv("PATH")}})
        os.execute("rm -rf " .. proc.quote(dir))
        assert.equal(0, r.code, ("%s:%d exited %s\n%s%s\n--- the block:\n%s"):format(name, b.line,
          tostring(r.code), r.stdout, r.stderr, b.code))
      end)
    end
  end
end)
