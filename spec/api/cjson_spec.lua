-- lua-cjson interop (issue 13 item 5): Debian's lua-cjson 2.1.0 as it is,
-- and a stand-in for the OpenResty fork's sentinels (array_mt,
-- empty_array_mt, empty_array), which Debian does not ship. What the
-- emulator received is the proof.
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"

local function last_body(method, path)
  local sent = emu.requests_for(method, path)
  return assert(sent[#sent], "nothing reached " .. path).body
end

-- The fork's empty_array is a light userdata that is not NULL; so is an
-- upvalue id, the one such value plain Lua can make (5.2 and later, LuaJIT).
-- Under Lua 5.1 the stand-in has no empty_array and its cases are skipped.
local function light_userdata()
  if not debug.upvalueid then return nil end
  local anchor = {}
  local id = debug.upvalueid(function() return anchor end, 1)
  assert(type(id) == "userdata" and id ~= admin.null)
  return id
end

local function fork_stand_in()
  return {null = admin.null, array_mt = {}, empty_array_mt = {}, empty_array = light_userdata(),
          encode = function() error("the stand-in does not encode") end}
end

-- an empty array as the fork would have it: its sentinel, else a marked table
local function empty(fake)
  return fake.empty_array or setmetatable({}, fake.empty_array_mt)
end

local saved
local function swap_cjson(name, module)
  saved = saved or {cjson = package.loaded.cjson, safe = package.loaded["cjson.safe"]}
  package.loaded.cjson, package.loaded["cjson.safe"] = nil, nil
  package.loaded[name] = module
end
local function restore_cjson()
  if saved then package.loaded.cjson, package.loaded["cjson.safe"] = saved.cjson, saved.safe end
  saved = nil
end

describe("with Debian's lua-cjson 2.1.0", function()
  local cjson = require "cjson"
  before_each(emu.reset)

  it("shares null, has no array_mt, and decoded arrays keep the SDK's mark", function()
    assert.equal(cjson.null, admin.null)
    assert.equal(require("cjson.safe").null, admin.null)
    assert.is_nil(cjson.array_mt) -- the README tells what to do instead
    local v = admin.json_decode('{"a":[]}')
    assert.equal(getmetatable(admin.array()), getmetatable(v.a))
    assert.equal('{"a":[]}', admin.json_encode(v))
    -- the limitation the README documents: this cjson writes every empty table as {}
    assert.equal('{"a":{}}', cjson.encode(v))
  end)

  it("sends arrays decoded by the SDK back as [] (endpoint field and c:request body)", function()
    local c = emu.client()
    local settings = assert(c.tenant:update_settings{allowed_numbers = admin.array()})
    assert.equal(0, #settings.allowed_numbers)
    assert(c.tenant:update_settings{allowed_numbers = settings.allowed_numbers})
    assert.matches('"allowed_numbers":%[%]', last_body("PATCH", "/tenant/settings"))
    assert(c:request("PATCH", "/tenant/settings", {body = {allowed_numbers = settings.allowed_numbers}}))
    assert.matches('"allowed_numbers":%[%]', last_body("PATCH", "/tenant/settings"))
  end)
end)

describe("with the OpenResty fork's sentinels (stand-in)", function()
  local fake
  before_each(function()
    emu.reset()
    fake = fork_stand_in()
    swap_cjson("cjson", fake) -- loaded after moltflow: the core looks it up at each call
  end)
  after_each(restore_cjson)

  local function marked()
    return {empty_array = fake.empty_array, array_mt = setmetatable({}, fake.array_mt),
            empty_array_mt = setmetatable({}, fake.empty_array_mt)}
  end

  it("sends each sentinel as [] in an endpoint field typed array", function()
    local c = emu.client()
    for name, value in pairs(marked()) do
      assert(c.tenant:update_settings{allowed_numbers = admin.array{"+5511988887777"}})
      local v, err = c.tenant:update_settings{allowed_numbers = value}
      assert(v, name .. ": " .. tostring(err))
      assert.matches('"allowed_numbers":%[%]', last_body("PATCH", "/tenant/settings"), nil, name)
      assert.same({}, v.allowed_numbers, name)
    end
    -- a non-empty table carrying array_mt is an array as before
    assert(c.tenant:update_settings{allowed_numbers = setmetatable({"+5511988887777"}, fake.array_mt)})
    assert.matches('"allowed_numbers":%["%+5511988887777"%]', last_body("PATCH", "/tenant/settings"))
  end)

  it("sends each sentinel as [] in c:request bodies, nested too", function()
    local c = emu.client()
    for name, value in pairs(marked()) do
      local v, err = c:request("POST", "/api-keys", {body = {name = "raw", scopes = value}})
      assert.is_nil(v, name)
      assert.equal(422, err.status, name) -- the emulator refuses an empty scope list, after parsing it as a list
      assert.matches('"scopes":%[%]', last_body("POST", "/api-keys"), nil, name)
      assert(c:request("PATCH", "/tenant/settings", {body = {allowed_numbers = value}}))
      assert.matches('"allowed_numbers":%[%]', last_body("PATCH", "/tenant/settings"), nil, name)
    end
    local v = assert(c:request("POST", "/api-keys", {body = {name = "nested",
      scopes = setmetatable({"usage:read"}, fake.empty_array_mt)}}))
    assert.same({"usage:read"}, v.scopes)
  end)

  it("encodes each sentinel as [] in admin.json_encode", function()
    for name, value in pairs(marked()) do
      assert.equal("[]", admin.json_encode(value), name)
      assert.equal('{"a":[[]]}', admin.json_encode({a = {value}}), name)
    end
    assert.equal("[1,2]", admin.json_encode(setmetatable({1, 2}, fake.array_mt)))
  end)

  it("gives decoded arrays cjson's array_mt, and they round-trip as []", function()
    local c = emu.client()
    local v = admin.json_decode('{"a":[],"b":[1]}')
    assert.equal(fake.array_mt, getmetatable(v.a))
    assert.equal(fake.array_mt, getmetatable(v.b))
    assert.equal(fake.array_mt, getmetatable(admin.array()))
    assert.equal('[]', admin.json_encode(v.a))
    local settings = assert(c.tenant:update_settings{allowed_numbers = empty(fake)})
    assert.equal(fake.array_mt, getmetatable(settings.allowed_numbers))
    assert(c.tenant:update_settings{allowed_numbers = settings.allowed_numbers})
    assert.matches('"allowed_numbers":%[%]', last_body("PATCH", "/tenant/settings"))
  end)

  it("finds the sentinels under cjson.safe too, and only while a cjson is loaded", function()
    if not fake.empty_array then
      pending("this Lua cannot make a light userdata (debug.upvalueid)")
      return
    end
    local c = emu.client()
    swap_cjson("cjson.safe", fake)
    assert.equal("[]", admin.json_encode(fake.empty_array))
    assert(c.tenant:update_settings{allowed_numbers = fake.empty_array})
    assert.matches('"allowed_numbers":%[%]', last_body("PATCH", "/tenant/settings"))
    swap_cjson("cjson", nil) -- no cjson at all: a light userdata is nothing JSON can hold
    local before = #emu.requests()
    assert.has_error(function() admin.json_encode(fake.empty_array) end,
                     "moltflow.json_encode: cannot encode a light userdata")
    assert.has_error(function() c.tenant:update_settings{allowed_numbers = fake.empty_array} end,
                     "moltflow: tenant.update_settings: field 'allowed_numbers' must be an array of strings (got userdata)")
    assert.equal(before, #emu.requests())
    assert.equal(getmetatable(admin.array()), getmetatable(admin.json_decode("[]")))
    assert.not_equal(fake.array_mt, getmetatable(admin.json_decode("[]")))
  end)
end)
