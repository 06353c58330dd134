-- make mutate: applies each mutant of tools/mutants.txt, one at a time, to a
-- scratch copy of the tree (a git repository of its own, both cores built)
-- and runs the Lua 5.4 suite against it, failing fast: first the specs most
-- likely to catch it, then the whole suite. The unmutated suite must pass
-- there first. A mutant is caught when the build, the C unit tests or the
-- suite fail, or the suite hangs. Reports caught, SURVIVED or STALE (its
-- snippet no longer matches exactly once) per mutant, and the score; exits 1
-- unless every scored mutant is caught.
--
--   lua5.4 tools/mutate.lua                 the whole catalogue
--   MUTANTS=id,id lua5.4 tools/mutate.lua   a subset
--   MUTATE_JOBS=2                           two scratch copies in parallel
--   MUTATE_SPECS="spec/api/x_spec.lua ..."  other specs than spec/ (debugging)
--   lua5.4 tools/mutate.lua --check         only report STALE mutants
--
-- Internal: --worker DIR LIST OUT TIMEOUT runs the mutants of LIST in scratch
-- copy DIR.

local CATALOGUE = "tools/mutants.txt"
-- A mutant that hangs the suite is caught once the suite has run twice as
-- long as it did unmutated (at least MIN_TIMEOUT s); the unmutated run itself
-- gets BASELINE_TIMEOUT s.
local BASELINE_TIMEOUT, MIN_TIMEOUT = 1200, 300

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

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function unescape(s)
  return (s:gsub("\\(.)", function(c)
    if c == "n" then return "\n" end
    return c
  end))
end

-- The catalogue: a list of {id, file, from, to, why, equivalent}.
local function load_catalogue()
  local list, cur, seen = {}, nil, {}
  local n = 0
  local function finish()
    if not cur then return end
    for _, k in ipairs{"id", "file", "from", "to", "why"} do
      assert(cur[k], ("%s: mutant ending at line %d has no '%s'"):format(CATALOGUE, n, k))
    end
    assert(not seen[cur.id], CATALOGUE .. ": duplicate id " .. cur.id)
    seen[cur.id] = true
    cur.from, cur.to = unescape(cur.from), unescape(cur.to)
    list[#list + 1] = cur
    cur = nil
  end
  for line in (read(CATALOGUE) .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if line:match("^%s*$") then
      finish()
    elseif not line:match("^#") then
      local k, v = line:match("^(%a+):%s?(.*)$")
      assert(k, ("%s:%d: expected 'field: value'"):format(CATALOGUE, n))
      cur = cur or {}
      cur[k] = v
    end
  end
  finish()
  return list
end

-- Where `from` occurs in text: the position when exactly once, else nil.
local function unique_at(text, from)
  local at = text:find(from, 1, true)
  if not at or text:find(from, at + 1, true) then return nil end
  return at
end

local function apply(text, m)
  local at = unique_at(text, m.from)
  if not at then return nil end
  return text:sub(1, at - 1) .. m.to .. text:sub(at + #m.from)
end

-- Runs specs (the whole suite: "spec") in dir; keep_going runs every spec
-- (the unmutated check lists all failures). Returns "passed", "hung" or the
-- first failure.
local function run_suite(dir, timeout, specs, keep_going)
  local passed, _, code = os.execute(
    ("cd %s && LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/5.4/?.so;;' " ..
     "timeout %d lua5.4 /usr/bin/busted %s --output=TAP %s >%s 2>&1")
      :format(sh_quote(dir), timeout, keep_going and "" or "--no-keep-going", specs,
              sh_quote(dir .. "/.mutate-log")))
  if passed == true or passed == 0 then return "passed" end
  if code == 124 then return "hung" end
  local log = read(dir .. "/.mutate-log")
  return (log:match("not ok %d+ %- ([^\n]*)") or log:match("([^\n]*)\n?$") or ""):sub(1, 100)
end

-- The specs that most likely catch m, run before the whole suite (only
-- to fail sooner: a mutant they miss still meets every spec). Its `specs:`
-- field, else <name>_spec.lua for its file's name or folder, in spec/'s
-- subject folders (spec/unit, spec/api, ...).
local SPEC_FOLDERS = {"unit", "api", "hosts", "hardening", "packaging", "docs", "emulator"}
local function first_specs(dir, m)
  if m.specs then return m.specs end
  local folder, name = m.file:match("([^/]+)/([^/.]+)%.%w+$")
  for _, stem in ipairs{name, folder} do
    for _, subject in ipairs(SPEC_FOLDERS) do
      local spec = "spec/" .. subject .. "/" .. stem .. "_spec.lua"
      local f = io.open(dir .. "/" .. spec)
      if f then
        f:close()
        return spec
      end
    end
  end
  return nil
end

-- Runs the mutants named in list_file inside scratch copy dir; writes
-- "id<TAB>result<TAB>seconds<TAB>detail" lines to out_file.
local function worker(dir, list_file, out_file, timeout)
  local wanted = {}
  for id in read(list_file):gmatch("[^\n]+") do wanted[id] = true end
  local out = assert(io.open(out_file, "w"))
  out:setvbuf("line")
  local specs = os.getenv("MUTATE_SPECS") or "spec"
  for _, m in ipairs(load_catalogue()) do
    if wanted[m.id] then
      local path = dir .. "/" .. m.file
      local ok, original = pcall(read, path)
      local mutated = ok and apply(original, m)
      local t0 = os.time()
      local result, detail = "STALE", "snippet not found exactly once in " .. m.file
      if mutated then
        write(path, mutated)
        local is_c = m.file:match("%.c$") or m.file:match("%.h$")
        local built = not is_c or sh(("cd %s && make -s LUA=lua5.4 >.mutate-build 2>&1 && make -s test-c " ..
                                      ">>.mutate-build 2>&1"):format(sh_quote(dir)))
        if not built then
          -- it does not compile, or the C unit tests fail: caught
          result, detail = "caught", "by the build or the C unit tests"
        else
          local first = not os.getenv("MUTATE_SPECS") and first_specs(dir, m)
          local outcome = first and run_suite(dir, timeout, first) or "passed"
          if outcome == "passed" then outcome = run_suite(dir, timeout, specs) end
          if outcome == "passed" then
            result, detail = "SURVIVED", "the suite passed"
          elseif outcome == "hung" then
            result, detail = "caught", ("the suite hung (stopped after %d s)"):format(timeout)
          else
            result, detail = "caught", outcome
          end
        end
        write(path, original)
        if is_c then sh(("cd %s && make -s LUA=lua5.4 >/dev/null 2>&1"):format(sh_quote(dir))) end
      end
      out:write(("%s\t%s\t%d\t%s\n"):format(m.id, result, os.time() - t0, (detail:gsub("[\t\n]", " "))))
    end
  end
  out:close()
end

-- A scratch copy of the tracked (and new, unignored) files, with the cores
-- built: the LuaJIT one too, for the OpenResty spec (nginx runs LuaJIT); a
-- C mutant rebuilds only the Lua 5.4 core.
local function make_scratch(dir)
  -- a repository of its own: specs list the checkout's files with git ls-files
  assert(sh(("mkdir -p %s && git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C %s " ..
             "&& git -C %s init -q"):format(sh_quote(dir), sh_quote(dir), sh_quote(dir))),
         "cannot copy the tree to " .. dir)
  assert(sh(("cd %s && make -s LUA=lua5.4 >.mutate-build 2>&1 && make -s LUA=luajit >>.mutate-build 2>&1 " ..
             "&& make -s test-c >>.mutate-build 2>&1"):format(sh_quote(dir))),
         "the unmutated tree does not build in " .. dir)
end

local function main()
  if arg[1] == "--worker" then return worker(arg[2], arg[3], arg[4], tonumber(arg[5]) or BASELINE_TIMEOUT) end
  local catalogue = load_catalogue()
  local subset
  if os.getenv("MUTANTS") and os.getenv("MUTANTS") ~= "" then
    subset = {}
    for id in os.getenv("MUTANTS"):gmatch("[^,%s]+") do subset[id] = true end
  end
  local chosen, known = {}, {}
  for _, m in ipairs(catalogue) do
    known[m.id] = true
    if not subset or subset[m.id] then chosen[#chosen + 1] = m end
  end
  for id in pairs(subset or {}) do assert(known[id], "MUTANTS: no mutant named " .. id) end

  if arg[1] == "--check" then
    local stale = 0
    for _, m in ipairs(chosen) do
      local ok, text = pcall(read, m.file)
      if not (ok and unique_at(text, m.from)) then
        stale = stale + 1
        print(("STALE     %-28s %s"):format(m.id, m.file))
      end
    end
    print(("%d mutants, %d stale"):format(#chosen, stale))
    os.exit(stale == 0 and 0 or 1)
  end

  local jobs = math.max(1, math.floor(tonumber(os.getenv("MUTATE_JOBS")) or 1))
  local root = assert(io.popen("mktemp -d /tmp/moltflow-mutate.XXXXXX")):read("l")
  -- mktemp's 0700 would hide the tree from the specs that run a process as
  -- another user (file_store_spec's shared sticky directory)
  assert(sh("chmod 755 " .. sh_quote(root)))
  local started = os.time()
  print(("mutate: %d mutants, %d job(s), scratch %s"):format(#chosen, jobs, root))
  io.stdout:flush()
  local cmds, timeout = {}, MIN_TIMEOUT
  for j = 1, jobs do
    local dir = ("%s/tree%d"):format(root, j)
    make_scratch(dir)
    local t0 = os.time()
    if j == 1 and run_suite(dir, BASELINE_TIMEOUT, os.getenv("MUTATE_SPECS") or "spec", true) ~= "passed" then
      -- a suite that fails unmutated would count every mutant as caught
      print("mutate: the unmutated suite fails in the scratch copy:")
      for name in read(dir .. "/.mutate-log"):gmatch("not ok %d+ %- ([^\n]*)") do print("  " .. name) end
      sh("rm -rf " .. sh_quote(root))
      os.exit(2)
    end
    if j == 1 then
      timeout = math.max(MIN_TIMEOUT, 2 * (os.time() - t0))
      print(("mutate: the unmutated suite passes (%d s); a suite that runs %d s hangs"):format(os.time() - t0, timeout))
      io.stdout:flush()
    end
    local ids = {}
    for i = j, #chosen, jobs do ids[#ids + 1] = chosen[i].id end
    write(("%s/list%d"):format(root, j), table.concat(ids, "\n") .. "\n")
    cmds[#cmds + 1] = ("lua5.4 tools/mutate.lua --worker %s %s %s %d &"):format(
      sh_quote(dir), sh_quote(("%s/list%d"):format(root, j)), sh_quote(("%s/out%d"):format(root, j)), timeout)
  end
  sh(table.concat(cmds, " ") .. " wait")

  local results = {}
  for j = 1, jobs do
    local ok, text = pcall(read, ("%s/out%d"):format(root, j))
    for line in (ok and text or ""):gmatch("[^\n]+") do
      local id, result, secs, detail = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      results[id] = {result = result, secs = tonumber(secs), detail = detail}
    end
  end
  local caught, scored, equivalent = 0, 0, 0
  for _, m in ipairs(chosen) do
    local r = results[m.id] or {result = "ERROR", secs = 0, detail = "no result (worker died?)"}
    if m.equivalent then
      equivalent = equivalent + 1
      print(("%-9s %-28s %-36s equivalent: %s"):format("equiv", m.id, m.file, m.equivalent))
    else
      scored = scored + 1
      if r.result == "caught" then caught = caught + 1 end
      print(("%-9s %-28s %-36s %4ds  %s"):format(r.result, m.id, m.file, r.secs or 0,
        r.result == "caught" and r.detail or m.why .. " (" .. r.detail .. ")"))
    end
  end
  print(("score: %d/%d caught (%.1f %%), %d equivalent excluded, %d s"):format(
    caught, scored, scored > 0 and 100 * caught / scored or 100, equivalent, os.time() - started))
  sh("rm -rf " .. sh_quote(root))
  os.exit(caught == scored and 0 or 1)
end

main()
