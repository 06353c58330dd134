-- Issue 23: core.seal / core.unseal (AES-256-GCM, src/seal.c) and the seal
-- key of the stores (moltflow.seal). Run under ASan and valgrind too.
local core = require "moltflow.core"
local seal = require "moltflow.seal"

local function b64(raw)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local out = {}
  for i = 1, #raw, 3 do
    local a, b, c = raw:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for j = 3, 0, -1 do
      local v = math.floor(n / 64 ^ j) % 64
      chars[#chars + 1] = alphabet:sub(v + 1, v + 1)
    end
    if not b then chars[3], chars[4] = "=", "=" elseif not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

describe("core.seal and core.unseal", function()
  local key = core.random_bytes(32)

  it("round-trips any bytes, with and without additional data", function()
    for _, text in ipairs{"", "x", "tokens \0 with a NUL", string.rep("\255", 1000), string.rep("ab", 40000)} do
      assert.equal(text, core.unseal(key, core.seal(key, text)))
      assert.equal(text, core.unseal(key, core.seal(key, text, "aad"), "aad"))
    end
  end)

  it("writes v1.<key id>.<base64url of nonce | ciphertext | tag>, a fresh nonce each time", function()
    local a, b = core.seal(key, "same"), core.seal(key, "same")
    assert.are_not.equal(a, b)
    local kid = core.seal_key_id(key)
    assert.matches("^%x%x%x%x%x%x%x%x$", kid)
    assert.equal("v1." .. kid .. ".", a:sub(1, 12))
    assert.matches("^[%w_-]+$", a:sub(13))
    assert.equal(math.ceil((12 + 4 + 16) * 4 / 3), #a - 12) -- nonce, 4 bytes, tag
    assert.is_nil(a:find("same", 1, true))
  end)

  it("refuses a changed byte anywhere, another key, other additional data, or a truncation", function()
    local sealed = core.seal(key, "secret tokens", "aad")
    for i = 13, #sealed do
      local ch = sealed:sub(i, i)
      local flipped = sealed:sub(1, i - 1) .. (ch == "A" and "B" or "A") .. sealed:sub(i + 1)
      local v, err = core.unseal(key, flipped, "aad")
      assert.is_nil(v)
      assert.is_string(err)
    end
    local v, err = core.unseal(core.random_bytes(32), sealed, "aad")
    assert.is_nil(v)
    assert.equal("sealed with another key", err)
    v, err = core.unseal(key, sealed, "other")
    assert.is_nil(v)
    assert.matches("does not authenticate", err)
    for _, bad in ipairs{sealed:sub(1, -2), sealed:sub(1, 30), "v1." .. core.seal_key_id(key) .. ".", "", "v2" ..
                         sealed:sub(3), "v1.ZZZZZZZZ" .. sealed:sub(12), sealed .. "!"} do
      assert.is_nil((core.unseal(key, bad, "aad")))
    end
    -- the key id is authenticated: the same value under another key's id does not open
    local other = core.random_bytes(32)
    local relabelled = "v1." .. core.seal_key_id(other) .. sealed:sub(12)
    assert.is_nil((core.unseal(other, relabelled, "aad")))
  end)

  it("raises on argument mistakes, naming the function, never the key", function()
    assert.has_error(function() core.seal("short", "x") end, "moltflow.seal: the key must be 32 bytes")
    assert.has_error(function() core.unseal(string.rep("k", 31), "x") end, "moltflow.unseal: the key must be 32 bytes")
    assert.has_error(function() core.seal_key_id(nil) end)
    assert.has_error(function() core.seal(key, nil) end)
  end)

  it("many seals and unseals: no growth (the scratch buffers are collected)", function()
    collectgarbage()
    collectgarbage()
    local before = collectgarbage("count")
    for i = 1, 2000 do assert(core.unseal(key, core.seal(key, "t" .. i))) end
    collectgarbage()
    collectgarbage() -- the scratch userdata: finalised in one cycle, freed in the next
    local grown = collectgarbage("count") - before
    assert.is_true(grown < 256, grown .. " KiB")
  end)
end)

describe("moltflow.seal", function()
  local raw_key, raw_old = core.random_bytes(32), core.random_bytes(32)
  local KEY, OLD = b64(raw_key), b64(raw_old)

  it("no key, no sealer; false turns sealing off even with MOLTFLOW_SEAL_KEY set", function()
    if os.getenv("MOLTFLOW_SEAL_KEY") == nil then assert.is_nil(seal.from_options({}, "x")) end
    assert.is_nil(seal.from_options({seal_key = false}, "x"))
  end)

  it("seals with seal_key; opens values of the old keys, and says they need sealing again", function()
    local sealer = seal.from_options({seal_key = KEY, old_seal_keys = {OLD}}, "x")
    assert.equal(core.seal_key_id(raw_key), sealer.key_id)
    local text = sealer:seal('{"a":1}')
    assert.same({'{"a":1}', false}, {sealer:unseal(text)})
    local by_old = seal.from_options({seal_key = OLD}, "x"):seal('{"b":2}')
    assert.same({'{"b":2}', true}, {sealer:unseal(by_old)})
    assert.equal("moltflow.seal(key id " .. sealer.key_id .. ")", tostring(sealer))
    assert.is_false(getmetatable(sealer))
  end)

  it("an unknown key, plaintext or tampering: nil and an error of kind seal without the value", function()
    local sealer = seal.from_options({seal_key = KEY}, "x")
    local foreign = seal.from_options({seal_key = OLD}, "x"):seal("secret-refresh")
    for _, text in ipairs{foreign, '{"refresh_token":"secret-refresh"}', sealer:seal("secret-refresh"):sub(1, -3)} do
      local v, err = sealer:unseal(text)
      assert.is_nil(v)
      assert.equal("seal", err.kind)
      assert.matches("^moltflow.seal: ", tostring(err))
      assert.is_nil(tostring(err):find("secret-refresh", 1, true))
      assert.is_nil(tostring(err):find(KEY, 1, true))
    end
    local v, err = seal.decode(nil, sealer:seal("x"))
    assert.is_nil(v)
    assert.matches("no seal key", tostring(err))
  end)

  it("a malformed key raises, naming the option, never its value", function()
    for _, bad in ipairs{"c2hvcnQ=", "###", b64(core.random_bytes(31)), b64(core.random_bytes(33))} do
      local ok, err = pcall(seal.from_options, {seal_key = bad}, "moltflow.file_store")
      assert.is_false(ok)
      assert.matches("moltflow.file_store: seal_key must be 32 bytes in base64", err, 1, true)
      assert.is_nil(err:find(bad, 1, true))
    end
    local ok, err = pcall(seal.from_options, {seal_key = KEY, old_seal_keys = {KEY, "bad"}}, "s")
    assert.is_false(ok)
    assert.matches("s: old_seal_keys[2] must be 32 bytes in base64", err, 1, true)
  end)
end)
