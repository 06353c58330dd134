-- The core's JSON codec through admin.json_encode / admin.json_decode:
-- arrays vs objects, null, integers, floats, unicode, and what it refuses.
local admin = require "moltflow.admin"

local enc, dec = admin.json_encode, admin.json_decode
local LUA54 = math.type ~= nil

local function array_mt() return getmetatable(admin.array()) end

local function refuses_encode(value, pattern)
  local ok, err = pcall(enc, value)
  assert.is_false(ok, "expected json_encode to raise")
  assert.matches("^moltflow%.json_encode: ", err)
  assert.matches(pattern, err)
end

local function refuses_decode(text, pattern)
  local v, err = dec(text)
  assert.is_nil(v)
  assert.is_string(err)
  assert.matches(pattern, err)
end

describe("json: arrays and objects", function()
  it("an empty table is an object, admin.array() an array", function()
    assert.equal("{}", enc({}))
    assert.equal("[]", enc(admin.array()))
    assert.equal("[]", enc(admin.array({})))
    assert.equal('{"meta":{}}', enc({meta = {}}))
    assert.equal('{"a":[]}', enc({a = admin.array()}))
  end)

  it("a sequence is an array, admin.array keeps its table", function()
    assert.equal("[1,2,3]", enc({1, 2, 3}))
    local t = {"x"}
    assert.equal(t, admin.array(t))
    assert.equal(array_mt(), getmetatable(t))
    assert.equal('["x"]', enc(t))
  end)

  it("decoded [] and {} stay apart and round-trip", function()
    local a, o = dec("[]"), dec("{}")
    assert.equal(array_mt(), getmetatable(a))
    assert.is_nil(getmetatable(o))
    assert.equal("[]", enc(a))
    assert.equal("{}", enc(o))
    local t = dec('{"allowed_numbers":[],"settings":{},"nested":[[],{}]}')
    assert.equal('[]', enc(t.allowed_numbers))
    assert.equal('{}', enc(t.settings))
    assert.equal('[[],{}]', enc(t.nested))
  end)

  it("refuses sparse arrays and mixed keys", function()
    refuses_encode({1, nil, 3}, "keys must be strings")
    refuses_encode({1, 2, x = 3}, "keys must be strings")
    refuses_encode(admin.array({1, nil, 3}), "keys 1%.%.n")
    refuses_encode(admin.array({x = 1}), "keys 1%.%.n")
    refuses_encode({[true] = 1}, "keys must be strings")
  end)
end)

describe("json: null", function()
  it("admin.null in both directions", function()
    assert.equal("null", enc(admin.null))
    assert.equal('{"a":null}', enc({a = admin.null}))
    assert.equal("[1,null,3]", enc(admin.array({1, admin.null, 3})))
    assert.equal(admin.null, dec("null"))
    local t = dec('{"expires_at":null,"list":[null,1]}')
    assert.equal(admin.null, t.expires_at)
    assert.equal(admin.null, t.list[1])
    assert.equal(2, #t.list)
    assert.equal('[null,1]', enc(t.list))
  end)

  it("a nil field is simply absent", function()
    assert.equal('{"a":1}', enc({a = 1, b = nil}))
  end)
end)

describe("json: numbers", function()
  it("integers stay integers", function()
    assert.equal("42", enc(42))
    assert.equal("-7", enc(-7))
    assert.equal("0", enc(0))
    assert.equal(42, dec("42"))
    if LUA54 then
      assert.equal("integer", math.type(dec("42")))
      assert.equal("integer", math.type(dec("-0")))
      assert.equal("integer", math.type(dec('{"n":1800}').n))
      assert.equal("float", math.type(dec("42.0")))
      assert.equal("float", math.type(dec("1e2")))
    end
  end)

  local it_int64 = LUA54 and it or function(name)
    pending(name .. " (Lua 5.4 only: LuaJIT numbers are doubles, with no int64 subtype)")
  end
  -- integral floats beyond 2^53 in either sign go out in exponent form (an
  -- integer form of -1e300 has 302 characters, past the encoder's buffer)
  it("large negative and positive floats round-trip in exponent form", function()
    for _, case in ipairs{{-1e300, "-1e+300"}, {-2 ^ 70, "-1.1805916207174113e+21"}, {-1.5e200, "-1.5e+200"},
                          {1e300, "1e+300"}, {2 ^ 70, "1.1805916207174113e+21"}} do
      local text = enc(case[1])
      assert.equal(case[2], text)
      assert.equal(case[1], dec(text))
      assert.equal('{"n":' .. case[2] .. '}', enc({n = case[1]}))
      assert.same({case[1]}, dec(enc({case[1]})))
    end
  end)

  it_int64("large integers are exact under Lua 5.4, including the int64 limits", function()
    for _, n in ipairs{math.maxinteger, math.mininteger, 9007199254740993, -9007199254740993,
                       1234567890123456789} do
      local text = enc(n)
      assert.equal(string.format("%d", n), text)
      local back = dec(text)
      assert.equal("integer", math.type(back))
      assert.equal(n, back)
    end
    -- beyond int64: a float, not a wrapped integer
    local big = dec("9223372036854775808")
    assert.equal("float", math.type(big))
    assert.equal(2 ^ 63, big)
    assert.equal("float", math.type(dec("-9223372036854775809")))
  end)

  it("integral values up to 2^53 are integers under LuaJIT too", function()
    assert.equal("9007199254740992", enc(2 ^ 53))
    assert.equal("1800", enc(1800.0))
    assert.equal(2 ^ 53, dec("9007199254740992"))
  end)

  -- %g would write these with an exponent (1e+15), which an integer field refuses
  it("integral floats within int64 are written as integers, never in exponent form", function()
    assert.equal("1000000000000000", enc(1e15))
    assert.equal("-1000000000000000", enc(-1e15))
    assert.equal("1152921504606846976", enc(2.0 ^ 60))
    assert.equal('{"n":100000000000000000}', enc({n = 1e17}))
  end)

  it("floats round-trip exactly", function()
    for _, x in ipairs{0.1, 1.5, -2.25e-7, 1e300, 3.141592653589793, 1 / 3, 2 ^ -1074, 123456.789} do
      local text = enc(x)
      assert.is_nil(text:find("[^%d%.eE+%-]"))
      assert.equal(x, dec(text))
    end
    assert.equal("0.1", enc(0.1))
    assert.equal("1.5", enc(1.5))
  end)

  it("refuses NaN, infinity and numbers JSON cannot hold", function()
    refuses_encode(0 / 0, "NaN or infinity")
    refuses_encode(math.huge, "NaN or infinity")
    refuses_encode({n = -math.huge}, "NaN or infinity")
    refuses_decode("1e400", "out of range")
    for _, bad in ipairs{"01", "+1", "1.", ".5", "-", "1e", "0x10", "NaN", "Infinity"} do
      refuses_decode(bad, ".")
    end
  end)
end)

describe("json: strings and unicode", function()
  it("escapes what it must and keeps UTF-8 as is", function()
    assert.equal('"a\\"b\\\\c"', enc('a"b\\c'))
    assert.equal('"\\n\\r\\t\\b\\f"', enc("\n\r\t\b\f"))
    assert.equal('"\\u0001\\u001f"', enc("\1\31"))
    assert.equal('"\\u0000"', enc("\0"))
    assert.equal('"é😀"', enc("é😀"))
    assert.equal('"/"', enc("/"))
  end)

  it("decodes escapes, \\u and surrogate pairs", function()
    assert.equal('a"b\\c/', dec('"a\\"b\\\\c\\/"'))
    assert.equal("\n\r\t\b\f", dec('"\\n\\r\\t\\b\\f"'))
    assert.equal("é", dec('"\\u00e9"'))
    assert.equal("é", dec('"\\u00E9"'))
    assert.equal("\0", dec('"\\u0000"'))
    assert.equal("€", dec('"\\u20ac"'))
    assert.equal("😀", dec('"\\ud83d\\ude00"'))
    assert.equal("\240\159\152\128", dec('"\\uD83D\\uDE00"'))
    assert.equal("a😀b", dec('"a\\ud83d\\ude00b"'))
    for _, s in ipairs{"", "plain", "é😀", "\0\1", 'q"uote', "tab\tnl\n"} do
      assert.equal(s, dec(enc(s)))
    end
  end)

  it("refuses unpaired surrogates and bad escapes", function()
    refuses_decode('"\\ud83d"', "unpaired surrogate")
    refuses_decode('"\\ud83dx"', "unpaired surrogate")
    refuses_decode('"\\ude00"', "unpaired surrogate")
    refuses_decode('"\\ud83d\\u0041"', "unpaired surrogate")
    refuses_decode('"\\u12"', "bad \\u escape")
    refuses_decode('"\\x41"', "bad escape")
    refuses_decode('"a\nb"', "control character")
    refuses_decode('"abc', "unterminated")
  end)

  it("refuses invalid UTF-8 both ways", function()
    for _, bad in ipairs{"\255", "\254\255", "\192\175", "\237\160\128", "\244\144\128\128",
                         "\195", "ok\128"} do
      refuses_decode('"' .. bad .. '"', "invalid UTF%-8")
      refuses_encode(bad, "invalid UTF%-8")
      refuses_encode({name = bad}, "invalid UTF%-8")
    end
  end)
end)

describe("json: structure limits", function()
  local function nested(n) return string.rep("[", n) .. string.rep("]", n) end

  it("refuses deep nesting, accepts reasonable depth", function()
    assert.is_table(dec(nested(100)))
    refuses_decode(nested(1000), "nested too deeply")
    local deep = {}
    local t = deep
    for _ = 1, 1000 do
      t.x = {}
      t = t.x
    end
    refuses_encode(deep, "nested too deeply")
  end)

  it("refuses cycles with a clear error", function()
    local t = {}
    t.self = t
    refuses_encode(t, "cycle")
    local a = admin.array()
    a[1] = a
    refuses_encode(a, "cycle")
  end)

  it("refuses values JSON has no form for", function()
    refuses_encode(print, "cannot encode a function")
    refuses_encode({f = coroutine.create(function() end)}, "cannot encode a thread")
  end)

  it("refuses malformed documents with a position", function()
    refuses_decode("", "unexpected end")
    refuses_decode("[1,]", "at byte %d+")
    refuses_decode("[1 2]", "expected ','")
    refuses_decode('{"a" 1}', "expected ':'")
    refuses_decode("{a:1}", "expected a string key")
    refuses_decode("1 2", "trailing")
    refuses_decode("tru", "unexpected")
    refuses_decode("[", "unexpected end")
  end)

  it("accepts surrounding white space and literals", function()
    assert.same({a = true, b = false}, dec(' \n\t{ "a" : true , "b" : false } \r\n'))
  end)
end)
