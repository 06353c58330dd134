-- Issue 27: CLI cases no spec checked, one behaviour each, with the real
-- launcher as a child process against the emulator: a deletion answered with
-- exactly 500; the config directory from $XDG_CONFIG_HOME; a logout that
-- must keep the login another server's `login` saved meanwhile; `-o -` for
-- stdout; the daily chart where a small day sits next to a busy one.
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

-- absolute: some cases run in a directory of their own
local ROOT = emu.root:sub(1, 1) == "/" and emu.root or (assert(io.popen("pwd")):read("*l") .. "/" .. emu.root)
local LAUNCHER = ROOT .. "/bin/moltflow-admin"
local seed = emu.seed

local home -- this test's own directory

-- env: the variables of the run (MOLTFLOW_CONFIG_DIR is this test's own
-- unless env says false: then unset)
local function words(argv)
  local w = {proc.lua, LAUNCHER}
  for _, a in ipairs(argv) do w[#w + 1] = a end
  return w
end
local function environment(env)
  local e = {MOLTFLOW_CONFIG_DIR = home .. "/config", HOME = home, LC_ALL = "C"}
  for k, v in pairs(env or {}) do e[k] = v or nil end
  return e
end
local function run(argv, opts)
  opts = opts or {}
  return proc.run(words(argv), {env = environment(opts.env), stdin = opts.stdin, cwd = opts.cwd})
end

local function login(url, env)
  local r = run({"--base-url", url or emu.url, "login", "--email", seed.owner.email, "--password-stdin"},
                {stdin = seed.owner.password .. "\n", env = env})
  assert(r.code == 0, r.stderr)
  return r
end

local function one_line(s)
  return select(2, s:gsub("\n", "")) == 1 and s:sub(-1) == "\n"
end

local function listing(dir)
  local p = io.popen("ls -A " .. proc.quote(dir))
  local names = {}
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  table.sort(names)
  return names
end

describe("moltflow-admin, cases", function()
  before_each(function()
    emu.reset()
    home = proc.tmpdir()
  end)
  after_each(function() os.execute("rm -rf " .. proc.quote(home)) end)

  describe("account delete", function()
    local argv = {"account", "delete", "--password-stdin", "--yes"}

    it("answered exactly 500 says the server did not confirm, never that nothing was deleted", function()
      login()
      emu.fault{method = "DELETE", path = "/users/me", status = 500}
      local r = run(argv, {stdin = seed.owner.password .. "\n"})
      assert.equal(1, r.code)
      assert.is_true(one_line(r.stderr), r.stderr)
      assert.matches("^moltflow%-admin: HTTP 500 on DELETE /users/me: .*; the server did not confirm: "
                     .. "check with 'moltflow%-admin whoami' before trying again\n$", r.stderr)
      assert.is_nil(r.stderr:find("nothing was deleted", 1, true))
      assert.same({500}, emu.statuses_for("DELETE", "/users/me")) -- sent once
      assert.is_table(dkjson.decode(proc.slurp(home .. "/config/credentials"))) -- still logged in
    end)

    it("answered 499 or 404 says nothing was deleted", function()
      login()
      for _, status in ipairs{499, 404} do
        emu.fault{method = "DELETE", path = "/users/me", status = status, body = '{"detail":"no"}'}
        local r = run(argv, {stdin = seed.owner.password .. "\n"})
        assert.equal(1, r.code, r.stderr)
        assert.is_true(one_line(r.stderr), r.stderr)
        assert.matches(("^moltflow%%-admin: HTTP %d on DELETE /users/me: no.*; nothing was deleted\n$"):format(status),
                       r.stderr)
        assert.is_nil(r.stderr:find("did not confirm", 1, true))
      end
    end)
  end)

  describe("the config directory", function()
    it("is $XDG_CONFIG_HOME/moltflow when $MOLTFLOW_CONFIG_DIR is not set", function()
      local env = {MOLTFLOW_CONFIG_DIR = false, XDG_CONFIG_HOME = home .. "/xdg"}
      local r = login(nil, env)
      local path = home .. "/xdg/moltflow/credentials"
      assert.matches("tokens saved to " .. path, r.stdout, 1, true)
      assert.equal("600", proc.mode(path))
      assert.equal("700", proc.mode(home .. "/xdg/moltflow"))
      assert.is_nil(proc.mode(home .. "/.config"))
      assert.is_nil(proc.mode(home .. "/config"))
      local who = run({"--json", "whoami"}, {env = env})
      assert.equal(0, who.code, who.stderr)
      assert.equal(seed.owner.email, dkjson.decode(who.stdout).email)
      -- the server saved at login is found there too (no --base-url given)
      assert.equal(emu.url, dkjson.decode(proc.slurp(home .. "/xdg/moltflow/config.json")).base_url)
    end)

    it("is $XDG_CONFIG_HOME/moltflow when $MOLTFLOW_CONFIG_DIR is empty", function()
      local env = {MOLTFLOW_CONFIG_DIR = "", XDG_CONFIG_HOME = home .. "/xdg"}
      login(nil, env)
      assert.equal("600", proc.mode(home .. "/xdg/moltflow/credentials"))
    end)

    it("is ~/.config/moltflow when neither is set, and $MOLTFLOW_CONFIG_DIR wins over $XDG_CONFIG_HOME", function()
      login(nil, {MOLTFLOW_CONFIG_DIR = false, XDG_CONFIG_HOME = ""})
      assert.equal("600", proc.mode(home .. "/.config/moltflow/credentials"))
      login(nil, {XDG_CONFIG_HOME = home .. "/xdg"})
      assert.equal("600", proc.mode(home .. "/config/credentials"))
      assert.is_nil(proc.mode(home .. "/xdg"))
    end)
  end)

  describe("logout", function()
    it("keeps the login another server's `login` saved while it ran", function()
      login()
      local other = emu.url:gsub("127%.0%.0%.1", "localhost") -- the same emulator, another server's URL
      -- the logout runs in the background, held by the server until the
      -- other login (in the foreground) has replaced the file
      emu.fault{method = "POST", path = "/auth/logout", delay = 3}
      local dir = proc.tmpdir()
      local env = {}
      for k, v in pairs(environment()) do env[#env + 1] = proc.quote(k .. "=" .. v) end
      local ws = {}
      for _, w in ipairs(words{"logout"}) do ws[#ws + 1] = proc.quote(w) end
      os.execute(("(env -u MOLTFLOW_API_KEY -u MOLTFLOW_API_URL %s %s </dev/null >%s 2>%s; echo $? >%s.tmp; mv %s.tmp %s) &")
        :format(table.concat(env, " "), table.concat(ws, " "), proc.quote(dir .. "/out"), proc.quote(dir .. "/err"),
                proc.quote(dir .. "/rc"), proc.quote(dir .. "/rc"), proc.quote(dir .. "/rc")))
      assert.is_true(proc.wait_for(function() return #emu.requests_for("POST", "/auth/logout") == 1 end, 10))
      login(other)
      local theirs = proc.slurp(home .. "/config/credentials")
      assert.equal(other, dkjson.decode(theirs).base_url)
      assert.is_true(proc.wait_for(function() return proc.slurp(dir .. "/rc") ~= "" end, 20))
      local rc, err = proc.slurp(dir .. "/rc"), proc.slurp(dir .. "/err") .. proc.slurp(dir .. "/out")
      os.execute("rm -rf " .. proc.quote(dir))
      assert.equal("0\n", rc, err)
      assert.equal(theirs, proc.slurp(home .. "/config/credentials"))
      assert.equal(0, run{"--base-url", other, "whoami"}.code)
    end)

    it("of another server leaves this login's file as it is", function()
      login()
      local before = proc.slurp(home .. "/config/credentials")
      local other = emu.url:gsub("127%.0%.0%.1", "localhost")
      local r = run{"--base-url", other, "logout"}
      assert.equal(0, r.code, r.stderr)
      assert.matches("Not logged in to " .. other, r.stdout, 1, true)
      assert.equal(before, proc.slurp(home .. "/config/credentials"))
      assert.equal(0, #emu.requests_for("POST", "/auth/logout"))
    end)
  end)

  describe("-o -", function()
    it("export -o - writes the JSON to stdout and creates no file named -", function()
      login()
      local cwd = home .. "/cwd"
      assert.is_true(proc.sh("mkdir " .. proc.quote(cwd)))
      for _, o in ipairs{"-o", "--output"} do
        local r = run({"export", o, "-"}, {cwd = cwd})
        assert.equal(0, r.code, r.stderr)
        assert.equal(seed.owner.email, dkjson.decode(r.stdout).user.email)
        assert.equal("\n", r.stdout:sub(-1))
        assert.equal("", r.stderr)
        assert.same({}, listing(cwd))
      end
    end)

    it("usage daily --csv -o - writes the CSV to stdout and creates no file named -", function()
      login()
      local cwd = home .. "/cwd"
      assert.is_true(proc.sh("mkdir " .. proc.quote(cwd)))
      local r = run({"usage", "daily", "--days", "3", "--csv", "-o", "-"}, {cwd = cwd})
      assert.equal(0, r.code, r.stderr)
      assert.matches("^date,messages_sent,messages_received,total_messages,api_calls\n", r.stdout)
      assert.equal(4, select(2, r.stdout:gsub("\n", "")))
      assert.same({}, listing(cwd))
    end)
  end)

  describe("text from the server", function()
    it("keeps every UTF-8 character, 2, 3 and 4 bytes long, and escapes only the controls", function()
      local name = "na\195\175ve \226\130\172uro \240\159\152\128 \226\128\153s \194\133x\27]0;t\7"
      local c = emu.client{retry = false}
      assert(c.api_keys:create{name = name, scopes = {"usage:read"}})
      c:close()
      local r = run{"--api-key", seed.keys.all, "--base-url", emu.url, "keys", "list"}
      assert.equal(0, r.code, r.stderr)
      -- U+0085 (a C1 control) and ESC, BEL escaped; every other character as it came
      assert.truthy(r.stdout:find("na\195\175ve \226\130\172uro \240\159\152\128 \226\128\153s \\u0085x\\x1b]0;t\\x07",
                                  1, true), r.stdout)
    end)
  end)

  describe("usage daily's chart", function()
    local function day(date, sent, received, calls)
      return {date = date, messages_sent = sent, messages_received = received, api_calls = calls}
    end

    -- The chart's rows: date, bar length, the rest of the line.
    local function chart(days)
      emu.fault{path = "/usage/daily", status = 200, body = dkjson.encode{days = days}}
      local r = run({"--api-key", seed.keys.all, "--base-url", emu.url, "usage", "daily", "--days", tostring(#days)})
      assert.equal(0, r.code, r.stderr)
      local lines = {}
      for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
      local rows = {}
      for i = 2, #lines do
        local date, bar, pad, rest = lines[i]:match("^(%d%d%d%d%-%d%d%-%d%d)  (#*)( *)  (%d.*)$")
        assert(date, "not a chart row: " .. lines[i])
        rows[#rows + 1] = {date = date, bar = #bar, pad = #pad, line = lines[i], rest = rest}
      end
      return lines[1], rows
    end

    it("shows a small day next to a much busier one with one block, and an empty day with none", function()
      local header, rows = chart{day("2026-12-01", 1, 0, 3), day("2026-12-02", 6000, 4000, 9),
                                 day("2026-12-03", 0, 0, 0), day("2026-12-04", 200, 50, 1),
                                 day("2026-12-05", 124, 0, 0), day("2026-12-06", 0, 126, 0)}
      assert.matches("^DATE        MESSAGES %(sent %+ received%)%s+TOTAL  SENT  RECEIVED  API CALLS$", header)
      local bars = {}
      for i, r in ipairs(rows) do bars[i] = r.bar end
      -- 40 columns for the busiest day; a day with any message gets at least one
      -- block; 124 of 10000 rounds to 0.496 -> 0 -> 1, 126 -> 0.504 -> 1, 250 -> 1
      assert.same({1, 40, 0, 1, 1, 1}, bars)
      -- the columns after the bar line up whatever its length
      for _, r in ipairs(rows) do
        assert.equal(#rows[2].line, #r.line, r.line)
      end
      assert.equal("2026-12-01  #" .. (" "):rep(39) .. "      1     1         0          3", rows[1].line)
      assert.equal("2026-12-02  " .. ("#"):rep(40) .. "  10000  6000      4000          9", rows[2].line)
    end)

    it("scales every bar to the busiest day", function()
      local _, rows = chart{day("2026-12-01", 100, 0, 0), day("2026-12-02", 50, 0, 0), day("2026-12-03", 10, 0, 0),
                            day("2026-12-04", 0, 39, 0)}
      local bars = {}
      for i, r in ipairs(rows) do bars[i] = r.bar end
      assert.same({40, 20, 4, 16}, bars)
    end)

    it("an all-quiet period draws no bar", function()
      local _, rows = chart{day("2026-12-01", 0, 0, 0), day("2026-12-02", 0, 0, 5)}
      assert.same({0, 0}, {rows[1].bar, rows[2].bar})
    end)
  end)
end)
