-- Issue 24, findings 5 and 6: the files of moltflow-admin. config.json (the
-- server the API key and the password go to) gets the credentials file's
-- checks, and a config directory others may write to is refused; `export -o`
-- refuses to replace what is not a regular file (a symbolic link such as
-- /dev/stdout, a directory), writes into a named pipe in place, and `-` is
-- stdout. The real launcher as a child process against the emulator.
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local LAUNCHER = emu.root .. "/bin/moltflow-admin"
local seed = emu.seed

describe("moltflow-admin's files", function()
  local home, config_dir

  local function admin(argv, opts)
    opts = opts or {}
    local env = {MOLTFLOW_CONFIG_DIR = config_dir, HOME = home, LC_ALL = "C"}
    for k, v in pairs(opts.env or {}) do env[k] = v end
    local words = {proc.lua, LAUNCHER}
    for _, a in ipairs(argv) do words[#words + 1] = a end
    return proc.run(words, {env = env, stdin = opts.stdin})
  end

  local function login()
    local r = admin({"--base-url", emu.url, "login", "--email", seed.owner.email, "--password-stdin"},
                    {stdin = seed.owner.password .. "\n"})
    assert.equal(0, r.code, r.stderr)
  end

  before_each(function()
    emu.reset()
    home = proc.tmpdir()
    config_dir = home .. "/moltflow"
  end)
  after_each(function() os.execute("rm -rf " .. proc.quote(home)) end)

  describe("config.json", function()
    -- another user's server, as a planted config.json would name it
    local PLANTED = '{"base_url": "http://127.0.0.1:1/api/v2"}'

    it("is refused when group or others may write it, before any request", function()
      login()
      for _, mode in ipairs{"666", "620", "604"} do
        proc.spit(config_dir .. "/config.json", PLANTED)
        assert(os.execute("chmod " .. mode .. " " .. proc.quote(config_dir .. "/config.json")))
        local r = admin{"whoami"}
        assert.equal(2, r.code, r.stderr)
        assert.equal(("moltflow-admin: refusing the settings file %s/config.json: group or others may read or "
                      .. "write it (mode %s); remove it (a login writes it again, mode 600)\n"):format(config_dir, mode),
                     r.stderr)
      end
    end)

    it("is refused in a directory others may write to, and so is the credentials file", function()
      login()
      assert(os.execute("chmod 777 " .. proc.quote(config_dir)))
      local r = admin{"whoami"}
      assert.equal(2, r.code, r.stderr)
      assert.matches("refusing the settings file " .. config_dir .. "/config.json: group or others may write to "
                     .. "the config directory " .. config_dir .. " (mode 777); chmod go-w it", r.stderr, 1, true)
      -- with the server named on the command line, the login is not used either
      r = admin{"--base-url", emu.url, "whoami"}
      assert.are_not.equal(0, r.code)
      assert.matches("ignoring the token file " .. config_dir .. "/credentials: group or others may write to "
                     .. "the config directory", r.stderr, 1, true)
      -- and a login does not write into it
      r = admin({"--base-url", emu.url, "login", "--email", seed.owner.email, "--password-stdin"},
                {stdin = seed.owner.password .. "\n"})
      assert.equal(2, r.code, r.stderr)
      assert.matches("cannot use the config directory: refusing " .. config_dir
                     .. ": group or others may write to the directory (mode 777)", r.stderr, 1, true)
    end)

    it("is used when it is the user's own with mode 600", function()
      login()
      assert.equal("600", proc.mode(config_dir .. "/config.json"))
      local r = admin{"whoami"}
      assert.equal(0, r.code, r.stderr)
      assert.matches(seed.owner.email, r.stdout, 1, true)
    end)
  end)

  describe("export -o", function()
    local function exported(text)
      local v = dkjson.decode(text)
      return type(v) == "table" and type(v.user) == "table" and v.user.email
    end

    it("refuses a symbolic link, /dev/stdout's kind included, and replaces nothing", function()
      login()
      local victim, link = home .. "/victim", home .. "/link.json"
      proc.spit(victim, "untouched")
      assert(os.execute("ln -s victim " .. proc.quote(link)))
      local r = admin{"export", "-o", link}
      assert.equal(2, r.code, r.stderr)
      assert.equal(("moltflow-admin: refusing to write %s: it is a symbolic link (name a regular file, or - for "
                    .. "stdout)\n"):format(link), r.stderr)
      assert.equal("untouched", proc.slurp(victim))
      assert.is_true(proc.sh("test -L " .. proc.quote(link)))
      -- a link to a terminal or a pipe, as /dev/stdout is
      assert(os.execute("ln -s /dev/null " .. proc.quote(home .. "/stdout")))
      r = admin{"export", "-o", home .. "/stdout"}
      assert.equal(2, r.code, r.stderr)
      assert.is_true(proc.sh("test -L " .. proc.quote(home .. "/stdout")))
    end)

    it("refuses a directory and a device, saying which", function()
      login()
      assert(os.execute("mkdir " .. proc.quote(home .. "/out")))
      local r = admin{"export", "-o", home .. "/out"}
      assert.equal(2, r.code, r.stderr)
      assert.matches("it is a directory", r.stderr, 1, true)
      r = admin{"export", "-o", "/dev/null"}
      assert.equal(2, r.code, r.stderr)
      assert.equal("moltflow-admin: refusing to write /dev/null: it is not a regular file (name a regular file, "
                   .. "or - for stdout)\n", r.stderr)
    end)

    it("writes into a named pipe in place, and - is stdout", function()
      login()
      local fifo, copy = home .. "/pipe", home .. "/copy"
      assert(os.execute("mkfifo -m 600 " .. proc.quote(fifo)))
      assert(os.execute(("cat %s > %s &"):format(proc.quote(fifo), proc.quote(copy))))
      local r = admin{"export", "-o", fifo}
      assert.equal(0, r.code, r.stderr)
      assert.equal("Exported the account's data into the pipe " .. fifo .. "\n", r.stdout)
      assert.is_true(proc.wait_for(function() return exported(proc.slurp(copy)) == seed.owner.email end, 5))
      assert.is_true(proc.sh("test -p " .. proc.quote(fifo))) -- still the pipe
      r = admin{"export", "-o", "-"}
      assert.equal(0, r.code, r.stderr)
      assert.equal(seed.owner.email, exported(r.stdout))
    end)
  end)
end)
