-- Retry policy (moltflow.retry) and the retry loop of Client:_run, against the
-- emulator: what the server saw, what the client waited, what came back.
local admin = require "moltflow.admin"
local retry = require "moltflow.retry"
local core = require "moltflow.core"
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"

local KEY = emu.seed.keys.all

-- A client on the emulator whose sleep records the waits instead of sleeping.
local function recording_client(opts)
  local waits = {}
  return emu.client(opts, {api_key = KEY, sleep = function(s) waits[#waits + 1] = s end}), waits
end

-- the statuses the server answered for method + path (after /api/v2), in order
local seen = emu.statuses_for

local function http_date(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
end

describe("moltflow.retry policy", function()
  it("defaults, retry = true, retry = false", function()
    local p = retry.policy()
    assert.same({max_attempts = 3, base_delay = 0.5, max_delay = 8, max_elapsed = 30}, {
      max_attempts = p.max_attempts, base_delay = p.base_delay, max_delay = p.max_delay,
      max_elapsed = p.max_elapsed})
    assert.same({408, 429, 500, 502, 503, 504}, p.retry_on)
    assert.same(p.retry_on, retry.policy(true).retry_on)
    assert.is_nil(retry.policy(false))
    assert.equal(5, retry.policy{max_attempts = 5}.max_attempts)
  end)

  it("bad options raise from moltflow.new, naming the field", function()
    local function new(r) return function() admin.new{base_url = emu.url, retry = r} end end
    assert.has_error(new{max_attemps = 3}, "moltflow.new: unknown field 'retry.max_attemps'")
    assert.has_error(new{max_attempts = 0}, "moltflow.new: field 'retry.max_attempts' must be an integer >= 1")
    assert.has_error(new{max_attempts = 2.5}, "moltflow.new: field 'retry.max_attempts' must be an integer >= 1")
    assert.has_error(new{base_delay = -1}, "moltflow.new: field 'retry.base_delay' must be a number >= 0")
    assert.has_error(new{max_elapsed = "30"}, "moltflow.new: field 'retry.max_elapsed' must be a number >= 0")
    assert.has_error(new{retry_on = 503}, "moltflow.new: field 'retry.retry_on' must be a list of statuses")
    assert.has_error(new{retry_on = {503, "504"}},
      "moltflow.new: field 'retry.retry_on[2]' must be an HTTP status (100-599)")
    assert.has_error(new("yes"), "moltflow.new: field 'retry' must be a table or boolean (got string)")
  end)

  it("what may be retried: idempotent calls on errors, others only when the server did not act", function()
    local p = retry.policy()
    local net, connect = {kind = "network"}, {kind = "network", connect_failed = true}
    local timeout, s503, s429, s404 = {kind = "timeout"}, {kind = "http", status = 503},
      {kind = "http", status = 429}, {kind = "http", status = 404}
    assert.is_true(retry.retryable(p, true, net))
    assert.is_true(retry.retryable(p, true, timeout))
    assert.is_true(retry.retryable(p, true, s503))
    assert.is_false(retry.retryable(p, true, s404))
    assert.is_false(retry.retryable(p, false, net))
    assert.is_false(retry.retryable(p, false, timeout))
    assert.is_false(retry.retryable(p, false, s503))
    assert.is_true(retry.retryable(p, false, connect))
    assert.is_true(retry.retryable(p, false, s429))
    assert.is_false(retry.retryable(retry.policy{retry_on = {503}}, true, {kind = "http", status = 500}))
    assert.is_false(retry.retryable(p, true, {kind = "auth", status = 401}))
  end)

  it("HTTP's method rule is for raw requests; the policy itself takes only a declared boolean", function()
    for _, m in ipairs{"GET", "HEAD", "OPTIONS", "PUT", "DELETE"} do assert.is_true(retry.method_idempotent(m)) end
    for _, m in ipairs{"POST", "PATCH", "get", "TRACE"} do assert.is_false(retry.method_idempotent(m)) end
    local p = retry.policy()
    for _, bad in ipairs{"GET", "POST", 1} do
      assert.has_error(function() retry.retryable(p, bad, {kind = "network"}) end,
        "moltflow.retry.retryable: 'idempotent' must be a boolean (the endpoint's flag, or "
        .. "retry.method_idempotent(method) for a raw request)")
      assert.has_error(function() retry.delay(p, bad, {kind = "network"}, 1, 0, 0) end,
        "moltflow.retry.delay: 'idempotent' must be a boolean (the endpoint's flag, or "
        .. "retry.method_idempotent(method) for a raw request)")
    end
    assert.has_error(function() retry.delay(p, nil, {kind = "network"}, 1, 0, 0) end)
  end)

  it("exponential backoff with full jitter, capped by max_delay", function()
    local p = retry.policy{max_attempts = 10, max_elapsed = 1000}
    local err = {kind = "http", status = 503}
    local one = function() return 1 end
    local caps = {0.5, 1, 2, 4, 8, 8, 8}
    for attempt, cap in ipairs(caps) do
      assert.equal(cap, retry.delay(p, true, err, attempt, 0, 0, one))
      assert.equal(0, retry.delay(p, true, err, attempt, 0, 0, function() return 0 end))
    end
    -- full jitter: spread over the whole [0, cap] range
    local lo, hi = math.huge, 0
    for _ = 1, 2000 do
      local w = retry.delay(p, true, err, 3, 0, 0)
      assert.is_true(w >= 0 and w <= 2)
      lo, hi = math.min(lo, w), math.max(hi, w)
    end
    assert.is_true(lo < 0.2 and hi > 1.8)
  end)

  it("server hints win; max_attempts and max_elapsed end the call", function()
    local p = retry.policy()
    assert.equal(7, retry.delay(p, true, {status = 503, retry_after = 7}, 1, 0, 0))
    assert.equal(4 + retry.RESET_MARGIN, retry.delay(p, false, {status = 429, rate_limit = {reset = 1004}}, 1, 0, 1000))
    assert.equal(2, retry.delay(p, true, {status = 429, retry_after = 2, rate_limit = {reset = 1004}}, 1, 0, 1000))
    assert.is_nil(retry.delay(p, true, {status = 503}, 3, 0, 0))
    assert.is_nil(retry.delay(p, true, {status = 503, retry_after = 7}, 1, 24, 0))
    assert.equal(6, retry.delay(p, true, {status = 503, retry_after = 6}, 1, 24, 0))
  end)
end)

describe("retries against the emulator", function()
  before_each(function() emu.reset() end)

  it("GET: 503 twice then 200, with two jittered backoff waits", function()
    local c, waits = recording_client()
    emu.fault{method = "GET", path = "/usage/current", status = 503, times = 2}
    local v, res = c.usage:current()
    assert.is_table(v, tostring(res))
    assert.equal(200, res.status)
    assert.same({503, 503, 200}, seen("GET", "/usage/current"))
    assert.equal(2, #waits)
    assert.is_true(waits[1] >= 0 and waits[1] <= 0.5, tostring(waits[1]))
    assert.is_true(waits[2] >= 0 and waits[2] <= 1.0, tostring(waits[2]))
  end)

  it("GET: 503 on every attempt: err.attempts = 3 and the server saw 3", function()
    local c, waits = recording_client()
    emu.fault{method = "GET", path = "/usage/current", status = 503, times = 5}
    local v, err = c.usage:current()
    assert.is_nil(v)
    assert.equal(503, err.status)
    assert.equal(3, err.attempts)
    assert.equal(2, #waits)
    assert.same({503, 503, 503}, seen("GET", "/usage/current"))
  end)

  it("max_attempts from the options", function()
    local c, waits = recording_client{retry = {max_attempts = 5}}
    emu.fault{method = "GET", path = "/usage/current", status = 502, times = 9}
    local _, err = c.usage:current()
    assert.equal(5, err.attempts)
    assert.equal(4, #waits)
    assert.equal(5, #seen("GET", "/usage/current"))
  end)

  it("retry = false: one attempt", function()
    local c, waits = recording_client{retry = false}
    emu.fault{method = "GET", path = "/usage/current", status = 503, times = 2}
    local _, err = c.usage:current()
    assert.equal(503, err.status)
    assert.equal(1, err.attempts)
    assert.same({}, waits)
    assert.same({503}, seen("GET", "/usage/current"))
  end)

  it("a status outside retry_on is final", function()
    local c = recording_client{retry = {retry_on = {503}}}
    emu.fault{method = "GET", path = "/usage/current", status = 500, times = 2}
    local _, err = c.usage:current()
    assert.equal(500, err.status)
    assert.equal(1, err.attempts)
    assert.same({500}, seen("GET", "/usage/current"))
  end)

  it("a 429 with Retry-After: 1 waits exactly 1 s, then succeeds (POST too)", function()
    local c, waits = recording_client()
    emu.fault{method = "POST", path = "/api-keys", retry_after = 1}
    local v, res = c.api_keys:create{name = "after-429", scopes = {"usage:read"}}
    assert.is_table(v, tostring(res))
    assert.equal(201, res.status)
    assert.same({1}, waits)
    assert.same({429, 201}, seen("POST", "/api-keys"))
  end)

  it("Retry-After as an HTTP date", function()
    local c, waits = recording_client()
    emu.fault{method = "GET", path = "/usage/current", status = 503,
              headers = {["Retry-After"] = http_date(os.time() + 4)}}
    assert.is_table((c.usage:current()))
    assert.equal(1, #waits)
    assert.is_true(waits[1] > 2 and waits[1] <= 4, tostring(waits[1]))
    assert.same({503, 200}, seen("GET", "/usage/current"))
  end)

  -- Fixed dates around the turn of the year and February (where the civil
  -- calendar maths shifts), read by the core's response reader; expected
  -- Unix times computed independently (Python's calendar.timegm).
  it("Retry-After HTTP dates in January, February and March give the right instant", function()
    local dates = {
      {"Wed, 15 Jan 2070 12:00:00 GMT", 3157012800},
      {"Fri, 28 Feb 2070 23:59:59 GMT", 3160857599},
      {"Sat, 01 Mar 2070 00:00:00 GMT", 3160857600},
      {"Mon, 29 Feb 2072 06:30:00 GMT", 3223953000},
      {"Thu, 31 Dec 2071 23:00:00 GMT", 3218828400},
    }
    local c = recording_client{retry = false}
    for _, d in ipairs(dates) do
      emu.fault{method = "GET", path = "/usage/current", status = 503, headers = {["Retry-After"] = d[1]}}
      local before = core.time()
      local _, err = c.usage:current()
      local after = core.time()
      assert.equal(503, err.status)
      -- retry_after = date - now, now read during the call on core.time()'s clock (not a
      -- whole second behind it, as time(NULL) was: once in a valgrind run, just after a second began)
      assert.is_true(err.retry_after >= d[2] - after and err.retry_after <= d[2] - before,
        ("%s: %.3f s from now, not within [%.3f, %.3f]"):format(d[1], err.retry_after, d[2] - after, d[2] - before))
    end
  end)

  it("a negative Retry-After, or a date in the past, means no wait", function()
    local c = recording_client{retry = false}
    for _, value in ipairs{"-5", "Thu, 01 Jan 2015 00:00:00 GMT"} do
      emu.fault{method = "GET", path = "/usage/current", status = 503, headers = {["Retry-After"] = value}}
      local _, err = c.usage:current()
      assert.equal(503, err.status)
      assert.equal(0, err.retry_after, value)
    end
  end)

  it("a 429 without Retry-After waits until X-RateLimit-Reset", function()
    local c, waits = recording_client()
    local reset = os.time() + 5
    emu.fault{method = "GET", path = "/usage/current", status = 429,
              headers = {["X-RateLimit-Reset"] = tostring(reset)}}
    assert.is_table((c.usage:current()))
    assert.equal(1, #waits)
    assert.is_true(waits[1] > 3 and waits[1] <= 5 + retry.RESET_MARGIN, tostring(waits[1]))
    assert.same({429, 200}, seen("GET", "/usage/current"))
  end)

  it("max_elapsed: a wait that would pass the deadline returns the error instead", function()
    local c, waits = recording_client{retry = {max_attempts = 10, max_elapsed = 2.5}}
    emu.fault{method = "GET", path = "/usage/current", status = 503, retry_after = 1, times = 9}
    local _, err = c.usage:current()
    assert.equal(503, err.status)
    assert.same({1, 1}, waits) -- a third wait would end at 3 s > 2.5 s
    assert.equal(3, err.attempts)
    assert.equal(3, #seen("GET", "/usage/current"))

    emu.reset()
    emu.fault{method = "GET", path = "/usage/current", status = 503, retry_after = 60}
    local c2, waits2 = recording_client()
    local _, err2 = c2.usage:current()
    assert.equal(1, err2.attempts)
    assert.same({}, waits2)
    assert.same({503}, seen("GET", "/usage/current"))
  end)

  it("a dropped connection: GET is retried, POST is not (the server may have acted)", function()
    -- a pool of its own: on a connection kept from an earlier call libcurl
    -- itself sends the GET again, and the SDK's retry would not show
    local c, waits = recording_client{pool = false}
    emu.fault{method = "GET", path = "/usage/current", drop = true}
    local v, res = c.usage:current()
    assert.is_table(v, tostring(res))
    assert.same({444, 200}, seen("GET", "/usage/current"))
    assert.equal(1, #waits)

    -- the same client, so a kept-alive connection is there to reuse: a POST
    -- still reaches the server once (libcurl would otherwise send it again
    -- by itself when a reused connection closes without an answer)
    emu.fault{method = "POST", path = "/billing/portal", drop = true}
    local v2, err = c.billing:portal{}
    assert.is_nil(v2)
    assert.equal("network", err.kind)
    assert.is_nil(err.connect_failed)
    assert.equal(1, err.attempts)
    assert.same({444}, seen("POST", "/billing/portal"))
  end)

  it("a POST that timed out is not retried: the server did act on it", function()
    local c, waits = recording_client{timeout = 0.3}
    emu.fault{method = "POST", path = "/api-keys", delay = 0.6}
    local v, err = c.api_keys:create{name = "slow-create", scopes = {"usage:read"}}
    assert.is_nil(v)
    assert.equal("timeout", err.kind)
    assert.equal(1, err.attempts)
    assert.same({}, waits)
    core.sleep(0.6)
    local keys = emu.control("GET", "api-keys")
    local found = 0
    for _, k in ipairs(keys) do if k.name == "slow-create" then found = found + 1 end end
    assert.equal(1, found) -- one request, one key: a retry would have tried a second
    assert.equal(1, #seen("POST", "/api-keys"))
  end)

  it("a failed connect is retried even for POST; err.attempts counts them", function()
    local c, waits = recording_client{base_url = "http://127.0.0.1:1/api/v2", api_key = false}
    local v, err = c.auth:login{email = "x@y.test", password = "pw-not-sent"}
    assert.is_nil(v)
    assert.equal("network", err.kind)
    assert.is_true(err.connect_failed)
    assert.equal(3, err.attempts)
    assert.equal(2, #waits)
  end)

  it("the default sleep really waits (short waits)", function()
    local c = admin.new{base_url = emu.url, api_key = KEY, retry = {base_delay = 0.05}}
    emu.fault{method = "GET", path = "/usage/current", status = 503}
    assert.is_table((c.usage:current()))
    assert.same({503, 200}, seen("GET", "/usage/current"))

    emu.fault{method = "GET", path = "/usage/daily", retry_after = 1}
    local t0 = core.monotime()
    local v, res = c.usage:daily()
    assert.is_table(v, tostring(res))
    assert.is_true(core.monotime() - t0 >= 0.95)
    assert.same({429, 200}, seen("GET", "/usage/daily"))
  end)
end)

describe("rate limits and pacing", function()
  before_each(function() emu.reset() end)
  after_each(function() emu.reset() end)

  -- Pro plan: 40 a minute * 0.05 = 2 requests per window. Returns a client
  -- whose sleep moves the emulator clock instead of waiting, and its waits.
  local function exhausted_client(opts)
    emu.control("POST", "config", {rate_limit_scale = 0.05})
    -- stay clear of a window boundary so that the window below is one window
    if 60 - os.time() % 60 < 3 then core.sleep(3) end
    local waits = {}
    opts.sleep = function(s)
      waits[#waits + 1] = s
      emu.advance(s)
    end
    local c = recording_client(opts)
    for _ = 1, 3 do
      local v, err = c.usage:current()
      assert.is_table(v, tostring(err))
      if c:rate_limit().remaining == 0 then break end
    end
    assert.equal(0, c:rate_limit().remaining)
    return c, waits
  end

  it("rate_limit() gives the last remaining and reset", function()
    local c = recording_client()
    assert.same({}, c:rate_limit())
    c.usage:current()
    local rl = c:rate_limit()
    assert.is_number(rl.remaining)
    assert.is_true(rl.reset > os.time() - 1 and rl.reset <= os.time() + 61)
  end)

  it("without pace the next call runs into a 429", function()
    local c = exhausted_client{retry = false}
    local _, err = c.usage:current()
    assert.equal(429, err.status)
  end)

  it("pace = true waits from a 200 with X-RateLimit-Remaining: 0 until the reset plus the margin", function()
    local waits = {}
    local c = recording_client{pace = true, sleep = function(s) waits[#waits + 1] = s end}
    local reset = math.floor(core.time()) + 20
    emu.fault{method = "GET", path = "/usage/current", status = 200, body = '{"limit_messages":1}',
              headers = {["X-RateLimit-Remaining"] = "0", ["X-RateLimit-Reset"] = tostring(reset)}}
    assert.is_table((c.usage:current()))
    assert.same({remaining = 0, reset = reset}, c:rate_limit())
    local before = core.time()
    assert.is_table((c.usage:current()))
    local after = core.time()
    assert.equal(1, #waits)
    -- both bounds: the wait is reset - now + RESET_MARGIN, now taken during the call
    assert.is_true(waits[1] >= reset - after + retry.RESET_MARGIN - 1e-6, tostring(waits[1]))
    assert.is_true(waits[1] <= reset - before + retry.RESET_MARGIN + 1e-6, tostring(waits[1]))
    assert.same({200, 200}, seen("GET", "/usage/current"))
  end)

  it("pace = true waits at most 60 s, however far away the reset is (clocks that disagree)", function()
    local waits = {}
    -- a deadline past the cap, so that the capped wait is made (not refused as rate_limited)
    local c = recording_client{pace = true, retry = {max_elapsed = 120}, sleep = function(s) waits[#waits + 1] = s end}
    local far = tostring(math.floor(core.time()) + 3600)
    emu.fault{method = "GET", path = "/usage/current", status = 200, body = '{"limit_messages":1}',
              headers = {["X-RateLimit-Remaining"] = "0", ["X-RateLimit-Reset"] = far}}
    assert.is_table((c.usage:current()))
    assert.is_table((c.usage:current()))
    assert.same({60}, waits)
    assert.same({200, 200}, seen("GET", "/usage/current"))
  end)

  it("pace = true waits for the reset instead of running into a 429", function()
    local c, waits = exhausted_client{pace = true, retry = {max_elapsed = 120}}
    local reset = c:rate_limit().reset
    local v, err = c.usage:current()
    assert.is_table(v, tostring(err))
    assert.equal(1, #waits)
    assert.is_true(waits[1] > 0 and waits[1] <= reset - os.time() + 1, tostring(waits[1]))
    for _, r in ipairs(emu.requests()) do assert.are_not.equal(429, r.status) end
  end)

  it("pacing honours max_elapsed: a wait past the deadline ends the call at once, kind rate_limited", function()
    local reset = os.time() + 3600
    emu.fault{method = "GET", path = "/usage/current",
              headers = {["X-RateLimit-Remaining"] = "0", ["X-RateLimit-Reset"] = tostring(reset)}}
    local sleeps = 0
    local c = admin.new{base_url = emu.url, api_key = KEY, pace = true, retry = {max_elapsed = 1},
                        sleep = function() sleeps = sleeps + 1 end}
    assert.is_table((c.usage:current()))
    assert.same({remaining = 0, reset = reset}, c:rate_limit())
    local t0 = core.monotime()
    local v, err = c.usage:current()
    assert.is_nil(v)
    assert.equal("rate_limited", err.kind)
    assert.same({remaining = 0, reset = reset}, err.rate_limit)
    assert.same({"GET", "/usage/current", 1}, {err.method, err.path, err.attempts})
    assert.is_true(err.retry_after > 1)
    assert.matches("rate limit", tostring(err), 1, true)
    assert.equal(0, sleeps) -- no wait was even asked for
    assert.is_true(core.monotime() - t0 < 0.5)
    assert.same({200}, seen("GET", "/usage/current")) -- the second call sent nothing

    -- without retries the deadline is the timeout
    emu.fault{method = "GET", path = "/usage/current",
              headers = {["X-RateLimit-Remaining"] = "0", ["X-RateLimit-Reset"] = tostring(reset)}}
    local c2 = admin.new{base_url = emu.url, api_key = KEY, pace = true, retry = false, timeout = 5,
                         sleep = function() sleeps = sleeps + 1 end}
    assert.is_table((c2.usage:current()))
    local _, err2 = c2.usage:current()
    assert.equal("rate_limited", err2.kind)
    assert.equal(0, sleeps)
  end)
end)

describe("observability hooks", function()
  before_each(function() emu.reset() end)

  it("a hook that raises is reported to on_hook_error and never discards the result", function()
    local reported = {}
    local c = admin.new{base_url = emu.url, api_key = KEY, sleep = function() end,
                        on_request = function(i) if i.attempt == 1 then error("request hook broke") end end,
                        on_response = function() error({"a table"}) end,
                        on_hook_error = function(e) reported[#reported + 1] = e end}
    local key, res = c.api_keys:create{name = "hook-raises", scopes = {"usage:read"}}
    assert.is_table(key, tostring(res))
    assert.matches("^mf_", key.raw_key)
    assert.equal(201, res.status)
    assert.equal(2, #reported)
    assert.equal("on_request", reported[1].hook)
    assert.matches("request hook broke", reported[1].message, 1, true)
    assert.equal("on_response", reported[2].hook)
    assert.is_string(reported[2].message)
    -- the key exists on the server exactly once
    local n = 0
    for _, k in ipairs(assert(c.api_keys:list())) do if k.name == "hook-raises" then n = n + 1 end end
    assert.equal(1, n)
    -- a failing call keeps its error too
    local _, err = c.api_keys:get("key_missing")
    assert.equal(404, err.status)
  end)

  it("on_tokens and a token store that raise are reported; the login still holds", function()
    local reported = {}
    local store = {load = function() end, save = function() error("disk full") end}
    local c = admin.new{base_url = emu.url, token_store = store, sleep = function() end,
                        on_tokens = function() error("on_tokens broke") end,
                        on_hook_error = function(e) reported[#reported + 1] = e.hook end}
    local owner = emu.seed.owner
    local v, err = c.auth:login{email = owner.email, password = owner.password}
    assert.is_table(v, tostring(err))
    assert.equal(v.access_token, c:tokens().access_token)
    assert.same({"token_store", "on_tokens"}, reported)
    assert.is_table((c.auth:me()))
  end)

  it("without on_hook_error, a raising on_response is a warning on stderr; create keeps its raw_key", function()
    local sp = require "spec.support.process"
    local script = [[
      local admin = require "moltflow.admin"
      local c = admin.new{base_url = os.getenv("SPEC_URL"), api_key = os.getenv("SPEC_KEY"),
                          on_response = function() error("boom") end}
      local key = c.api_keys:create{name = "hook-boom", scopes = {"usage:read"}}
      io.write(key and key.raw_key:match("^mf_") and "ok" or "lost")
    ]]
    local lua = sp.lua
    local r = sp.run({lua, "-e", script}, {env = {SPEC_URL = emu.url, SPEC_KEY = KEY,
      LUA_PATH = os.getenv("LUA_PATH") or "", LUA_CPATH = os.getenv("LUA_CPATH") or ""}})
    assert.equal("ok", r.stdout, r.stderr)
    assert.matches("on_response hook raised an error", r.stderr, 1, true)
    assert.matches("boom", r.stderr, 1, true)
  end)

  it("get method, path, status, attempt and duration, and never a secret", function()
    local events = {}
    local function record(kind) return function(info) events[#events + 1] = {kind, info} end end
    local c = admin.new{base_url = emu.url, api_key = KEY, on_request = record("request"),
                        on_response = record("response"), sleep = function() end}
    local owner = emu.seed.owner
    local login = assert(c.auth:login{email = owner.email, password = owner.password})
    emu.fault{method = "GET", path = "/usage/current", status = 503}
    assert(c.usage:current())
    local key = assert(c.api_keys:create{name = "hooked", scopes = {"usage:read"}})
    assert(c.auth:refresh())
    assert(c:request("GET", "/usage/current", {query = {access_token = "qs-secret-value", months = 2}}))
    local tokens = c:tokens()
    assert(c.auth:logout())

    -- the GET with a 503 then a 200
    local gets = {}
    for _, e in ipairs(events) do
      if e[2].path == "/usage/current" then gets[#gets + 1] = e end
    end
    assert.equal(4, #gets)
    assert.same({"request", {method = "GET", path = "/usage/current", attempt = 1}}, gets[1])
    assert.equal("response", gets[2][1])
    assert.equal(503, gets[2][2].status)
    assert.equal("http", gets[2][2].kind)
    assert.equal(1, gets[2][2].attempt)
    assert.is_number(gets[2][2].duration)
    assert.is_true(gets[2][2].duration >= 0 and gets[2][2].duration < 30)
    assert.matches("^req_", gets[2][2].request_id)
    assert.same({"request", {method = "GET", path = "/usage/current", attempt = 2}}, gets[3])
    assert.equal(200, gets[4][2].status)
    assert.equal(2, gets[4][2].attempt)

    local text = dkjson.encode(events)
    assert.matches("/auth/login", text, 1, true)
    assert.matches("access_token=REDACTED", text, 1, true)
    assert.matches("months=2", text, 1, true)
    for _, secret in ipairs{owner.password, login.access_token, login.refresh_token, key.raw_key,
                            tokens.access_token, tokens.refresh_token, KEY, "qs-secret-value"} do
      assert.is_nil(text:find(secret, 1, true), "a secret reached a hook")
    end
  end)
end)
