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
  local words = {proc.lua, LAUNCHER} -- under the interpreter of this run
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
                           "settings", "export", "account"} do
        assert.matches("\n   " .. cmd .. " ", r.stdout)
      end
      assert.matches("Exit status: 0 ok, 1 HTTP error, 2 usage error, 3 quota", r.stdout)
      local subs = {{"keys", "list"}, {"keys", "create", "--scope"}, {"keys", "show"}, {"keys", "rotate"},
                    {"keys", "revoke"}, {"usage", "current"}, {"usage", "history", "--months"},
                    {"usage", "daily", "--csv"}, {"settings", "get"}, {"settings", "set", "--ai%-consent"},
                    {"quota", nil, "--fail%-above"}, {"login", nil, "--password%-stdin"},
                    {"export", nil, "%-%-output <file>"}, {"account", "delete", "%-%-password%-stdin"},
                    {"account", "delete", "%-%-yes"}}
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
      assert.equal("moltflow-admin: HTTP 404 on GET /api-keys/" .. key.id .. ": API key not found (requested "
                   .. emu.url .. "/api-keys/" .. key.id .. ")\n", gone.stderr)
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

  describe("servers, scopes and limits", function()
    it("takes MOLTFLOW_API_URL and --base-url with or without /api/v2 and a trailing slash", function()
      local host = emu.url:gsub("/api/v2$", "")
      for _, url in ipairs{emu.url, emu.url .. "/", host, host .. "/"} do
        local env = {MOLTFLOW_API_KEY = seed.keys.all, MOLTFLOW_API_URL = url}
        local r = admin({"--json", "usage", "current"}, {env = env})
        assert.equal(0, r.code, url .. ": " .. r.stderr)
        assert.equal(1247, json(r).total_messages)
        r = admin({"--base-url", url, "--api-key", seed.keys.all, "--json", "usage", "current"})
        assert.equal(0, r.code, url .. ": " .. r.stderr)
      end
      for _, r in ipairs(emu.requests()) do assert.equal("/api/v2/usage/current", r.path) end
    end)

    it("names the full URL requested in a 404, so a doubled /api/v2 shows", function()
      local r = admin({"--base-url", emu.url .. "/api/v2", "--api-key", seed.keys.all, "plans"})
      assert.equal(1, r.code)
      assert.matches("HTTP 404 on GET /billing/plans: .*%(requested " .. (emu.url .. "/api/v2/billing/plans)")
                     :gsub("%p", "%%%0"), r.stderr)
    end)

    it("--help of each command names the scope it needs, from the endpoint table", function()
      local endpoints = require "moltflow.endpoints"
      local scope_of = {}
      for _, e in ipairs(endpoints) do scope_of[e[1] .. "." .. e[2]] = e[6] or false end
      local cli = require "moltflow.cli"
      for _, entry in ipairs(cli.COMMAND_ENDPOINTS) do
        local argv = {}
        for w in entry[1]:gmatch("%S+") do argv[#argv + 1] = w end
        argv[#argv + 1] = "--help"
        local h = admin(argv)
        assert.equal(0, h.code, entry[1])
        for _, label in ipairs(entry[2]) do
          if scope_of[label] then
            assert.truthy(h.stdout:find("Credentials: a login, or an API key with the scope " .. scope_of[label],
                                        1, true) or h.stdout:find(" and " .. scope_of[label], 1, true),
                          entry[1] .. "\n" .. h.stdout)
          end
        end
      end
      assert.matches("Credentials: none needed", admin{"plans", "--help"}.stdout)
      assert.matches("Credentials: a login %(API keys cannot do this%)", admin{"logout", "--help"}.stdout)
      assert.matches("scope usage:read", admin{"usage", "daily", "--help"}.stdout)
      assert.matches("scope billing:manage", admin{"quota", "--help"}.stdout)
    end)

    it("keys create --help lists every scope, and the emulator accepts exactly those", function()
      local scopes = require("moltflow.endpoints").scopes
      local h = admin{"keys", "create", "--help"}
      local text = h.stdout:gsub("%s+", " ")
      for _, s in ipairs(scopes) do assert.truthy(text:find(" " .. s:gsub("%p", "%%%0") .. "[,%s]"), s) end
      -- every endpoint's scope is a listed one
      local listed = {}
      for _, s in ipairs(scopes) do listed[s] = true end
      for _, e in ipairs(require "moltflow.endpoints") do
        if e[6] then assert.is_true(listed[e[6]], e[6]) end
      end
      local all = admin(with_url{"--api-key", seed.keys.all, "--json", "keys", "create", "--name", "every-scope",
                                 "--scope", table.concat(scopes, ",")})
      assert.equal(0, all.code, all.stderr)
      assert.same(scopes, json(all).scopes)
      local unknown = admin(with_url{"--api-key", seed.keys.all, "keys", "create", "--name", "x", "--scope",
                                     "usage:write"})
      assert.equal(1, unknown.code)
      assert.matches("HTTP 422", unknown.stderr)
    end)

    it("quota --limit checks the limits named only; an unknown name is a usage error", function()
      local key = {"--base-url", emu.url, "--api-key", seed.keys.all}
      local function run(argv)
        local words = {}
        for _, w in ipairs(key) do words[#words + 1] = w end
        for _, w in ipairs(argv) do words[#words + 1] = w end
        return admin(words)
      end
      -- sessions are at 66.67 %, messages at 24.94 %
      assert.equal(3, run{"quota", "--fail-above", "50"}.code)
      local messages = run{"quota", "--limit", "messages", "--fail-above", "50"}
      assert.equal(0, messages.code, messages.stderr)
      assert.matches("\nmessages%s+1247", messages.stdout)
      assert.is_nil(messages.stdout:find("sessions", 1, true))
      local over = run{"quota", "--limit", "messages", "--fail-above", "20"}
      assert.equal(3, over.code)
      assert.equal("moltflow-admin: quota above 20%: messages 24.94%\n", over.stderr)
      local two = json(run{"--json", "quota", "--limit", "sessions", "--limit", "messages"})
      assert.same({"sessions", "messages"}, {two.limits[1].name, two.limits[2].name})
      assert.equal(2, #two.limits)
      emu.control("DELETE", "requests")
      local bad = run{"quota", "--limit", "minutes", "--fail-above", "80"}
      assert.equal(2, bad.code)
      assert.is_true(one_line(bad.stderr), bad.stderr)
      assert.matches("'%-%-limit' must be one of 'sessions', 'messages', 'groups', 'labels', 'ai_replies'",
                     bad.stderr)
      assert.same({}, emu.requests())
      assert.matches("one of sessions, messages, groups, labels, ai_replies", admin{"quota", "--help"}.stdout)
    end)

    it("usage daily --csv --output writes the file atomically, mode 0600; --output without --csv is refused",
       function()
      local path = config_dir .. "/daily.csv"
      local f = assert(io.open(path, "w"))
      f:write("yesterday\n")
      f:close()
      local r = admin(with_url{"--api-key", seed.keys.all, "usage", "daily", "--days", "3", "--csv",
                               "--output", path})
      assert.equal(0, r.code, r.stderr)
      assert.equal("", r.stdout)
      local text = proc.slurp(path)
      assert.matches("^date,messages_sent,messages_received,total_messages,api_calls\n", text)
      assert.equal(4, select(2, text:gsub("\n", "")))
      assert.equal("600", proc.mode(path))
      local no_csv = admin(with_url{"--api-key", seed.keys.all, "usage", "daily", "--output", path})
      assert.equal(2, no_csv.code)
      assert.equal(text, proc.slurp(path))
    end)
  end)

  describe("examples/cron_quota.sh", function()
    local SCRIPT = emu.root .. "/examples/cron_quota.sh"
    local function cron(env)
      local csv_dir = config_dir .. "/csv"
      local e = {MOLTFLOW_ADMIN = LAUNCHER, CSV_DIR = csv_dir, MOLTFLOW_API_URL = emu.url,
                 MOLTFLOW_API_KEY = seed.keys.all}
      for k, v in pairs(env or {}) do e[k] = v end
      local r = admin({"sh", SCRIPT}, {env = e})
      local files = {}
      local p = io.popen("ls " .. proc.quote(csv_dir) .. " 2>/dev/null")
      for name in p:lines() do files[#files + 1] = name end
      p:close()
      r.files, r.csv_dir = files, csv_dir
      return r
    end
    -- admin() puts the launcher first: run the script through sh instead
    local real_admin = admin
    before_each(function()
      admin = function(argv, opts)
        local env = {MOLTFLOW_CONFIG_DIR = config_dir, HOME = config_dir, LC_ALL = "C",
                     PATH = os.getenv("PATH")}
        for k, v in pairs(opts.env or {}) do env[k] = v end
        return proc.run(argv, {env = env})
      end
    end)
    after_each(function() admin = real_admin end)

    it("passes under the threshold and writes the day's CSV", function()
      local r = cron()
      assert.equal(0, r.code, r.stderr)
      assert.equal(1, #r.files)
      assert.matches("^usage%-%d%d%d%d%-%d%d%-%d%d%.csv$", r.files[1])
      assert.matches("^date,messages_sent", proc.slurp(r.csv_dir .. "/" .. r.files[1]))
    end)

    it("exits 3 with an alert above it (messages only), and still writes the CSV", function()
      local r = cron{QUOTA_PERCENT = "20"}
      assert.equal(3, r.code)
      assert.matches("ALERT: messages above 20%% of the plan", r.stderr)
      assert.equal(1, #r.files)
    end)

    it("tells a failure to check apart from an alert: network 5, credentials 4, no CSV", function()
      local net = cron{MOLTFLOW_API_URL = "http://127.0.0.1:1"}
      assert.equal(5, net.code)
      assert.matches("ERROR: could not check the quota %(moltflow%-admin exit 5%)", net.stderr)
      assert.is_nil(net.stderr:find("ALERT", 1, true))
      assert.equal(0, #net.files)
      local auth = cron{MOLTFLOW_API_KEY = "mf_notarealkey"}
      assert.equal(4, auth.code)
      assert.matches("ERROR: could not check", auth.stderr)
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

  describe("GDPR", function()
    local function ls(dir)
      local p = io.popen("ls -A " .. proc.quote(dir))
      local names = {}
      for name in p:lines() do names[#names + 1] = name end
      p:close()
      table.sort(names)
      return names
    end

    it("export prints the account's JSON, or writes it to a new file with mode 0600", function()
      login()
      local r = admin{"export"}
      assert.equal(0, r.code, r.stderr)
      local v = json(r)
      assert.equal(seed.owner.email, v.user.email)
      assert.equal("t_acme", v.tenant.id)
      assert.is_table(v.api_keys)
      assert_no_secrets(r)

      -- an existing, world-readable file is replaced by a private one
      local dir = config_dir .. "/exports"
      assert.is_true(proc.sh("mkdir " .. proc.quote(dir)))
      local path = dir .. "/account.json"
      assert.is_true(proc.sh("umask 022 && echo old > " .. proc.quote(path)))
      assert.equal("644", proc.mode(path))
      local w = admin{"export", "-o", path}
      assert.equal(0, w.code, w.stderr)
      assert.equal("Exported the account's data to " .. path .. " (mode 0600: it is personal data)\n", w.stdout)
      assert.equal("600", proc.mode(path))
      assert.equal(seed.owner.email, dkjson.decode(proc.slurp(path)).user.email)
      assert.same({"account.json"}, ls(dir)) -- no temporary file left

      -- a symlink is neither written through nor replaced (issue 24: spec/hardening/cli_files_spec.lua)
      local victim, link = dir .. "/victim", dir .. "/link.json"
      assert.is_true(proc.sh("echo untouched > " .. proc.quote(victim) .. " && ln -s victim " .. proc.quote(link)))
      assert.equal(2, admin{"--json", "export", "--output", link}.code)
      assert.equal("untouched\n", proc.slurp(victim))
      assert.is_true(proc.sh("test -L " .. proc.quote(link)))

      local nowhere = admin{"export", "-o", config_dir .. "/missing/dir/account.json"}
      assert.equal(2, nowhere.code)
      assert.is_true(one_line(nowhere.stderr), nowhere.stderr)
      assert.matches("cannot create", nowhere.stderr)
    end)

    it("export with a key lacking gdpr:manage exits 1", function()
      local r = admin(with_url{"export"}, {env = {MOLTFLOW_API_KEY = seed.keys.usage_only}})
      assert.equal(1, r.code)
      assert.equal("moltflow-admin: HTTP 403 on GET /users/me/export: Missing required scope: gdpr:manage\n", r.stderr)
    end)

    it("account delete --password-stdin --yes deletes the account, exits 0 and forgets the saved login", function()
      login()
      local r = admin({"account", "delete", "--password-stdin", "--yes"}, {stdin = seed.owner.password .. "\n"})
      assert.equal(0, r.code, r.stderr)
      assert.equal("Deleted the account owner@acme.test and tenant t_acme.\n", r.stdout)
      assert_no_secrets(r)
      local sent = emu.requests_for("DELETE", "/users/me")
      assert.equal(1, #sent)
      assert.same({current_password = seed.owner.password}, dkjson.decode(sent[1].body))
      assert.is_nil(io.open(config_dir .. "/credentials", "rb"))
      assert.equal(4, admin{"whoami"}.code) -- not logged in any more
      assert.equal(4, admin(with_url{"whoami"}, {env = {MOLTFLOW_API_KEY = seed.keys.all}}).code)
    end)

    it("account delete asks for the email to confirm: a mismatch sends nothing", function()
      login()
      local r = admin({"account", "delete", "--password-stdin"},
                      {stdin = seed.owner.password .. "\nsomeone@else.test\n"})
      assert.equal(2, r.code)
      assert.matches("This deletes the account owner@acme.test and every record of tenant t_acme", r.stderr)
      assert.matches("moltflow%-admin: account delete: the email typed does not match; nothing was deleted\n$",
                     r.stderr)
      assert.equal(0, #emu.requests_for("DELETE", "/users/me"))
      assert.is_table(saved_tokens())
      local ok = admin({"--json", "account", "delete", "--password-stdin"},
                       {stdin = seed.owner.password .. "\n" .. seed.owner.email .. "\n"})
      assert.equal(0, ok.code, ok.stderr)
      assert.same({deleted = true, email = seed.owner.email, tenant_id = "t_acme"}, json(ok))
    end)

    it("account delete exits non-zero unless the server confirmed, saying whether anything was deleted", function()
      login()
      local argv = {"account", "delete", "--password-stdin", "--yes"}
      local wrong = admin(argv, {stdin = "wrong-password\n"})
      assert.equal(4, wrong.code)
      assert.equal("moltflow-admin: HTTP 401 on DELETE /users/me: Incorrect password; nothing was deleted\n",
                   wrong.stderr)
      assert.is_nil((wrong.stdout .. wrong.stderr):find("wrong-password", 1, true))
      assert.is_table(saved_tokens()) -- still logged in

      emu.fault{method = "DELETE", path = "/users/me", status = 503, times = 3}
      local down = admin(argv, {stdin = seed.owner.password .. "\n"})
      assert.equal(1, down.code)
      assert.is_true(one_line(down.stderr), down.stderr)
      assert.matches("HTTP 503 on DELETE /users/me: .*the server did not confirm", down.stderr)
      assert.same({401, 503}, emu.statuses_for("DELETE", "/users/me")) -- one attempt each, no retry
      assert_no_secrets(down)
      emu.control("DELETE", "faults")

      login(seed.member)
      local member = admin(argv, {stdin = seed.member.password .. "\n"})
      assert.equal(1, member.code)
      assert.equal("moltflow-admin: HTTP 403 on DELETE /users/me: Insufficient role: member; nothing was deleted\n",
                   member.stderr)
    end)

    it("account delete without a terminal nor --password-stdin exits 2 before any request", function()
      login()
      emu.control("DELETE", "requests")
      local r = admin{"account", "delete"}
      assert.equal(2, r.code)
      assert.matches("no terminal to ask for the password: use %-%-password%-stdin", r.stderr)
      assert.same({}, emu.requests())
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

  describe("terminal, servers and files", function()
    local pty = require "spec.support.pty"

    -- On a pseudo-terminal, with only these variables; PATH empty unless
    -- given: then no helper program can be found, so none may be needed.
    local function tty_admin(argv, steps, path)
      local words = {"/usr/bin/lua5.4", LAUNCHER}
      for _, a in ipairs(argv) do words[#words + 1] = a end
      return pty.run(words, steps, {env = {MOLTFLOW_CONFIG_DIR = config_dir, HOME = config_dir, PATH = path or "",
                                           LC_ALL = "C"}})
    end

    it("logs in at the prompts with the password unechoed, under an empty PATH", function()
      local r = tty_admin(with_url{"login"}, {{expect = "Email: "}, {send = seed.owner.email .. "\n"},
                                              {expect = "Password: "}, {send = seed.owner.password .. "\n"},
                                              {expect = "Logged in"}})
      assert.equal(0, r.code, r.output)
      assert.is_nil(r.output:find(seed.owner.password, 1, true))
      assert.matches(seed.owner.email, r.output, 1, true) -- the email is echoed
      assert.is_true(r.echo, r.stty)
      assert.equal("600", proc.mode(config_dir .. "/credentials"))
      assert.equal("700", proc.mode(config_dir))
      assert.equal(0, admin{"whoami"}.code)
    end)

    for _, case in ipairs({{"Ctrl-C", "\3", 130}, {"Ctrl-\\", "\28", 131}}) do
      it(case[1] .. " at the password prompt exits " .. case[3] .. " and leaves the terminal sane", function()
        local r = tty_admin(with_url{"login", "--email", seed.owner.email},
                            {{expect = "Password: "}, {send = "half-typed"}, {send = case[2]}}, os.getenv("PATH"))
        assert.equal(case[3], r.code, r.output)
        assert.matches("moltflow-admin: interrupted", r.output, 1, true)
        assert.is_true(r.echo, r.stty)
        assert.is_true(r.icanon, r.stty)
        assert.is_nil(r.output:find("half-typed", 1, true))
        assert.same({}, emu.requests())
      end)
    end

    it("Ctrl-C during a request exits 130", function()
      login()
      emu.fault{path = "/auth/me", delay = 1}
      local dir = proc.tmpdir()
      local env = ("MOLTFLOW_CONFIG_DIR=%s HOME=%s"):format(proc.quote(config_dir), proc.quote(config_dir))
      assert(os.execute(("sh -c '%s %s whoami >/dev/null 2>&1 & echo $! >%s/pid; wait $!; echo $? >%s/rc' &"):format(
        env, proc.quote(LAUNCHER), dir, dir)))
      local core = require "moltflow.core"
      local deadline = core.monotime() + 20
      -- awaits the request in flight: the emulator has taken the fault and holds the answer
      while (#emu.control("GET", "faults") > 0 or proc.slurp(dir .. "/pid") == "") and core.monotime() < deadline do
        core.sleep(0.02)
      end
      assert(os.execute("kill -INT " .. proc.slurp(dir .. "/pid"):match("%d+")))
      while proc.slurp(dir .. "/rc") == "" and core.monotime() < deadline do core.sleep(0.05) end
      local rc = tonumber(proc.slurp(dir .. "/rc"))
      os.execute("rm -rf " .. proc.quote(dir))
      assert.equal(130, rc)
    end)

    proc.it_as_other_user(it, pending)("logs in and works in a process that cannot start another one, with an empty PATH", function()
      assert(os.execute("chown 1 " .. proc.quote(config_dir)))
      local function run(argv, stdin)
        local words = {"setpriv", "--reuid=1", "--regid=1", "--clear-groups", "prlimit", "--nproc=1", "env", "-i",
                       "PATH=", "MOLTFLOW_CONFIG_DIR=" .. config_dir .. "/moltflow", "/usr/bin/lua5.4", LAUNCHER}
        for _, a in ipairs(with_url(argv)) do words[#words + 1] = a end
        return proc.run(words, {stdin = stdin})
      end
      local r = run({"login", "--email", seed.owner.email, "--password-stdin"}, seed.owner.password .. "\n")
      assert.equal(0, r.code, r.stderr)
      assert.equal("700", proc.mode(config_dir .. "/moltflow"))
      assert.equal("600", proc.mode(config_dir .. "/moltflow/credentials"))
      local me = run{"--json", "whoami"}
      assert.equal(0, me.code, me.stderr)
      assert.equal("usr_acme_owner", json(me).id)
    end)

    it("keeps a login for its server: another base URL gets no token, and its 401 deletes nothing", function()
      login()
      local before = proc.slurp(config_dir .. "/credentials")
      local other = emu.url:gsub("127%.0%.0%.1", "localhost") -- the same emulator, another server's URL
      emu.fault{path = "/auth/me", status = 401, body = '{"detail":"Not authenticated"}', times = 3}
      emu.fault{path = "/auth/refresh", status = 401, body = '{"detail":"Invalid refresh token"}', times = 3}
      local seen = #emu.requests()
      for _, r in ipairs({admin{"--base-url", other, "whoami"},
                          admin({"whoami"}, {env = {MOLTFLOW_API_URL = other:gsub("/api/v2$", "")}})}) do
        assert.equal(4, r.code, r.stderr)
        assert.is_true(one_line(r.stderr), r.stderr)
        assert.matches("not logged in to " .. other .. ": the saved login is for " .. emu.url, r.stderr, 1, true)
      end
      assert.equal(seen, #emu.requests()) -- nothing was sent
      assert.equal(before, proc.slurp(config_dir .. "/credentials"))
      emu.control("DELETE", "faults")
      assert.equal(0, admin{"whoami"}.code)
      -- logging out there leaves this login alone; logging in there replaces it
      assert.matches("Not logged in to " .. other, admin{"--base-url", other, "logout"}.stdout, 1, true)
      assert.equal(before, proc.slurp(config_dir .. "/credentials"))
      local there = admin({"--base-url", other, "login", "--email", seed.owner.email, "--password-stdin"},
                          {stdin = seed.owner.password .. "\n"})
      assert.equal(0, there.code, there.stderr)
      assert.equal(other, saved_tokens().base_url)
      assert.equal(4, admin{"--base-url", emu.url, "whoami"}.code)
    end)

    it("escapes control characters from the server in tables and errors; --json stays exact", function()
      login()
      local name = "\27]0;pwned\7\27[2J\127\194\155x"
      local body = dkjson.encode({{id = "key_evil", name = name, key_prefix = "mf_ev", scopes = {"usage:read"},
                                   is_active = true}})
      emu.fault{path = "/api-keys", body = body, status = 200, times = 2}
      local r = admin{"keys", "list"}
      assert.equal(0, r.code, r.stderr)
      assert.is_nil((r.stdout:gsub("\n", "")):find("[%z\1-\31\127]"))
      assert.is_nil(r.stdout:find("\194\155", 1, true))
      assert.matches("\\x1b]0;pwned\\x07\\x1b[2J\\x7f\\u009bx", r.stdout, 1, true)
      local j = admin{"--json", "keys", "list"}
      assert.equal(name, json(j)[1].name)
      assert.is_nil(j.stdout:find("[\27\127]") or j.stdout:find("\194\155", 1, true))

      emu.fault{path = "/usage/current", status = 400, body = '{"detail":"\\u001b[2Jbad \\u009b[31mthing"}'}
      local e = admin{"usage", "current"}
      assert.equal(1, e.code)
      assert.is_true(one_line(e.stderr), e.stderr)
      assert.matches("\\x1b[2Jbad \\u009b[31mthing", e.stderr, 1, true)
      assert.is_nil(e.stderr:find("\27", 1, true))
    end)

    it("warns about a credentials file that others may read, or a corrupt one, naming it and the fix", function()
      login()
      local path = config_dir .. "/credentials"
      assert(os.execute("chmod 644 " .. proc.quote(path)))
      local r = admin{"whoami"}
      assert.equal(4, r.code)
      assert.matches("warning: ignoring the token file " .. path .. ": group or others may read or write it "
                     .. "(mode 644); remove it and log in again", r.stderr, 1, true)
      local f = assert(io.open(path, "wb"))
      f:write('{"access_token": "ey')
      f:close()
      assert(os.execute("chmod 600 " .. proc.quote(path)))
      r = admin{"whoami"}
      assert.equal(4, r.code)
      assert.matches("warning: ignoring the token file " .. path .. ": it is corrupt", r.stderr, 1, true)
      assert.matches("not logged in", r.stderr, 1, true)
    end)
  end)

  describe("--json on every command", function()
    -- one table, in an order that works: each row's stdout must be one JSON
    -- object or array, and the command must succeed
    it("prints JSON for login, every command, and logout", function()
      local key_id
      -- `after` checks what the object says, not only that it is one
      local raw_keys = {}
      local rows = {
        {"login", "--email", seed.owner.email, "--password-stdin", stdin = seed.owner.password .. "\n",
         after = function(v) assert.equal(seed.owner.email, v.user.email) assert.is_string(v.credentials) end},
        {"whoami", after = function(v) assert.equal(seed.owner.email, v.email) end},
        {"keys", "list", after = function(v) assert.equal("key_acme_all", v[1].id) end},
        {"keys", "create", "--name", "json-row", "--scope", "usage:read",
         after = function(v)
           key_id = v.id
           raw_keys[1] = v.raw_key
           assert.equal("json-row", v.name)
           assert.same({"usage:read"}, v.scopes)
         end},
        function() return {"keys", "show", key_id, after = function(v)
          assert.equal(key_id, v.id)
          assert.is_nil(v.raw_key)
        end} end,
        function() return {"keys", "rotate", key_id, after = function(v)
          assert.equal(key_id, v.id)
          assert.is_string(v.raw_key)
          assert.not_equal(raw_keys[1], v.raw_key)
        end} end,
        function() return {"keys", "revoke", key_id, after = function(v) assert.same({revoked = key_id}, v) end} end,
        {"subscription", after = function(v) assert.equal("pro", v.plan_id) end},
        {"plans", after = function(v) assert.equal("free", v.plans[1].id) end},
        {"quota", after = function(v) assert.equal("sessions", v.limits[1].name) end},
        {"usage", "current", after = function(v) assert.equal(5000, v.limit_messages) end},
        {"usage", "history", "--months", "2", after = function(v) assert.equal(2, #v.months) end},
        {"usage", "daily", "--days", "3", after = function(v) assert.equal(3, #v) end},
        {"settings", "get", after = function(v) assert.is_false(v.require_approval) end},
        {"settings", "set", "--require-approval", "on", after = function(v) assert.is_true(v.require_approval) end},
        {"logout", after = function(v) assert.same({logged_out = true}, v) end},
        {"logout", after = function(v) assert.same({logged_out = false}, v) end}, -- nothing left to log out
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
      assert.equal(17, #names)
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
      io.stderr = assert(io.open(path, "w")) -- luacheck: ignore 122 (the CLI writes its progress there)
      emu.fault{method = "GET", path = "/usage/current", delay = 1, times = 5}
      local ok, code = pcall(cli.main, {"--base-url", emu.url, "--api-key", seed.keys.all, "usage", "current"})
      io.stderr:close()
      io.stderr = stderr -- luacheck: ignore 122
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
      local mk = proc.run({"make", "--no-print-directory", "-s", "install", "PREFIX=" .. prefix, "LUA=" .. proc.lua},
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
