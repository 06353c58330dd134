-- Issue 27: failures no spec checked. A host name that does not resolve is a
-- connection that never reached a server (`connect_failed`: even a POST may
-- be retried); a 422 that echoes a secret-named key inside a nested object
-- is redacted at any depth, and only there.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"

-- Every string in v (keys and values, any depth), joined.
local function strings(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do
      strings(k, out, seen)
      strings(x, out, seen)
    end
  end
  return table.concat(out, "\n")
end

describe("a host name that does not resolve", function()
  -- .invalid never resolves (RFC 6761)
  local URL = "https://moltflow-spec.invalid/api/v2"
  local function client(extra)
    local opts = {base_url = URL, api_key = "mf_unused", retry = {max_attempts = 3, base_delay = 0, max_elapsed = 30}}
    for k, v in pairs(extra or {}) do opts[k] = v end
    return admin.new(opts)
  end

  it("fails as `network` marked connect_failed, and a POST is retried: it never reached a server", function()
    local attempts = {}
    local c = client{on_request = function(i) attempts[#attempts + 1] = i.method .. " " .. i.attempt end}
    local v, err = c.api_keys:create{name = "x", scopes = {"usage:read"}}
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.is_true(err.connect_failed)
    assert.equal("POST", err.method)
    assert.equal(3, err.attempts)
    assert.same({"POST 1", "POST 2", "POST 3"}, attempts)
    c:close()
  end)

  it("a GET and a PATCH fail the same way", function()
    local c = client()
    local v, err = c.usage:current()
    assert.is_nil(v)
    assert.is_true(err.connect_failed)
    assert.equal(3, err.attempts)
    v, err = c.tenant:update_settings{require_approval = true}
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.is_true(err.connect_failed)
    assert.equal(3, err.attempts)
    c:close()
  end)

  it("a spawned POST fails the same way", function()
    local c = client{loop = admin.new_loop()}
    local h = c:spawn("api_keys.create", {name = "x", scopes = {"usage:read"}})
    local deadline = core.monotime() + 20
    while not h.done and core.monotime() < deadline do c:poll(0.05) end
    local v, err = h:result()
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.is_true(err.connect_failed)
    assert.equal(3, err.attempts)
    c:close()
  end)

  it("a POST that reached the server and got a 503 is not retried, and is not connect_failed", function()
    emu.reset()
    emu.fault{method = "POST", path = "/api-keys", status = 503, times = 3}
    local c = emu.client{retry = {max_attempts = 3, base_delay = 0}}
    local v, err = c.api_keys:create{name = "x", scopes = {"usage:read"}}
    assert.is_nil(v)
    assert.equal(503, err.status)
    assert.is_nil(err.connect_failed)
    assert.equal(1, err.attempts)
    assert.equal(1, #emu.requests_for("POST", "/api-keys"))
    c:close()
  end)
end)

describe("a 422 that echoes secrets inside nested objects", function()
  before_each(function() emu.reset() end)

  local SECRETS = {"nested-secret-4a1f", "listed-password-77c0", "deep-token-0b9e", "ctx-api-key-19d2"}
  local body = admin.json_encode{detail = {
    {loc = {"body", "settings"}, msg = "bad settings", type = "value_error",
     input = {name = "visible-name", settings = {webhook = {secret = SECRETS[1], url = "https://hooks.example/x"}},
              users = {{email = "a@b.test", password = SECRETS[2]}},
              a = {b = {c = {d = {refresh_token = SECRETS[3]}}}}},
     ctx = {given = {api_key = SECRETS[4], limit = 3}}},
  }}

  it("redacts the secret-named keys at every depth, keeps the rest", function()
    emu.fault{method = "PATCH", path = "/tenant/settings", status = 422, body = body}
    local c = emu.client{retry = false}
    local v, err = c.tenant:update_settings{require_approval = true}
    assert.is_nil(v)
    assert.equal(422, err.status)
    local input = err.detail[1].input
    assert.equal("REDACTED", input.settings.webhook.secret)
    assert.equal("REDACTED", input.users[1].password)
    assert.equal("REDACTED", input.a.b.c.d.refresh_token)
    assert.equal("REDACTED", err.detail[1].ctx.given.api_key)
    -- not over-redacted: what no secret names stays
    assert.equal("visible-name", input.name)
    assert.equal("https://hooks.example/x", input.settings.webhook.url)
    assert.equal("a@b.test", input.users[1].email)
    assert.equal(3, err.detail[1].ctx.given.limit)
    assert.equal("settings", err.validation_errors[1].field)
    local text = strings(err) .. tostring(err)
    for _, s in ipairs(SECRETS) do assert.is_nil(text:find(s, 1, true), s .. " leaked: " .. text) end
    c:close()
  end)

  it("redacts them in what on_response hears too", function()
    emu.fault{method = "PATCH", path = "/tenant/settings", status = 422, body = body}
    local heard = {}
    local c = emu.client{retry = false, on_response = function(i) heard[#heard + 1] = i end}
    assert.is_nil((c.tenant:update_settings{require_approval = true}))
    assert.equal(1, #heard)
    local text = strings(heard)
    for _, s in ipairs(SECRETS) do assert.is_nil(text:find(s, 1, true), s .. " leaked: " .. text) end
    c:close()
  end)

  it("redacts a secret nested 150 objects deep (the stack grows as it goes down)", function()
    local deep = {api_key = "bottom-secret-5e2a", note = "kept"}
    for i = 1, 150 do deep = {["level" .. i] = deep} end
    emu.fault{method = "PATCH", path = "/tenant/settings", status = 422,
              body = admin.json_encode{detail = {{loc = {"body"}, msg = "bad", type = "value_error", input = deep}}}}
    local c = emu.client{retry = false, loop = admin.new_loop()}
    -- spawned: the answer is read on a fresh coroutine's small stack
    local h = c:spawn("tenant.update_settings", {require_approval = true})
    local deadline = core.monotime() + 10
    while not h.done and core.monotime() < deadline do c:poll(0.05) end
    local v, err = h:result()
    assert.is_nil(v)
    assert.equal(422, err.status)
    local node = err.detail[1].input
    for i = 150, 1, -1 do node = node["level" .. i] end
    assert.equal("REDACTED", node.api_key)
    assert.equal("kept", node.note)
    assert.is_nil((strings(err) .. tostring(err)):find("bottom-secret-5e2a", 1, true))
    c:close()
  end)
end)

describe("an error whose JSON body is not an object", function()
  before_each(function() emu.reset() end)

  for _, body in ipairs{'"maintenance"', "503", "true", "null", "[1, 2]"} do
    it("says `HTTP <status>` for " .. body .. ", with the status, kind and headers", function()
      emu.fault{path = "/usage/current", status = 503, body = body, headers = {["X-Probe"] = "kept"}}
      local c = emu.client{retry = false}
      local v, err = c.usage:current()
      assert.is_nil(v)
      assert.equal("http", err.kind)
      assert.equal(503, err.status)
      assert.equal("kept", err.headers["x-probe"])
      assert.equal("moltflow: 503 GET /usage/current: HTTP 503", tostring(err))
    end)
  end
end)
