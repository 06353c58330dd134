-- Second, independent checks of behaviours that one spec alone used to
-- catch (issue 19): each looks at a different observation, mostly what the
-- emulator received, so that one broken spec cannot hide a regression.
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"

local seed = emu.seed

local function last_request()
  local log = emu.requests()
  return log[#log]
end

local function key_client(opts)
  return emu.client(opts, {sleep = function() end})
end

describe("second checks", function()
  before_each(function() emu.reset() end)

  it("path ids: an id holding '?' revokes nothing but itself (the server's key list)", function()
    local c = key_client()
    local id = seed.key_ids.usage_only
    local v, err = c.api_keys:revoke(id .. "?x=1")
    assert.is_nil(v)
    assert.equal(404, err.status)
    local req = last_request()
    assert.equal("DELETE", req.method)
    assert.equal("/api/v2/api-keys/" .. id .. "?x=1", req.path)
    assert.equal("", req.query)
    -- the real key still works
    local u = key_client{api_key = seed.keys.usage_only}
    assert.is_table((u.usage:current()))
  end)

  it("query values: '&', '=', ' ' and '/' reach the server percent-encoded in one value", function()
    local c = key_client()
    local v, res = c:request("GET", "/usage/history", {query = {months = 2, note = "a&b=c d/e"}})
    assert.is_table(v, tostring(res))
    local q = last_request().query
    assert.matches("note=a%26b%3Dc%20d%2Fe", q, 1, true)
    assert.is_nil(q:find("&b=", 1, true))
  end)

  it("integral floats reach the server as integers in a request body", function()
    local c = key_client()
    c:request("POST", "/no-such-thing", {body = {big = 1e15, neg = -123456789012345.0, small = 3.0}})
    local body = last_request().body
    assert.matches('"big":1000000000000000', body, 1, true)
    assert.matches('"neg":-123456789012345', body, 1, true)
    assert.matches('"small":3', body, 1, true)
    assert.is_nil(body:find("e+", 1, true), body)
  end)

  it("a client with an API key and tokens sends exactly one credential: the bearer", function()
    local c = key_client()
    local login = assert(c.auth:login{email = seed.owner.email, password = seed.owner.password})
    assert.is_table((c.usage:current()))
    local h = last_request().headers
    assert.equal("Bearer " .. login.access_token, h.authorization)
    assert.is_nil(h["x-api-key"])
    -- a public endpoint: none at all
    assert.is_table((c.billing:plans()))
    h = last_request().headers
    assert.is_nil(h.authorization)
    assert.is_nil(h["x-api-key"])
  end)

  it("a POST on the multi transport gets a fresh connection: a drop reaches the server once", function()
    local c = key_client{retry = false}
    -- a GET first leaves a kept-alive connection that libcurl could reuse
    local h = c:spawn("usage.current")
    while not h.done do c:poll(0.05) end
    assert.is_table((h:result()))
    emu.fault{method = "POST", path = "/billing/portal", drop = true, times = 2}
    local p = c:spawn("billing.portal", {})
    while not p.done do c:poll(0.05) end
    local v, err = p:result()
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.same({444}, emu.statuses_for("POST", "/billing/portal"))
  end)

  it("surrogate pairs in an answer decode to one UTF-8 character", function()
    local c = key_client()
    emu.fault{method = "GET", path = "/usage/current", status = 200,
              body = '{"name":"\\ud83d\\ude00 \\uD834\\uDD1E"}'}
    local v, res = c.usage:current()
    assert.is_table(v, tostring(res))
    assert.equal("\240\159\152\128 \240\157\132\158", v.name)
  end)

  it("a replayed call refused again refreshes once: the server sees one refresh", function()
    local tokens = 0
    local c = admin.new{base_url = emu.url, sleep = function() end, on_tokens = function() tokens = tokens + 1 end}
    assert(c.auth:login{email = seed.owner.email, password = seed.owner.password})
    emu.control("DELETE", "requests")
    emu.fault{method = "GET", path = "/usage/current", status = 401, body = '{"detail":"expired"}', times = 6}
    local v, err = c.usage:current()
    assert.is_nil(v)
    assert.equal(401, err.status)
    assert.same({200}, emu.statuses_for("POST", "/auth/refresh"))
    assert.same({401, 401}, emu.statuses_for("GET", "/usage/current"))
    assert.equal(2, tokens) -- the login, then the one refresh
  end)

  it("backoff has jitter: every wait is below its cap and the waits differ", function()
    local waits = {}
    local c = key_client{retry = {max_attempts = 6, base_delay = 1, max_delay = 1},
                         sleep = function(s) waits[#waits + 1] = s end}
    emu.fault{method = "GET", path = "/usage/current", status = 503, times = 5}
    assert.is_table((c.usage:current()))
    assert.equal(5, #waits)
    local distinct = {}
    for _, w in ipairs(waits) do
      assert.is_true(w >= 0 and w < 1, tostring(w))
      distinct[w] = true
    end
    assert.is_true(next(distinct, next(distinct)) ~= nil, "five equal waits: " .. table.concat(waits, ","))
    assert.same({503, 503, 503, 503, 503, 200}, emu.statuses_for("GET", "/usage/current"))
  end)

  it("a canceled call never resumes, and the client goes on serving other calls", function()
    emu.fault{method = "GET", path = "/usage/current", delay = 2, times = 1}
    local c = key_client()
    local resumed = false
    local h = c:spawn(function()
      local v = c.usage:current()
      resumed = true
      return v
    end)
    c:poll(0.1)
    h:cancel()
    local h2 = c:spawn("billing.plans")
    while not h2.done do c:poll(0.05) end
    assert.is_table((h2:result()))
    assert.is_false(resumed)
    local v, err = h:result()
    assert.is_nil(v)
    assert.equal("canceled", err.kind)
    assert.equal(0, c._core:running())
  end)

  it("a batch keeps at most `concurrency` requests in flight (its hooks)", function()
    emu.fault{method = "GET", path = "/usage/current", delay = 0.2, times = 6}
    local in_flight, most = 0, 0
    local c = key_client{
      on_request = function() in_flight = in_flight + 1; most = math.max(most, in_flight) end,
      on_response = function() in_flight = in_flight - 1 end,
    }
    local calls = {}
    for i = 1, 6 do calls[i] = {"usage.current"} end
    local results = c:batch(calls, {concurrency = 2})
    for i = 1, 6 do assert.is_table(results[i][1], tostring(results[i][2])) end
    assert.equal(2, most)
    assert.equal(6, #emu.statuses_for("GET", "/usage/current"))
  end)
end)

