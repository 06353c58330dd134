-- Issue 27: what a refresh keeps. An answer without a new refresh token
-- keeps the old one (memory, store, on_tokens); a 5xx, or an answer without
-- an access token, changes nothing: the tokens, the store and on_tokens are
-- left alone, and the next refresh still works with the token held.
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local function b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    for j = 1, (b and (c and 4 or 3) or 2) do
      local v = math.floor(n / 2 ^ (18 - 6 * (j - 1))) % 64
      out[#out + 1] = ALPHABET:sub(v + 1, v + 1)
    end
  end
  return table.concat(out)
end

-- A store that records every save.
local function recording_store()
  local store = {saves = {}}
  function store.load() return store.saved end
  function store.save(_, t)
    store.saves[#store.saves + 1] = t or false
    store.saved = t
    return true
  end
  return store
end

-- A logged-in client with a recording store and on_tokens; the login's own
-- save and on_tokens are forgotten.
local function logged_in(extra)
  local store, heard = recording_store(), {}
  local opts = {login = {email = emu.seed.owner.email, password = emu.seed.owner.password}, token_store = store,
                on_tokens = function(t) heard[#heard + 1] = t or false end}
  for k, v in pairs(extra or {}) do opts[k] = v end
  local c = emu.client(opts)
  local held = c:tokens()
  assert.is_string(held.refresh_token)
  store.saves, heard.n = {}, nil
  for i = #heard, 1, -1 do heard[i] = nil end
  return c, store, heard, held
end

describe("a refresh", function()
  before_each(function() emu.reset() end)

  it("whose answer holds no refresh token keeps the old one, in memory, the store and on_tokens", function()
    local c, store, heard, held = logged_in{retry = false}
    local exp = os.time() + 1800
    local access = "h." .. b64url(('{"sub":"usr_acme_owner","exp":%d}'):format(exp)) .. ".s"
    emu.fault{method = "POST", path = "/auth/refresh", status = 200,
              body = admin.json_encode{access_token = access, token_type = "bearer"}}
    local v, res = c.auth:refresh()
    assert.is_table(v, tostring(res))
    local want = {access_token = access, refresh_token = held.refresh_token, expires_at = exp}
    assert.same(want, c:tokens())
    assert.same({want}, store.saves)
    assert.same({want}, heard)
    -- what was sent: the refresh token held
    local sent = emu.requests_for("POST", "/auth/refresh")
    assert.equal(1, #sent)
    assert.same({refresh_token = held.refresh_token}, admin.json_decode(sent[1].body))
    c:close()
  end)

  it("whose answer holds a new refresh token takes it", function()
    local c, store, heard, held = logged_in{retry = false}
    assert(c.auth:refresh())
    local now = c:tokens()
    assert.not_equal(held.refresh_token, now.refresh_token)
    assert.not_equal(held.access_token, now.access_token)
    assert.same({now}, store.saves)
    assert.same({now}, heard)
    c:close()
  end)

  for _, status in ipairs{500, 502, 503} do
    it("answered " .. status .. " leaves the tokens, the store and on_tokens alone", function()
      local c, store, heard, held = logged_in{retry = false}
      emu.fault{method = "POST", path = "/auth/refresh", status = status}
      local v, err = c.auth:refresh()
      assert.is_nil(v)
      assert.equal(status, err.status)
      assert.equal("/auth/refresh", err.path)
      assert.same(held, c:tokens())
      assert.same({}, store.saves)
      assert.same({}, heard)
      -- the refresh token held is still good: the next refresh works with it
      assert(c.auth:refresh())
      assert.not_equal(held.refresh_token, c:tokens().refresh_token)
      assert.equal(1, #store.saves)
      c:close()
    end)
  end

  it("answered 5xx with retries on is not retried (POST), and still changes nothing", function()
    local c, store, heard, held = logged_in{retry = {max_attempts = 3, base_delay = 0}}
    emu.fault{method = "POST", path = "/auth/refresh", status = 503, times = 3}
    local v, err = c.auth:refresh()
    assert.is_nil(v)
    assert.equal(503, err.status)
    assert.equal(1, #emu.requests_for("POST", "/auth/refresh"))
    assert.same(held, c:tokens())
    assert.same({}, store.saves)
    assert.same({}, heard)
    c:close()
  end)

  it("proactive, before a call, answered 503: the call goes on with the tokens held, nothing is saved", function()
    local c, store, heard, held = logged_in{retry = false, refresh_skew = 1800 + 60}
    emu.fault{method = "POST", path = "/auth/refresh", status = 503}
    local v, err = c.auth:me()
    assert.is_table(v, tostring(err))
    assert.equal(emu.seed.owner.email, v.email)
    assert.equal(1, #emu.requests_for("POST", "/auth/refresh"))
    assert.same(held, c:tokens())
    assert.same({}, store.saves)
    assert.same({}, heard)
    c:close()
  end)

  it("whose 200 answer holds no access token is a decode error and changes nothing", function()
    local c, store, heard, held = logged_in{retry = false}
    emu.fault{method = "POST", path = "/auth/refresh", status = 200, body = '{"refresh_token":"rt-only"}'}
    local v, err = c.auth:refresh()
    assert.is_nil(v)
    assert.equal("decode", err.kind)
    assert.same(held, c:tokens())
    assert.same({}, store.saves)
    assert.same({}, heard)
    c:close()
  end)

  it("refused (401) clears the tokens, the store and calls on_tokens(nil) once", function()
    local c, store, heard = logged_in{retry = false}
    emu.fault{method = "POST", path = "/auth/refresh", status = 401, body = '{"detail":"Invalid refresh token"}'}
    local v, err = c.auth:refresh()
    assert.is_nil(v)
    assert.equal(401, err.status)
    assert.is_nil(c:tokens())
    assert.same({false}, store.saves)
    assert.same({false}, heard)
    c:close()
  end)

  it("is not asked for before a call whose access token has no exp (opaque): the call goes out with it", function()
    local c = admin.new{base_url = emu.url, access_token = "opaque-access-8d3e", refresh_token = "rt-opaque-1f0c",
                        retry = false}
    assert.is_nil(c:tokens().expires_at)
    local ok, v, err = pcall(c.usage.current, c.usage)
    assert.is_true(ok, tostring(v))
    assert.is_nil(v) -- the emulator knows no such token: 401, then one refused refresh
    assert.equal(401, err.status)
    local log = emu.requests()
    assert.equal("/api/v2/usage/current", log[1].path)
    assert.equal("Bearer opaque-access-8d3e", log[1].headers.authorization)
    c:close()
  end)
end)
