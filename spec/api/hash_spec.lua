-- Hashing helpers: FIPS 180-2 SHA-256 and RFC 4231 HMAC-SHA256 vectors, key
-- fingerprints against what the emulator stores, webhook signatures, JWT claims.
local emu = require "spec.support.emulator"
local admin = require "moltflow.admin"

local function bytes(n, b) return string.rep(string.char(b), n) end

local function b64url(s)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for j = 1, chars do
      local v = math.floor(n / 2 ^ (6 * (4 - j))) % 64
      out[#out + 1] = alphabet:sub(v + 1, v + 1)
    end
  end
  return table.concat(out)
end

describe("sha256 (FIPS 180-2)", function()
  it("matches the published vectors, in lower-case hex", function()
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", admin.sha256("abc"))
    assert.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
                 admin.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    assert.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
                 admin.sha256(string.rep("a", 1000000)))
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", admin.sha256(""))
  end)

  it("hashes binary input, NUL bytes included", function()
    assert.not_equal(admin.sha256("a\0b"), admin.sha256("a"))
    assert.matches("^%x+$", admin.sha256("\0\255"))
    assert.equal(64, #admin.sha256("\0\255"))
  end)
end)

describe("hmac_sha256 (RFC 4231)", function()
  local cases = {
    {1, bytes(20, 0x0b), "Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
    {2, "Jefe", "what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    {3, bytes(20, 0xaa), bytes(50, 0xdd),
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
    {4, string.char(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25),
     bytes(50, 0xcd), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
    {6, bytes(131, 0xaa), "Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    {7, bytes(131, 0xaa),
     "This is a test using a larger than block-size key and a larger than block-size data. " ..
     "The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  }
  for _, case in ipairs(cases) do
    it("test case " .. case[1], function()
      assert.equal(case[4], admin.hmac_sha256(case[2], case[3]))
    end)
  end
end)

describe("key_fingerprint", function()
  before_each(function() emu.reset() end)

  local function stored_hashes()
    local out = {}
    for _, k in ipairs(emu.control("GET", "api-keys")) do out[k.id] = k end
    return out
  end

  it("is exactly the hash the server stores", function()
    local stored = stored_hashes()
    local seed_key = stored[emu.seed.key_ids.all]
    assert.equal(seed_key.key_hash, admin.key_fingerprint(emu.seed.keys.all))
    for _, k in pairs(stored) do assert.is_nil(k.raw_key) end

    local c = admin.new{base_url = emu.url, api_key = emu.seed.keys.all, retry = false}
    local created = assert(c.api_keys:create{name = "fp", scopes = {"usage:read"}})
    local rec = stored_hashes()[created.id]
    assert.equal(rec.key_hash, admin.key_fingerprint(created.raw_key))
    assert.equal(created.key_prefix, rec.key_prefix)
    assert.matches("^%x+$", rec.key_hash)
    assert.equal(64, #rec.key_hash)
    -- rotation stores the new key's hash
    local rotated = assert(c.api_keys:rotate(created.id))
    rec = stored_hashes()[created.id]
    assert.equal(rec.key_hash, admin.key_fingerprint(rotated.raw_key))
    assert.not_equal(rec.key_hash, admin.key_fingerprint(created.raw_key))
  end)

  it("refuses a non-string", function()
    local ok, err = pcall(admin.key_fingerprint, nil)
    assert.is_false(ok)
    assert.matches("key_fingerprint: 'raw_key' must be a string", err)
  end)
end)

describe("verify_signature", function()
  local secret, body = "whsec_test_secret", '{"event":"message.received","id":42}'
  local good = admin.hmac_sha256(secret, body)

  it("accepts the right signature, with or without sha256=, in any case", function()
    assert.is_true(admin.verify_signature(secret, body, good))
    assert.is_true(admin.verify_signature(secret, body, "sha256=" .. good))
    assert.is_true(admin.verify_signature(secret, body, good:upper()))
    assert.is_true(admin.verify_signature(secret, body, "sha256=" .. good:upper()))
  end)

  it("refuses a wrong one", function()
    local flipped = (good:sub(1, 1) == "0" and "1" or "0") .. good:sub(2)
    assert.is_false(admin.verify_signature(secret, body, flipped))
    assert.is_false(admin.verify_signature(secret, body .. " ", good))
    assert.is_false(admin.verify_signature("other", body, good))
    assert.is_false(admin.verify_signature(secret, body, good:sub(1, 63)))
    assert.is_false(admin.verify_signature(secret, body, good .. "0"))
    assert.is_false(admin.verify_signature(secret, body, ""))
    assert.is_false(admin.verify_signature(secret, body, "sha256="))
    assert.is_false(admin.verify_signature(secret, body, nil))
    assert.is_false(admin.verify_signature(secret, body, "sha1=" .. good))
  end)

  it("raises on a non-string secret or body", function()
    assert.has_error(function() admin.verify_signature(nil, body, good) end,
                     "moltflow.verify_signature: 'secret' must be a string")
    assert.has_error(function() admin.verify_signature(secret, {}, good) end,
                     "moltflow.verify_signature: 'body' must be a string")
  end)
end)

describe("jwt_claims", function()
  it("decodes a real emulator access token", function()
    emu.reset()
    local c = admin.new{base_url = emu.url, retry = false}
    local v = assert(c.auth:login{email = emu.seed.owner.email, password = emu.seed.owner.password})
    local claims = assert(admin.jwt_claims(v.access_token))
    assert.equal("usr_acme_owner", claims.sub)
    assert.equal("t_acme", claims.tenant_id)
    assert.equal("owner", claims.role)
    assert.equal("access", claims.type)
    assert.equal(claims.iat + 1800, claims.exp)
    if math.type then assert.equal("integer", math.type(claims.iat)) end
    assert.is_true(math.abs(claims.iat - os.time()) < 60)
    assert.matches("^%x+$", claims.jti)
    assert.equal(claims.exp, c:tokens().expires_at)
  end)

  it("returns nil and a message for garbage", function()
    local function bad(token, pattern)
      local v, msg = admin.jwt_claims(token)
      assert.is_nil(v)
      assert.matches(pattern, msg)
    end
    bad("", "three dot%-separated parts")
    bad("abc", "three dot%-separated parts")
    bad("a.b", "three dot%-separated parts")
    bad("a.!!!.c", "not base64url")
    bad("a." .. b64url("not json") .. ".c", "not JSON")
    bad("a." .. b64url("[1,2]") .. ".c", "not an object")
    bad("a." .. b64url('{"sub":"x"') .. ".c", "not JSON")
    assert.same({sub = "x", n = 1}, admin.jwt_claims("a." .. b64url('{"sub":"x","n":1}') .. ".c"))
    assert.has_error(function() admin.jwt_claims(nil) end)
  end)
end)
