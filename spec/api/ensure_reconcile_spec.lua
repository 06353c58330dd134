-- api_keys:ensure reconciles a create whose answer was lost: it lists the
-- keys by name, revokes the orphan (a key whose secret never reached the
-- caller) and creates again, so that it ends with one live key whose secret
-- the caller holds, or with an error whose `left` says what is left on the
-- server. Checked against the emulator's request log and stored keys.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"

local function client(opts)
  local o = {base_url = emu.url, api_key = emu.seed.keys.all, pool = false, sleep = function() end}
  for k, v in pairs(opts or {}) do o[k] = v end
  return admin.new(o)
end

local function live(name)
  local out = {}
  for _, k in ipairs(emu.control("GET", "api-keys")) do
    if k.name == name and k.is_active then out[#out + 1] = k end
  end
  return out
end

local function calls()
  local out = {}
  for _, r in ipairs(emu.requests()) do
    if r.path:find("^/api/v2/api%-keys") then out[#out + 1] = r.method .. " " .. tostring(r.status) end
  end
  return out
end

describe("api_keys:ensure after an ambiguous failure", function()
  before_each(function()
    emu.reset()
    emu.control("POST", "config", {rate_limit = false})
  end)

  it("revokes the orphan of a create whose answer was cut and creates again", function()
    local c = client()
    emu.fault{method = "POST", path = "/api-keys", truncate = true}
    local key, err = c.api_keys:ensure{name = "ci-orphan", scopes = {"usage:read"}}
    assert.is_table(key, tostring(err))
    assert.is_true(key.created)
    local keys = live("ci-orphan")
    assert.equal(1, #keys)
    assert.equal(core.sha256(key.raw_key), keys[1].key_hash)
    assert.same({"GET 200", "POST 201", "GET 200", "DELETE 204", "POST 201"}, calls())
    c:close()
  end)

  it("a create that timed out after the server acted: the same", function()
    local c = client{timeout = 0.3}
    emu.fault{method = "POST", path = "/api-keys", delay = 0.6}
    local key, err = c.api_keys:ensure{name = "ci-slow", scopes = {"usage:read"}}
    assert.is_table(key, tostring(err))
    assert.is_true(key.created)
    core.sleep(0.4) -- the delayed answer's request ends
    local keys = live("ci-slow")
    assert.equal(1, #keys)
    assert.equal(core.sha256(key.raw_key), keys[1].key_hash)
    c:close()
  end)

  it("a lost create that never reached the server is simply made again", function()
    local c = client()
    emu.fault{method = "POST", path = "/api-keys", drop = true} -- nginx closes before the handler
    local key, err = c.api_keys:ensure{name = "ci-dropped", scopes = {"usage:read"}}
    assert.is_table(key, tostring(err))
    assert.same({"GET 200", "POST 444", "GET 200", "POST 201"}, calls())
    c:close()
  end)

  it("when the orphan cannot be revoked, the error names it in err.left", function()
    local c = client()
    emu.fault{method = "POST", path = "/api-keys", truncate = true}
    emu.fault{method = "DELETE", status = 403, body = '{"detail":"nope"}'}
    local key, err = c.api_keys:ensure{name = "ci-stuck", scopes = {"usage:read"}}
    assert.is_nil(key)
    assert.equal("network", err.kind)
    local keys = live("ci-stuck")
    assert.equal(1, #keys)
    assert.equal(1, #err.left)
    assert.equal(keys[1].id, err.left[1].id)
    assert.is_nil(err.left[1].raw_key)
    assert.is_truthy(err.message:find("api_keys.ensure: key " .. keys[1].id .. " was created but its secret was lost",
                                      1, true), err.message)
    c:close()
  end)

  it("when the keys cannot be listed, the error says a key may be left", function()
    -- once the create's answer is cut, the list after it fails (retries off)
    local c = client{retry = false, on_response = function(i)
      if i.method == "POST" then emu.fault{method = "GET", path = "/api-keys", status = 503} end
    end}
    emu.fault{method = "POST", path = "/api-keys", truncate = true}
    local key, err = c.api_keys:ensure{name = "ci-blind", scopes = {"usage:read"}}
    assert.is_nil(key)
    assert.is_true(err.left_unknown)
    assert.is_nil(err.left)
    assert.is_truthy(err.message:find("find the key named 'ci-blind' and revoke it", 1, true), err.message)
    assert.equal(1, #live("ci-blind"))
    c:close()
  end)

  it("a create the server refused leaves nothing: err.left is empty, no second try", function()
    local c = client()
    emu.fault{method = "POST", path = "/api-keys", status = 422, body = '{"detail":"bad"}'}
    local key, err = c.api_keys:ensure{name = "ci-refused", scopes = {"usage:read"}}
    assert.is_nil(key)
    assert.equal(422, err.status)
    assert.same({}, err.left)
    assert.same({"GET 200", "POST 422"}, calls())
    c:close()
  end)

  it("a list that fails before any create leaves nothing: err.left is empty", function()
    local c = client{retry = false}
    emu.fault{method = "GET", path = "/api-keys", status = 503}
    local key, err = c.api_keys:ensure{name = "ci-unlisted", scopes = {"usage:read"}}
    assert.is_nil(key)
    assert.equal(503, err.status)
    assert.same({}, err.left)
    assert.same({"GET 503"}, calls())
    c:close()
  end)

  it("gives up after three creates, saying nothing is left", function()
    local c = client()
    emu.fault{method = "POST", path = "/api-keys", truncate = true, times = 3}
    local key, err = c.api_keys:ensure{name = "ci-unlucky", scopes = {"usage:read"}}
    assert.is_nil(key)
    assert.same({}, err.left)
    assert.same({}, live("ci-unlucky"))
    assert.is_truthy(err.message:find("no key created after 3 tries; none is left on the server", 1, true))
    c:close()
  end)
end)
