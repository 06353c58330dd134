-- The emulator's plan catalogue is the one docs/emulator.md publishes: every
-- price and limit of its table, as GET /billing/plans serves them.
local emu = require "spec.support.emulator"
local http = require "spec.support.http"
local dkjson = require "dkjson"

local LIMITS = {"max_sessions", "max_messages_per_month", "max_groups", "max_labels", "ai_replies_per_month",
                "requests_per_minute"}

-- The table's rows: {id, monthly, yearly, limits = {name = n}}.
local function documented()
  local f = assert(io.open(emu.root .. "/docs/emulator.md", "rb"))
  local text = f:read("*a")
  f:close()
  local rows = {}
  for line in text:gmatch("[^\n]+") do
    local id, monthly, yearly, rest = line:match("^| `(%w+)` | (%d+) / (%d+) |(.*)$")
    if id then
      local row = {id = id, monthly = tonumber(monthly), yearly = tonumber(yearly), limits = {}}
      local i = 0
      for n in rest:gmatch("(%d+)") do
        i = i + 1
        row.limits[LIMITS[i]] = tonumber(n)
      end
      rows[#rows + 1] = row
    end
  end
  return rows
end

describe("the emulator's plans", function()
  it("are the ones docs/emulator.md lists, price for price and limit for limit", function()
    local rows = documented()
    assert.equal(4, #rows)
    local res = assert(http.request{method = "GET", url = emu.url .. "/billing/plans"})
    assert.equal(200, res.status)
    local plans = dkjson.decode(res.body).plans
    assert.equal(#rows, #plans)
    for i, row in ipairs(rows) do
      local p = plans[i]
      assert.equal(row.id, p.id)
      assert.equal(row.id, p.name)
      assert.equal(row.monthly, p.price_monthly, row.id)
      assert.equal(row.yearly, p.price_yearly, row.id)
      for _, name in ipairs(LIMITS) do
        assert.equal(row.limits[name], p.limits[name], row.id .. " " .. name)
      end
    end
  end)
end)
