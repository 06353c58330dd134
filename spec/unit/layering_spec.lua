-- The Lua modules depend one way (issue 22; docs/architecture.md has the
-- table). Every `require` of lua/moltflow/**/*.lua, at load time or inside a
-- function, is an edge: it may point to the module's own layer or a lower one,
-- never up, and never round in a cycle. Every module has a place in LAYERS,
-- so a new module cannot go in without being placed. Nothing below the facade
-- requires moltflow.admin, and nginx (ngx.*, resty.*) is known only to its
-- transport, the emulator and the stores that use shdict or cosockets.
--
-- The checker first proves it can fail: planted modules in a temp directory
-- (an upward edge, a cycle, ...) must each be reported.

local proc = require "spec.support.process"

-- Layers by module name. An exact name beats a pattern: moltflow.async (the
-- public facade) is layer 4, its parts moltflow.async.* are layer 1. Patterns
-- are Lua patterns over the whole name.
local APART = "apart" -- the emulator: its own modules and the leaves only
local NEVER = "never required" -- generated annotations
local EXACT = {
  -- 0: leaves
  ["moltflow.core"] = 0, ["moltflow.compat"] = 0, ["moltflow.endpoints"] = 0, ["moltflow.retry"] = 0,
  ["moltflow.errors"] = 0, ["moltflow.seal"] = 0, ["moltflow.redis.resp"] = 0,
  -- 1: scheduling, pacing, tokens (and the fleet's shared key)
  ["moltflow.pacing"] = 1, ["moltflow.tokens"] = 1, ["moltflow.shared_key"] = 1,
  -- 2: transports (the choice by name, then each transport)
  ["moltflow.transport"] = 2,
  -- 3: call pipeline, client, endpoint methods, helpers
  ["moltflow.client"] = 3, ["moltflow.helpers"] = 3,
  -- 4: the public facades and the stores
  ["moltflow.admin"] = 4, ["moltflow.async"] = 4, ["moltflow.file_store"] = 4, ["moltflow.redis_store"] = 4,
  ["moltflow.shdict_store"] = 4, ["moltflow.redis"] = 4, ["moltflow.key_rotation"] = 4,
  -- 5: the command line
  ["moltflow.cli"] = 5,
  ["moltflow.emulator"] = APART,
}
local PATTERNS = {
  {"^moltflow%.async%.", 1},
  {"^moltflow%.pacing%.", 1},
  {"^moltflow%.tokens%.", 1},
  {"^moltflow%.transport%.", 2},
  {"^moltflow%.client%.", 3},
  {"^moltflow%.helpers%.", 3},
  {"^moltflow%.[%w_]+_store$", 4},
  {"^moltflow%.cli%.", 5},
  {"^moltflow%.loop%.", 5},
  {"^moltflow%.emulator%.", APART},
  {"^moltflow%.types%.", NEVER},
}
local FACADE = 4

-- Where nginx may be named: what a module may not contain elsewhere, and
-- the modules allowed to. NGX_NAMES are looked for in the code without its
-- comments and strings (so `transport = "ngx"` is no usage), NGX_REQUIRES in
-- the code with its strings.
local NGX_NAMES = {
  "%f[%w_.]ngx%f[^%w_]",              -- the ngx global: ngx.var, ngx.shared, `if ngx then`
  "%f[%w_.]_G%.ngx%f[^%w_]",
}
local NGX_REQUIRES = {
  "require%s*%(?%s*[\"']ngx[%.\"']",  -- require "ngx.semaphore"
  "require%s*%(?%s*[\"']resty%.",     -- require "resty.lock"
  "rawget%s*%(%s*_G%s*,%s*[\"']ngx[\"']",
}
local NGX_ALLOWED = {
  "^moltflow%.transport%.ngx$", "^moltflow%.transport%.ngx%.", -- the transport and its parts
  "^moltflow%.emulator$", "^moltflow%.emulator%.",              -- runs inside nginx
}

local function layer_of(name)
  if EXACT[name] ~= nil then return EXACT[name] end
  for _, p in ipairs(PATTERNS) do
    if name:match(p[1]) then return p[2] end
  end
  return nil
end

local function any_match(name, patterns)
  for _, p in ipairs(patterns) do
    if name:match(p) then return true end
  end
  return false
end

-- The source with its comments blanked (newlines kept, so that positions
-- still give line numbers); strings stay, since module names are strings,
-- unless blank_strings is set (then only their quotes stay).
local function strip_comments(src, blank_strings)
  local out, i, n = {}, 1, #src
  local function long_bracket_end(at)
    local eq = src:match("^%[(=*)%[", at)
    if not eq then return nil end
    local _, close = src:find("]" .. eq .. "]", at + #eq + 2, true)
    return close or n
  end
  while i <= n do
    local c = src:sub(i, i)
    if src:sub(i, i + 1) == "--" then
      local close = long_bracket_end(i + 2)
      local last = close or (src:find("\n", i, true) or n + 1) - 1
      out[#out + 1] = src:sub(i, last):gsub("[^\n]", " ")
      i = last + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then j = j + 1 elseif d == c or d == "\n" then break end
        j = j + 1
      end
      local text = src:sub(i, j)
      out[#out + 1] = blank_strings and c .. text:sub(2, -2):gsub("[^\n]", " ") .. c or text
      i = j + 1
    elseif c == "[" and long_bracket_end(i) then
      local close = long_bracket_end(i)
      local text = src:sub(i, close)
      out[#out + 1] = blank_strings and text:gsub("[^\n]", " ") or text
      i = close + 1
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end

local function line_at(text, pos)
  local _, newlines = text:sub(1, pos):gsub("\n", "")
  return newlines + 1
end

-- "moltflow/x/init.lua" -> "moltflow.x", "moltflow/x/y.lua" -> "moltflow.x.y"
local function module_name(rel)
  return (rel:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", "."))
end

local function lua_files(root)
  local files = {}
  local p = assert(io.popen("cd " .. proc.quote(root) .. " && find moltflow -name '*.lua' -type f | sort"))
  for rel in p:lines() do files[#files + 1] = rel end
  p:close()
  return files
end

-- Reads every module under root (a directory holding moltflow/) and returns
-- what breaks the rules, each list sorted, as readable lines.
local function check(root)
  local modules, edges = {}, {}
  local found = {upward = {}, cycles = {}, uncovered = {}, admin_below_facade = {}, ngx = {}, apart = {}}
  for _, rel in ipairs(lua_files(root)) do
    local name = module_name(rel)
    local f = assert(io.open(root .. "/" .. rel, "rb"))
    local source = f:read("*a")
    f:close()
    local code, bare = strip_comments(source), strip_comments(source, true)
    modules[name] = {file = rel, layer = layer_of(name)}
    if layer_of(name) == nil then found.uncovered[#found.uncovered + 1] = name .. " (" .. rel .. ")" end
    for pos, target in code:gmatch("()%f[%w_.]require%s*%(?%s*[\"']([^\"'\n]+)[\"']") do
      if target == "moltflow" or target:match("^moltflow%.") then
        edges[#edges + 1] = {from = name, to = target, where = rel .. ":" .. line_at(code, pos)}
      end
    end
    if not any_match(name, NGX_ALLOWED) then
      local lines = {} -- each line once, however many patterns it matches
      local function look(text, patterns)
        for _, pattern in ipairs(patterns) do
          for pos in text:gmatch("()" .. pattern) do
            local line = line_at(text, pos)
            if not lines[line] then
              lines[line] = true
              local shown = code:match("([^\n]*)\n?", code:sub(1, pos):match(".*\n()") or 1)
              found.ngx[#found.ngx + 1] = ("%s:%d: %s"):format(rel, line, shown:gsub("^%s+", ""):sub(1, 80))
            end
          end
        end
      end
      look(bare, NGX_NAMES)
      look(code, NGX_REQUIRES)
    end
  end

  local seen_uncovered = {}
  for _, e in ipairs(edges) do
    local from, to = layer_of(e.from), layer_of(e.to)
    local text = ("%s (%s) -> %s (%s) at %s"):format(e.from, tostring(from), e.to, tostring(to), e.where)
    if to == nil then
      if not seen_uncovered[e.to] and not modules[e.to] then
        seen_uncovered[e.to] = true
        found.uncovered[#found.uncovered + 1] = e.to .. " (required at " .. e.where .. ")"
      end
    elseif from == APART or to == APART or to == NEVER then
      -- the emulator requires its own modules and the leaves; nothing else requires it
      if not (from == APART and (to == APART or to == 0)) then found.apart[#found.apart + 1] = text end
    elseif type(from) == "number" and from < to then
      found.upward[#found.upward + 1] = text
    end
    if e.to == "moltflow.admin" and type(from) == "number" and from < FACADE then
      found.admin_below_facade[#found.admin_below_facade + 1] = text
    end
  end

  -- Cycles: a depth-first walk over the moltflow modules; each cycle is
  -- reported once, starting from its smallest name.
  local out = {}
  for _, e in ipairs(edges) do
    out[e.from] = out[e.from] or {}
    out[e.from][e.to] = true
  end
  local state, stack, cycles = {}, {}, {}
  local function visit(name)
    state[name] = "open"
    stack[#stack + 1] = name
    local targets = {}
    for to in pairs(out[name] or {}) do targets[#targets + 1] = to end
    table.sort(targets)
    for _, to in ipairs(targets) do
      if state[to] == "open" then
        local cycle, start = {}, nil
        for k = #stack, 1, -1 do
          if stack[k] == to then start = k break end
        end
        for k = start, #stack do cycle[#cycle + 1] = stack[k] end
        local smallest = 1
        for k = 2, #cycle do
          if cycle[k] < cycle[smallest] then smallest = k end
        end
        local rotated = {}
        for k = 0, #cycle - 1 do rotated[#rotated + 1] = cycle[(smallest - 1 + k) % #cycle + 1] end
        rotated[#rotated + 1] = rotated[1]
        cycles[table.concat(rotated, " -> ")] = true
      elseif not state[to] then
        visit(to)
      end
    end
    stack[#stack] = nil
    state[name] = "done"
  end
  local names = {}
  for name in pairs(out) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    if not state[name] then visit(name) end
  end
  for cycle in pairs(cycles) do found.cycles[#found.cycles + 1] = cycle end

  for _, list in pairs(found) do table.sort(list) end
  return found, edges
end

local function report(list)
  return #list .. " found:\n  " .. table.concat(list, "\n  ")
end

describe("the layering checker", function()
  local root

  local function plant(rel, source)
    local path = root .. "/" .. rel
    assert(os.execute("mkdir -p " .. proc.quote(path:match("^(.*)/"))))
    local f = assert(io.open(path, "w"))
    f:write(source)
    f:close()
  end

  before_each(function()
    root = os.tmpname()
    os.remove(root)
    assert(os.execute("mkdir -p " .. proc.quote(root)))
  end)

  after_each(function()
    os.execute("rm -rf " .. proc.quote(root))
  end)

  it("passes a tree that keeps the rules", function()
    plant("moltflow/retry.lua", 'local core = require "moltflow.core"\nreturn {}\n')
    plant("moltflow/async/loop.lua", 'local retry = require("moltflow.retry")\nreturn {}\n')
    plant("moltflow/async/init.lua", "return require('moltflow.async.loop')\n")
    plant("moltflow/admin.lua", [[
-- require "moltflow.cli" in a comment is no edge
--[==[ nor in a long comment: require "moltflow.cli", ngx.say ]==]
local async = require "moltflow.async"
local function lazy() return require("moltflow.transport.ngx") end
return {lazy = lazy, name = "ngx"}
]])
    plant("moltflow/transport/ngx.lua", 'local sema = require "ngx.semaphore"\nreturn {sleep = ngx.sleep}\n')
    plant("moltflow/emulator/init.lua", 'local json = require "moltflow.emulator.json"\nreturn ngx.var\n')
    plant("moltflow/emulator/json.lua", 'return require "moltflow.core"\n')
    local found, edges = check(root)
    for kind, list in pairs(found) do
      assert.same({}, list, kind)
    end
    assert.equal(7, #edges)
  end)

  it("reports a planted upward edge, cycle, unplaced module, admin below the facade and ngx usage", function()
    plant("moltflow/retry.lua", 'local admin = require "moltflow.admin"\nreturn {}\n')
    plant("moltflow/admin.lua", 'local retry = require "moltflow.retry"\nreturn {}\n')
    plant("moltflow/tokens.lua", 'local t = require("moltflow.transport.ngx")\nreturn {}\n')
    plant("moltflow/async/a.lua", "local b = require 'moltflow.async.b'\nreturn {}\n")
    plant("moltflow/async/b.lua", "return function() return require('moltflow.async.a') end\n")
    plant("moltflow/mystery.lua", "return {}\n")
    plant("moltflow/client.lua", 'local phase = ngx.get_phase()\nlocal lock = require "resty.lock"\n'
          .. 'local transport = "ngx" -- an option value: no usage\nif ngx then end\nreturn {}\n')
    plant("moltflow/emulator/init.lua", 'return require "moltflow.admin"\n')
    local found = check(root)
    assert.same({
      "moltflow.retry (0) -> moltflow.admin (4) at moltflow/retry.lua:1",
      "moltflow.tokens (1) -> moltflow.transport.ngx (2) at moltflow/tokens.lua:1",
    }, found.upward)
    assert.same({"moltflow.admin -> moltflow.retry -> moltflow.admin",
                 "moltflow.async.a -> moltflow.async.b -> moltflow.async.a"}, found.cycles)
    assert.same({"moltflow.mystery (moltflow/mystery.lua)"}, found.uncovered)
    assert.same({"moltflow.retry (0) -> moltflow.admin (4) at moltflow/retry.lua:1"}, found.admin_below_facade)
    assert.same({"moltflow/client.lua:1: local phase = ngx.get_phase()",
                 'moltflow/client.lua:2: local lock = require "resty.lock"',
                 "moltflow/client.lua:4: if ngx then end"}, found.ngx)
    assert.same({"moltflow.emulator (apart) -> moltflow.admin (4) at moltflow/emulator/init.lua:1"}, found.apart)
  end)

  it("reports a required module that has no place", function()
    plant("moltflow/admin.lua", 'return require "moltflow.newcomer"\n')
    assert.same({"moltflow.newcomer (required at moltflow/admin.lua:1)"}, check(root).uncovered)
  end)
end)

describe("lua/moltflow", function()
  local found = check("lua")

  it("places every module in a layer", function()
    assert(#found.uncovered == 0, "modules without a layer: " .. report(found.uncovered))
  end)

  it("has no upward require", function()
    assert(#found.upward == 0, "upward edges: " .. report(found.upward))
  end)

  it("has no require cycle", function()
    assert(#found.cycles == 0, "cycles: " .. report(found.cycles))
  end)

  it("has nothing below the facade requiring moltflow.admin", function()
    assert(#found.admin_below_facade == 0, "moltflow.admin below the facade: " .. report(found.admin_below_facade))
  end)

  it("keeps the emulator apart", function()
    assert(#found.apart == 0, "edges into or out of the emulator: " .. report(found.apart))
  end)

  it("names nginx only in its transport, the emulator and the stores that use it", function()
    assert(#found.ngx == 0, "ngx outside its transport: " .. report(found.ngx))
  end)
end)
