-- core.sys: what the Lua side does without a shell. Private files and
-- directories, terminal prompts on a real pseudo-terminal, stat, and fcntl
-- locks seen from other processes.
local core = require "moltflow.core"
local proc = require "spec.support.process"
local pty = require "spec.support.pty"
local emu = require "spec.support.emulator"

local sys = core.sys
local root = assert(io.popen("cd " .. proc.quote(emu.root) .. " && pwd")):read("*l")
local interpreter = jit and "/usr/bin/luajit" or "/usr/bin/lua5.4"
local cpath = root .. (jit and "/build/luajit/?.so;;" or "/build/5.4/?.so;;")
local LUA_ENV = {LUA_PATH = root .. "/lua/?.lua;;", LUA_CPATH = cpath}

local dir

local function slurp(path) return proc.slurp(path) end

local spit, listing = proc.spit, proc.listing


-- Runs Lua code in a child process with the core on its path.
local function lua_child(code, opts)
  opts = opts or {}
  local env = {}
  for k, v in pairs(LUA_ENV) do env[k] = v end
  return proc.run({interpreter, "-e", code}, {env = env, stdin = opts.stdin})
end

describe("core.sys", function()
  before_each(function() dir = proc.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  describe("write_private", function()
    it("writes a 0600 file under a new name and renames it over the old one", function()
      local path = dir .. "/secret"
      spit(path, "old")
      assert(os.execute("chmod 644 " .. proc.quote(path)))
      assert.is_true(sys.write_private(path, "new contents"))
      assert.equal("new contents", slurp(path))
      assert.equal("600", proc.mode(path))
      assert.equal("secret", listing(dir)) -- no temporary file left behind
    end)

    it("keeps the old file and leaves nothing behind when it cannot replace it", function()
      local target = dir .. "/taken"
      assert(os.execute("mkdir " .. proc.quote(target) .. " && touch " .. proc.quote(target .. "/inside")))
      local ok, err, errno = sys.write_private(target, "x")
      assert.is_nil(ok)
      assert.matches("cannot replace " .. target, err, 1, true)
      assert.is_number(errno)
      assert.equal("taken", listing(dir))
      local missing = dir .. "/no/such/dir/file"
      ok, err = sys.write_private(missing, "x")
      assert.is_nil(ok)
      assert.matches(missing, err, 1, true)
    end)

    it("never writes into a file that already has its temporary name (O_EXCL)", function()
      -- a preloaded getentropy makes the unpredictable name known: 16 bytes 0xab
      local shim = dir .. "/fixed_entropy.so"
      assert(os.execute(("printf '%%s' %s | cc -shared -fPIC -x c -o %s -"):format(proc.quote(
        "#include <string.h>\nint getentropy(void *p, size_t n) { memset(p, 0xab, n); return 0; }\n"),
        proc.quote(shim))))
      local path, planted = dir .. "/secret", dir .. "/.secret.abababababababab.tmp"
      spit(planted, "planted")
      local env = {LD_PRELOAD = shim}
      for k, v in pairs(LUA_ENV) do env[k] = v end
      local r = proc.run({interpreter, "-e", ("local ok, err = require('moltflow.core').sys.write_private(%q, 'new') "
                                               .. "io.write(tostring(ok), ' ', tostring(err))"):format(path)}, {env = env})
      assert.equal("nil cannot create a temporary file beside " .. path .. ": File exists", r.stdout, r.stderr)
      assert.equal("planted", slurp(planted))
      assert.is_nil(proc.mode(path))
    end)

    it("replaces a symbolic link at the path instead of writing through it", function()
      local elsewhere = dir .. "/elsewhere"
      spit(elsewhere, "untouched")
      assert(os.execute("ln -s " .. proc.quote(elsewhere) .. " " .. proc.quote(dir .. "/link")))
      assert.is_true(sys.write_private(dir .. "/link", "secret"))
      assert.equal("untouched", slurp(elsewhere))
      assert.equal("file", sys.stat(dir .. "/link", true).kind)
    end)

    it("raises on a bad path before touching the file system", function()
      assert.has_error(function() sys.write_private("", "x") end,
        "moltflow.sys.write_private: 'path' must be a non-empty string without NUL bytes")
      assert.has_error(function() sys.write_private(dir .. "/a\0b", "x") end,
        "moltflow.sys.write_private: 'path' must be a non-empty string without NUL bytes")
      assert.equal("", listing(dir))
    end)
  end)

  describe("mkdir_private", function()
    it("creates every missing directory with mode 0700, and accepts its own", function()
      local path = dir .. "/a/b/c"
      assert.is_true(sys.mkdir_private(path))
      assert.equal("700", proc.mode(dir .. "/a"))
      assert.equal("700", proc.mode(path))
      assert.is_true(sys.mkdir_private(path))
      assert.is_true(sys.mkdir_private(path .. "/"))
    end)

    it("refuses a directory of another user, and a file in the way", function()
      -- root makes one; anyone else already has one: / belongs to root
      local theirs = "/"
      if proc.is_root then
        theirs = dir .. "/theirs"
        assert(os.execute("mkdir " .. proc.quote(theirs) .. " && chown 65534 " .. proc.quote(theirs)))
      end
      local ok, err = sys.mkdir_private(theirs)
      assert.is_nil(ok)
      assert.equal("refusing " .. theirs .. ": the directory belongs to another user", err)
      spit(dir .. "/file", "")
      ok, err = sys.mkdir_private(dir .. "/file")
      assert.is_nil(ok)
      assert.matches("Not a directory", err, 1, true)
    end)
  end)

  describe("stat", function()
    it("reports mode, owner and kind; ENOENT for a missing path", function()
      spit(dir .. "/f", "12345")
      assert(os.execute("chmod 640 " .. proc.quote(dir .. "/f")))
      local st = sys.stat(dir .. "/f")
      assert.same({mode = 416, uid = st.uid, owned = true, kind = "file", size = 5}, st)
      assert.equal("directory", sys.stat(dir).kind)
      local none, err, errno = sys.stat(dir .. "/none")
      assert.is_nil(none)
      assert.matches(dir .. "/none", err, 1, true)
      assert.equal(sys.ENOENT, errno)
    end)
  end)

  describe("try_lock", function()
    it("excludes other handles and other processes until unlocked; a dead holder leaves no lock", function()
      local path = dir .. "/tokens.lock"
      local held = assert(sys.try_lock(path))
      assert.equal("600", proc.mode(path))
      assert.is_false(sys.try_lock(path)) -- another handle in this process
      local probe = ("local sys = require('moltflow.core').sys; local h, err = sys.try_lock(%q); "
                     .. "io.write(h and 'got' or h == false and 'busy' or tostring(err))"):format(path)
      assert.equal("busy", lua_child(probe).stdout)
      held:unlock()
      held:unlock() -- idempotent
      assert.equal("moltflow.sys.lock (released)", tostring(held))
      assert.equal("got", lua_child(probe).stdout) -- and the child's exit released it again
      local again = assert(sys.try_lock(path))
      again:unlock()
    end)

    it("refuses a symbolic link", function()
      assert(os.execute("ln -s /dev/null " .. proc.quote(dir .. "/link.lock")))
      local h, err = sys.try_lock(dir .. "/link.lock")
      assert.is_nil(h)
      assert.matches("cannot open the lock file", err, 1, true)
    end)

    proc.it_chowning(it, pending)("refuses a lock file of another user", function()
      spit(dir .. "/theirs.lock", "")
      assert(os.execute("chown 65534 " .. proc.quote(dir .. "/theirs.lock")))
      local h, err = sys.try_lock(dir .. "/theirs.lock")
      assert.is_nil(h)
      assert.matches("not a regular file of this user", err, 1, true)
    end)
  end)

  describe("terminals", function()
    local function prompt_script(echo)
      local path = dir .. "/prompt.lua"
      spit(path, ([[
package.cpath = %q
local sys = require("moltflow.core").sys
io.write("tty:", tostring(sys.isatty(0)), tostring(sys.isatty(1)), "\n")
local line, err, signal = sys.read_tty("Password: ", %s)
io.write("got:", tostring(line), ":", tostring(err), ":", tostring(signal), "\n")
]]):format(cpath, tostring(echo)))
      return {interpreter, path}
    end

    it("reads a line with echo off and leaves echo on", function()
      local r = pty.run(prompt_script(false), {{expect = "Password: "}, {send = "hunter2 secret\n"}})
      assert.equal(0, r.code, r.output)
      assert.matches("tty:truetrue", r.output, 1, true)
      assert.matches("got:hunter2 secret:nil:nil", r.output, 1, true)
      assert.equal(1, select(2, r.output:gsub("hunter2", ""))) -- only the script's own line shows it
      assert.is_true(r.echo)
      assert.matches("[^-]echo ", r.stty)
    end)

    it("drops the CR of a line that ends in CR LF (Ctrl-V typed it, or a terminal without icrnl)", function()
      local r = pty.run(prompt_script(false), {{expect = "Password: "}, {send = "hunter2\22\r\n"}})
      assert.equal(0, r.code, r.output)
      assert.matches("got:hunter2:nil:nil", r.output, 1, true)
    end)

    it("echoes when asked to (an email)", function()
      local r = pty.run(prompt_script(true), {{expect = "Password: "}, {send = "me@example.com\n"}})
      assert.equal(2, select(2, r.output:gsub("me@example%.com", "")))
    end)

    for _, case in ipairs({{"Ctrl-C", "\3", 2}, {"Ctrl-\\", "\28", 3}}) do
      it(case[1] .. " ends the read with the signal's number and restores the terminal", function()
        local r = pty.run(prompt_script(false), {{expect = "Password: "}, {send = "half"}, {send = case[2]}})
        assert.equal(0, r.code, r.output) -- caught: the process decides what to do
        assert.matches("got:nil:interrupted:" .. case[3], r.output, 1, true)
        assert.is_true(r.echo, r.stty)
        assert.is_true(r.icanon)
      end)
    end

    it("leaves a signal the process ignores ignored", function()
      -- SIGQUIT: the standalone interpreter installs its own SIGINT handler
      local r = pty.run(prompt_script(false), {{expect = "Password: "}, {send = "\28"}, {send = "still here\n"}},
                        {ignore = {"SIGQUIT"}})
      assert.matches("got:still here:nil:nil", r.output, 1, true)
      assert.is_true(r.echo)
    end)

    it("says so when there is no terminal", function()
      local code = "local l, err = require('moltflow.core').sys.read_tty('x', false); io.write(tostring(l), ' ', err)"
      local r = proc.run({"setsid", "-w", interpreter, "-e", code}, {env = LUA_ENV})
      assert.equal("nil cannot open /dev/tty: No such device or address", r.stdout)
      assert.is_false(sys.isatty(99))
    end)
  end)
end)
