-- Every script in examples/ runs as a child process against the emulator,
-- under the interpreter running the suite (Lua 5.4 or LuaJIT), so the
-- examples cannot rot.
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local root = assert(io.popen("cd " .. proc.quote(emu.root) .. " && pwd")):read("*l") -- absolute: examples run elsewhere
local interpreter = proc.lua
local cpath = root .. "/" .. proc.cpath .. ";;"

local workdir

local function example(name, args, opts)
  opts = opts or {}
  local env = {LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;", LUA_CPATH = cpath,
               MOLTFLOW_API_URL = (emu.url:gsub("/api/v2$", ""))}
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local argv = {interpreter, root .. "/examples/" .. name}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return proc.run(argv, {env = env, stdin = opts.stdin, cwd = workdir})
end

local api_requests = emu.requests_for

describe("examples", function()
  before_each(function()
    emu.reset()
    workdir = proc.tmpdir()
  end)
  after_each(function() os.execute("rm -rf " .. proc.quote(workdir)) end)

  it("quickstart.lua walks through login, a key, billing, usage, settings and logout", function()
    local r = example("quickstart.lua")
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("7%. log out%s+ok\ndone\n$", r.stdout)
    assert.equal(1, #api_requests("POST", "/api-keys"))
    assert.equal(1, #api_requests("POST", "/auth/logout"))
    local deleted = 0
    for _, q in ipairs(emu.requests()) do
      if q.method == "DELETE" and q.path:match("^/api/v2/api%-keys/key_%x+$") and q.status == 204 then
        deleted = deleted + 1
      end
    end
    assert.equal(1, deleted)
    assert.equal(3, #emu.control("GET", "api-keys")) -- only the three seed keys are left
  end)

  describe("agency_keys.lua", function()
    it("creates one scoped key per CSV client, raw keys in a 0600 file, and is idempotent", function()
      local keys_file = workdir .. "/client-keys.txt"
      local r = example("agency_keys.lua", {root .. "/examples/clients.csv", keys_file})
      assert.equal(0, r.code, r.stdout .. r.stderr)
      assert.matches("3 created, 0 already present, 0 failed", r.stdout)
      assert.equal("600", proc.mode(keys_file))
      local stored = {}
      for _, k in ipairs(emu.control("GET", "api-keys")) do stored[k.name] = k end
      local lines = 0
      for line in proc.slurp(keys_file):gmatch("[^\n]+") do
        lines = lines + 1
        local client, name, id, raw = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(mf_%w+)$")
        assert.is_string(raw, line)
        assert.equal(id, stored[name].id)
        assert.equal(require("moltflow.admin").sha256(raw), stored[name].key_hash)
        assert.is_nil(r.stdout:find(raw, 1, true)) -- raw keys go to the file only
        assert.is_string(client)
      end
      assert.equal(3, lines)
      assert.same({"usage:read", "billing:manage"}, stored["client-padaria-lopes"].scopes)
      assert.same({"usage:read", "settings:manage"}, stored["client-clinica-sorriso-ltda"].scopes)
      local expiring = api_requests("POST", "/api-keys")
      assert.equal(90, dkjson.decode(expiring[1].body).expires_in_days)

      local again = example("agency_keys.lua", {root .. "/examples/clients.csv", keys_file})
      assert.equal(0, again.code, again.stderr)
      assert.matches("0 created, 3 already present", again.stdout)
      assert.equal(3, #api_requests("POST", "/api-keys"))
      local after = 0
      for _ in proc.slurp(keys_file):gmatch("[^\n]+") do after = after + 1 end
      assert.equal(3, after)
    end)

    it("exits 1 when the key may not grant the scopes", function()
      local r = example("agency_keys.lua", {root .. "/examples/clients.csv", workdir .. "/k.txt"},
                        {env = {MOLTFLOW_API_KEY = emu.seed.keys.usage_only}})
      assert.equal(1, r.code)
      assert.matches("FAILED: .*403", r.stderr)
      assert.is_nil(proc.mode(workdir .. "/k.txt"))
    end)
  end)

  describe("quota_guard.lua", function()
    local env = {MOLTFLOW_API_KEY = emu.seed.keys.all}
    it("exits 0 when the campaign fits and 1 when it is short", function()
      local ok = example("quota_guard.lua", {"3753"}, {env = env})
      assert.equal(0, ok.code, ok.stderr)
      assert.equal("OK: 3753 messages fit: 3753 of 5000 remain on plan pro\n", ok.stdout)
      local short = example("quota_guard.lua", {"4000"}, {env = env})
      assert.equal(1, short.code)
      assert.matches("short by 247", short.stdout)
      assert.equal(2, #api_requests("GET", "/billing/subscription"))
    end)

    it("exits 2 on a bad argument or when the quota cannot be read", function()
      assert.equal(2, example("quota_guard.lua", {"lots"}, {env = env}).code)
      local denied = example("quota_guard.lua", {"10"}, {env = {MOLTFLOW_API_KEY = emu.seed.keys.usage_only}})
      assert.equal(2, denied.code)
      assert.matches("403", denied.stderr)
    end)
  end)

  it("compliance_daily_csv.lua writes this month's daily usage as CSV", function()
    local file = workdir .. "/usage.csv"
    local r = example("compliance_daily_csv.lua", {file}, {env = {MOLTFLOW_API_KEY = emu.seed.keys.usage_only}})
    assert.equal(0, r.code, r.stderr)
    local lines = {}
    for l in proc.slurp(file):gmatch("[^\n]+") do lines[#lines + 1] = l end
    local today = tonumber(os.date("!%d"))
    assert.equal(today + 1, #lines)
    assert.equal("date,messages_sent,messages_received,total_messages,api_calls", lines[1])
    assert.equal(os.date("!%Y-%m-01"), lines[2]:match("^[^,]+"))
    local sent, received = 0, 0
    for i = 2, #lines do
      local s, rc, total = lines[i]:match("^[^,]+,(%d+),(%d+),(%d+),%d+$")
      assert.equal(tonumber(s) + tonumber(rc), tonumber(total))
      sent, received = sent + tonumber(s), received + tonumber(rc)
    end
    assert.matches(("%d days from %s: %d sent, %d received"):format(today, os.date("!%Y-%m-01"), sent, received),
                   r.stderr, 1, true)
    assert.equal("days=31", api_requests("GET", "/usage/daily")[1].query)
  end)

  describe("gdpr_export.lua", function()
    local env = {MOLTFLOW_API_KEY = emu.seed.keys.all}

    it("exports the account to a new 0600 file and erases each --erase contact", function()
      local file = workdir .. "/export.json"
      local r = example("gdpr_export.lua", {file, "--erase", "972501234567@c.us", "--erase", "+5511988887777"},
                        {env = env})
      assert.equal(0, r.code, r.stderr)
      assert.equal("600", proc.mode(file))
      local data = dkjson.decode(proc.slurp(file))
      assert.equal(emu.seed.owner.email, data.user.email)
      assert.equal(#data.api_keys, #emu.control("GET", "api-keys") - 1) -- all but the other tenant's key
      assert.matches("^exported owner@acme%.test %(Acme%) to " .. file:gsub("%p", "%%%0") .. ", mode 0600", r.stdout)
      assert.matches("\nerased 972501234567@c%.us: %d+ messages", r.stdout)
      assert.matches("\nerased %+5511988887777: %d+ messages", r.stdout)
      local sent = {}
      for i, q in ipairs(api_requests("POST", "/gdpr/contact-erasure")) do sent[i] = dkjson.decode(q.body) end
      assert.same({{phone = "972501234567@c.us", reason = "gdpr_request"},
                   {phone = "+5511988887777", reason = "gdpr_request"}}, sent)
    end)

    it("never overwrites a file, and exits 1 for a key without gdpr:manage leaving no file", function()
      local file = workdir .. "/export.json"
      assert.is_true(proc.sh("echo keep > " .. proc.quote(file)))
      local again = example("gdpr_export.lua", {file}, {env = env})
      assert.equal(1, again.code)
      assert.matches("must not exist yet", again.stderr)
      assert.equal("keep\n", proc.slurp(file))
      assert.same({}, api_requests("GET", "/users/me/export"))

      local denied = example("gdpr_export.lua", {}, {env = {MOLTFLOW_API_KEY = emu.seed.keys.usage_only}})
      assert.equal(1, denied.code)
      assert.matches("403", denied.stderr)
      assert.is_nil(proc.mode(workdir .. "/moltflow-export.json"))
      local default = example("gdpr_export.lua", {}, {env = env}) -- the default name, in the working directory
      assert.equal(0, default.code, default.stderr)
      assert.equal("600", proc.mode(workdir .. "/moltflow-export.json"))
    end)
  end)

  describe("webhook_verify.lua", function()
    -- RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?")
    local body = "what do ya want for nothing?"
    local signature = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"

    it("accepts the right signature and rejects a changed body or signature", function()
      local ok = example("webhook_verify.lua", {signature}, {env = {WEBHOOK_SECRET = "Jefe"}, stdin = body})
      assert.equal(0, ok.code, ok.stderr)
      assert.matches("^valid signature", ok.stdout)
      local tampered = example("webhook_verify.lua", {signature},
                               {env = {WEBHOOK_SECRET = "Jefe"}, stdin = body .. " "})
      assert.equal(1, tampered.code)
      local wrong = example("webhook_verify.lua", {signature:gsub("^5", "6")}, {env = {WEBHOOK_SECRET = "Jefe"},
                                                                              stdin = body})
      assert.equal(1, wrong.code)
      local event = '{"event":"message.received"}'
      local signed = example("webhook_verify.lua", {require("moltflow.admin").hmac_sha256("s3cret", event)},
                             {env = {WEBHOOK_SECRET = "s3cret"}, stdin = event})
      assert.equal("valid signature; event message.received\n", signed.stdout)
    end)

    it("exits 2 without a secret", function()
      assert.equal(2, example("webhook_verify.lua", {signature}, {stdin = body}).code)
    end)
  end)
end)
