-- The launcher as a user runs it: seeded tenants (--tenants N) and a prefix
-- already in use. Each test starts its own emulator in a private prefix.
local dkjson = require "dkjson"
local proc = require "spec.support.process"

local root = assert(io.popen("pwd")):read("*l")
local launcher = root .. "/bin/moltflow-emulator"

local function launch(prefix, extra)
  local argv = {launcher, "--daemon", "--port", "0", "--prefix", prefix}
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  return proc.run(argv)
end

-- A stopped nginx may linger as a zombie until init reaps it.
local function alive(pid)
  local stat = proc.slurp("/proc/" .. pid .. "/stat")
  return stat ~= "" and stat:match("%) (%a)") ~= "Z"
end

local function stop(prefix)
  proc.run({launcher, "--stop", "--prefix", prefix, "--quiet"})
end

describe("moltflow-emulator", function()
  if not proc.reference_run then
    pending("the launcher runs once, in the Lua 5.4 pass")
    return
  end
  local prefix
  before_each(function() prefix = proc.tmpdir() end)
  after_each(function()
    stop(prefix)
    os.execute("rm -rf " .. proc.quote(prefix))
  end)

  it("--tenants N seeds N real tenants, each with its own key and usage, in a private tenants.json", function()
    local r = launch(prefix, {"--tenants", "4"})
    assert.equal(0, r.code, r.stderr)
    local url = r.stdout:match("^(%S+)\n$")
    assert.truthy(url, r.stdout)
    assert.matches("4 seeded tenants", r.stderr)
    assert.equal("600", proc.mode(prefix .. "/tenants.json"))
    local tenants = dkjson.decode(proc.slurp(prefix .. "/tenants.json"))
    assert.equal(4, #tenants)
    local env = {LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;",
                 LUA_CPATH = root .. "/" .. proc.cpath .. ";;", MOLTFLOW_API_URL = url:gsub("/api/v2$", ""),
                 MOLTFLOW_API_KEY = ""}
    local out = proc.run({proc.lua, root .. "/examples/agency_usage.lua", prefix .. "/tenants.json"}, {env = env})
    assert.equal(0, out.code, out.stdout .. out.stderr)
    local seen, totals = 0, {}
    for _, total in out.stdout:gmatch("(tenant%-%d+)%s+(%d+)") do
      seen = seen + 1
      totals[total] = true
    end
    assert.equal(4, seen)
    local distinct = 0
    for _ in pairs(totals) do distinct = distinct + 1 end
    assert.equal(4, distinct) -- four tenants, four usages: not one tenant's keys
    for _, t in ipairs(tenants) do
      assert.matches("^t_tenant_%d+$", t.tenant_id)
      assert.matches("^mf_%w+$", t.api_key)
      assert.is_nil(out.stdout:find(t.api_key, 1, true))
    end
  end)

  it("refuses a second start on a prefix in use, and --stop still reaches the first nginx", function()
    local first = launch(prefix, {"--quiet"})
    assert.equal(0, first.code, first.stderr)
    local pid = proc.slurp(prefix .. "/nginx.pid"):match("%d+")
    local second = launch(prefix, {"--quiet"})
    assert.equal(1, second.code)
    assert.matches("already runs in", second.stderr)
    assert.equal(pid, proc.slurp(prefix .. "/nginx.pid"):match("%d+"))
    stop(prefix)
    assert.is_false(alive(pid))
  end)

  it("refuses a bad --tenants count before starting anything", function()
    local r = launch(prefix, {"--tenants", "many"})
    assert.equal(2, r.code)
    assert.matches("bad %-%-tenants", r.stderr)
  end)
end)
