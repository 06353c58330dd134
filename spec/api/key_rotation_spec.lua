-- Issue 23: rotating the API key a fleet shares (moltflow.key_rotation):
-- create -> publish -> drain -> revoke, against the emulator and a real
-- redis-server; re-run after a stop at any step, it finishes with no key
-- orphaned or left unrevoked, and the published key always works.
local emu = require "spec.support.emulator"
local redis_server = require "spec.support.redis"
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local rotation = require "moltflow.key_rotation"

local USAGE_KEY = "key_acme_usage" -- usage:read, used by the "fleet"

describe("key rotation for a fleet", function()
  local server, manager
  setup(function() server = redis_server.start() end)
  teardown(function() server:stop() end)
  before_each(function()
    emu.reset()
    server:cli("FLUSHALL")
    manager = admin.new{base_url = emu.url, api_key = emu.seed.keys.all} -- account:manage
  end)

  local function store() return admin.redis_store{url = server.url, seal_key = false, on_warning = function() end} end
  local function works(raw_key)
    return admin.new{base_url = emu.url, api_key = raw_key, retry = false}.usage:current() ~= nil
  end
  local function rotation_keys()
    local out = {}
    for _, k in ipairs(assert(manager.api_keys:list())) do
      if tostring(k.description):find("^moltflow rotation ") then out[#out + 1] = k end
    end
    return out
  end

  it("creates a key with the old one's scopes and versioned name, publishes it, waits, revokes the old", function()
    local s = store()
    local steps = {}
    local result = assert(rotation.rotate{client = manager, store = s, id = USAGE_KEY, grace = 0.2,
                                          on_step = function(step, info)
                                            steps[#steps + 1] = step
                                            assert.is_nil(info.new_key)
                                          end})
    assert.same({"create", "publish", "drain", "revoke", "done"}, steps)
    assert.equal("grace", result.drained)
    local published = assert(s:load_api_key())
    assert.equal(1, published.version)
    assert.equal(result.new_id, published.id)
    assert.equal(1, s:api_key_version())
    local new = assert(manager.api_keys:get(result.new_id))
    assert.equal("acme-usage@v1", new.name) -- names are unique and final: a version suffix
    assert.same({"usage:read"}, new.scopes)
    assert.is_true(works(published.key))
    local _, err = manager.api_keys:get(USAGE_KEY)
    assert.equal(404, err.status)
    -- the emulator's record of the revoke
    local revoked = emu.control("GET", "revoked-keys")
    assert.equal(1, #revoked)
    assert.equal(USAGE_KEY, revoked[1].id)
    assert.is_number(revoked[1].revoked_at)
    assert.is_false(s:load_rotation())
    -- the next rotation starts from the published key
    local again = assert(rotation.rotate{client = manager, store = s, id = result.new_id, grace = 0.01})
    assert.equal(2, again.version)
    assert.equal("acme-usage@v2", manager.api_keys:get(again.new_id).name)
    assert.is_false(works(published.key))
    assert.is_true(works(s:load_api_key().key))
  end)

  it("through admin.file_store (sealed): the same steps, the key in <path>.api-key", function()
    local dir = require("spec.support.process").tmpdir()
    finally(function() os.execute("rm -rf " .. dir) end)
    local key = require("spec.support.secrets").seal_key()
    local s = admin.file_store(dir .. "/fleet", {seal_key = key})
    local result = assert(rotation.rotate{client = manager, store = s, id = USAGE_KEY, grace = 0.01})
    assert.equal(1, s:api_key_version())
    local published = assert(s:load_api_key())
    assert.equal(result.new_id, published.id)
    assert.is_true(works(published.key))
    assert.is_nil(require("spec.support.process").slurp(dir .. "/fleet.api-key"):find(published.key, 1, true))
    assert.is_false(s:load_rotation())
    local again = assert(rotation.rotate{client = manager, store = s, id = result.new_id, grace = 0.01})
    assert.equal(2, again.version)
    assert.is_true(works(s:load_api_key().key))
  end)

  it("the workers' reports end the drain early", function()
    local s = store()
    s:report_api_key("worker-a", 0, core.time())
    local started = core.monotime()
    local result = assert(rotation.rotate{client = manager, store = s, id = USAGE_KEY, grace = 30,
      sleep = function(t)
        s:report_api_key("worker-a", 1, core.time()) -- adopted the new key
        core.sleep(t)
      end})
    assert.equal("reports", result.drained)
    assert.is_true(core.monotime() - started < 10)
  end)

  -- A store whose save_rotation fails once at `step`: the run stops there.
  local function failing_at(step)
    local s = store()
    local real = s.save_rotation
    local failed = false
    s.save_rotation = function(self, state)
      if not failed and state and state.step == step then
        failed = true
        return nil, "injected failure"
      end
      return real(self, state)
    end
    return s
  end

  for _, step in ipairs{"create", "publish", "drain", "revoke"} do
    it("stopped when recording '" .. step .. "': a second run finishes; no orphan, the old key revoked", function()
      local v, err = rotation.rotate{client = manager, store = failing_at(step), id = USAGE_KEY, grace = 0.01}
      assert.is_nil(v)
      assert.equal("store", err.kind)
      -- meanwhile the fleet is not locked out: the old key, or a published new one, works
      local published = store():load_api_key()
      assert.is_true(works(published and published.key or emu.seed.keys.usage_only))
      local result = assert(rotation.rotate{client = manager, store = store(), id = USAGE_KEY, grace = 0.01})
      local keys = rotation_keys()
      assert.equal(1, #keys, "orphaned keys")
      assert.equal(result.new_id, keys[1].id)
      assert.equal(404, select(2, manager.api_keys:get(USAGE_KEY)).status)
      assert.is_true(works(store():load_api_key().key))
      assert.is_false(store():load_rotation())
    end)
  end

  it("a key created but not recorded (a crash between them) is revoked by the next run", function()
    local s = failing_at("publish") -- the new key exists; its secret was never stored
    assert.is_nil(rotation.rotate{client = manager, store = s, id = USAGE_KEY, grace = 0.01})
    assert.equal(1, #rotation_keys())
    local orphan = rotation_keys()[1].id
    local result = assert(rotation.rotate{client = manager, store = store(), id = USAGE_KEY, grace = 0.01})
    assert.are_not.equal(orphan, result.new_id)
    assert.equal(404, select(2, manager.api_keys:get(orphan)).status)
  end)

  it("refuses to rotate a key the store does not publish, and another key while one is in progress", function()
    local s = store()
    assert(rotation.rotate{client = manager, store = s, id = USAGE_KEY, grace = 0.01})
    local v, err = rotation.rotate{client = manager, store = s, id = "key_acme_all", grace = 0.01}
    assert.is_nil(v)
    assert.equal("usage", err.kind)
    assert.matches("rotate that one", tostring(err), 1, true)
    assert.is_true(works(emu.seed.keys.all))
  end)
end)

describe("moltflow.shared_key: a worker's keeper", function()
  local shared_key = require "moltflow.shared_key"
  local server
  setup(function() server = redis_server.start() end)
  teardown(function() server:stop() end)
  before_each(function() server:cli("FLUSHALL") end)

  -- A Redis store that counts the commands of each method.
  local function counted()
    local s = admin.redis_store{url = server.url, seal_key = false, on_warning = function() end}
    local counts = {}
    for _, name in ipairs{"api_key_version", "load_api_key", "report_api_key"} do
      local f = s[name]
      counts[name] = 0
      s[name] = function(...) counts[name] = counts[name] + 1 return f(...) end
    end
    return s, counts
  end

  it("no key published: nil (the client's own key); then a published one, checked at most once a second", function()
    local s, counts = counted()
    local keeper = shared_key.new(s, {check_every = 1})
    assert.is_nil((keeper:current()))
    assert(s:publish_api_key({version = 1, id = "k1", key = "mf_one"}, 0))
    for _ = 1, 50 do keeper:current() end
    assert.equal(1, counts.api_key_version) -- within the second: no read at all
    keeper.checked_at = -math.huge          -- a second later
    assert.same({"mf_one", 1}, {keeper:current()})
    assert.equal(2, counts.api_key_version)
    assert.equal(1, counts.load_api_key)
    assert.equal(1, s:api_key_reports()[keeper.worker].version) -- adoption reported
    assert.is_nil(tostring(keeper):find("mf_one", 1, true))
  end)

  it("a 401 on an older key: refresh gives the newer one at once; nothing newer: nil", function()
    local s = counted()
    local keeper = shared_key.new(s, {check_every = 60})
    assert(s:publish_api_key({version = 1, id = "k1", key = "mf_one"}, 0))
    keeper.checked_at = -math.huge
    assert.same({"mf_one", 1}, {keeper:current()})
    assert(s:publish_api_key({version = 2, id = "k2", key = "mf_two"}, 1))
    assert.same({"mf_one", 1}, {keeper:current()}) -- not checked again for a minute
    assert.same({"mf_two", 2}, {keeper:refresh(1)})
    assert.is_nil(keeper:refresh(2))
  end)

  it("a store that fails: the key in use is kept, one warning until it answers", function()
    local warnings = {}
    local s = admin.redis_store{url = server.url, seal_key = false, on_warning = function() end, timeout = 0.3,
                                retry_after = 0.01}
    local keeper = shared_key.new(s, {check_every = 0, warn = function(m) warnings[#warnings + 1] = m end})
    assert(s:publish_api_key({version = 1, id = "k1", key = "mf_one"}, 0))
    assert.equal("mf_one", (keeper:current()))
    server:kill()
    for _ = 1, 3 do assert.equal("mf_one", (keeper:current())) end
    assert.equal(1, #warnings)
    assert.is_nil(warnings[1]:find("mf_one", 1, true))
    server:restart()
  end)

  it("a store down from the first check warns too; once it answers, its key; the next failure warns again", function()
    local warnings = {}
    local s = admin.redis_store{url = server.url, seal_key = false, on_warning = function() end, timeout = 0.3,
                                retry_after = 0.01}
    local keeper = shared_key.new(s, {check_every = 0, warn = function(m) warnings[#warnings + 1] = m end})
    server:kill()
    for _ = 1, 3 do assert.is_nil((keeper:current())) end -- the client's own key meanwhile
    assert.equal(1, #warnings)
    server:restart()
    assert(s:publish_api_key({version = 1, id = "k1", key = "mf_one"}, 0))
    assert.equal("mf_one", (keeper:current()))
    server:kill()
    assert.equal("mf_one", (keeper:current()))
    assert.equal(2, #warnings)
    server:restart()
  end)
end)

describe("admin.new{api_key_store = store} and admin.rotate_shared_key", function()
  local server
  setup(function() server = redis_server.start() end)
  teardown(function() server:stop() end)
  before_each(function()
    emu.reset()
    server:cli("FLUSHALL")
  end)

  it("a worker takes the published key; after a rotation a 401 reloads it and replays once", function()
    local store = admin.redis_store{url = server.url, seal_key = false}
    assert(store:publish_api_key({version = 1, id = USAGE_KEY, key = emu.seed.keys.usage_only}, 0))
    local worker = admin.new{base_url = emu.url, api_key_store = store, api_key = nil}
    assert(worker.usage:current())
    local manager = admin.new{base_url = emu.url, api_key = emu.seed.keys.all}
    -- no report from the worker can end the drain: it waits out grace = 0 and revokes at once
    local r = assert(admin.rotate_shared_key{client = manager, store = store, id = USAGE_KEY, grace = 0})
    local v, err = worker.usage:current() -- the old key, refused; the new one, read from Redis, accepted
    assert.is_table(v, tostring(err))
    assert.same({200, 401, 200}, emu.statuses_for("GET", "/usage/current"))
    assert.is_nil(tostring(worker):find(emu.seed.keys.usage_only, 1, true))
    assert.equal(r.new_id, store:load_api_key().id)
  end)

  it("a call refused on a key its client has replaced since it was sent is replayed with the current key",
     function()
    -- Two calls of one client: A is sent with the published key (v1) and held by the server; B, sent
    -- after the keeper's one second between checks, finds v2 in the store and the client takes it; A's
    -- 401 (the old key revoked meanwhile) comes after. A is replayed with v2, although the store has
    -- nothing newer than what the client holds. (A rotation's drain can end while such calls are in
    -- flight: a worker reports the new key as soon as it has taken it.)
    local store = admin.redis_store{url = server.url, seal_key = false}
    assert(store:publish_api_key({version = 1, id = USAGE_KEY, key = emu.seed.keys.usage_only}, 0))
    local manager = admin.new{base_url = emu.url, api_key = emu.seed.keys.all}
    local new = assert(manager.api_keys:create{name = "acme-usage@v2", scopes = {"usage:read"}})
    local worker = admin.new{base_url = emu.url, api_key_store = store, retry = false}
    emu.fault{path = "/usage/current", delay = 2, status = 401, times = 1}
    local a = worker:spawn("usage.current")
    while #emu.requests_for("GET", "/usage/current") < 1 do worker:poll(0.01) end
    local a_sent = core.monotime()
    assert(store:publish_api_key({version = 2, id = new.id, key = new.raw_key}, 1))
    while core.monotime() - a_sent < 1.1 do worker:poll(0.05) end
    local b = worker:spawn("usage.current")
    while not (a.done and b.done) do worker:poll(0.05) end
    assert.is_table(b:result())
    local v, err = a:result()
    assert.is_table(v, tostring(err))
    local sent = {}
    for i, r in ipairs(emu.requests_for("GET", "/usage/current")) do
      sent[i] = {r.status, r.headers["x-api-key"] == new.raw_key and "v2" or "v1"}
    end
    assert.same({{401, "v1"}, {200, "v2"}, {200, "v2"}}, sent)
  end)

  it("a 401 with nothing newer in the store is the caller's (no loop)", function()
    local store = admin.redis_store{url = server.url, seal_key = false}
    assert(store:publish_api_key({version = 1, id = "x", key = "mf_not_a_key"}, 0))
    local worker = admin.new{base_url = emu.url, api_key_store = store, retry = false}
    local v, err = worker.usage:current()
    assert.is_nil(v)
    assert.equal(401, err.status)
    assert.same({401}, emu.statuses_for("GET", "/usage/current"))
  end)

  it("raises on option mistakes before any I/O, naming the field", function()
    assert.has_error(function() admin.new{api_key_store = {}} end,
      "moltflow.new: field 'api_key_store' must be a store with api_key_version and load_api_key (admin.redis_store)")
    assert.has_error(function() admin.new{api_key_shdict = "d"} end, "moltflow.new: field 'api_key_shdict' needs api_key_store")
    local store = admin.redis_store{url = server.url}
    local c = admin.new{base_url = emu.url, api_key = "k"}
    assert.has_error(function() admin.rotate_shared_key{client = c, store = {}, id = "k"} end,
      "moltflow.rotate_shared_key: field 'store' must be a store with the shared-key methods (admin.redis_store, admin.file_store)")
    assert.has_error(function() admin.rotate_shared_key{client = c, store = store} end,
                     "moltflow.rotate_shared_key: field 'id' must be a key id")
    assert.has_error(function() admin.rotate_shared_key{client = c, store = store, id = "k", grace = "x"} end,
                     "moltflow.rotate_shared_key: field 'grace' must be a number of seconds")
  end)
end)

describe("moltflow-admin keys rotate-shared", function()
  local proc = require "spec.support.process"
  local server
  setup(function() server = redis_server.start{password = "cli pw"} end)
  teardown(function() server:stop() end)
  before_each(function()
    emu.reset()
    server:cli("FLUSHALL")
  end)

  local function cli(words, env)
    local argv = {emu.root .. "/bin/moltflow-admin", "--base-url", emu.url}
    for _, w in ipairs(words) do argv[#argv + 1] = w end
    env = env or {}
    env.MOLTFLOW_API_KEY = env.MOLTFLOW_API_KEY or emu.seed.keys.all
    env.MOLTFLOW_REDIS_PASSWORD = "cli pw"
    return proc.run(argv, {env = env})
  end

  it("rotates through the store, says each step on stderr, never a secret; run again after a stop, it finishes", function()
    local url = ("redis://127.0.0.1:%d/0"):format(server.port)
    local r = cli{"keys", "rotate-shared", "key_acme_usage", "--store", url, "--grace", "0", "--prefix", "fleet:"}
    assert.equal(0, r.code, r.stderr)
    local new_id = r.stdout:match("Rotated key_acme_usage %-> (key_%w+) %(version 1, drained by grace%)")
    assert.is_string(new_id, r.stdout)
    assert.matches("published " .. new_id .. " as version 1", r.stderr, 1, true)
    local store = admin.redis_store{url = url, password = "cli pw", prefix = "fleet:", seal_key = false}
    local published = store:load_api_key()
    assert.equal(new_id, published.id)
    for _, text in ipairs{r.stdout, r.stderr} do
      assert.is_nil(text:find(published.key, 1, true))
      assert.is_nil(text:find("cli pw", 1, true))
    end
    -- killed while draining (after publishing): the same command finishes the rotation
    local dir = proc.tmpdir()
    local words = {"env", "MOLTFLOW_API_KEY=" .. emu.seed.keys.all, "MOLTFLOW_REDIS_PASSWORD=cli pw",
                   emu.root .. "/bin/moltflow-admin", "--base-url", emu.url, "keys", "rotate-shared", new_id,
                   "--store", url, "--grace", "30", "--prefix", "fleet:"}
    for i, w in ipairs(words) do words[i] = proc.quote(w) end
    assert(proc.sh(table.concat(words, " ") .. " >/dev/null 2>&1 & echo $! >" .. proc.quote(dir .. "/pid")))
    local pid = proc.slurp(dir .. "/pid"):match("%d+")
    assert(proc.wait_for(function() return (store:load_rotation() or {}).step == "drain" end, 20))
    assert(proc.sh("kill -9 " .. pid))
    os.execute("rm -rf " .. proc.quote(dir))
    local third = store:load_api_key()
    assert.equal(2, third.version)
    assert.is_true(admin.new{base_url = emu.url, api_key = third.key}.usage:current() ~= nil)
    local again = cli{"keys", "rotate-shared", new_id, "--store", url, "--grace", "0", "--prefix", "fleet:", "--json"}
    assert.equal(0, again.code, again.stderr)
    assert.equal(third.id, admin.json_decode(again.stdout).new_id)
    assert.equal(404, select(2, admin.new{base_url = emu.url, api_key = emu.seed.keys.all}.api_keys:get(new_id)).status)
    assert.is_false(store:load_rotation())
    -- a key the store does not publish: a usage error, exit 2
    local wrong = cli{"keys", "rotate-shared", "key_nope", "--store", url, "--prefix", "fleet:"}
    assert.equal(2, wrong.code, wrong.stderr)
    assert.matches("rotate that one", wrong.stderr, 1, true)
  end)
end)
