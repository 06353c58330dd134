-- make mutate-sample: sampled mutation, which no catalogue can be tuned to.
--
-- Draws one-line mutants at random (seeded) across src/*.c, src/compat.h and
-- lua/moltflow/**/*.lua (the emulator included; lua/moltflow/types/ holds
-- generated annotations no code requires, so it is left out), by operator:
--
--   flip-compare   == <-> ~= (!=), < -> >=, > -> <=, <= -> >, >= -> <
--   flip-bool      true <-> false
--   off-by-one     an integer constant n -> n + 1 or n - 1
--   and-or         and <-> or (&& <-> ||)
--   drop           a statement or call removed (C: left as `;`)
--   return         return early (`do return end` / `return;` / `return 0;`
--                  before a statement) or return nil (`return nil` / `return 0;`)
--   invert         if/elseif/while conditions negated
--
-- Each draw picks an operator, then a site of that operator uniformly across
-- the files; a mutant that does not compile (Lua: load() fails; C: the file
-- does not build with -Werror for the VM it runs under) is skipped and
-- another drawn, so a seed always yields N mutants. The same seed on the
-- same tree gives the same mutants.
--
-- Each mutant runs in a scratch copy of the tree (as `make mutate`), under
-- the VM that executes the mutated code: Lua 5.4 unless the line is compiled
-- only for another (a compat.h `#if` branch: the preprocessed source differs
-- only there) or runs only under another (a compat.lua branch on `_VERSION`
-- or `jit`: its condition evaluated by each VM). The suite runs fail-fast,
-- the specs most likely to catch the mutant first (named after its file,
-- naming its module, its enclosing function or the C functions it exports,
-- and those that caught mutants of that file before: build/mutate-sample/
-- kills.tsv), then every other spec. A mutant is caught when a spec fails,
-- or when the suite hangs: a run where no test starts or ends for the stall
-- time (default 420 s, MUTATE_STALL) is run again, and counts as a hang only
-- when it stalls twice (reported as such; a busy machine slows a run down,
-- it does not stop its tests from ending). A failing spec
-- file is run again alone: a mutant it then passes is INTERMITTENT, reported
-- and scored as not caught (a catch by chance is no catch).
--
-- A C mutant the Lua 5.4 suite lets through goes on to `make test`'s ASan +
-- UBSan pass (build/asan), its four likeliest specs: a dropped free() is a
-- leak only LeakSanitizer (or valgrind) sees. Such a catch must repeat too.
--
-- Survivors are reported with their diff. A survivor is scored as
-- equivalent only with a written reason in tools/mutants-equivalent.txt,
-- keyed by seed and site (and checked against the mutated line).
--
--   SEED=7 N=40 lua5.4 tools/mutate_sample.lua     one seed (several: SEED="1 2 3")
--   ... --list                                     only print the mutants drawn
--   MUTATE_JOBS=2                                  two scratch copies in parallel
--   SEED=7 lua5.4 tools/mutate_sample.lua --rescore LOG   score a printed run again (the same
--                                                  tree), with today's equivalences
--   SAMPLE_ONLY="1/7 3/12" MUTATE_BASELINE=0       re-check some mutants of the seeds (survivors,
--                                                  after new specs), without the unmutated run
--   cd <a worktree of the run's commit> &&
--   SAMPLE_TREE=$CHECKOUT lua5.4 $CHECKOUT/tools/mutate_sample.lua
--                                                  draws the mutants from the run's tree (the same seed
--                                                  gives the same mutants) and runs them in the checkout's
--                                                  (its specs, its tool); a line that differs there is stale
--   MUTATE_STALL=420                               seconds without a test ending before a
--                                                  run counts as hung
-- Exits 1 when a seed scores below MUTATE_MIN (default 90) percent.
--
-- Internal: --worker DIR LIST OUT TIMEOUT runs the mutants of LIST in DIR.

-- this tool's own checkout (run by path from another tree: see SAMPLE_TREE)
local TOOL = arg and arg[0] or "tools/mutate_sample.lua"
local TOOL_ROOT = TOOL:match("^(.*)/tools/[^/]+$") or "."
local EQUIVALENTS = TOOL_ROOT .. "/tools/mutants-equivalent.txt"
local STATE_DIR = "build/mutate-sample"
local KILLS = STATE_DIR .. "/kills.tsv"
local MIN_TIMEOUT, BASELINE_TIMEOUT = 420, 3600
local FIRST_SPECS = 4 -- how many of the most likely specs run before the rest
-- The specs the Lua 5.1-5.3 and LuaJIT passes leave out (the Makefile's
-- HOST_SPECS): their subject runs in a host of its own.
local function host_specs()
  local f = assert(io.open("Makefile", "rb"))
  local text = f:read("a")
  f:close()
  local list = text:match("\nHOST_SPECS :=(.-[^\\])\n") or ""
  local out = {}
  for name in list:gmatch("[%w_]+") do out[#out + 1] = name end
  return out
end
local HOST_SPECS = host_specs()
local VMS = {"lua5.4", "lua5.1", "luajit", "lua5.3", "lua5.2"} -- in order of preference
local BUILD_DIR = {["lua5.4"] = "build/5.4", ["lua5.3"] = "build/5.3", ["lua5.2"] = "build/5.2",
                   ["lua5.1"] = "build/5.1", luajit = "build/luajit"}
local INCLUDE = {["lua5.4"] = "/usr/include/lua5.4", ["lua5.3"] = "/usr/include/lua5.3",
                 ["lua5.2"] = "/usr/include/lua5.2", ["lua5.1"] = "/usr/include/lua5.1",
                 luajit = "/usr/include/luajit-2.1"}
local CFLAGS = "-std=c11 -D_DEFAULT_SOURCE -fPIC -fvisibility=hidden -Wall -Wextra -Wpedantic -Werror -O2"

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function try_read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function lines_of(text)
  local out = {}
  for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do out[#out + 1] = line end
  return out
end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  p:close()
  return s
end

------------------------------------------------------------------ lexing

-- Per line, a mask of the characters that are code: outside strings and
-- comments. `state` carries a long comment or string across lines.
local function lua_mask(line, state)
  local mask, i, n = {}, 1, #line
  local function fill(from, to, v) for k = from, to do mask[k] = v end end
  if state.long then
    local close = "]" .. ("="):rep(state.long) .. "]"
    local e = line:find(close, 1, true)
    if not e then fill(1, n, false) return mask end
    fill(1, e + #close - 1, false)
    i = e + #close
    state.long = nil
  end
  while i <= n do
    local c = line:sub(i, i)
    if c == "-" and line:sub(i, i + 1) == "--" then
      local eq = line:match("^%[(=*)%[", i + 2)
      if eq then
        local close = "]" .. eq .. "]"
        local e = line:find(close, i + 4 + #eq, true)
        if e then fill(i, e + #close - 1, false) i = e + #close
        else fill(i, n, false) state.long = #eq return mask end
      else
        fill(i, n, false)
        return mask
      end
    elseif c == "[" and line:match("^%[=*%[", i) then
      local eq = line:match("^%[(=*)%[", i)
      local close = "]" .. eq .. "]"
      local e = line:find(close, i + 2 + #eq, true)
      if e then fill(i, e + #close - 1, false) i = e + #close
      else fill(i, n, false) state.long = #eq return mask end
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = line:sub(j, j)
        if d == "\\" then j = j + 2
        elseif d == c then break
        else j = j + 1 end
      end
      fill(i, math.min(j, n), false)
      i = j + 1
    else
      mask[i] = true
      i = i + 1
    end
  end
  return mask
end

local function c_mask(line, state)
  local mask, i, n = {}, 1, #line
  local function fill(from, to, v) for k = from, to do mask[k] = v end end
  if line:match("^%s*#") and not state.comment then fill(1, n, false) return mask end -- preprocessor
  while i <= n do
    if state.comment then
      local e = line:find("*/", i, true)
      if not e then fill(i, n, false) return mask end
      fill(i, e + 1, false)
      i = e + 2
      state.comment = false
    else
      local c = line:sub(i, i)
      local two = line:sub(i, i + 1)
      if two == "//" then fill(i, n, false) return mask
      elseif two == "/*" then state.comment = true fill(i, i + 1, false) i = i + 2
      elseif c == '"' or c == "'" then
        local j = i + 1
        while j <= n do
          local d = line:sub(j, j)
          if d == "\\" then j = j + 2
          elseif d == c then break
          else j = j + 1 end
        end
        fill(i, math.min(j, n), false)
        i = j + 1
      else
        mask[i] = true
        i = i + 1
      end
    end
  end
  return mask
end

local function all_code(mask, from, to)
  for k = from, to do if not mask[k] then return false end end
  return true
end

-- The code of a line with strings and comments blanked (same length).
local function code_only(line, mask)
  local out = {}
  for k = 1, #line do out[k] = mask[k] and line:sub(k, k) or " " end
  return table.concat(out)
end

local function balanced(code)
  local depth = 0
  for ch in code:gmatch("[%(%)%[%]{}]") do
    if ch == "(" or ch == "[" or ch == "{" then depth = depth + 1 else depth = depth - 1 end
    if depth < 0 then return false end
  end
  return depth == 0
end

------------------------------------------------------------------ operators

local function replace_at(line, at, len, with)
  return line:sub(1, at - 1) .. with .. line:sub(at + len)
end

-- Every match of the Lua pattern `pat` in the code of `line` (start, end).
local function code_matches(line, mask, pat)
  local out, init = {}, 1
  while true do
    local s, e = line:find(pat, init)
    if not s then return out end
    if all_code(mask, s, e) then out[#out + 1] = {s, e} end
    init = e + 1
  end
end

local function word_at(line, s, e)
  return not line:sub(s - 1, s - 1):match("[%w_]") and not line:sub(e + 1, e + 1):match("[%w_]")
end

local function comparisons(line, mask, lang)
  local out = {}
  local i, n = 1, #line
  while i <= n do
    local two, one = line:sub(i, i + 1), line:sub(i, i)
    local not_equal = lang == "c" and "!=" or "~="
    if mask[i] and mask[i + 1] and (two == "==" or two == "<=" or two == ">=" or two == not_equal) then
      out[#out + 1] = {i, 2, two}
      i = i + 2
    elseif mask[i] and (one == "<" or one == ">") then
      local prev, nxt = line:sub(i - 1, i - 1), line:sub(i + 1, i + 1)
      -- not <<, >>, ->, <=/>= (above), =>, the `<const>` attribute
      if prev ~= "<" and prev ~= ">" and nxt ~= "<" and nxt ~= ">" and nxt ~= "=" and prev ~= "-"
         and prev ~= "=" and not line:sub(i, i + 6):match("^<const>") and not line:sub(i, i + 6):match("^<close>") then
        out[#out + 1] = {i, 1, one}
      end
      i = i + 1
    else
      i = i + 1
    end
  end
  return out
end

local NEGATE = {["=="] = {lua = "~=", c = "!="}, ["~="] = "==", ["!="] = "==", ["<"] = ">=", [">"] = "<=",
                ["<="] = ">", [">="] = "<"}

local LUA_KEYWORDS = {["and"] = 1, ["break"] = 1, ["do"] = 1, ["else"] = 1, ["elseif"] = 1, ["end"] = 1,
                      ["false"] = 1, ["for"] = 1, ["function"] = 1, ["goto"] = 1, ["if"] = 1, ["in"] = 1,
                      ["local"] = 1, ["nil"] = 1, ["not"] = 1, ["or"] = 1, ["repeat"] = 1, ["return"] = 1,
                      ["then"] = 1, ["true"] = 1, ["until"] = 1, ["while"] = 1}

-- Candidates of one line: {op = name, text = mutated line}, in a fixed order.
local function line_mutants(line, mask, lang, ctx)
  local out = {}
  local function add(op, text) if text ~= line then out[#out + 1] = {op = op, text = text} end end
  local code = code_only(line, mask)
  local stripped = code:match("^%s*(.-)%s*$")
  if stripped == "" then return out end
  local indent = line:match("^%s*")

  for _, m in ipairs(comparisons(line, mask, lang)) do
    local to = NEGATE[m[3]]
    if type(to) == "table" then to = to[lang] end
    add("flip-compare", replace_at(line, m[1], m[2], to))
  end
  for _, w in ipairs{"true", "false"} do
    for _, m in ipairs(code_matches(line, mask, w)) do
      if word_at(line, m[1], m[2]) then
        add("flip-bool", replace_at(line, m[1], m[2] - m[1] + 1, w == "true" and "false" or "true"))
      end
    end
  end
  for _, m in ipairs(code_matches(line, mask, "%d+")) do
    local s, e = m[1], m[2]
    local before, after = line:sub(s - 1, s - 1), line:sub(e + 1, e + 1)
    -- whole decimal integers: not part of a name, a float, a hex number or an exponent
    if not before:match("[%w_%.]") and not after:match("[%w_%.]") then
      local v = tonumber(line:sub(s, e))
      if v and v < 2 ^ 31 then
        add("off-by-one", replace_at(line, s, e - s + 1, tostring(math.floor(v + 1))))
        if v > 0 then add("off-by-one", replace_at(line, s, e - s + 1, tostring(math.floor(v - 1)))) end
      end
    end
  end
  if lang == "lua" then
    for _, w in ipairs{"and", "or"} do
      for _, m in ipairs(code_matches(line, mask, w)) do
        if word_at(line, m[1], m[2]) then
          add("and-or", replace_at(line, m[1], m[2] - m[1] + 1, w == "and" and "or" or "and"))
        end
      end
    end
  else
    for _, w in ipairs{"&&", "||"} do
      for _, m in ipairs(code_matches(line, mask, w:gsub("%p", "%%%0"))) do
        add("and-or", replace_at(line, m[1], 2, w == "&&" and "||" or "&&"))
      end
    end
  end

  local first = stripped:match("^[%a_]+")
  if lang == "lua" then
    -- a whole statement on this line: a call or an assignment
    local statement = balanced(stripped) and not LUA_KEYWORDS[first or ""] and first ~= nil
      and (stripped:match("^[%w_%.:%[%]\"']+%b()$") or stripped:match("^[%w_%.:%[%]\"']+%s*%b{}$")
           or stripped:match("^[%w_%.%[%]'\",%s]+=[^=]"))
    local declaration = stripped:match("^local%s+[%w_,%s]+=") and balanced(stripped)
    if (statement or declaration) and not stripped:match("[,%(%{]$") then
      if statement then add("drop", indent) end
      if ctx.in_function then add("return", indent .. "do return end " .. line:sub(#indent + 1)) end
    end
    local expr = stripped:match("^return%s+(.+)$")
    if expr and expr ~= "nil" and balanced(expr) then
      add("return", indent .. "return nil" .. (stripped:match("%s+end$") and " end" or ""))
    end
    local kw, cond, tail = stripped:match("^(%a+)%s+(.-)%s+(%a+)$")
    if (kw == "if" or kw == "elseif") and tail == "then" or kw == "while" and tail == "do" then
      if balanced(cond) then
        local whole = line:sub(#indent + #kw + 2, #line - #tail - 1):match("^%s*(.-)%s*$")
        add("invert", indent .. kw .. " not (" .. whole .. ") " .. tail)
      end
    end
    local ucond = stripped:match("^until%s+(.+)$")
    if ucond and balanced(ucond) then
      add("invert", indent .. "until not (" .. line:match("^%s*until%s+(.-)%s*$") .. ")")
    end
  else
    local ends_stmt = stripped:match(";$") and balanced(stripped)
    local keyword = ({["return"] = 1, ["case"] = 1, ["default"] = 1, ["else"] = 1, ["static"] = 1, ["const"] = 1,
                      ["int"] = 1, ["long"] = 1, ["char"] = 1, ["double"] = 1, ["size_t"] = 1, ["unsigned"] = 1,
                      ["struct"] = 1, ["typedef"] = 1, ["void"] = 1, ["enum"] = 1})[first or ""]
    if ends_stmt and first and not keyword and ctx.in_function then
      add("drop", indent .. ";")
      add("return", indent .. (ctx.void and "return; " or "return 0; ") .. line:sub(#indent + 1))
    end
    if stripped:match("^return%s+[^;]+;$") and ctx.in_function and not ctx.void then
      add("return", indent .. "return 0;")
    end
    for _, kw in ipairs{"if", "while"} do
      local s = line:find(kw .. "%s*%(")
      if s and mask[s] and word_at(line, s, s + #kw - 1) then
        local open = line:find("(", s, true)
        local close = open and select(2, line:find("^%b()", open))
        if close then
          add("invert", line:sub(1, open) .. "!(" .. line:sub(open + 1, close - 1) .. ")" .. line:sub(close))
        end
      end
    end
  end
  return out
end

------------------------------------------------------------------ sites

local function source_files()
  local files = {}
  for path in capture("git ls-files -co --exclude-standard -- 'src/*.c' src/compat.h 'lua/moltflow/*.lua' " ..
                      "'lua/moltflow/**/*.lua'"):gmatch("[^\n]+") do
    if not path:match("^lua/moltflow/types/") then files[#files + 1] = path end
  end
  table.sort(files)
  return files
end

-- Every candidate mutant of every file, in a fixed order.
local function all_candidates()
  local by_op, ops = {}, {}
  for _, path in ipairs(source_files()) do
    local lang = path:match("%.lua$") and "lua" or "c"
    local lines = lines_of(read(path))
    local state = {}
    local stack = {} -- Lua: the kind of each open block ("function" or "block")
    local c_function = nil -- C: {void = bool} while inside a function body
    local c_depth = 0
    for no, line in ipairs(lines) do
      local mask = (lang == "lua" and lua_mask or c_mask)(line, state)
      local code = code_only(line, mask)
      local ctx
      if lang == "lua" then
        local in_fn = false
        for _, kind in ipairs(stack) do if kind == "function" then in_fn = true end end
        ctx = {in_function = in_fn}
      else
        ctx = {in_function = c_function ~= nil and c_depth > 0, void = c_function and c_function.void}
      end
      for _, m in ipairs(line_mutants(line, mask, lang, ctx)) do
        local list = by_op[m.op]
        if not list then
          list = {}
          by_op[m.op] = list
          ops[#ops + 1] = m.op
        end
        list[#list + 1] = {file = path, line = no, op = m.op, from = line, to = m.text}
      end
      -- block bookkeeping after the line's own mutants
      if lang == "lua" then
        -- openers in order of appearance, then closers
        for word in code:gmatch("[%a_][%w_]*") do
          if word == "function" then stack[#stack + 1] = "function"
          elseif word == "if" or word == "repeat" then stack[#stack + 1] = "block"
          elseif word == "do" then
            -- `while/for ... do` opened one block with their `do`
            stack[#stack + 1] = "block"
          elseif word == "end" or word == "until" then stack[#stack] = nil end
        end
      else
        if c_depth == 0 and code:match("^[%a_][%w_%s%*]*[%s%*]([%a_][%w_]*)%s*%(") then
          local head = code:match("^(.-)[%a_][%w_]*%s*%(")
          c_function = {void = head:match("void%s*$") ~= nil and not head:match("%*")}
        end
        for ch in code:gmatch("[{}]") do c_depth = c_depth + (ch == "{" and 1 or -1) end
        if c_depth <= 0 then
          c_depth = 0
          if code:match("}") then c_function = nil end
        end
      end
    end
  end
  table.sort(ops)
  return by_op, ops
end

-- Draws the candidates of a seed in order: an operator uniformly, then one
-- of its sites uniformly; never the same line twice.
local function draw_order(seed)
  local by_op, ops = all_candidates()
  math.randomseed(seed)
  local pools = {}
  for _, op in ipairs(ops) do
    local pool = {}
    for i, c in ipairs(by_op[op]) do pool[i] = c end
    for i = #pool, 2, -1 do
      local j = math.random(i)
      pool[i], pool[j] = pool[j], pool[i]
    end
    pools[op] = pool
  end
  local used = {}
  return function()
    while true do
      local live = {}
      for _, op in ipairs(ops) do if #pools[op] > 0 then live[#live + 1] = op end end
      if #live == 0 then return nil end
      local op = live[math.random(#live)]
      local c = table.remove(pools[op])
      local key = c.file .. ":" .. c.line
      if not used[key] then
        used[key] = true
        return c
      end
    end
  end
end

------------------------------------------------------------------ which VM

local vm_available = {}
for _, vm in ipairs(VMS) do
  vm_available[vm] = sh("command -v " .. vm .. " >/dev/null 2>&1") and sh("test -d " .. INCLUDE[vm])
end

-- The VMs whose preprocessed C differs between the original and mutated
-- file (compat.h: every file that includes it).
local function c_vms(c, mutated_text)
  local tmp = assert(io.popen("mktemp -d /tmp/moltflow-sample.XXXXXX")):read("l")
  local units = {}
  if c.file:match("%.h$") then
    for _, f in ipairs(source_files()) do
      local include = '#include "' .. c.file:match("[^/]+$") .. '"'
      if f:match("%.c$") and read(f):find(include, 1, true) then units[#units + 1] = f end
    end
  else
    units = {c.file}
  end
  -- the mutated tree: a copy of src/ with the file replaced
  sh(("mkdir -p %s/src && cp src/*.c src/*.h %s/src/"):format(sh_quote(tmp), sh_quote(tmp)))
  write(tmp .. "/src/" .. c.file:match("[^/]+$"), mutated_text)
  local differs = {}
  for _, vm in ipairs(VMS) do
    if vm_available[vm] then
      for _, unit in ipairs(units) do
        local function pp(root)
          return capture(("cc -E -P -std=c11 -D_DEFAULT_SOURCE -I%s -I%s/src %s/%s 2>/dev/null"):format(
            INCLUDE[vm], sh_quote(root), sh_quote(root), unit))
        end
        if pp(".") ~= pp(tmp) then
          differs[#differs + 1] = vm
          break
        end
      end
    end
  end
  sh("rm -rf " .. sh_quote(tmp))
  return differs
end

-- Whether the mutated C builds under vm with -Werror (every unit it touches).
local function c_builds(c, mutated_text, vm)
  local tmp = assert(io.popen("mktemp -d /tmp/moltflow-sample.XXXXXX")):read("l")
  sh(("mkdir -p %s/src && cp src/*.c src/*.h %s/src/"):format(sh_quote(tmp), sh_quote(tmp)))
  write(tmp .. "/src/" .. c.file:match("[^/]+$"), mutated_text)
  local units = c.file:match("%.h$") and {} or {c.file}
  if #units == 0 then
    for _, f in ipairs(source_files()) do if f:match("%.c$") then units[#units + 1] = f end end
  end
  local ok = true
  for _, unit in ipairs(units) do
    if not sh(("cc %s -I%s -c %s/%s -o /dev/null 2>/dev/null"):format(CFLAGS, INCLUDE[vm], sh_quote(tmp), unit)) then
      ok = false
      break
    end
  end
  sh("rm -rf " .. sh_quote(tmp))
  return ok
end

-- Lua: the VMs that run the mutated line. Inside an `if` whose condition
-- names _VERSION or jit, the branch's VMs (the condition evaluated by each);
-- anywhere else, all of them.
local function lua_vms(c)
  local lines = lines_of(read(c.file))
  local state, stack = {}, {}
  for no = 1, c.line do
    local line = lines[no]
    local code = code_only(line, lua_mask(line, state))
    local cond = code:match("^%s*if%s+(.-)%s+then%s*$")
    if no == c.line then break end
    if cond and (cond:find("_VERSION") or cond:find("jit")) then
      stack[#stack + 1] = {cond = lines[no]:match("^%s*if%s+(.-)%s+then%s*$"), branch = "then", depth = 0}
    elseif #stack > 0 then
      local top = stack[#stack]
      if code:match("^%s*else%s*$") and top.depth == 0 then
        top.branch = "else"
      else
        for word in code:gmatch("[%a_][%w_]*") do
          if word == "function" or word == "if" or word == "do" or word == "repeat" then top.depth = top.depth + 1
          elseif word == "end" or word == "until" then
            if top.depth == 0 then stack[#stack] = nil break end
            top.depth = top.depth - 1
          end
        end
      end
    end
  end
  local vms = {}
  for _, vm in ipairs(VMS) do
    if vm_available[vm] then
      local runs = true
      for _, s in ipairs(stack) do
        local probe = "io.write(tostring(not not (" .. s.cond .. ")))"
        local out = capture(("%s -e %s 2>/dev/null"):format(vm, sh_quote(probe)))
        if (out == "true") ~= (s.branch == "then") then runs = false end
      end
      if runs then vms[#vms + 1] = vm end
    end
  end
  return vms
end

------------------------------------------------------------------ mutants

local function apply(c)
  local lines = lines_of(read(c.file))
  assert(lines[c.line] == c.from, "stale site " .. c.file .. ":" .. c.line)
  lines[c.line] = c.to
  return table.concat(lines, "\n") .. "\n"
end

local loadstring = loadstring or load

-- The next n mutants of a seed that compile, each with its VM; and how many
-- were skipped (do not compile, or no build compiles the line).
local function sample(seed, n)
  local next_candidate = draw_order(seed)
  local chosen, skipped = {}, {compile = 0, dead = 0}
  while #chosen < n do
    local c = next_candidate()
    if not c then break end
    local text = apply(c)
    local vm
    if c.file:match("%.lua$") then
      if loadstring(text, "=" .. c.file) then
        local vms = lua_vms(c)
        vm = vms[1]
        if not vm then skipped.dead = skipped.dead + 1 end
      else
        skipped.compile = skipped.compile + 1
      end
    else
      local vms = c_vms(c, text)
      if #vms == 0 then
        skipped.dead = skipped.dead + 1
      elseif c_builds(c, text, vms[1]) then
        vm = vms[1]
      else
        skipped.compile = skipped.compile + 1
      end
    end
    if vm then
      c.vm = vm
      c.index = #chosen + 1
      c.site = ("%s:%d:%s"):format(c.file, c.line, c.op)
      chosen[#chosen + 1] = c
    end
  end
  return chosen, skipped
end

local function diff_of(c)
  return ("--- %s:%d (%s, %s)\n-%s\n+%s"):format(c.file, c.line, c.op, c.vm, c.from, c.to)
end

-- tools/mutants-equivalent.txt: blocks of `seed:`, `site:`, `to:` (the
-- mutated line, to catch a stale entry) and `equivalent:` (the reason).
local function load_equivalents()
  local list, cur = {}, nil
  local text = try_read(EQUIVALENTS) or ""
  local function finish()
    if cur and cur.seed and cur.site then list[cur.seed .. " " .. cur.site] = cur end
    cur = nil
  end
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*$") then finish()
    elseif not line:match("^#") then
      local k, v = line:match("^(%a+):%s?(.*)$")
      if k then
        cur = cur or {}
        cur[k] = v
      end
    end
  end
  finish()
  return list
end

------------------------------------------------------------------ specs

-- The spec files of the tree in dir (the scratch copy the suite runs in).
local spec_cache = {}
local function spec_files(dir)
  if spec_cache[dir] then return spec_cache[dir] end
  local list = {}
  for path in capture(("cd %s && find spec -name '*_spec.lua' | sort"):format(sh_quote(dir))):gmatch("[^\n]+") do
    list[#list + 1] = {path = path, text = read(dir .. "/" .. path), name = path:match("([^/]+)%.lua$")}
  end
  spec_cache[dir] = list
  return list
end

local function count_plain(text, needle)
  if needle == "" then return 0 end
  local n, at = 0, 1
  while true do
    local s, e = text:find(needle, at, true)
    if not s then return n end
    n, at = n + 1, e + 1
  end
end

-- The names a spec would use to reach the mutated code: the enclosing
-- function's, the file's module name, and for C the Lua names it exports.
local function reach_names(c, dir)
  local lines = lines_of(read(dir .. "/" .. c.file))
  local names, fn = {}, nil
  for no = c.line, 1, -1 do
    local l = lines[no]
    fn = c.file:match("%.lua$") and (l:match("function%s+[%w_]+[%.:]([%w_]+)%s*%(")
                                     or l:match("function%s+([%w_]+)%s*%(") or l:match("([%w_]+)%s*=%s*function"))
         or l:match("^[%a_][%w_%s%*]-([%a_][%w_]*)%s*%(")
    if fn then break end
  end
  local module = c.file:match("^lua/(.*)%.lua$")
  module = module and module:gsub("/init$", ""):gsub("/", ".")
  if c.file:match("%.c$") then
    local text = read(dir .. "/" .. c.file)
    for name in text:gmatch('{"([%w_]+)",%s*[%w_]+}') do names[#names + 1] = name end
    for name in text:gmatch('lua_setfield%(L,%s*%-2,%s*"([%w_]+)"%)') do names[#names + 1] = name end
  end
  return fn, module, names
end

local function kills_for(file)
  local out = {}
  for line in (try_read(KILLS) or ""):gmatch("[^\n]+") do
    local f, spec = line:match("^([^\t]+)\t([^\t]+)$")
    if f == file then out[spec] = (out[spec] or 0) + 1 end
  end
  return out
end

-- Every spec file for the mutant's VM, most likely catcher first.
local function ranked_specs(c, dir)
  local fn, module, exported = reach_names(c, dir)
  local stem = c.file:match("([^/]+)%.%w+$"):gsub("^init$", "")
  local folder = c.file:match("([^/]+)/[^/]+$")
  local kills = kills_for(c.file)
  local host = {}
  for _, s in ipairs(HOST_SPECS) do host[s] = true end
  local ranked = {}
  for _, s in ipairs(spec_files(dir)) do
    if c.vm == "lua5.4" or not host[s.name] then
      local score = 0
      local base = s.name:gsub("_spec$", "")
      if stem ~= "" and (base == stem or base == stem .. "s" or base:find(stem, 1, true)) then score = score + 60 end
      if folder and folder ~= "src" and folder ~= "moltflow" and base:find(folder, 1, true) then score = score + 40 end
      if module then score = score + 20 * math.min(1, count_plain(s.text, module)) end
      if fn and #fn > 3 then score = score + 3 * math.min(10, count_plain(s.text, fn)) end
      for _, name in ipairs(exported) do score = score + math.min(3, count_plain(s.text, name)) end
      score = score + 100 * (kills[s.path] or 0)
      ranked[#ranked + 1] = {path = s.path, score = score}
    end
  end
  table.sort(ranked, function(a, b)
    if a.score ~= b.score then return a.score > b.score end
    return a.path < b.path
  end)
  return ranked
end

------------------------------------------------------------------ running

-- `make test`'s ASan + UBSan pass, as a pseudo VM: the Lua 5.4 host linked
-- with the sanitizers, loading the core built into build/asan.
local ASAN_ENV = "SOAK_REQUESTS=1000 SOAK_CHECK_RSS=0 MOLTFLOW_SKIP_PACKAGING=1 " ..
  "ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 " ..
  "MOLTFLOW_ASAN_CPATH='build/asan/?.so'"
-- the specs that pass leaves out (the Makefile's HARDENING_EXCLUDE)
local ASAN_SKIPS = {fleet_spec = true, chaos_spec = true}

local function busted_cmd(dir, vm, timeout, specs, log)
  local build, env, host = BUILD_DIR[vm], "MOLTFLOW_TEST_LUA=" .. vm, vm
  if vm == "asan" then
    build, env, host = BUILD_DIR["lua5.4"], ASAN_ENV, "build/asan/lua"
  elseif vm ~= "lua5.4" and vm ~= "luajit" then
    env = env .. " SOAK_CHECK_RSS=0"
  end
  -- 8 GiB of address space: a mutant that allocates without end (an encoder
  -- that never stops) fails its spec instead of taking the machine (ASan
  -- maps terabytes of shadow memory: no bound there)
  local bound = vm == "asan" and "" or "ulimit -v 8388608 && "
  return ("cd %s && %sLUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='%s/?.so;;' %s " ..
          "timeout -k 10 %d %s /usr/bin/busted --output=gtest --no-keep-going %s >%s 2>&1"):format(
    sh_quote(dir), bound, build, env, timeout, host, table.concat(specs, " "), sh_quote(log))
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

-- Runs specs under vm in dir: "passed", "hung", or the first failure and its
-- spec file. Hung: no test has started or ended for `stall` seconds (busted's
-- gtest output is flushed per test), however busy the machine; `timeout`
-- caps the whole run.
local function run_specs(dir, vm, stall, specs, timeout)
  local log, rc_file, pid_file = dir .. "/.sample-log", dir .. "/.sample-rc", dir .. "/.sample-pid"
  os.remove(rc_file)
  os.remove(log)
  -- a session of its own, to stop everything it started
  sh(("setsid sh -c %s </dev/null >/dev/null 2>&1 & echo $! >%s"):format(
    sh_quote(busted_cmd(dir, vm, timeout or 12 * stall, specs, log) .. "; echo $? >" .. sh_quote(rc_file)),
    sh_quote(pid_file)))
  local pid = read(pid_file):match("%d+")
  local size, changed, hung = -1, os.time(), false
  while not try_read(rc_file) do
    sh("sleep 1")
    local now_size = file_size(log)
    if now_size ~= size then size, changed = now_size, os.time() end
    if os.time() - changed > stall and not try_read(rc_file) then
      hung = true
      -- every process of the session started (timeout puts busted in a group of its own)
      local session = ("ps -o pid= -s %s"):format(pid)
      sh(("kill -TERM $(%s) 2>/dev/null; sleep 5; kill -KILL $(%s) 2>/dev/null"):format(session, session))
      break
    end
  end
  if hung then return "hung" end
  local code = tonumber((try_read(rc_file) or ""):match("%d+"))
  if code == 0 then return "passed" end
  if code == 124 or code == 137 then return "hung" end
  local text = try_read(log) or ""
  local file, name = text:match("\n%[  FAILED  %] ([^\n]-) @ %d+: ([^\n]*)")
  if not file then file, name = text:match("\n%[  ERROR   %] ([^\n]-) @ %d+: ([^\n]*)") end
  if name then name = name:gsub(" %(%d[%d.]* m?s%)$", "") end
  -- a spec file that fails to load is named after "suite": the file before "@" is where it raised
  local suite = name and name:match("^suite (%S+)$")
  if suite then file = suite end
  return (name or text:match("([^\n]*)\n?$") or ""):sub(1, 120), file
end

local function build_core(dir, vm)
  return sh(("cd %s && make -s LUA=%s CFLAGS='-O2 -g -Werror' >.sample-build 2>&1"):format(sh_quote(dir), vm))
end

local function build_asan(dir)
  return sh(("cd %s && make -s build/asan/lua build/asan/moltflow/core.so >.sample-build 2>&1"):format(sh_quote(dir)))
end

-- A C mutant the Lua 5.4 suite passes may still be caught by `make test`'s
-- ASan + UBSan pass (a leak, an overflow): its likeliest specs run there.
-- A catch must repeat (a leak report names no spec: the same specs again).
local function asan_catch(dir, c, timeout)
  if not build_asan(dir) then return "caught", "by the ASan build" end
  local specs = {}
  for _, s in ipairs(ranked_specs(setmetatable({vm = "asan"}, {__index = c}), dir)) do
    if #specs == FIRST_SPECS then break end
    if not ASAN_SKIPS[s.path:match("([^/]+)%.lua$")] then specs[#specs + 1] = s.path end
  end
  local outcome, file = run_specs(dir, "asan", timeout, specs)
  if outcome == "passed" or outcome == "hung" then return nil end
  local again = run_specs(dir, "asan", timeout, file and {file} or specs)
  if again == "passed" or again == "hung" then
    return "INTERMITTENT", "ASan: " .. outcome .. " (then passed when run again)", file
  end
  return "caught", "ASan: " .. outcome, file
end

-- One mutant in scratch copy dir: result, detail, spec file that caught it.
local function run_mutant(dir, c, timeout)
  local path = dir .. "/" .. c.file
  local original = read(path)
  local lines = lines_of(original)
  local at = c.line
  if lines[at] ~= c.from then
    -- the tree moved under it (SAMPLE_TREE): the same line, if it is there once
    at = nil
    for no, text in ipairs(lines) do
      if text == c.from then
        if at then return "ERROR", "stale site in the scratch copy (its line is there twice)" end
        at = no
      end
    end
    if not at then return "ERROR", "stale site in the scratch copy" end
  end
  lines[at] = c.to
  write(path, table.concat(lines, "\n") .. "\n")
  local is_c = not c.file:match("%.lua$")
  local result, detail, by
  if is_c and not build_core(dir, c.vm) then
    result, detail = "caught", "by the build"
  else
    local ranked = ranked_specs(c, dir)
    local first, rest = {}, {}
    for i, s in ipairs(ranked) do
      if i <= FIRST_SPECS and s.score > 0 then first[#first + 1] = s.path else rest[#rest + 1] = s.path end
    end
    for _, group in ipairs{first, rest} do
      if #group > 0 then
        local outcome, file = run_specs(dir, c.vm, timeout, group)
        if outcome == "hung" then
          -- a real hang only if it hangs again
          local again, file2 = run_specs(dir, c.vm, timeout, group)
          if again == "hung" then
            result, detail = "caught", ("hang: no test ended for %d s, twice"):format(timeout)
            break
          elseif again ~= "passed" then
            result, detail, by = "caught", again .. " (after a first run that hung)", file2
            break
          end
        elseif outcome ~= "passed" then
          result, detail, by = "caught", outcome, file
          -- no catch by chance: the spec file that failed must fail again
          local first_log = try_read(dir .. "/.sample-log")
          if file and run_specs(dir, c.vm, timeout, {file}) == "passed" then
            -- the first run's output is kept: the failure may be the spec's own flake
            local kept = ("%s/intermittent-%s-%d.log"):format(STATE_DIR, (c.file:gsub("/", "_")), c.line)
            write(kept, first_log or "")
            result, detail = "INTERMITTENT", outcome .. " (then passed when run again; its log: " .. kept .. ")"
          end
          break
        end
      end
    end
    if not result and is_c and c.vm == "lua5.4" then result, detail, by = asan_catch(dir, c, timeout) end
    if not result then result, detail = "SURVIVED", "the suite passed" end
  end
  write(path, original)
  if is_c then build_core(dir, c.vm) end
  return result, detail, by
end

local function make_scratch(dir, vms)
  local from, to = sh_quote(os.getenv("SAMPLE_TREE") or "."), sh_quote(dir)
  assert(sh(("mkdir -p %s && cd %s && git ls-files -z -co --exclude-standard | tar --null -T - -cf - " ..
             "| tar -xf - -C %s && git -C %s init -q"):format(to, from, to, to)),
         "cannot copy the tree to " .. dir)
  -- the LuaJIT core too: nginx's specs load it
  for _, vm in ipairs(vms) do
    assert(build_core(dir, vm), "the unmutated tree does not build for " .. vm .. " in " .. dir)
  end
end

local function serialize(c)
  local from, to = c.from:gsub("[\t\n]", " "), c.to:gsub("[\t\n]", " ")
  return table.concat({c.index, c.file, c.line, c.op, c.vm, from, to}, "\t")
end

local function deserialize(line)
  local f = {}
  for field in (line .. "\t"):gmatch("(.-)\t") do f[#f + 1] = field end
  return {index = tonumber(f[1]), file = f[2], line = tonumber(f[3]), op = f[4], vm = f[5], from = f[6], to = f[7]}
end

-- Runs the mutants of list_file in dir that no other worker has claimed
-- (a directory per mutant under list_file's folder: mkdir succeeds once), so
-- a job that drew quick catches takes the next mutant instead of idling.
local function worker(dir, list_file, out_file, timeout)
  local out = assert(io.open(out_file, "w"))
  out:setvbuf("line")
  local claims = list_file .. ".claims"
  sh("mkdir -p " .. sh_quote(claims))
  for line in read(list_file):gmatch("[^\n]+") do
    local c = deserialize(line)
    if sh(("mkdir %s 2>/dev/null"):format(sh_quote(claims .. "/" .. c.index))) then
      local t0 = os.time()
      local ok, result, detail, by = pcall(run_mutant, dir, c, timeout)
      if not ok then result, detail = "ERROR", tostring(result) end
      out:write(("%d\t%s\t%d\t%s\t%s\n"):format(c.index, result, os.time() - t0, by or "",
                                                 (tostring(detail):gsub("[\t\n]", " "))))
    end
  end
  out:close()
end

------------------------------------------------------------------ main

-- Scores a seed's results ({[index] = {result, secs, by, detail}}) with the
-- equivalences of tools/mutants-equivalent.txt; prints and keeps the report.
local function score_seed(seed, chosen, results, seconds, learn)
  local equivalents = load_equivalents()
  local caught, scored, equivalent, survivors, hangs = 0, 0, 0, {}, {}
  local report = {}
  local function say(s) print(s) report[#report + 1] = s end
  local kills = learn and assert(io.open(KILLS, "a"))
  for _, c in ipairs(chosen) do
    local r = results[c.index] or {result = "ERROR", secs = 0, detail = "no result (worker died?)", by = ""}
    local eq = equivalents[seed .. " " .. c.site]
    if eq and eq.to ~= nil and eq.to ~= c.to then
      say(("  (stale equivalence for %s: its mutated line differs; ignored)"):format(c.site))
      eq = nil
    end
    local tag = ("%d/%02d %-40s %-12s %-7s"):format(seed, c.index, c.file .. ":" .. c.line, c.op, c.vm)
    if (r.result == "SURVIVED" or r.result == "INTERMITTENT") and eq then
      equivalent = equivalent + 1
      say(("equiv     %s equivalent: %s"):format(tag, eq.equivalent))
    else
      scored = scored + 1
      if r.result == "caught" then
        caught = caught + 1
        if kills and r.by ~= "" then kills:write(c.file, "\t", r.by, "\n") end
        if r.detail:match("^hang") then hangs[#hangs + 1] = c end
      else
        survivors[#survivors + 1] = c
      end
      if r.result == "INTERMITTENT" then c.intermittent = true end
      say(("%-9s %s %4ds  %s%s"):format(r.result, tag, r.secs or 0, r.by ~= "" and (r.by .. ": ") or "", r.detail))
    end
  end
  if kills then kills:close() end
  for _, c in ipairs(survivors) do
    say((c.intermittent and "INTERMITTENT " or "SURVIVED ") .. seed .. " " .. c.site .. "\n" .. diff_of(c))
  end
  for _, c in ipairs(hangs) do say("HANG     " .. seed .. " " .. c.site .. "\n" .. diff_of(c)) end
  local pct = scored > 0 and 100 * caught / scored or 100
  say(("score: seed %d: %d/%d caught (%.1f %%), %d equivalent excluded, %d hang(s), %d s"):format(
    seed, caught, scored, pct, equivalent, #hangs, seconds))
  write(("%s/seed-%d.txt"):format(STATE_DIR, seed), table.concat(report, "\n") .. "\n")
  return pct
end

local function run_seed(seed, n, jobs, root, timeout, baseline_checked)
  local chosen, skipped = sample(seed, n)
  -- SAMPLE_ONLY="seed/index ...": only those (re-checking survivors)
  local only = os.getenv("SAMPLE_ONLY")
  if only and only ~= "" then
    local keep = {}
    for _, c in ipairs(chosen) do
      if (" " .. only .. " "):find("[%s,]" .. seed .. "/" .. c.index .. "[%s,]") then keep[#keep + 1] = c end
    end
    chosen = keep
  end
  print(("mutate-sample: seed %d, %d mutants (%d skipped: %d do not compile, %d in no build)"):format(
    seed, #chosen, skipped.compile + skipped.dead, skipped.compile, skipped.dead))
  io.stdout:flush()
  -- every VM the mutants need: its core built, its unmutated suite passing
  for _, c in ipairs(chosen) do
    if not baseline_checked[c.vm] and os.getenv("MUTATE_BASELINE") == "0" then
      baseline_checked[c.vm] = true
      timeout = tonumber(os.getenv("MUTATE_STALL")) or MIN_TIMEOUT
      for j = 1, jobs do assert(build_core(("%s/tree%d"):format(root, j), c.vm), "cannot build for " .. c.vm) end
    end
    if not baseline_checked[c.vm] then
      baseline_checked[c.vm] = true
      for j = 1, jobs do
        assert(build_core(("%s/tree%d"):format(root, j), c.vm), "cannot build for " .. c.vm)
      end
      local dir = root .. "/tree1"
      local specs = {}
      for _, s in ipairs(ranked_specs({file = "src/core.c", line = 1, vm = c.vm, op = ""}, dir)) do
        specs[#specs + 1] = s.path
      end
      local t0 = os.time()
      local outcome = run_specs(dir, c.vm, MIN_TIMEOUT, specs, BASELINE_TIMEOUT)
      if outcome ~= "passed" then
        print(("mutate-sample: the unmutated suite fails under %s in the scratch copy: %s"):format(c.vm, outcome))
        os.exit(2)
      end
      local took = os.time() - t0
      timeout = tonumber(os.getenv("MUTATE_STALL")) or MIN_TIMEOUT
      print(("mutate-sample: the unmutated suite passes under %s (%d s); a run where no test ends for %d s is hung")
            :format(c.vm, took, timeout))
      io.stdout:flush()
    end
  end
  local started = os.time()
  local cmds, list = {}, {}
  for i = 1, #chosen do list[i] = serialize(chosen[i]) end
  local list_file = ("%s/list-seed%d"):format(root, seed)
  write(list_file, table.concat(list, "\n") .. "\n")
  for j = 1, jobs do
    os.remove(("%s/out%d"):format(root, j))
    cmds[#cmds + 1] = ("lua5.4 %s --worker %s %s %s %d &"):format(sh_quote(TOOL),
      sh_quote(("%s/tree%d"):format(root, j)), sh_quote(list_file), sh_quote(("%s/out%d"):format(root, j)), timeout)
  end
  sh(table.concat(cmds, " ") .. " wait")
  local results = {}
  for j = 1, jobs do
    for line in (try_read(("%s/out%d"):format(root, j)) or ""):gmatch("[^\n]+") do
      local index, result, secs, by, detail = line:match("^(%d+)\t([^\t]*)\t(%d+)\t([^\t]*)\t(.*)$")
      results[tonumber(index)] = {result = result, secs = tonumber(secs), by = by, detail = detail}
    end
  end
  local pct = score_seed(seed, chosen, results, os.time() - started, true)
  return pct, timeout
end

local function main()
  if arg[1] == "--worker" then return worker(arg[2], arg[3], arg[4], tonumber(arg[5]) or BASELINE_TIMEOUT) end
  local seeds = {}
  local seed_list = os.getenv("SEED")
  if not seed_list or not seed_list:match("%d") then seed_list = tostring(os.time()) end
  for s in seed_list:gmatch("%d+") do seeds[#seeds + 1] = tonumber(s) end
  local n = tonumber(os.getenv("N")) or 40
  sh("mkdir -p " .. STATE_DIR)
  if arg[1] == "--list" then
    for _, seed in ipairs(seeds) do
      local chosen, skipped = sample(seed, n)
      print(("seed %d: %d mutants, %d skipped (%d do not compile, %d in no build)"):format(
        seed, #chosen, skipped.compile + skipped.dead, skipped.compile, skipped.dead))
      for _, c in ipairs(chosen) do print(diff_of(c)) end
    end
    return
  end
  if arg[1] == "--rescore" then
    -- the printed report of an earlier run (the same tree: the same draws)
    -- scored again with today's equivalences
    local text = read(arg[2])
    for _, seed in ipairs(seeds) do
      local chosen = sample(seed, n)
      local results, seconds = {}, 0
      for line in text:gmatch("[^\n]+") do
        local result, s, index, secs, rest = line:match("^(%S+)%s+(%d+)/(%d+) .-%s(%d+)s  (.*)$")
        if result and tonumber(s) == seed then
          local by, detail = rest:match("^(spec/%S+): (.*)$")
          results[tonumber(index)] = {result = result, secs = tonumber(secs), by = by or "", detail = detail or rest}
        end
        local took = line:match("^score: seed " .. seed .. ":.* (%d+) s$")
        if took then seconds = tonumber(took) end
      end
      score_seed(seed, chosen, results, seconds, false)
    end
    return
  end
  local jobs = math.max(1, math.floor(tonumber(os.getenv("MUTATE_JOBS")) or 1))
  local minimum = tonumber(os.getenv("MUTATE_MIN")) or 90
  local root = assert(io.popen("mktemp -d /tmp/moltflow-sample.XXXXXX")):read("l")
  assert(sh("chmod 755 " .. sh_quote(root))) -- specs run a process as another user
  print(("mutate-sample: seeds %s, N = %d, %d job(s), scratch %s"):format(table.concat(seeds, " "), n, jobs, root))
  io.stdout:flush()
  for j = 1, jobs do make_scratch(("%s/tree%d"):format(root, j), {"lua5.4", "luajit"}) end
  local started, all_ok, timeout = os.time(), true, nil
  local checked = {}
  for _, seed in ipairs(seeds) do
    local pct
    pct, timeout = run_seed(seed, n, jobs, root, timeout, checked)
    if pct < minimum then all_ok = false end
  end
  print(("mutate-sample: %d seed(s) in %d s"):format(#seeds, os.time() - started))
  sh("rm -rf " .. sh_quote(root))
  os.exit(all_ok and 0 or 1)
end

main()
