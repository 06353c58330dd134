-- The endpoint table's flags (moltflow.endpoints): which calls are declared
-- idempotent, that each line says why, and that admin.describe() shows it.
local admin = require "moltflow.admin"
local endpoints = require "moltflow.endpoints"

local KNOWN_FLAGS = {body = true, once = true, idempotent = true}

local function flags_of(e)
  local out = {}
  for word in (e[8] or ""):gmatch("%S+") do out[word] = true end
  return out
end

describe("moltflow.endpoints flags", function()
  it("only known flags", function()
    for _, e in ipairs(endpoints) do
      for word in pairs(flags_of(e)) do
        assert.is_true(KNOWN_FLAGS[word] == true, e[1] .. "." .. e[2] .. ": " .. word)
      end
    end
  end)

  it("declares idempotent the reads, the writes of absolute values, revoke and cancel; nothing else", function()
    local flagged = {}
    for _, e in ipairs(endpoints) do
      local f = flags_of(e)
      if f.idempotent then flagged[#flagged + 1] = e[1] .. "." .. e[2] end
      if e[3] == "GET" then assert.is_true(f.idempotent, e[1] .. "." .. e[2] .. " is a read") end
      if f.once then assert.is_nil(f.idempotent, e[1] .. "." .. e[2] .. " is sent once") end
    end
    assert.same({"auth.me", "users.me", "users.update_me", "api_keys.list", "api_keys.get", "api_keys.revoke",
                 "billing.subscription", "billing.cancel", "billing.plans", "usage.current", "usage.history",
                 "usage.daily", "tenant.settings", "tenant.update_settings", "gdpr.export"}, flagged)
  end)

  it("every endpoint's line says in a comment why it is idempotent or not", function()
    local path = package.searchpath and package.searchpath("moltflow.endpoints", package.path)
                 or "lua/moltflow/endpoints.lua"
    local f = assert(io.open(path))
    local rows = 0
    for line in f:lines() do
      local group, name = line:match('^%s*{"([%w_]+)",%s*"([%w_]+)",')
      if group then
        rows = rows + 1
        local why = line:match("}, %-%- (.+)$")
        assert.is_string(why, group .. "." .. name .. " has no comment")
        local flagged = line:find('"idempotent"}', 1, true) or line:find(' idempotent"}', 1, true)
        -- a line without the flag says "no: ..."; a flagged one gives its reason
        assert.are.equal(not flagged, why:find("^no: ") ~= nil, group .. "." .. name .. ": " .. why)
      end
    end
    f:close()
    assert.are.equal(#endpoints, rows)
  end)

  it("admin.describe() shows the flag on every endpoint", function()
    local by_label = {}
    for _, d in ipairs(admin.describe()) do by_label[d.label] = d end
    for _, e in ipairs(endpoints) do
      local d = by_label[e[1] .. "." .. e[2]]
      assert.are.equal(flags_of(e).idempotent == true, d.idempotent, d.label)
    end
  end)
end)
