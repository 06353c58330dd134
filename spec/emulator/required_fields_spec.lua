-- The emulator's required body fields, FastAPI-style: a request without one
-- is a 422 naming it, and nothing is created. Sent raw (the SDK would refuse
-- before sending). (Sampled survivor: a key's name made optional.)
local emu = require "spec.support.emulator"
local http = require "spec.support.http"
local dkjson = require "dkjson"

local function post(path, body)
  local res = assert(http.request{method = "POST", url = emu.url .. path, body = dkjson.encode(body),
                                  headers = {["Content-Type"] = "application/json", ["X-API-Key"] = emu.seed.keys.all}})
  return res.status, dkjson.decode(res.body)
end

describe("the emulator's required fields", function()
  before_each(function() emu.reset() end)

  it("POST /api-keys without a name is a 422 at body.name, and no key is made", function()
    local before = #emu.requests()
    local status, body = post("/api-keys", {scopes = {"usage:read"}})
    assert.equal(422, status)
    local locs = {}
    for _, d in ipairs(body.detail) do locs[#locs + 1] = table.concat(d.loc, ".") end
    assert.same({"body.name"}, locs)
    assert.equal(before + 1, #emu.requests())
    local c = emu.client{retry = false}
    local keys = assert(c.api_keys:list())
    for _, k in ipairs(keys) do assert.is_string(k.name) end
    c:close()
  end)

  it("POST /api-keys without scopes is a 422 at body.scopes", function()
    local status, body = post("/api-keys", {name = "x"})
    assert.equal(422, status)
    assert.equal("body.scopes", table.concat(body.detail[1].loc, "."))
  end)
end)
