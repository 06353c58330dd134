-- Issue 27: the retry option's bounds, checked before any I/O: retry_on
-- holds HTTP statuses (100-599, integers), and the numbers their ranges.
local admin = require "moltflow.admin"
local retry = require "moltflow.retry"

local function new(r)
  return pcall(admin.new, {base_url = "http://127.0.0.1:1/api/v2", api_key = "k", retry = r})
end

describe("the retry option", function()
  it("refuses a retry_on entry that is not an HTTP status, naming the field", function()
    for _, bad in ipairs{{600}, {99}, {0}, {-500}, {500.5}, {"500"}, {1 / 0}, {0 / 0}, {500, 1000}, {true}} do
      local ok, err = new{retry_on = bad}
      assert.is_false(ok, tostring(bad[#bad]))
      assert.matches("moltflow.new: field 'retry.retry_on%[" .. #bad .. "%]' must be an HTTP status %(100%-599%)", err)
    end
    local ok, err = new{retry_on = 503}
    assert.is_false(ok)
    assert.matches("field 'retry.retry_on' must be a list of statuses", err)
  end)

  it("takes the bounds themselves", function()
    for _, good in ipairs{{100}, {599}, {}, {408, 503}} do
      local ok, c = new{retry_on = good}
      assert.is_true(ok, tostring(c))
      c:close()
    end
    local p = retry.policy{retry_on = {100, 599}}
    assert.same({[100] = true, [599] = true}, p.retry_set)
  end)

  it("checks the numbers' ranges", function()
    for field, bad in pairs{max_attempts = 0, base_delay = -1, max_delay = -0.5, max_elapsed = -1} do
      local ok, err = new{[field] = bad}
      assert.is_false(ok, field)
      assert.matches("field 'retry." .. field .. "' must be", err)
    end
    assert.is_false((new{max_attempts = 1.5}))
    assert.is_false((new{max_delay = 1 / 0}))
    assert.is_false((new{bogus = 1}))
    for field, good in pairs{max_attempts = 1, base_delay = 0, max_delay = 0, max_elapsed = 0} do
      local ok, c = new{[field] = good}
      assert.is_true(ok, field .. ": " .. tostring(c))
      c:close()
    end
  end)

  it("retries a 429 for POST, and the retry_on statuses only for idempotent methods", function()
    local p = retry.policy{retry_on = {503}, base_delay = 0}
    assert.is_number(retry.delay(p, true, {status = 503}, 1, 0, 0))
    assert.is_nil(retry.delay(p, false, {status = 503}, 1, 0, 0))
    assert.is_nil(retry.delay(p, true, {status = 500}, 1, 0, 0))
    assert.is_nil(retry.delay(p, true, {status = 503}, 3, 0, 0)) -- max_attempts reached
    local q = retry.policy{retry_on = {429}, base_delay = 0}
    assert.is_number(retry.delay(q, false, {status = 429}, 1, 0, 0))
    assert.is_number(retry.delay(q, false, {kind = "network", connect_failed = true}, 1, 0, 0))
    assert.is_nil(retry.delay(q, false, {kind = "network"}, 1, 0, 0))
  end)

  it("by default retries a GET on 408, 429, 500, 502, 503 and 504, and on nothing else", function()
    local p = retry.policy(nil)
    for status = 400, 599 do
      local wait = retry.delay(p, true, {status = status}, 1, 0, 0, function() return 0 end)
      local want = ({[408] = true, [429] = true, [500] = true, [502] = true, [503] = true, [504] = true})[status]
      assert.equal(want == true, wait ~= nil, "status " .. status)
    end
    assert.equal(3, p.max_attempts)
  end)
end)
