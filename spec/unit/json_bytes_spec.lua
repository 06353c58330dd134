-- The JSON decoder, byte by byte: every printable ASCII byte but '"' and
-- '\' stands for itself in a string; every control byte is refused raw; every
-- UTF-8 lead byte (0xC2-0xF4) starts a character that decodes whole, and the
-- bytes that can never lead (continuations, 0xC0, 0xC1, 0xF5-0xFF) are
-- refused. (Sampled mutants flip entries of the decoder's fast-path table.)
local admin = require "moltflow.admin"

local function decode(s) return admin.json_decode('"' .. s .. '"') end

describe("JSON strings, byte by byte", function()
  it("take every printable ASCII byte but the quote and the backslash as itself", function()
    for b = 0x20, 0x7E do
      if b ~= 0x22 and b ~= 0x5C then
        local s = "a" .. string.char(b) .. "z"
        assert.equal(s, decode(s), ("byte 0x%02X"):format(b))
      end
    end
    assert.equal('a"z', decode('a\\"z'))
    assert.equal("a\\z", decode("a\\\\z"))
    assert.is_nil(decode('a\\z'))
  end)

  it("refuse every raw control byte", function()
    for b = 0x00, 0x1F do
      local v, err = decode("a" .. string.char(b) .. "z")
      assert.is_nil(v, ("byte 0x%02X"):format(b))
      assert.matches("control character", err)
    end
  end)

  it("decode a character from every UTF-8 lead byte", function()
    for lead = 0xC2, 0xF4 do
      local ch
      if lead <= 0xDF then ch = string.char(lead, 0x80)
      elseif lead == 0xE0 then ch = string.char(lead, 0xA0, 0x80)
      elseif lead == 0xED then ch = string.char(lead, 0x80, 0x80)
      elseif lead <= 0xEF then ch = string.char(lead, 0x80, 0x80)
      elseif lead == 0xF0 then ch = string.char(lead, 0x90, 0x80, 0x80)
      elseif lead == 0xF4 then ch = string.char(lead, 0x80, 0x80, 0x80)
      else ch = string.char(lead, 0x80, 0x80, 0x80) end
      local s = "a" .. ch .. "z"
      assert.equal(s, decode(s), ("lead byte 0x%02X"):format(lead))
    end
  end)

  it("refuse the bytes that never lead a character", function()
    for _, b in ipairs{0x80, 0x8F, 0x90, 0xA0, 0xBF, 0xC0, 0xC1, 0xF5, 0xF8, 0xFE, 0xFF} do
      local v, err = decode("a" .. string.char(b) .. "z")
      assert.is_nil(v, ("byte 0x%02X"):format(b))
      assert.matches("invalid UTF%-8", err)
    end
    -- every lead byte with a missing continuation
    for lead = 0xC2, 0xF4 do
      assert.is_nil(decode("a" .. string.char(lead) .. "z"), ("lead byte 0x%02X alone"):format(lead))
    end
  end)
end)
