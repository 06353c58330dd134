-- The generated docs must match the endpoint table: docs/api.md's endpoint
-- reference and README.md's CLI credentials table. The spec fails when
-- someone changes lua/moltflow/endpoints.lua (or the CLI's command list)
-- without running `make docs`.
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

describe("README.md and docs/api.md", function()
  local readme = proc.slurp(root .. "/README.md")
  local api = proc.slurp(root .. "/docs/api.md")

  it("have the endpoint reference and CLI table of the current tables", function()
    local r = generator{"--check", root .. "/docs/api.md", root .. "/README.md"}
    assert.equal(0, r.code, r.stderr)
    assert.truthy(readme:find("(docs/api.md)", 1, true), "README links docs/api.md")
    assert.is_nil(readme:find("<!-- endpoints:begin -->", 1, true), "the reference lives in docs/api.md")
  end)

  it("docs/api.md documents every endpoint method with a syntax line and an example", function()
    local section = api:match("<!%-%- endpoints:begin %-%->(.*)<!%-%- endpoints:end %-%->")
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
      -- path ids are labelled as such, never as query or body fields
      for _, p in ipairs(d.params) do
        assert.truthy(entry:find("\nPath: `" .. p .. "` (string, positional, required)", 1, true), call)
        assert.is_nil(entry:find("\nQuery: `" .. p .. "`", 1, true), call)
        assert.is_nil(entry:find("\nBody: `" .. p .. "`", 1, true), call)
      end
      if #d.fields == 0 then assert.is_nil(entry:find("\nBody", 1, true), call) end
    end
  end)

  it("README's CLI table names the scope of each command, as the endpoint table says", function()
    local section = readme:match("<!%-%- cli%-credentials:begin %-%->(.*)<!%-%- cli%-credentials:end %-%->")
    assert.is_string(section)
    assert.truthy(section:find("| `quota` | a login or an API key | `billing:manage` |", 1, true))
    assert.truthy(section:find("| `usage daily` | a login or an API key | `usage:read` |", 1, true))
    assert.truthy(section:find("| `plans` | none | - |", 1, true))
    assert.truthy(section:find("| `account delete` | a login or an API key | `gdpr:manage` |", 1, true))
  end)

  it("the check fails on a stale copy, and a rewrite fixes it", function()
    local dir = proc.tmpdir()
    local copy = dir .. "/api.md"
    local f = assert(io.open(copy, "wb"))
    f:write((api:gsub("`GET /usage/daily`", "`GET /usage/days`")))
    f:close()
    local stale = generator{"--check", copy}
    assert.equal(1, stale.code)
    assert.matches("out of date", stale.stderr)
    assert.equal(0, generator{copy}.code)
    assert.equal(api, proc.slurp(copy))
    os.execute("rm -rf " .. proc.quote(dir))
  end)

  it("has the sections this project promises", function()
    for _, heading in ipairs{"## Quick start", "## Install", "## Usage", "## Helpers", "## Command line",
                             "## Examples", "## The emulator", "## API reference"} do
      assert.truthy(readme:find("\n" .. heading .. "\n", 1, true), heading)
    end
  end)

  it("is a front door: short, a table of contents, the sections in the reader's order", function()
    local lines = select(2, readme:gsub("\n", "\n"))
    assert.is_true(lines <= 360, ("README.md has %d lines"):format(lines))
    local order = {"## Install", "## Quick start", "## Everyday jobs", "### A nightly quota check",
                   "### An agency's tenant keys", "### An OpenResty endpoint", "## Usage", "## Connections",
                   "## Command line", "## Hosts", "## Deployment", "## API reference"}
    local last = 0
    for _, heading in ipairs(order) do
      local at = readme:find("\n" .. heading .. "\n", 1, true)
      assert.truthy(at, heading)
      assert.is_true(at > last, heading .. " is out of order")
      last = at
    end
    -- the contents, before the first section, link every section
    local contents = readme:sub(1, readme:find("\n## ", 1, true))
    for heading in readme:gmatch("\n## ([^\n]+)") do
      local anchor = heading:lower():gsub("[^%w%s%-_]", ""):gsub("%s", "-")
      assert.truthy(contents:find("](#" .. anchor .. ")", 1, true), "contents lack " .. heading)
    end
  end)

  it("points to the documents the details moved to", function()
    for _, target in ipairs{"docs/client.md", "docs/tokens-and-retries.md", "docs/deployment.md", "docs/cli.md",
                            "docs/api.md", "docs/hosts.md", "docs/emulator.md", "docs/architecture.md",
                            "SECURITY.md", "BENCHMARKS.md", "CHANGELOG.md"} do
      assert.truthy(readme:find("](" .. target, 1, true), target)
    end
    local hosts = assert(readme:match("\n## Hosts\n(.-)\n## "))
    for _, host in ipairs{"Neovim", "luv", "LÖVE", "OpenResty", "C host", "(docs/hosts.md)"} do
      assert.truthy(hosts:find(host, 1, true), host)
    end
    local deployment = assert(readme:match("\n## Deployment\n(.-)\n## "))
    for _, store in ipairs{"memory_store", "shdict_store", "file_store", "redis_store"} do
      assert.truthy(deployment:find(store, 1, true), store)
    end
  end)

  it("has one table of client options, hooks described once, the guarantees in SECURITY.md", function()
    local texts = {readme}
    local p = io.popen("ls " .. proc.quote(root .. "/docs") .. "/*.md")
    for f in p:lines() do texts[#texts + 1] = proc.slurp(f) end
    p:close()
    local options, hooks = 0, 0
    for _, t in ipairs(texts) do
      options = options + select(2, t:gsub("\n| `base_url` |", ""))
      hooks = hooks + select(2, t:gsub("runs before each attempt", ""))
    end
    assert.equal(1, options, "rows for base_url in option tables")
    assert.equal(1, hooks, "descriptions of the hooks")
    local security = proc.slurp(root .. "/SECURITY.md")
    local table_ = assert(security:match("\n| guarantee | proved by |\n| %-%-%- | %-%-%- |\n(.-)\n\n"))
    assert.equal(18, select(2, ("\n" .. table_):gsub("\n| %*%*", "")))
    assert.truthy(security:find("\n## Reporting a vulnerability\n", 1, true))
    assert.is_nil(readme:find("| guarantee | proved by |", 1, true))
    -- the full command reference lives in docs/cli.md, the everyday commands in README
    local cli = proc.slurp(root .. "/docs/cli.md")
    assert.truthy(cli:find("| 130 | interrupted by Ctrl-C", 1, true))
    assert.truthy(cli:find("| `account delete [--password-stdin] [--yes]` |", 1, true))
    assert.truthy(readme:find("moltflow-admin quota --limit messages --fail-above 80", 1, true))
  end)

  it("LDoc documents every public module and renders markdown", function()
    local dir = proc.tmpdir()
    -- "." as `make docs` runs it: LDoc reads config.ld's file list (a path would scan the tree)
    local r = proc.run({"ldoc", "-c", "config.ld", "-d", dir, "."}, {cwd = root})
    assert.equal(0, r.code, r.stderr)
    assert.is_nil((r.stdout .. r.stderr):find("not found", 1, true), r.stdout)
    local page = proc.slurp(dir .. "/modules/moltflow.admin.html")
    assert.truthy(page:find("<code>", 1, true), "backticks rendered as code")
    -- every module under lua/moltflow but the emulator's, the LuaLS annotations
    -- (types/) and the internal VM shim (compat)
    local p = io.popen("cd " .. proc.quote(root .. "/lua") .. " && find moltflow -name '*.lua' -not -path '*/emulator/*'"
                       .. " -not -path '*/types/*' -not -name compat.lua")
    for file in p:lines() do
      local name = file:gsub("%.lua$", ""):gsub("/", ".")
      assert.truthy(io.open(dir .. "/modules/" .. name .. ".html"), name .. " has no LDoc page (config.ld)")
    end
    p:close()
    os.execute("rm -rf " .. proc.quote(dir))
  end)
end)
