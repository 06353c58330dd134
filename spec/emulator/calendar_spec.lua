-- The emulator's calendar (integer day arithmetic, lua/moltflow/emulator/
-- state.lua): leap days, century years and the turn of the year, seen in
-- the dates of GET /usage/daily with the emulator's clock moved there.
local emu = require "spec.support.emulator"

-- The dates of the `n` days ending on the emulator's day at Unix time `t`.
local function dates_at(t, n)
  emu.reset()
  emu.advance(t - os.time())
  local c = emu.client{retry = false}
  local v, err = c.usage:daily{days = n}
  c:close()
  assert.is_table(v, tostring(err))
  local out = {}
  for i, d in ipairs(v.days) do out[i] = d.date end
  return out
end

describe("the emulator's calendar", function()
  after_each(function() emu.reset() end)

  it("has a 29 February in a leap year", function()
    assert.same({"2028-02-28", "2028-02-29", "2028-03-01", "2028-03-02"}, dates_at(1835611200, 4))
  end)

  it("has none in a common year, nor in 2100; 2400 has one", function()
    assert.same({"2027-02-27", "2027-02-28", "2027-03-01", "2027-03-02"}, dates_at(1803988800, 4))
    assert.same({"2100-02-27", "2100-02-28", "2100-03-01", "2100-03-02"}, dates_at(4107672000, 4))
    assert.same({"2400-02-28", "2400-02-29", "2400-03-01", "2400-03-02"}, dates_at(13574779200, 4))
  end)

  -- a monthly subscription renews, period by period, on the first of the
  -- month after: the first of each month computed from its year and month
  it("ends a monthly period on the first of the next month, February and the turn of the year too", function()
    for _, case in ipairs{{1832068800, "2028-02-01T00:00:00Z"}, -- 2028-01-21
                          {1834488000, "2028-03-01T00:00:00Z"}, -- 2028-02-18
                          {1860321600, "2029-01-01T00:00:00Z"}, -- 2028-12-13
                          {1863950400, "2029-02-01T00:00:00Z"}} do -- 2029-01-24
      emu.reset()
      emu.control("POST", "clock", {set = case[1]})
      local c = emu.client{retry = false}
      local sub = assert(c.billing:subscription())
      c:close()
      assert.equal(case[2], sub.current_period_end)
    end
  end)

  it("turns the year", function()
    assert.same({"2028-12-31", "2029-01-01", "2029-01-02"}, dates_at(1862049600, 3))
  end)
end)
