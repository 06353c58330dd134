-- The retry pipeline decides by the endpoint's idempotent flag (and, for a raw
-- c:request, by its declaration or HTTP's method rule): an ambiguous failure
-- (the server acted, the answer was lost) is retried for an idempotent call,
-- never for the others. Checked against what the emulator recorded.
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"

-- waits recorded, not slept; a pool of its own (no kept-alive connection for
-- libcurl to send a GET again on by itself)
local function client(opts)
  local waits = {}
  local o = {base_url = emu.url, api_key = emu.seed.keys.all, pool = false,
             sleep = function(s) waits[#waits + 1] = s end}
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.api_key == false then o.api_key = nil end
  return admin.new(o), waits
end

local seen = emu.statuses_for

describe("idempotent calls after an ambiguous failure", function()
  before_each(function()
    emu.reset()
    emu.control("POST", "config", {rate_limit = false})
  end)

  it("a PATCH of absolute values whose answer was cut is sent again and succeeds", function()
    local c, waits = client()
    emu.fault{method = "PATCH", path = "/tenant/settings", truncate = true}
    local v, err = c.tenant:update_settings{allowed_numbers = admin.array{"+5511999999999"}}
    assert.is_table(v, tostring(err))
    assert.same({"+5511999999999"}, v.allowed_numbers)
    assert.same({200, 200}, seen("PATCH", "/tenant/settings")) -- the first was applied, its answer cut
    assert.equal(1, #waits)
    c:close()
  end)

  it("users.update_me that timed out after the server acted is sent again", function()
    local c = client{timeout = 0.3}
    emu.fault{method = "PATCH", path = "/users/me", delay = 0.6}
    local v, err = c.users:update_me{full_name = "Retried Name"}
    assert.is_table(v, tostring(err))
    assert.equal("Retried Name", v.full_name)
    assert.equal(2, #emu.requests_for("PATCH", "/users/me")) -- the first one still sleeping (no status yet)
    c:close()
  end)

  it("billing.cancel, a body-less POST declared idempotent, is sent again", function()
    local c = client()
    emu.fault{method = "POST", path = "/billing/cancel", truncate = true}
    local v, err = c.billing:cancel()
    assert.is_table(v, tostring(err))
    assert.is_true(v.cancel_at_period_end)
    assert.equal(2, #seen("POST", "/billing/cancel"))
    c:close()
  end)

  it("a create whose answer was cut is not sent again", function()
    local c, waits = client()
    emu.fault{method = "POST", path = "/api-keys", truncate = true}
    local v, err = c.api_keys:create{name = "cut-create", scopes = {"usage:read"}}
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.equal(1, err.attempts)
    assert.same({}, waits)
    assert.same({201}, seen("POST", "/api-keys"))
    c:close()
  end)

  it("a token refresh whose answer was cut is not sent again (the old refresh token is spent)", function()
    local c = client{api_key = false}
    assert(c.auth:login{email = emu.seed.owner.email, password = emu.seed.owner.password})
    emu.fault{method = "POST", path = "/auth/refresh", truncate = true}
    local v, err = c.auth:refresh()
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.equal(1, err.attempts)
    assert.same({200}, seen("POST", "/auth/refresh"))
    c:close()
  end)

  it("the same budget and deadline as a GET: max_attempts ends it", function()
    local c, waits = client{retry = {max_attempts = 2}}
    emu.fault{method = "PATCH", path = "/tenant/settings", truncate = true, times = 5}
    local v, err = c.tenant:update_settings{require_approval = true}
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.equal(2, err.attempts)
    assert.equal(1, #waits)
    c:close()
  end)
end)

describe("raw c:request", function()
  before_each(function()
    emu.reset()
    emu.control("POST", "config", {rate_limit = false})
  end)

  it("follows HTTP's method rule unless the call declares idempotent", function()
    local c = client()
    emu.fault{method = "PATCH", path = "/tenant/settings", truncate = true}
    local v, err = c:request("PATCH", "/tenant/settings", {body = {require_approval = true}})
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.equal(1, err.attempts)

    emu.reset()
    emu.fault{method = "PATCH", path = "/tenant/settings", truncate = true}
    v, err = c:request("PATCH", "/tenant/settings", {body = {require_approval = true}, idempotent = true})
    assert.is_table(v, tostring(err))
    assert.same({200, 200}, seen("PATCH", "/tenant/settings"))

    emu.reset()
    emu.fault{method = "GET", path = "/usage/current", truncate = true}
    v, err = c:request("GET", "/usage/current", {idempotent = false})
    assert.is_nil(v)
    assert.equal(1, err.attempts)

    emu.reset()
    emu.fault{method = "GET", path = "/usage/current", truncate = true}
    v, err = c:request("GET", "/usage/current")
    assert.is_table(v, tostring(err))
    c:close()
  end)

  it("a non-boolean idempotent raises before any I/O, naming the field", function()
    local c = client()
    assert.has_error(function() c:request("POST", "/api-keys", {idempotent = "yes"}) end,
      "moltflow.request: field 'idempotent' must be a boolean")
    assert.same({}, emu.requests())
    c:close()
  end)
end)
