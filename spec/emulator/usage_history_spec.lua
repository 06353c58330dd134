-- GET /usage/history and /usage/daily as docs/emulator.md describes them:
-- oldest first, ending with the current month (the very counts of
-- /usage/current) or today; past counts synthetic, stable, at most the
-- current month's; totals that add up. (Sampled survivors: the current
-- month made synthetic, past months scaled up.)
local emu = require "spec.support.emulator"

describe("the emulator's usage history", function()
  before_each(function() emu.reset() end)

  it("ends with the current month, whose counts are /usage/current's", function()
    local c = emu.client{retry = false}
    local cur = assert(c.usage:current())
    local h = assert(c.usage:history{months = 12})
    assert.equal(12, #h.months)
    local last = h.months[12]
    assert.equal(cur.period, last.period)
    assert.equal(cur.messages_sent, last.messages_sent)
    assert.equal(cur.messages_received, last.messages_received)
    c:close()
  end)

  it("has past months at most the current month's, stable, with totals that add up", function()
    local c = emu.client{retry = false}
    local a = assert(c.usage:history{months = 12}).months
    local b = assert(c.usage:history{months = 12}).months
    local cur = a[12]
    for i = 1, 12 do
      local m = a[i]
      assert.equal(m.messages_sent + m.messages_received, m.total_messages, m.period)
      assert.is_true(m.messages_sent <= cur.messages_sent, m.period)
      assert.is_true(m.messages_received <= cur.messages_received, m.period)
      assert.is_true(m.messages_sent > 0 and m.messages_received > 0, m.period)
      assert.equal(b[i].messages_sent, m.messages_sent)
      assert.equal(b[i].messages_received, m.messages_received)
      if i > 1 then assert.is_true(a[i - 1].period < m.period) end
    end
    c:close()
  end)

  it("has days at most a thirtieth of the current month's, stable, ending today", function()
    local c = emu.client{retry = false}
    local cur = assert(c.usage:current())
    local before = os.date("!%Y-%m-%d")
    local d = assert(c.usage:daily{days = 31}).days
    local after = os.date("!%Y-%m-%d")
    assert.equal(31, #d)
    assert.is_true(d[31].date == before or d[31].date == after, d[31].date)
    for _, day in ipairs(d) do
      assert.is_true(day.messages_sent <= math.floor(cur.messages_sent / 30), day.date)
      assert.is_true(day.messages_received <= math.floor(cur.messages_received / 30), day.date)
    end
    c:close()
  end)
end)
