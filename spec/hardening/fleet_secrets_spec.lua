-- Issue 23: no token, Redis password or seal key in any error, warning, log
-- line or tostring() of the fleet's stores. Every failure they can report is
-- provoked with real secrets in play (a TLS + ACL redis-server, a login on the
-- emulator, seal keys), and everything handed back or printed is searched.
local emu = require "spec.support.emulator"
local redis_server = require "spec.support.redis"
local secrets = require "spec.support.secrets"
local proc = require "spec.support.process"
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local seal = require "moltflow.seal"

local OWNER = emu.seed.owner

local b64key = secrets.seal_key

describe("fleet stores: no secret in any output", function()
  local server
  local PASSWORD = "Fleet-pw " .. core.sha256(core.random_bytes(8)):sub(1, 16)
  local SEAL, OTHER_SEAL = b64key(), b64key()
  setup(function() server = redis_server.start{tls = true, users = {{name = "fleet", password = PASSWORD}}} end)
  teardown(function() server:stop() end)

  it("errors, warnings, hook messages, stderr and tostring() of every failure", function()
    emu.reset()
    local outputs, warnings, hooks = {}, {}, {}
    local function keep(...) for _, v in ipairs{...} do outputs[#outputs + 1] = v end end
    local on_warning = function(m) warnings[#warnings + 1] = m end
    local url = server.url
    local function store(extra)
      local opts = {url = url, ca_file = server.ca_file, seal_key = SEAL, on_warning = on_warning, timeout = 5,
                    retry_after = 0.01}
      for k, v in pairs(extra or {}) do opts[k] = v end
      local s = admin.redis_store(opts)
      keep(s, tostring(s))
      return s
    end

    -- a login saved sealed: its tokens are secrets from here on
    local good = store()
    local c = admin.new{base_url = emu.url, token_store = good,
                        on_hook_error = function(e) hooks[#hooks + 1] = e.message end}
    assert(c.auth:login{email = OWNER.email, password = OWNER.password})
    local held = c:tokens()
    keep(c, tostring(c))

    -- every failure of the store: another seal key, none, tampering, TLS, AUTH;
    -- each load must fail (one that answers hands back the tokens themselves)
    local function refused(what, v, err)
      assert(v == nil and err ~= nil, what .. ": the load was not refused")
      keep(err)
    end
    refused("another seal key", store{seal_key = OTHER_SEAL}:load())
    refused("no seal key", store{seal_key = false}:load())
    refused("another server name", store{server_name = "other.example"}:load())
    refused("another CA", store{ca_file = server.other_ca_file}:load())
    refused("a wrong password",
      store{url = url:gsub("^rediss://fleet:[^@]*@", "rediss://fleet:wrong-" .. PASSWORD:sub(1, 4) .. "@")}:load())
    refused("no user", store{url = url:gsub("^rediss://fleet:[^@]*@", "rediss://")}:load())
    local sealed = server:cli("GET", "moltflow:tokens")
    assert.matches("^v1%.", sealed)
    -- one character of the ciphertext changed, whatever it was
    local at = #sealed - 20
    local tampered = sealed:sub(1, at - 1) .. (sealed:sub(at, at) == "A" and "B" or "A") .. sealed:sub(at + 1)
    assert.equal("OK", server:cli("SET", "moltflow:tokens", tampered))
    refused("a tampered value", store():load())
    assert.equal("OK", server:cli("SET", "moltflow:tokens", sealed))

    -- Redis gone: load, save, lock, pace, and a client going on locally
    server:kill()
    for _, s in ipairs{good, store()} do
      refused("Redis gone", s:load())
      keep(s:save(held))
      keep(s:try_lock(1))
      keep(s:reserve("budget", core.time(), 1, 1))
      keep(s:record("budget", 1, core.time() + 60))
    end
    keep(c.auth:refresh())
    keep(c.auth:me())
    -- a process that starts while Redis is down: what it prints
    local r = proc.run({proc.lua, "-e", ([[
      local admin = require "moltflow.admin"
      local s = admin.redis_store{url = %q, ca_file = %q}
      local c = admin.new{base_url = %q, token_store = s}
      print(tostring(s), c:tokens())]]):format(url, server.ca_file, emu.url)}, {env = {MOLTFLOW_SEAL_KEY = SEAL}})
    keep(r.stdout, r.stderr)
    server:restart()

    -- the seal layer on its own, and a sealed file
    local sealer = seal.from_options({seal_key = SEAL}, "x")
    keep(sealer, tostring(sealer), sealer:unseal("v1.00000000.AAAA"), seal.decode(nil, sealed))
    keep(pcall(seal.from_options, {seal_key = SEAL:sub(2)}, "x"))
    local dir = proc.tmpdir()
    admin.file_store(dir .. "/t", {seal_key = SEAL}):save(held)
    refused("a file, another seal key", admin.file_store(dir .. "/t", {seal_key = OTHER_SEAL}):load())
    refused("a file, no seal key", admin.file_store(dir .. "/t", {seal_key = false}):load())
    os.execute("rm -rf " .. proc.quote(dir))

    -- a key rotation: its steps, its result, its errors; the new raw keys are secrets too
    local rotation = require "moltflow.key_rotation"
    local manager = admin.new{base_url = emu.url, api_key = emu.seed.keys.all}
    local key_store = store{prefix = "rot:"}
    local real_save = key_store.save_rotation
    key_store.save_rotation = function(self, st)
      if st and st.step == "drain" and not self.failed_once then self.failed_once = true return nil, "injected" end
      return real_save(self, st)
    end
    local infos = {}
    local function run() return rotation.rotate{client = manager, store = key_store, id = "key_acme_usage",
                                                 grace = 0.01, on_step = function(_, i) infos[#infos + 1] = i end} end
    keep(run())
    keep(run(), infos)
    local new_key = assert(key_store:load_api_key()).key
    -- a worker on that key: its calls, then the store gone (the keeper's warning), and a 401
    local worker = admin.new{base_url = emu.url, api_key_store = key_store,
                             on_hook_error = function(e) hooks[#hooks + 1] = e.message end}
    keep(worker.usage:current())
    keep(tostring(worker))
    server:kill()
    core.sleep(1.1) -- the next version check is due
    keep(worker.usage:current())
    server:restart()
    assert.matches("shared API key's store failed", hooks[#hooks], 1, true)
    keep(tostring(require("moltflow.shared_key").new(key_store)), server:cli("GET", "rot:api_key"))

    assert.is_true(#warnings >= 5, #warnings .. " warnings")
    assert.is_true(#hooks >= 1, #hooks .. " hook messages")
    assert.matches("could not be loaded", r.stderr, 1, true)
    local raw_seal = core.base64url_decode(SEAL)
    secrets.assert_clean({outputs, warnings, hooks}, {
      ["redis password"] = PASSWORD, ["redis password, url-encoded"] = PASSWORD:gsub(" ", "%%20"),
      ["seal key"] = SEAL, ["other seal key"] = OTHER_SEAL, ["seal key bytes"] = raw_seal,
      ["access token"] = held.access_token, ["refresh token"] = held.refresh_token,
      ["owner password"] = OWNER.password, ["published key"] = new_key, ["old key"] = emu.seed.keys.usage_only,
    })
  end)
end)
