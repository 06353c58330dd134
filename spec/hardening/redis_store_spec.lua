-- Issue 23: the Redis store as operators run it, against a real redis-server:
-- TLS with certificate checks, an ACL user (the `default` user off), no
-- stale writes (both reproductions of the issue), tokens sealed at rest, and
-- a failed load that warns once (issue 28, trap 9).
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local redis_server = require "spec.support.redis"
local admin = require "moltflow.admin"
local core = require "moltflow.core"

local OWNER = emu.seed.owner

local b64key = require("spec.support.secrets").seal_key

-- Waits (polling) until `ready()` is true.
local function await(what, ready)
  local deadline = core.monotime() + 20
  while not ready() do
    if core.monotime() > deadline then error("timed out waiting for " .. what, 2) end
    core.sleep(0.01)
  end
end

local function no_secret(texts, secrets)
  for _, text in ipairs(texts) do
    for _, secret in ipairs(secrets) do
      assert.is_nil(text:find(secret, 1, true), "a secret in: " .. text)
    end
  end
end

describe("redis_store over TLS with an ACL user (default user off)", function()
  local server
  local PASSWORD = "fleet pw:" .. core.sha256(core.random_bytes(8)):sub(1, 12)
  setup(function() server = redis_server.start{tls = true, users = {{name = "moltflow", password = PASSWORD}}} end)
  teardown(function() server:stop() end)
  before_each(function() server:cli("FLUSHALL") end)

  -- Every TLS store here has a timeout of 10 s: under valgrind on a loaded
  -- machine a handshake takes seconds (the default 1 s timed out, and a
  -- refusal these cases wait for came back as a timeout).
  it("the right CA: tokens saved and loaded over TLS as the ACL user", function()
    local store = admin.redis_store{url = server.url, ca_file = server.ca_file, timeout = 10}
    assert.is_true(store:save{access_token = "a", refresh_token = "r"})
    assert.equal("r", store:load().refresh_token)
    assert.equal("r", dkjson.decode(server:cli("GET", "moltflow:tokens")).refresh_token)
    -- username and password as options, the url without them
    local by_opts = admin.redis_store{url = ("rediss://localhost:%d/0"):format(server.port), ca_file = server.ca_file,
                                      username = "moltflow", password = PASSWORD, timeout = 10}
    assert.equal("r", by_opts:load().refresh_token)
    assert.matches("as moltflow", tostring(by_opts), 1, true)
    no_secret({tostring(store), tostring(by_opts)}, {PASSWORD})
  end)

  it("another CA: refused, kind store (cause tls); no password in the error", function()
    local store = admin.redis_store{url = server.url, ca_file = server.other_ca_file, on_warning = function() end,
                                    timeout = 10}
    local t, err = store:load()
    assert.is_nil(t)
    assert.equal("store", err.kind)
    assert.equal("tls", err.cause)
    assert.matches("certificate verify failed", tostring(err), 1, true)
    no_secret({tostring(err), dkjson.encode(err)}, {PASSWORD})
  end)

  it("a certificate for another name: refused (the name checked against its subjectAltName)", function()
    -- a DNS name it does not list, and an address it does not list (it lists 127.0.0.1: exactly that one)
    for _, name in ipairs{"redis.example.com", "127.0.0.2"} do
      local store = admin.redis_store{url = server.url, ca_file = server.ca_file, server_name = name,
                                      on_warning = function() end, timeout = 10}
      local ok, err = store:save{access_token = "a"}
      assert.is_nil(ok)
      assert.equal("tls", err.cause)
      assert.matches("not valid for " .. name, tostring(err), 1, true)
    end
    -- and by IP: the certificate names 127.0.0.1 too
    local by_ip = admin.redis_store{url = ("rediss://moltflow:%s@127.0.0.1:%d"):format(PASSWORD:gsub("[ :]", {
      [" "] = "%20", [":"] = "%3A"}), server.port), ca_file = server.ca_file, timeout = 10}
    assert.is_true(by_ip:save{access_token = "a"})
  end)

  it("plain TCP to the TLS port fails; the default user and a wrong password are refused", function()
    local warn = function() end
    local plain = admin.redis_store{url = ("redis://127.0.0.1:%d"):format(server.port), timeout = 0.5,
                                    on_warning = warn}
    assert.is_nil((plain:load()))
    local anon = admin.redis_store{url = ("rediss://localhost:%d"):format(server.port), ca_file = server.ca_file,
                                   on_warning = warn, timeout = 10}
    local _, err = anon:load()
    assert.matches("NOAUTH", tostring(err), 1, true)
    local wrong = admin.redis_store{url = ("rediss://moltflow:nope@localhost:%d"):format(server.port),
                                    ca_file = server.ca_file, on_warning = warn, timeout = 10}
    local _, werr = wrong:load()
    assert.equal("auth", werr.cause)
    assert.matches("AUTH refused for user moltflow: WRONGPASS", tostring(werr), 1, true)
    no_secret({tostring(werr), tostring(wrong)}, {"nope"})
  end)

  it("ca_file without rediss:// is an option mistake, raised before any I/O", function()
    assert.has_error(function() admin.redis_store{url = "redis://127.0.0.1:1", ca_file = "/x"} end,
                     "moltflow.redis_store: field 'ca_file' needs a rediss:// url")
  end)
end)

describe("redis_store: no stale writes", function()
  local server
  setup(function() server = redis_server.start() end)
  teardown(function() server:stop() end)
  before_each(function()
    emu.reset()
    server:cli("FLUSHALL")
  end)

  local function quiet_store()
    return admin.redis_store{url = server.url, timeout = 0.3, retry_after = 0.05, on_warning = function() end}
  end
  local function client(store, extra)
    local opts = {base_url = emu.url, token_store = store, on_hook_error = function() end}
    for k, v in pairs(extra or {}) do opts[k] = v end
    return admin.new(opts)
  end
  -- Redis stops answering (SIGSTOP) while fn runs.
  local function during_outage(fn)
    server:freeze()
    local ok, err = pcall(fn)
    server:thaw()
    assert(ok, err)
  end
  -- The next, unrelated command of a store: a pace reservation of a client on an API key.
  local function pace_call(store)
    core.sleep(0.1) -- past retry_after
    local k = admin.new{base_url = emu.url, api_key = emu.seed.keys.all, pace = store,
                        on_hook_error = function() end}
    assert(k.usage:current())
  end

  it("A logs out during an outage, B logs in after: A's next call does not erase B's login", function()
    local store_a, store_b = quiet_store(), quiet_store()
    local a = client(store_a)
    assert(a.auth:login{email = OWNER.email, password = OWNER.password})
    during_outage(function() assert(a.auth:logout()) end)
    local b = client(store_b)
    assert(b.auth:login{email = OWNER.email, password = OWNER.password})
    local b_refresh = b:tokens().refresh_token
    pace_call(store_a)
    local saved = server:cli("GET", "moltflow:tokens")
    assert.is_true(saved ~= "", "B's login was erased")
    assert.equal(b_refresh, dkjson.decode(saved).refresh_token)
    -- a new process starts with B's login, which works
    assert(client(quiet_store()).auth:me())
  end)

  it("A's refreshed pair fails to save, then B logs out: A's next call does not undo the logout", function()
    local store_a, store_b = quiet_store(), quiet_store()
    local a = client(store_a)
    assert(a.auth:login{email = OWNER.email, password = OWNER.password})
    local b = client(store_b) -- holds the same login, loaded from Redis
    during_outage(function() assert(a.auth:refresh()) end)
    assert(b.auth:logout())
    assert.equal("", server:cli("GET", "moltflow:tokens"))
    pace_call(store_a)
    assert.equal("", server:cli("GET", "moltflow:tokens"), "the logout was undone")
    -- a new process has no login
    assert.is_nil(client(quiet_store()):tokens())
  end)

  it("a save that failed still lands when nothing was written since (Redis back, or restarted empty)", function()
    local store_a = quiet_store()
    local a = client(store_a)
    assert(a.auth:login{email = OWNER.email, password = OWNER.password})
    during_outage(function() assert(a.auth:refresh()) end)
    pace_call(store_a)
    assert.equal(a:tokens().refresh_token, dkjson.decode(server:cli("GET", "moltflow:tokens")).refresh_token)
    during_outage(function() assert(a.auth:refresh()) end)
    server:restart() -- empty
    pace_call(store_a)
    assert.equal(a:tokens().refresh_token, dkjson.decode(server:cli("GET", "moltflow:tokens")).refresh_token)
  end)
end)

describe("redis_store: a failed load warns once", function()
  local server
  setup(function() server = redis_server.start() end)
  teardown(function() server:stop() end)

  it("Redis down: one warning for any number of loads, again after a load succeeded", function()
    local warnings = {}
    local store = admin.redis_store{url = server.url, timeout = 0.3, retry_after = 0.01,
                                    on_warning = function(m) warnings[#warnings + 1] = m end}
    assert.is_true(store:save{access_token = "a", refresh_token = "r"})
    server:kill()
    assert.is_nil((store:load()))
    assert.is_nil((store:load()))
    assert.equal(1, #warnings)
    assert.matches("could not be loaded", warnings[1], 1, true)
    server:restart()
    await("Redis back", function() local _, err = store:load() return err == nil end)
    server:kill()
    assert.is_nil((store:load()))
    assert.equal(2, #warnings)
    server:restart()
  end)

  it("admin.new on a Redis that is down: the client starts without tokens, and it is said (stderr)", function()
    server:kill()
    local proc = require "spec.support.process"
    local r = proc.run({proc.lua, "-e", ([[
      local admin = require "moltflow.admin"
      local c = admin.new{base_url = "http://127.0.0.1:1", token_store = admin.redis_store{url = %q}}
      print(c:tokens() == nil)]]):format(server.url)})
    server:restart()
    assert.equal("true", r.stdout:gsub("%s+$", ""))
    local n = select(2, r.stderr:gsub("could not be loaded", ""))
    assert.equal(1, n, r.stderr)
  end)

  it("after a failure the store pauses (retry_after), but the refresh lock still asks Redis", function()
    local store = admin.redis_store{url = server.url, timeout = 0.3, retry_after = 60, seal_key = false,
                                    on_warning = function() end}
    assert.is_true(store:save{access_token = "a", refresh_token = "r"})
    server:kill()
    assert.is_nil((store:load()))   -- the failure starts a 60 s pause
    server:restart()
    local _, err = store:load()
    assert.matches("unavailable", tostring(err), 1, true) -- paused: not asked
    local handle = store:try_lock(5)
    assert.is_string(handle)           -- asked, and it answered
    assert.equal(handle, server:cli("GET", "moltflow:tokens:lock"))
  end)

  it("a client's refreshes during an outage: one report per outage, again after the store answered", function()
    emu.reset()
    local reports = {}
    local store = admin.redis_store{url = server.url, timeout = 0.3, retry_after = 0.01, seal_key = false,
                                    on_warning = function() end}
    local c = emu.client({token_store = store, on_hook_error = function(e) reports[#reports + 1] = e end},
                         {api_key = false})
    assert(c.auth:login{email = OWNER.email, password = OWNER.password})
    server:kill()
    for _ = 1, 2 do assert(c.auth:refresh()) end -- the lock and the save fail: the client goes on locally
    assert.equal(1, #reports)
    assert.equal("token_store", reports[1].hook)
    server:restart()
    assert(c.auth:refresh()) -- lock and save succeed: the outage is over
    server:kill()
    assert(c.auth:refresh())
    server:restart()
    assert.equal(2, #reports)
    assert.same({200, 200, 200, 200}, emu.statuses_for("POST", "/auth/refresh"))
  end)
end)

describe("redis_store: tokens sealed at rest", function()
  local server
  setup(function() server = redis_server.start() end)
  teardown(function() server:stop() end)
  before_each(function() server:cli("FLUSHALL") end)

  local TOKENS = {access_token = "access-" .. core.sha256("a"), refresh_token = "refresh-" .. core.sha256("r")}

  local function store(opts)
    opts.url = server.url
    opts.on_warning = opts.on_warning or function() end
    return admin.redis_store(opts)
  end

  it("with a seal key Redis holds ciphertext (v1.<key id>.), which the same key opens", function()
    local key = b64key()
    assert.is_true(store{seal_key = key}:save(TOKENS))
    local raw = server:cli("GET", "moltflow:tokens")
    assert.matches("^v1%.%x+%.[%w_-]+$", raw)
    no_secret({raw}, {TOKENS.access_token, TOKENS.refresh_token, "access", "refresh"})
    assert.same(TOKENS, store{seal_key = key}:load())
    -- a new random nonce each time
    store{seal_key = key}:save(TOKENS)
    assert.are_not.equal(raw, server:cli("GET", "moltflow:tokens"))
  end)

  it("the wrong key, no key, or a tampered value: no tokens, one warning each, never the plaintext", function()
    local key = b64key()
    store{seal_key = key}:save(TOKENS)
    local raw = server:cli("GET", "moltflow:tokens")
    local function loads(s, warnings)
      for _ = 1, 3 do
        local t, err = s:load()
        assert.is_nil(t)
        assert.equal("store", err.kind)
        assert.equal("seal", err.cause)
        no_secret({tostring(err), dkjson.encode(err)}, {TOKENS.access_token, TOKENS.refresh_token, key})
      end
      assert.equal(1, #warnings)
      no_secret(warnings, {TOKENS.access_token, TOKENS.refresh_token, key})
      return warnings[1]
    end
    local w1, w2, w3 = {}, {}, {}
    assert.matches("does not have", loads(store{seal_key = b64key(),
      on_warning = function(m) w1[#w1 + 1] = m end}, w1), 1, true)
    assert.matches("no seal key", loads(store{seal_key = false,
      on_warning = function(m) w2[#w2 + 1] = m end}, w2), 1, true)
    -- one character of the ciphertext changed
    local i = #raw - 5
    local flipped = raw:sub(1, i - 1) .. (raw:sub(i, i) == "A" and "B" or "A") .. raw:sub(i + 1)
    server:cli("SET", "moltflow:tokens", flipped)
    assert.matches("cannot be opened", loads(store{seal_key = key,
      on_warning = function(m) w3[#w3 + 1] = m end}, w3), 1, true)
    -- plaintext planted where sealed tokens are expected is not taken either
    server:cli("SET", "moltflow:tokens", dkjson.encode(TOKENS))
    local t, err = store{seal_key = key}:load()
    assert.is_nil(t)
    assert.matches("not sealed", tostring(err), 1, true)
  end)

  it("rotating the seal key: the old key in old_seal_keys opens the value, which is sealed again with the new",
     function()
    local old, new = b64key(), b64key()
    store{seal_key = old}:save(TOKENS)
    local before = server:cli("GET", "moltflow:tokens")
    assert.same(TOKENS, store{seal_key = new, old_seal_keys = {old}}:load())
    local after = server:cli("GET", "moltflow:tokens")
    assert.are_not.equal(before:sub(1, 12), after:sub(1, 12)) -- another key id
    assert.same(TOKENS, store{seal_key = new}:load())
    assert.is_nil((store{seal_key = old}:load()))
  end)

  it("a malformed seal key is an option mistake, raised before any I/O, without the value", function()
    for _, bad in ipairs{"c2hvcnQ=", "not base64!", string.rep("A", 44)} do
      local ok, err = pcall(admin.redis_store, {url = server.url, seal_key = bad})
      assert.is_false(ok)
      assert.matches("moltflow.redis_store: seal_key must be 32 bytes in base64", err, 1, true)
      assert.is_nil(err:find(bad, 1, true))
    end
    assert.has_error(function() admin.redis_store{url = server.url, seal_key = b64key(), old_seal_keys = {"x"}} end,
                     "moltflow.redis_store: old_seal_keys[1] must be 32 bytes in base64")
  end)

  it("MOLTFLOW_SEAL_KEY seals when no seal_key is given", function()
    local key = b64key()
    local proc = require "spec.support.process"
    local r = proc.run({"env", "MOLTFLOW_SEAL_KEY=" .. key, proc.lua, "-e", ([[
      local s = require("moltflow.admin").redis_store{url = %q}
      assert(s:save{access_token = "x", refresh_token = "y"})]]):format(server.url)})
    assert.equal(0, r.code, r.stderr)
    assert.matches("^v1%.", server:cli("GET", "moltflow:tokens"))
    assert.equal("y", store{seal_key = key}:load().refresh_token)
  end)
end)
