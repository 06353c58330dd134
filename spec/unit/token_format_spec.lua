-- Issue 27: base64url as the core reads it (JWT payloads): only canonical
-- text is accepted. A last character whose unused low bits are not zero
-- ("QR" instead of "QQ") names no other bytes, and is refused, as a JWT
-- whose payload ends so is.
local admin = require "moltflow.admin"
local core = require "moltflow.core"

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = b and (c and 4 or 3) or 2
    for j = 1, chars do
      local v = math.floor(n / 2 ^ (18 - 6 * (j - 1))) % 64
      out[#out + 1] = ALPHABET:sub(v + 1, v + 1)
    end
  end
  return table.concat(out)
end

describe("base64url decoding", function()
  it("decodes canonical text, padded or not, in both alphabets", function()
    assert.equal("A", core.base64url_decode("QQ"))
    assert.equal("A", core.base64url_decode("QQ=="))
    assert.equal("AB", core.base64url_decode("QUI"))
    assert.equal("ABC", core.base64url_decode("QUJD"))
    assert.equal("", core.base64url_decode(""))
    assert.equal("\251\255", core.base64url_decode("-_8"))
    assert.equal("\251\255", core.base64url_decode("+/8="))
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    local bytes = table.concat(all)
    for n = 0, 6 do
      assert.equal(bytes:sub(1, 200 + n), core.base64url_decode(b64url(bytes:sub(1, 200 + n))))
    end
  end)

  it("refuses non-zero trailing bits", function()
    for _, s in ipairs{"QR", "QR==", "QX", "QUJ", "QUJ=", "QUK", "QUJDQR"} do
      local v, msg = core.base64url_decode(s)
      assert.is_nil(v, s)
      assert.equal("invalid base64url", msg)
    end
    -- every last character but the canonical ones, after one and two bytes
    for i = 1, 64 do
      local ch = ALPHABET:sub(i, i)
      local v1 = core.base64url_decode("Q" .. ch)
      local v2 = core.base64url_decode("QU" .. ch)
      assert.equal((i - 1) % 16 == 0, v1 ~= nil, "Q" .. ch)
      assert.equal((i - 1) % 4 == 0, v2 ~= nil, "QU" .. ch)
    end
  end)

  it("refuses a lone sixth of a byte, other characters and padding in the middle", function()
    for _, s in ipairs{"Q", "QUJDQ", "Q===", "QU!D", "QU D", "Q=Q=", "QUJD\0"} do
      assert.is_nil(core.base64url_decode(s), s)
    end
  end)

  it("a JWT whose payload has non-zero trailing bits is not a JWT", function()
    local payload = b64url('{"a":1}') -- "eyJhIjoxfQ": 4 unused low bits in its last character
    assert.equal("eyJhIjoxfQ", payload)
    assert.same({a = 1}, admin.jwt_claims("h." .. payload .. ".s"))
    local v, msg = admin.jwt_claims("h.eyJhIjoxfR.s")
    assert.is_nil(v)
    assert.matches("not base64url", msg)
  end)

  it("a client given such an access token does not read an expiry from it", function()
    local exp = os.time() + 3600
    local payload = b64url(('{"exp":%d }'):format(exp)) -- 19 bytes: 4 unused bits at the end
    local at = ALPHABET:find(payload:sub(-1), 1, true) - 1
    assert.equal(0, at % 16)
    local bad = payload:sub(1, -2) .. ALPHABET:sub(at + 2, at + 2)
    local c = admin.new{base_url = "http://127.0.0.1:1/api/v2", access_token = "h." .. payload .. ".s"}
    assert.equal(exp, c:tokens().expires_at)
    c:close()
    c = admin.new{base_url = "http://127.0.0.1:1/api/v2", access_token = "h." .. bad .. ".s"}
    assert.is_nil(c:tokens().expires_at)
    c:close()
  end)
end)
