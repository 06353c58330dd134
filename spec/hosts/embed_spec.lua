-- examples/embed: a C host with the core compiled in, on a counting allocator,
-- against the emulator; and a core that never writes to stdout or stderr.
local emu = require "spec.support.emulator"

local function run(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok == true or ok == 0, code
end

local HOST = "build/embed/moltflow-embed"
local ENV = "LUA_PATH='lua/?.lua;;' LUA_CPATH='' "

describe("examples/embed", function()
  setup(function()
    local out, ok = run("make --no-print-directory -s embed 2>&1")
    assert(ok, "make embed failed:\n" .. out)
  end)
  before_each(function() emu.reset() end)

  local function args()
    return ("examples/embed/script.lua %s %s"):format(emu.url, emu.seed.keys.all)
  end

  it("runs the SDK with the statically linked core and frees every byte", function()
    local errfile = os.tmpname()
    local out, ok = run(ENV .. HOST .. " " .. args() .. " 2>" .. errfile)
    local err = io.open(errfile):read("*a")
    os.remove(errfile)
    assert.is_true(ok, out .. err)
    assert.equal("", err) -- nothing from the core on stderr
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("blocking: messages_sent 800", lines[1])
    assert.equal("batch: 800, 3 months, 4 plans", lines[2])
    assert.equal("frames: the call finished after some frames; 7 days", lines[3])
    assert.matches("^lua heap: peak %d+ bytes, %d+ allocations, 0 bytes in use after lua_close$", lines[4])
    assert.equal(4, #lines) -- nothing from the core on stdout
    -- the calls went over HTTP to the emulator
    local n = 0
    for _, r in ipairs(emu.requests()) do
      if r.path:match("^/api/v2/usage/") then n = n + 1 end
    end
    assert.equal(4, n)
  end)

  it("links with a json_encode and a buffer_append of the host's own", function()
    local out = run("nm " .. HOST .. " | grep -E ' T (moltflow_)?(json_encode|buffer_append)$' | sort -k3")
    local names = {}
    for name in out:gmatch(" T (%S+)") do names[#names + 1] = name end
    assert.same({"buffer_append", "json_encode", "moltflow_buffer_append", "moltflow_json_encode"}, names)
  end)

  it("loads its core from the host, not from a shared object", function()
    local out = run("nm -D " .. HOST .. " 2>/dev/null; ldd " .. HOST)
    assert.is_nil(out:match("core%.so"))
    out = run("nm " .. HOST .. " | grep -c ' T luaopen_moltflow_core$'")
    assert.equal("1", out:match("%d+"))
  end)

  local it_valgrind = (require("spec.support.process").reference_run and os.getenv("MOLTFLOW_SKIP_VALGRIND") == nil) and it or pending
  it_valgrind("is clean under valgrind (no leaks, no invalid accesses)", function()
    local log = os.tmpname()
    local out, ok, code = run(ENV .. "valgrind -q --leak-check=full --keep-debuginfo=yes "
      .. "--suppressions=spec/support/valgrind.supp --errors-for-leak-kinds=definite "
      .. "--error-exitcode=9 --log-file=" .. log .. " " .. HOST .. " " .. args())
    local report = io.open(log):read("*a")
    os.remove(log)
    assert.is_true(ok, "exit " .. tostring(code) .. "\n" .. out .. report)
    assert.equal("", report)
    assert.matches("0 bytes in use after lua_close", out)
  end)
end)

describe("examples/embed/frame.c", function()
  local FRAME = "build/embed/moltflow-frame"
  setup(function()
    local out, ok = run("make --no-print-directory -s embed 2>&1")
    assert(ok, "make embed failed:\n" .. out)
  end)
  before_each(function() emu.reset() end)

  -- Runs the frame host with the URL and key in the environment, LUA_PATH unset
  -- (the host sets package.path itself).
  local function frame(url, ca_file)
    return run(("env -u LUA_PATH -u LUA_CPATH MOLTFLOW_API_URL=%s MOLTFLOW_API_KEY=%s %s lua %s 2>&1")
               :format(url, emu.seed.keys.all, FRAME, ca_file or ""))
  end

  local function check(out)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines, function(a, b) return a < b end)
    assert.equal(5, #lines, out)
    assert.equal("billing.plans: 4 plans", lines[1])
    assert.matches("^frames: %d+$", lines[2])
    assert.matches("^poll%(0%) CPU: [%d.]+ ms at most in one frame, [%d.]+ ms in all$", lines[3])
    assert.equal("usage.current: total_messages 1247", lines[4])
    assert.equal("usage.history: 3 months", lines[5])
  end

  it("polls once a frame and prints each call's result, with package.path set from C", function()
    local out, ok = frame(emu.url)
    assert.is_true(ok, out)
    check(out)
    local paths = {}
    for _, r in ipairs(emu.requests()) do paths[#paths + 1] = r.path end
    table.sort(paths)
    assert.same({"/api/v2/billing/plans", "/api/v2/usage/current", "/api/v2/usage/history"}, paths)
  end)

  it("works over TLS with a ca_file", function()
    local tls = require("spec.support.tls_nginx").start{upstream = emu.url}
    local out, ok = frame(tls.url, tls.ca)
    tls:stop()
    assert.is_true(ok, out)
    check(out)
  end)

  it("is built by the cc line examples/embed/README.md quotes", function()
    local doc = assert(io.open("examples/embed/README.md")):read("*a")
    local line = assert(doc:match("```sh\n(cc .-)\n```"), "no cc line in examples/embed/README.md")
    local made = run("env -u CC -u CFLAGS -u LDFLAGS make --no-print-directory -n -B " .. FRAME)
    local function words(s) return (s:gsub("\\\n", " "):gsub("mkdir %-p %S+\n", ""):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end
    assert.equal(words(line), words(made))
  end)
end)

describe("the C core", function()
  it("exports luaopen_moltflow_core alone from core.so", function()
    for _, so in ipairs{"build/5.4/moltflow/core.so", "build/luajit/moltflow/core.so"} do
      if io.open(so) then
        local out = run("nm -D --defined-only " .. so .. " | awk '{print $3}'")
        assert.equal("luaopen_moltflow_core\n", out, so)
      end
    end
  end)

  it("writes nothing to stdout or stderr (no printing calls in src/)", function()
    local out = run("grep -nE '\\b(printf|fprintf|vfprintf|puts|fputs|putchar|perror|fwrite|write)\\s*\\(' src/*.c src/*.h"
      .. " | grep -vE '\\b(snprintf|vsnprintf)\\s*\\(' | grep -vE '^[^:]+:[0-9]+:\\s*(/\\*|\\*)'"
      -- sys.c's one write(), in write_all, goes to descriptors it opened itself (a new file, /dev/tty)
      .. " | grep -vE '^src/sys\\.c:[0-9]+:\\s*ssize_t k = write\\(fd, p, n\\);$'")
    assert.equal("", out)
    local verbose = run("grep -n 'CURLOPT_VERBOSE' src/*.c")
    assert.equal("", verbose)
  end)
end)
