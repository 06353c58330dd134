-- make install and make uninstall as a user runs them, and the crontab lines
-- of examples/cron_quota.sh under cron's environment (PATH=/usr/bin:/bin, no
-- LUA_PATH) after each way of installing the command.
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local root = emu.root

local function make(target, prefix)
  return proc.run({"make", "--no-print-directory", "-s", target, "PREFIX=" .. prefix, "LUA=" .. proc.lua},
                  {cwd = root})
end

-- The files below dir, sorted, as paths relative to it.
local function files(dir)
  local out, p = {}, io.popen("cd " .. proc.quote(dir) .. " && find . -type f -o -type l | sort")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- The job line of the script's crontab, run as cron would: `sh -c` with only
-- the variables the crontab sets. home holds bin/cron_quota.sh (copied there,
-- as the header says).
local function cron(home, path)
  -- (also used by the LuaRocks spec: spec/packaging/rockspec_spec.lua)
  local job = assert(proc.slurp(root .. "/examples/cron_quota.sh"):match("\n#%s+15 2 %* %* %*%s+([^\n]+)"))
  job = job:gsub("MOLTFLOW_API_KEY=mf_%.%.%.", "MOLTFLOW_API_KEY=" .. emu.seed.keys.all)
  return proc.run({"env", "-i", "PATH=" .. path, "HOME=" .. home, "CSV_DIR=" .. home .. "/csv",
                   "MOLTFLOW_API_URL=" .. emu.url, "MOLTFLOW_CONFIG_DIR=" .. home .. "/config", "sh", "-c", job})
end

local function home_with_script()
  local home = proc.tmpdir()
  assert(proc.sh(("mkdir -p %s/bin && cp %s %s/bin/cron_quota.sh && chmod 755 %s/bin/cron_quota.sh"):format(
    proc.quote(home), proc.quote(root .. "/examples/cron_quota.sh"), proc.quote(home), proc.quote(home))))
  return home
end

describe("make install", function()
  before_each(function() emu.reset() end)

  it("the crontab line runs under cron's PATH once it names PREFIX/bin, and says what to fix when not", function()
    local prefix, home = proc.tmpdir(), home_with_script()
    local mk = make("install", prefix)
    assert.equal(0, mk.code, mk.stderr)
    assert.matches("^#!/", proc.slurp(prefix .. "/bin/moltflow-admin"))
    assert.is_nil(proc.slurp(prefix .. "/bin/moltflow-admin"):match("^#![^\n]*env"), "the shebang needs PATH")
    local r = cron(home, prefix .. "/bin:/usr/bin:/bin")
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.equal(1, #files(home .. "/csv"))
    if proc.slurp("/usr/local/bin/moltflow-admin") == "" then -- else the script's fallback finds that one
      local lost = cron(home, "/usr/bin:/bin")
      assert.equal(127, lost.code)
      assert.matches("moltflow-admin not found on PATH", lost.stderr, 1, true)
    end
    os.execute("rm -rf " .. proc.quote(prefix) .. " " .. proc.quote(home))
  end)

  it("the installed command runs with an empty PATH", function()
    local prefix = proc.tmpdir()
    assert.equal(0, make("install", prefix).code)
    local r = proc.run({"env", "-i", prefix .. "/bin/moltflow-admin", "--version"})
    assert.equal(0, r.code, r.stderr)
    os.execute("rm -rf " .. proc.quote(prefix))
  end)

  it("make uninstall removes every file it installed and nothing else", function()
    local prefix = proc.tmpdir()
    assert(proc.sh("mkdir -p " .. proc.quote(prefix .. "/bin") .. " && echo mine >" .. proc.quote(prefix .. "/bin/other")))
    assert.equal(0, make("install", prefix).code)
    assert.is_true(#files(prefix) > 10)
    local r = make("uninstall", prefix)
    assert.equal(0, r.code, r.stderr)
    assert.same({"./bin/other"}, files(prefix))
    os.execute("rm -rf " .. proc.quote(prefix))
  end)
end)
