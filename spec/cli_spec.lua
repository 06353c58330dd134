-- moltflow-admin: the real launcher as a child process against the emulator.
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local LAUNCHER = emu.root .. "/bin/moltflow-admin"
local seed = emu.seed

local config_dir

-- Runs moltflow-admin with the given words; env adds variables (the config
-- dir is this test's own unless env sets it).
local function admin(argv, opts)
  opts = opts or {}
  local env = {MOLTFLOW_CONFIG_DIR = config_dir, HOME = config_dir, LC_ALL = "C"}
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local words = {LAUNCHER}
  for _, a in ipairs(argv) do words[#words + 1] = a end
  return proc.run(words, {env = env, stdin = opts.stdin})
end

local function with_url(argv)
  local out = {"--base-url", emu.url}
  for _, a in ipairs(argv) do out[#out + 1] = a end
  return out
end

local function json(r)
  local v, _, err = dkjson.decode(r.stdout)
  assert(v ~= nil, "not JSON: " .. tostring(err) .. "\n" .. r.stdout .. r.stderr)
  return v
end

local function one_line(s)
  return select(2, s:gsub("\n", "")) == 1 and s:sub(-1) == "\n"
end

local function login(user)
  user = user or seed.owner
  local r = admin(with_url{"login", "--email", user.email, "--password-stdin"}, {stdin = user.password .. "\n"})
  assert(r.code == 0, r.stderr)
  return r
end

local function saved_tokens()
  return dkjson.decode(proc.slurp(config_dir .. "/credentials"))
end

-- No secret but the ones a test expects may appear in what the CLI printed.
local function assert_no_secrets(r, allowed)
  local text = r.stdout .. r.stderr
  local secrets = {seed.owner.password, seed.member.password, seed.keys.all, seed.keys.usage_only}
  local tokens = saved_tokens()
  if tokens then
    secrets[#secrets + 1] = tokens.access_token
    secrets[#secrets + 1] = tokens.refresh_token
  end
  for _, s in ipairs(secrets) do
    if s ~= allowed then assert.is_nil(text:find(s, 1, true), "secret in the output: " .. text) end
  end
end

local function count(haystack, needle)
  local n, at = 0, 1
  while true do
    local s, e = haystack:find(needle, at, true)
    if not s then return n end
    n, at = n + 1, e + 1
  end
end

describe("moltflow-admin", function()
  before_each(function()
    emu.reset()
    config_dir = proc.tmpdir()
  end)
  after_each(function()
    os.execute("rm -rf " .. proc.quote(config_dir))
  end)

  describe("help and usage errors", function()
    it("--help covers every command and the exit codes", function()
      local r = admin{"--help"}
      assert.equal(0, r.code)
      for _, cmd in ipairs{"login", "logout", "whoami", "keys", "subscription", "plans", "quota", "usage",
                           "settings"} do
        assert.matches("\n   " .. cmd .. " ", r.stdout)
      end
      assert.matches("Exit status: 0 ok, 1 HTTP error, 2 usage error, 3 quota", r.stdout)
      local subs = {{"keys", "list"}, {"keys", "create", "--scope"}, {"keys", "show"}, {"keys", "rotate"},
                    {"keys", "revoke"}, {"usage", "current"}, {"usage", "history", "--months"},
                    {"usage", "daily", "--csv"}, {"settings", "get"}, {"settings", "set", "--ai%-consent"},
                    {"quota", nil, "--fail%-above"}, {"login", nil, "--password%-stdin"}}
      for _, s in ipairs(subs) do
        local argv = {s[1]}
        if s[2] then argv[2] = s[2] end
        argv[#argv + 1] = "--help"
        local h = admin(argv)
        assert.equal(0, h.code, table.concat(argv, " "))
        assert.matches("Usage: moltflow%-admin " .. s[1], h.stdout)
        if s[3] then assert.matches(s[3], h.stdout) end
      end
    end)

    it("exits 2 with one line on stderr for a bad command line", function()
      for _, argv in ipairs{{"bogus"}, {"keys"}, {"keys", "create", "--name", "x"},
                            {"usage", "daily", "--days", "40"}, {"quota", "--fail-above", "lots"},
                            {"settings", "set", "--require-approval", "maybe"}, {}} do
        local r = admin(with_url(argv))
        assert.equal(2, r.code, table.concat(argv, " "))
        assert.equal("", r.stdout)
        assert.is_true(one_line(r.stderr), r.stderr)
        assert.matches("^moltflow%-admin: error: ", r.stderr)
      end
      assert.same({}, emu.requests())
    end)

    it("exits 2 for settings set with nothing to change, before any request", function()
      login()
      emu.control("DELETE", "requests")
      local r = admin{"settings", "set"}
      assert.equal(2, r.code)
      assert.matches("nothing to change", r.stderr)
      assert.same({}, emu.requests())
    end)
  end)

  describe("login", function()
    it("saves tokens in a 0600 file, prints no secret, and later commands use them", function()
      local r = login()
      assert.matches("Logged in as Olivia Owner <owner@acme.test>", r.stdout)
      assert.equal("600", proc.mode(config_dir .. "/credentials"))
      assert.equal("700", proc.mode(config_dir))
      local tokens = saved_tokens()
      assert.matches("^ey", tokens.access_token)
      assert.matches("^rt_", tokens.refresh_token)
      assert_no_secrets(r)
      local me = admin{"--json", "whoami"} -- the base URL comes from the login
      assert.equal(0, me.code, me.stderr)
      assert.equal("usr_acme_owner", json(me).id)
      assert_no_secrets(me)
      local reqs = emu.requests()
      assert.equal("Bearer " .. tokens.access_token, reqs[#reqs].headers.authorization)
    end)

    it("takes the password from MOLTFLOW_PASSWORD and the email from MOLTFLOW_EMAIL", function()
      local r = admin(with_url{"--json", "login"}, {env = {MOLTFLOW_EMAIL = seed.admin.email,
                                                           MOLTFLOW_PASSWORD = seed.admin.password}})
      assert.equal(0, r.code, r.stderr)
      local v = json(r)
      assert.equal("admin", v.user.role)
      assert.equal(config_dir .. "/credentials", v.credentials)
      assert.is_nil(r.stdout:find(seed.admin.password, 1, true))
      assert_no_secrets(r)
    end)

    it("defaults to ~/.config/moltflow/credentials", function()
      local r = admin(with_url{"login", "--email", seed.owner.email, "--password-stdin"},
                      {stdin = seed.owner.password .. "\n", env = {MOLTFLOW_CONFIG_DIR = ""}})
      assert.equal(0, r.code, r.stderr)
      assert.equal("600", proc.mode(config_dir .. "/.config/moltflow/credentials"))
    end)

    it("exits 4 on a wrong password without echoing it", function()
      local r = admin(with_url{"login", "--email", seed.owner.email, "--password-stdin"},
                      {stdin = "wrong-pass-9\n"})
      assert.equal(4, r.code)
      assert.is_true(one_line(r.stderr))
      assert.matches("HTTP 401 on POST /auth/login: Incorrect email or password", r.stderr)
      assert.is_nil((r.stdout .. r.stderr):find("wrong-pass-9", 1, true))
      assert.is_nil(proc.mode(config_dir .. "/credentials"))
    end)

    it("exits 2 when there is no terminal to ask for the password", function()
      local r = admin(with_url{"login", "--email", seed.owner.email})
      assert.equal(2, r.code)
      assert.matches("no terminal", r.stderr)
      assert.same({}, emu.requests())
    end)

    it("refreshes expired tokens by itself and saves the new pair, still 0600", function()
      login()
      local before = saved_tokens()
      emu.advance(1801)
      local r = admin{"--json", "whoami"}
      assert.equal(0, r.code, r.stderr)
      local after = saved_tokens()
      assert.not_equal(before.refresh_token, after.refresh_token)
      assert.not_equal(before.access_token, after.access_token)
      assert.equal("600", proc.mode(config_dir .. "/credentials"))
      local refreshes = 0
      for _, q in ipairs(emu.requests()) do
        if q.path == "/api/v2/auth/refresh" then refreshes = refreshes + 1 end
      end
      assert.equal(1, refreshes)
      assert_no_secrets(r)
    end)

    it("logout revokes the tokens on the server and deletes the file", function()
      login()
      local tokens = saved_tokens()
      local r = admin{"logout"}
      assert.equal(0, r.code, r.stderr)
      assert.is_nil(proc.mode(config_dir .. "/credentials"))
      local reqs = emu.requests()
      assert.equal("/api/v2/auth/logout", reqs[#reqs].path)
      assert.equal(200, reqs[#reqs].status)
      -- the old access token no longer works
      local c = require("moltflow.admin").new{base_url = emu.url, access_token = tokens.access_token, retry = false}
      assert.equal(401, select(2, c.auth:me()).status)
      local again = admin{"whoami"}
      assert.equal(4, again.code)
      assert.matches("not logged in", again.stderr)
      assert.equal(0, admin{"logout"}.code)
    end)
  end)

  describe("API keys", function()
    it("create prints the raw key once with a warning; list and show never do", function()
      login()
      local r = admin{"--json", "keys", "create", "--name", "ci", "--scope", "usage:read",
                      "--scope", "billing:manage", "--expires-in-days", "7"}
      assert.equal(0, r.code, r.stderr)
      local key = json(r)
      assert.matches("^mf_", key.raw_key)
      assert.same({"usage:read", "billing:manage"}, key.scopes)
      assert.equal(1, count(r.stdout, key.raw_key))
      assert.matches("shown only this once", r.stderr)
      assert.is_nil(r.stderr:find(key.raw_key, 1, true))
      assert_no_secrets(r, key.raw_key)
      local stored
      for _, k in ipairs(emu.control("GET", "api-keys")) do if k.id == key.id then stored = k end end
      assert.equal(require("moltflow.admin").sha256(key.raw_key), stored.key_hash)

      for _, argv in ipairs{{"keys", "list"}, {"--json", "keys", "list"}, {"keys", "show", key.id},
                            {"--json", "keys", "show", key.id}} do
        local o = admin(argv)
        assert.equal(0, o.code, o.stderr)
        assert.matches(key.id, o.stdout)
        assert.is_nil((o.stdout .. o.stderr):find(key.raw_key, 1, true))
      end
      assert.equal(3, #json(admin{"--json", "keys", "list"}))

      -- the human form prints it once too
      local h = admin{"keys", "create", "--name", "ci2", "--scope", "usage:read"}
      assert.equal(0, h.code, h.stderr)
      local raw = h.stdout:match("raw_key%s+(mf_%w+)")
      assert.equal(1, count(h.stdout, raw))
      assert.matches("only time the raw key is shown", h.stderr)
    end)

    it("rotate prints the new secret once; revoke ends the key; a missing key exits 1", function()
      local r = admin(with_url{"--json", "--api-key", seed.keys.all, "keys", "rotate", seed.key_ids.usage_only})
      assert.equal(0, r.code, r.stderr)
      local key = json(r)
      assert.not_equal(seed.keys.usage_only, key.raw_key)
      assert_no_secrets(r, key.raw_key)
      local old = admin(with_url{"--api-key", seed.keys.usage_only, "usage", "current"})
      assert.equal(4, old.code)
      assert.is_nil(old.stderr:find(seed.keys.usage_only, 1, true))
      assert.equal(0, admin(with_url{"--api-key", key.raw_key, "usage", "current"}).code)

      local rv = admin(with_url{"--api-key", seed.keys.all, "keys", "revoke", key.id})
      assert.equal(0, rv.code, rv.stderr)
      assert.equal("Revoked " .. key.id .. "\n", rv.stdout)
      local gone = admin(with_url{"--api-key", seed.keys.all, "keys", "show", key.id})
      assert.equal(1, gone.code)
      assert.equal("moltflow-admin: HTTP 404 on GET /api-keys/" .. key.id .. ": API key not found\n", gone.stderr)
      assert.equal("", gone.stdout)
    end)

    it("uses $MOLTFLOW_API_KEY, and a key without the scope exits 1", function()
      local env = {MOLTFLOW_API_KEY = seed.keys.usage_only, MOLTFLOW_API_URL = emu.url:gsub("/api/v2$", "")}
      local ok = admin({"--json", "usage", "current"}, {env = env})
      assert.equal(0, ok.code, ok.stderr)
      assert.equal(1247, json(ok).total_messages)
      local reqs = emu.requests()
      assert.equal(seed.keys.usage_only, reqs[#reqs].headers["x-api-key"])
      local denied = admin({"keys", "list"}, {env = env})
      assert.equal(1, denied.code)
      assert.matches("HTTP 403 on GET /api%-keys: Missing required scope: account:manage", denied.stderr)
      assert_no_secrets(denied)
    end)
  end)

  describe("billing, quota and usage", function()
    local key
    before_each(function() key = {"--base-url", emu.url, "--api-key", seed.keys.all} end)
    local function run(argv)
      local words = {}
      for _, w in ipairs(key) do words[#words + 1] = w end
      for _, w in ipairs(argv) do words[#words + 1] = w end
      return admin(words)
    end

    it("subscription and plans (plans needs no credentials)", function()
      local s = run{"--json", "subscription"}
      assert.equal(0, s.code, s.stderr)
      assert.equal("pro", json(s).plan_id)
      assert.matches("messages%s+1247%s+5000", run{"subscription"}.stdout)
      local p = admin(with_url{"--json", "plans"})
      assert.equal(0, p.code, p.stderr)
      assert.equal(4, #json(p).plans)
      assert.matches("\nbusiness%s+Business%s+149", admin(with_url{"plans"}).stdout)
    end)

    it("a bare --base-url host gets /api/v2 added; a URL with a path is kept", function()
      local host = emu.url:gsub("/api/v2$", "")
      for _, url in ipairs{host, host .. "/", emu.url} do
        emu.control("DELETE", "requests")
        local r = admin{"--json", "--base-url", url, "plans"}
        assert.equal(0, r.code, url .. ": " .. r.stderr)
        assert.same({200}, emu.statuses_for("GET", "/billing/plans"), url)
      end
    end)

    it("quota lists each limit and --fail-above exits 3 past the threshold", function()
      local q = run{"--json", "quota"}
      assert.equal(0, q.code, q.stderr)
      local v = json(q)
      assert.equal("messages", v.limits[2].name)
      assert.same({1247, 5000, 3753, 24.94}, {v.limits[2].used, v.limits[2].limit, v.limits[2].remaining,
                                              v.limits[2].percent})
      local over = run{"quota", "--fail-above", "50"}
      assert.equal(3, over.code)
      assert.equal("moltflow-admin: quota above 50%: sessions 66.67%\n", over.stderr)
      assert.matches("messages%s+1247%s+5000%s+3753%s+24.94%%", over.stdout)
      assert.equal(0, run{"quota", "--fail-above", "70"}.code)
    end)

    it("usage current, history and daily (chart, CSV, JSON)", function()
      local cur = run{"usage", "current"}
      assert.equal(0, cur.code, cur.stderr)
      assert.matches("total_messages%s+1247", cur.stdout)
      local h = json(run{"--json", "usage", "history", "--months", "3"})
      assert.equal(3, #h.months)
      local reqs = emu.requests()
      assert.equal("months=3", reqs[#reqs].query)

      local csv = run{"usage", "daily", "--days", "5", "--csv"}
      assert.equal(0, csv.code, csv.stderr)
      local lines = {}
      for l in csv.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.equal(6, #lines)
      assert.equal("date,messages_sent,messages_received,total_messages,api_calls", lines[1])
      assert.matches("^" .. os.date("!%Y-%m-%d"):gsub("%-", "%%-") .. ",%d+,%d+,%d+,%d+$", lines[6])

      local rows = json(run{"--json", "usage", "daily", "--days", "4"})
      assert.equal(4, #rows)
      local chart = run{"usage", "daily", "--days", "4"}
      assert.equal(0, chart.code)
      local bars = 0
      for l in chart.stdout:gmatch("[^\n]+") do
        if l:match("^%d%d%d%d%-%d%d%-%d%d  #+") then bars = bars + 1 end
      end
      assert.equal(4, bars)
    end)
  end)

  describe("settings", function()
    it("get and set, and a member is refused with exit 1", function()
      login()
      local r = admin{"--json", "settings", "set", "--allowed-number", "+14155550123", "--allowed-number",
                      "+5511999999999", "--require-approval", "on", "--ai-consent", "on"}
      assert.equal(0, r.code, r.stderr)
      assert.same({allowed_numbers = {"+14155550123", "+5511999999999"}, require_approval = true,
                   ai_consent_enabled = true}, json(r))
      local reqs = emu.requests()
      assert.same({allowed_numbers = {"+14155550123", "+5511999999999"}, require_approval = true,
                   ai_consent_enabled = true}, dkjson.decode(reqs[#reqs].body))
      assert.equal(1, #emu.control("GET", "consents"))
      local cleared = admin{"--json", "settings", "set", "--no-allowed-numbers", "--require-approval", "off"}
      assert.equal(0, cleared.code, cleared.stderr)
      reqs = emu.requests()
      assert.truthy(reqs[#reqs].body:find('"allowed_numbers":[]', 1, true), reqs[#reqs].body) -- [] not {}
      assert.same({allowed_numbers = {}, require_approval = false}, dkjson.decode(reqs[#reqs].body))
      assert.matches("require_approval%s+false", admin{"settings", "get"}.stdout)

      login(seed.member)
      local denied = admin{"settings", "set", "--ai-consent", "off"}
      assert.equal(1, denied.code)
      assert.equal("moltflow-admin: HTTP 403 on PATCH /tenant/settings: Insufficient role: member\n", denied.stderr)
    end)
  end)

  describe("failures", function()
    it("exits 5 on a network failure and 4 on a refused key, one line each", function()
      local net = admin{"--base-url", "http://127.0.0.1:1/api/v2", "plans"}
      assert.equal(5, net.code)
      assert.is_true(one_line(net.stderr), net.stderr)
      assert.matches("^moltflow%-admin: network error on GET /billing/plans", net.stderr)
      local bad = admin(with_url{"--api-key", "mf_notarealkey", "whoami"})
      assert.equal(4, bad.code)
      assert.is_true(one_line(bad.stderr))
      assert.is_nil(bad.stderr:find("mf_notarealkey", 1, true))
      local none = admin(with_url{"quota"})
      assert.equal(4, none.code)
      assert.matches("not logged in", none.stderr)
    end)

    it("exits 1 on a server error after the retries", function()
      emu.fault{path = "/usage/current", status = 503, times = 10}
      local r = admin(with_url{"--api-key", seed.keys.all, "usage", "current"})
      assert.equal(1, r.code)
      assert.matches("HTTP 503 on GET /usage/current", r.stderr)
    end)
  end)

  describe("--json on every command", function()
    -- one table, in an order that works: each row's stdout must be one JSON
    -- object or array, and the command must succeed
    it("prints JSON for login, every command, and logout", function()
      local key_id
      local rows = {
        {"login", "--email", seed.owner.email, "--password-stdin", stdin = seed.owner.password .. "\n"},
        {"whoami"},
        {"keys", "list"},
        {"keys", "create", "--name", "json-row", "--scope", "usage:read",
         after = function(v) key_id = v.id end},
        function() return {"keys", "show", key_id} end,
        function() return {"keys", "rotate", key_id} end,
        function() return {"keys", "revoke", key_id} end,
        {"subscription"}, {"plans"}, {"quota"},
        {"usage", "current"}, {"usage", "history", "--months", "2"}, {"usage", "daily", "--days", "3"},
        {"settings", "get"}, {"settings", "set", "--require-approval", "off"},
        {"logout"},
      }
      local names = {}
      for _, row in ipairs(rows) do
        if type(row) == "function" then row = row() end
        local argv = {"--json", "--base-url", emu.url}
        for _, w in ipairs(row) do argv[#argv + 1] = w end
        local r = admin(argv, {stdin = row.stdin})
        local name = table.concat(row, " ")
        assert.equal(0, r.code, name .. ": " .. r.stderr)
        local v = json(r)
        assert.is_table(v, name)
        assert.is_true(one_line(r.stdout), name .. ": " .. r.stdout)
        if row.after then row.after(v) end
        names[#names + 1] = row[1] .. (row[2] and not row[2]:match("^%-") and " " .. row[2] or "")
      end
      assert.equal(16, #names)
      assert.is_string(key_id)
      assert.same({200}, emu.statuses_for("POST", "/auth/logout"))
      assert.same({204}, emu.statuses_for("DELETE", "/api-keys/" .. key_id))
    end)
  end)

  describe("timeouts, in process", function()
    -- cli.main with admin.new wrapped to a 0.3 s timeout and no real sleeps:
    -- the emulator delays every answer by 1 s
    it("a timed-out call exits 5 (network), naming the timeout", function()
      local admin_mod = require "moltflow.admin"
      local cli = require "moltflow.cli"
      local new = admin_mod.new
      admin_mod.new = function(opts)
        opts.timeout, opts.sleep = 0.3, function() end
        return new(opts)
      end
      local stderr = io.stderr
      local path = config_dir .. "/stderr"
      io.stderr = assert(io.open(path, "w"))
      emu.fault{method = "GET", path = "/usage/current", delay = 1, times = 5}
      local ok, code = pcall(cli.main, {"--base-url", emu.url, "--api-key", seed.keys.all, "usage", "current"})
      io.stderr:close()
      io.stderr = stderr
      admin_mod.new = new
      assert(ok, tostring(code))
      assert.equal(cli.EXIT.network, code)
      assert.equal(5, code)
      local err = proc.slurp(path)
      assert.is_true(one_line(err), err)
      assert.matches("timeout error on GET /usage/current", err, 1, true)
      -- the server logs a delayed request once its answer is written
      assert.is_true(proc.wait_for(function() return #emu.statuses_for("GET", "/usage/current") >= 1 end, 5))
    end)
  end)

  describe("make install", function()
    it("installs a launcher that finds its modules under PREFIX", function()
      local prefix = proc.tmpdir()
      local mk = proc.run({"make", "--no-print-directory", "-s", "install", "PREFIX=" .. prefix, "LUA=lua5.4"},
                          {cwd = emu.root})
      assert.equal(0, mk.code, mk.stderr)
      assert.equal("755", proc.mode(prefix .. "/bin/moltflow-admin"))
      local r = proc.run({prefix .. "/bin/moltflow-admin", "--json", "--base-url", emu.url, "plans"},
                         {cwd = "/", env = {LUA_PATH = ";;", LUA_CPATH = ";;"}})
      assert.equal(0, r.code, r.stderr)
      assert.equal(4, #json(r).plans)
      os.execute("rm -rf " .. proc.quote(prefix))
    end)
  end)
end)
