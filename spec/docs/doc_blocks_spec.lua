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
      -- a docs/hosts.md recipe runs in its own host (spec/docs/hosts_recipes_spec.lua)
      local marked = start > 1 and (lines[start - 1]:match("^<!%-%- fragment") or lines[start - 1]:match("^<!%-%- recipe:"))
      if not marked then out[#out + 1] = {line = start, code = table.concat(code, "\n") .. "\n"} end
    end
    i = i + 1
  end
  return out
end

-- GitHub's anchor for a heading: lower case, no punctuation but - and _,
-- spaces as dashes (non-ASCII letters kept).
-- GitHub's anchors: lower case (Latin-1 letters too: "LÖVE" -> "löve"),
-- punctuation dropped, spaces to dashes.
local function slug(heading)
  local lower = heading:lower():gsub("\195([\128-\158])", function(c) return "\195" .. string.char(c:byte() + 32) end)
  return (lower:gsub("[^%w%s%-_\128-\255]", ""):gsub("%s", "-"))
end

-- Lines outside ``` fences, with their numbers.
local function prose_lines(text)
  local out, fence, n = {}, false, 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if line:match("^```") then fence = not fence elseif not fence then out[#out + 1] = {n, line} end
  end
  return out
end

-- Problems with the markdown links of file `rel` (relative to the checkout):
-- a link with a scheme points outside the repository, a relative one must
-- name a file inside it, and a #fragment into markdown a heading there.
local function link_problems(rel, text)
  local problems = {}
  text = text or proc.slurp(root .. "/" .. rel)
  local dir = rel:match("^(.*)/") or ""
  for _, l in ipairs(prose_lines(text)) do
    for target in l[2]:gmatch("%]%(([^)%s]+)%)") do
      local file, fragment = target:match("^([^#]*)#?(.*)$")
      local problem
      if target:match("^%a[%w+.-]*:") or target:match("^/") then
        problem = "points outside the repository"
      else
        local parts = {}
        for seg in ((file == "" and rel) or (dir ~= "" and dir .. "/" .. file or file)):gmatch("[^/]+") do
          if seg == ".." then
            if #parts == 0 then problem = "leaves the repository" break end
            parts[#parts] = nil
          elseif seg ~= "." then
            parts[#parts + 1] = seg
          end
        end
        local path = table.concat(parts, "/")
        local f = not problem and file ~= "" and io.open(root .. "/" .. path, "rb")
        if not problem and file ~= "" and not f then
          problem = "no such file in the repository: " .. path
        elseif not problem then
          local content = text
          if f then content = f:read("*a") f:close() end
          if fragment ~= "" and path:match("%.md$") then
            local found = false
            for _, pl in ipairs(prose_lines(content)) do
              local h = pl[2]:match("^#+%s+(.-)%s*$")
              if h and slug(h) == fragment then found = true end
            end
            if not found then problem = "no heading #" .. fragment .. " in " .. path end
          end
        end
      end
      if problem then problems[#problems + 1] = ("%s:%d: (%s) %s"):format(rel, l[1], target, problem) end
    end
  end
  return problems
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


  describe("links", function()
    -- the project's own markdown: README, SECURITY, CHANGELOG, BENCHMARKS, docs/, examples/
    local docs = {"README.md", "SECURITY.md", "CHANGELOG.md", "BENCHMARKS.md"}
    for _, f in ipairs(files) do
      local rel = f:sub(#root + 2)
      if rel ~= "README.md" then docs[#docs + 1] = rel end
    end
    local p = io.popen("cd " .. proc.quote(root) .. " && find examples -name '*.md'")
    for f in p:lines() do docs[#docs + 1] = f end
    p:close()

    it("resolve to files (and headings) inside the repository", function()
      assert.is_true(#docs >= 6)
      local problems = {}
      for _, rel in ipairs(docs) do
        for _, problem in ipairs(link_problems(rel)) do problems[#problems + 1] = problem end
      end
      assert.same({}, problems)
    end)

    it("the check catches a missing file, an escape, a scheme and a missing heading", function()
      -- a page as if it were docs/page.md
      local problems = link_problems("docs/page.md", "# Top\n\n"
        .. "[ok](../README.md) [here](#top) [gone](nope.md) [up](../../x.md)\n"
        .. "[web](https://example.com/) [abs](/etc/passwd) [head](../README.md#no-such-heading)\n"
        .. "```\n[in code](ignored.md)\n```\n")
      assert.equal(5, #problems, table.concat(problems, "\n"))
      assert.matches("%(nope%.md%) no such file", problems[1])
      assert.matches("%(%.%./%.%./x%.md%) leaves the repository", problems[2])
      assert.matches("%(https://example%.com/%) points outside", problems[3])
      assert.matches("%(/etc/passwd%) points outside", problems[4])
      assert.matches("no heading #no%-such%-heading in README%.md", problems[5])
    end)
  end)

  -- The Quick start as a reader runs it: its shell blocks in order in a
  -- directory that looks like the checkout (a symlink per top-level entry, so
  -- first.lua lands there, not in the checkout), the Lua block saved as the
  -- file the text names.
  it("README's Quick start runs as written, from a checkout", function()
    local readme = proc.slurp(root .. "/README.md")
    local section = assert(readme:match("\n## Quick start\n(.-)\n## "))
    local saved_as = assert(section:match("Save as `([%w_.-]+%.lua)`"), "the Quick start names its file")
    local script = {"set -e"}
    for lang, code in section:gmatch("```(%w+)\n(.-)```") do
      if lang == "sh" then
        script[#script + 1] = code
      else
        assert.equal("lua", lang)
        script[#script + 1] = "cat > " .. saved_as .. " <<'MOLTFLOW_EOF'\n" .. code .. "MOLTFLOW_EOF"
      end
    end
    local dir = proc.tmpdir()
    local work, tmp = dir .. "/checkout", dir .. "/tmp"
    assert.is_true(proc.sh("mkdir -p " .. proc.quote(work) .. " " .. proc.quote(tmp) .. " && cd " .. proc.quote(root)
      .. " && for f in *; do ln -s \"$PWD/$f\" " .. proc.quote(work) .. "/\"$f\"; done"))
    local f = assert(io.open(dir .. "/session.sh", "w"))
    f:write(table.concat(script, "\n"), "\n")
    f:close()
    -- make's variables from a surrounding `make test-spec LUA=...` would leak into the session's make
    local r = proc.run({"env", "-u", "MAKEFLAGS", "-u", "MFLAGS", "-u", "MAKELEVEL", "-u", "LUA_PATH", "-u", "LUA_CPATH",
                        "timeout", "120", "bash", dir .. "/session.sh"},
                       {cwd = work, env = {TMPDIR = tmp, HOME = dir}})
    -- a session that failed half-way leaves its emulator running: stop it by its prefix
    local p = io.popen("ls -d " .. proc.quote(tmp) .. "/*/ 2>/dev/null")
    for prefix in p:lines() do
      if io.open(prefix .. "control-token") then
        proc.run({root .. "/bin/moltflow-emulator", "--stop", "--prefix", prefix, "--quiet"})
      end
    end
    p:close()
    local wrote = io.open(work .. "/" .. saved_as) ~= nil
    os.execute("rm -rf " .. proc.quote(dir))
    assert.equal(0, r.code, r.stdout .. r.stderr .. "\n--- the session:\n" .. table.concat(script, "\n"))
    assert.is_true(wrote)
    assert.truthy(("\n" .. r.stdout):find("\npro\t%d+\t%d+\nmf_%w+\n"), r.stdout)
    assert.matches("\nmessages +%d+ +5000 ", r.stdout)
  end)

  it("README's nightly quota check runs as written: exit 0 under the threshold, the day's CSV", function()
    local readme = proc.slurp(root .. "/README.md")
    local section = assert(readme:match("\n### A nightly quota check\n(.-)\n###? "))
    local code = assert(section:match("```sh\n(.-)```"))
    assert.truthy(code:find("quota --limit messages --fail-above 80", 1, true))
    emu.reset()
    local dir = proc.tmpdir()
    local r = proc.run({"bash", "-c", code}, {cwd = dir, env = {
      PATH = root .. "/bin:" .. os.getenv("PATH"), HOME = dir,
      MOLTFLOW_API_URL = emu.url, MOLTFLOW_API_KEY = emu.seed.keys.all}})
    local listing = io.popen("ls " .. proc.quote(dir))
    local csv = listing:read("*a")
    listing:close()
    local name = csv:match("usage%-%d%d%d%d%-%d%d%-%d%d%.csv")
    local content = name and proc.slurp(dir .. "/" .. name) or ""
    os.execute("rm -rf " .. proc.quote(dir))
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("messages", r.stdout)
    assert.is_string(name, csv)
    assert.matches("^date,", content)
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
