-- Runs a command as a child process, for the specs of the command line and
-- the examples: stdout, stderr and the exit status, with a controlled
-- environment (the caller's MoltFlow variables never leak in).
local M = {}

-- The interpreter running the suite, for the child processes the specs start:
-- `make test` names it in MOLTFLOW_TEST_LUA (lua5.1 ... lua5.4, luajit);
-- otherwise it is inferred from the running VM. BUILD is its build directory
-- (relative to the checkout), CPATH the LUA_CPATH entry for it.
M.lua = os.getenv("MOLTFLOW_TEST_LUA") or (jit and "luajit") or ("lua" .. _VERSION:match("%d+%.%d+"))
M.build = "build/" .. (M.lua == "luajit" and "luajit" or M.lua:match("%d+%.%d+$"))
M.cpath = M.build .. "/?.so"
-- The slow once-per-matrix checks (valgrind children, luarocks and .deb
-- builds) run in the Lua 5.4 passes only.
M.reference_run = M.lua == "lua5.4"
-- The luarocks and .deb builds: not again under valgrind or ASan (the Makefile
-- sets MOLTFLOW_SKIP_PACKAGING there; they check no C of their own).
M.packaging_run = M.reference_run and os.getenv("MOLTFLOW_SKIP_PACKAGING") == nil

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = quote

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end
M.slurp = slurp

local CLEARED = {"MOLTFLOW_API_KEY", "MOLTFLOW_API_URL", "MOLTFLOW_EMAIL", "MOLTFLOW_PASSWORD",
                 "MOLTFLOW_CONFIG_DIR", "XDG_CONFIG_HOME"}

--- run(argv, opts) -> {stdout, stderr, code}
-- argv: list of words (quoted here); opts.env: {NAME = value}; opts.stdin:
-- text fed on stdin (default: /dev/null); opts.cwd: directory to run in.
function M.run(argv, opts)
  opts = opts or {}
  local dir = assert(io.popen("mktemp -d /tmp/moltflow-run.XXXXXX")):read("*l")
  local words = {"env"}
  for _, name in ipairs(CLEARED) do words[#words + 1] = "-u " .. name end
  for k, v in pairs(opts.env or {}) do words[#words + 1] = quote(k .. "=" .. v) end
  for _, a in ipairs(argv) do words[#words + 1] = quote(a) end
  local stdin = "/dev/null"
  if opts.stdin then
    stdin = dir .. "/in"
    local f = assert(io.open(stdin, "wb"))
    f:write(opts.stdin)
    f:close()
  end
  local cmd = ("%s%s <%s >%s 2>%s; echo $? >%s"):format(opts.cwd and ("cd " .. quote(opts.cwd) .. " && ") or "",
    table.concat(words, " "), quote(stdin), quote(dir .. "/out"), quote(dir .. "/err"), quote(dir .. "/rc"))
  os.execute(cmd)
  local r = {stdout = slurp(dir .. "/out"), stderr = slurp(dir .. "/err"), code = tonumber(slurp(dir .. "/rc"))}
  os.execute("rm -rf " .. quote(dir))
  return r
end

--- mode(path) -> "600" (octal permission bits, from stat), or nil when absent.
function M.mode(path)
  local p = io.popen("stat -c %a " .. quote(path) .. " 2>/dev/null")
  local m = p:read("*l")
  p:close()
  return m
end

--- sh(cmd) -> true when the shell command exits 0 (os.execute's result
-- differs between Lua 5.4 and LuaJIT).
function M.sh(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

--- cleanups() -> defer, run: busted keeps only the last function a test
-- gives to `finally`, so a test that starts several servers loses all but one
-- cleanup. `defer(fn)` records one; `run()` (from after_each) calls every one
-- recorded, last first, each protected, and forgets them.
function M.cleanups()
  local list = {}
  local function defer(fn) list[#list + 1] = fn end
  local function run()
    local todo = list
    list = {}
    for i = #todo, 1, -1 do
      local ok, err = pcall(todo[i])
      if not ok then io.stderr:write("cleanup failed: ", tostring(err), "\n") end
    end
  end
  return defer, run
end

--- without_inherited_fds(cmd) -> cmd, run by a bash that first closes every
-- descriptor above 2. For load tools such as wrk: it sizes its event loop
-- for its own connections (10 + 3 per connection and thread) and counts a
-- socket numbered past that as a failed connect, so the descriptors this
-- process leaves open (the loops the spec files before keep alive, each with
-- libcurl 7.88's inheritable wakeup pair) would make every connect fail.
-- (bash: dash redirects descriptors 0 to 9 only.)
function M.without_inherited_fds(cmd)
  return "bash -c " .. quote("for fd in $(ls /proc/self/fd); do if [ \"$fd\" -gt 2 ]; then eval \"exec $fd>&-\"; fi; done; "
                              .. cmd)
end

--- free_port() -> a loopback port nothing listens on: bound (so no one else
-- holds it), closed, then checked with a connect that must be refused.
function M.free_port()
  local socket = require "socket"
  for _ = 1, 20 do
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    local probe = socket.tcp()
    probe:settimeout(1)
    local connected = probe:connect("127.0.0.1", port)
    probe:close()
    if not connected then return port end
  end
  error("free_port: no free loopback port in 20 tries")
end

--- wait_for(ready, seconds) -> true once ready() returns true, false when
-- the deadline passes first (polled every 20 ms: a bounded readiness wait).
function M.wait_for(ready, seconds)
  local socket = require "socket"
  local deadline = socket.gettime() + seconds
  repeat
    if ready() then return true end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return ready() == true
end

function M.tmpdir()
  return assert(io.popen("mktemp -d /tmp/moltflow-spec-dir.XXXXXX")):read("*l")
end

-- Writes text to path (replacing it).
function M.spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- The names in a directory, sorted, separated by spaces.
function M.listing(dir)
  local p = assert(io.popen("ls -A " .. M.quote(dir)))
  local names = {}
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  table.sort(names)
  return table.concat(names, " ")
end

-- Specs about another user's files need a second user id. Root has one
-- (chown, setpriv); a normal user has none: `unshare -r` maps this one user
-- only, and a wider map needs newuidmap and an /etc/subuid range, which a
-- stock Debian does not set up. Those specs are pending then, with the reason.
M.is_root = M.sh("test \"$(id -u)\" = 0")
local NEEDS_ROOT = " (needs root: only root can give a file to another user or run as one; "
  .. "a user namespace (unshare -r) maps this user alone)"
-- Specs that run a process as another user (uid 1, with setpriv) need the
-- checkout readable by others: a clone under a private (0700) directory is not.
M.others_can_read_checkout = M.is_root and M.sh("setpriv --reuid=1 --regid=1 --clear-groups test -r " ..
  "\"$PWD/lua/moltflow/admin.lua\" >/dev/null 2>&1")
-- `it`, or `pending` with the reason when not root or the checkout is private.
function M.it_as_other_user(it, pending)
  if not M.is_root then return function(name) pending(name .. NEEDS_ROOT) end end
  if M.others_can_read_checkout then return it end
  return function(name) pending(name .. " (the checkout is not readable by other users)") end
end
-- nginx started by root runs its workers as nobody, which must then read the
-- checkout; started by anyone else, its workers are that user.
M.nginx_workers_can_read_checkout = not M.is_root or M.others_can_read_checkout
function M.it_nginx_reads_checkout(it, pending)
  if M.nginx_workers_can_read_checkout then return it end
  return function(name) pending(name .. " (nginx's workers, nobody, cannot read the checkout)") end
end
-- `it`, or `pending` with the reason when not root: for specs that chown a
-- file of theirs to nobody (65534).
function M.it_chowning(it, pending)
  if M.is_root then return it end
  return function(name) pending(name .. NEEDS_ROOT) end
end

-- A value that calls fn when it is collected, at the latest when the Lua
-- state closes: a helper keeps it to stop its server with the specs. Lua 5.1
-- and LuaJIT run __gc for userdata only (newproxy); later versions for tables.
function M.on_collect(fn)
  if newproxy then
    local sentinel = newproxy(true)
    getmetatable(sentinel).__gc = fn
    return sentinel
  end
  return setmetatable({}, {__gc = fn})
end

-- Waits for a background server's port file ("PORT PID", renamed into place
-- once it listens); raises with what it wrote to dir/stderr, or after 5 s.
function M.await_port_file(port_file, dir, what)
  for _ = 1, 500 do
    local port, pid = M.slurp(port_file):match("^(%d+) (%d+)")
    if port then return tonumber(port), tonumber(pid) end
    local err = M.slurp(dir .. "/stderr")
    if err ~= "" then
      os.execute("rm -rf " .. M.quote(dir))
      error(what .. " failed: " .. err)
    end
    os.execute("sleep 0.01")
  end
  os.execute("rm -rf " .. M.quote(dir))
  error(what .. " did not start")
end

return M
