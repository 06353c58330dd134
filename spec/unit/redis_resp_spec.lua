-- moltflow.redis.resp, the RESP2 codec on its own: a reply decodes the same
-- however its bytes are cut into chunks (a socket decides that, not the
-- server), malformed replies are protocol errors in every cut, and the
-- limits hold. The chunks come from a table, so every cut is tried, not the
-- ones a loopback socket happens to deliver.
local resp = require "moltflow.redis.resp"

-- A read(max, deadline) over `chunks` (a chunk longer than `max` is given in
-- parts, as a socket would); after them, the deadline passes.
local function reader(chunks)
  local i, rest = 0, nil
  return function(max)
    if not rest then
      i = i + 1
      rest = chunks[i]
      if not rest then return nil, "timeout", "the deadline passed" end
    end
    local chunk = rest:sub(1, max)
    rest = #rest > max and rest:sub(max + 1) or nil
    return chunk
  end
end

-- The ways to cut `s`: whole, a byte at a time, and in two at every byte.
local function cuts(s)
  local out = {{s}}
  local bytes = {}
  for i = 1, #s do bytes[i] = s:sub(i, i) end
  out[#out + 1] = bytes
  for i = 1, #s - 1 do out[#out + 1] = {s:sub(1, i), s:sub(i + 1)} end
  return out
end

local function decode(chunks, limits) return resp.decode(reader(chunks), math.huge, limits) end

describe("moltflow.redis.resp", function()
  it("encodes a command as an array of bulk strings, numbers as their text", function()
    assert.equal("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n42\r\n", resp.encode{"SET", "k", 42})
    assert.equal("*1\r\n$0\r\n\r\n", resp.encode{""})
  end)

  local REPLIES = {
    {"+OK\r\n", "OK"},
    {"+\r\n", ""},
    {":0\r\n", 0},
    {":-42\r\n", -42},
    {"$3\r\na\r\n\r\n", "a\r\n"},
    {"$0\r\n\r\n", ""},
    {"$-1\r\n", false},
    {"*-1\r\n", false},
    {"*0\r\n", {}},
    {"*3\r\n$3\r\nabc\r\n:7\r\n*1\r\n+x\r\n", {"abc", 7, {"x"}}},
  }
  for _, case in ipairs(REPLIES) do
    it(("decodes %q the same in every cut"):format(case[1]), function()
      for _, chunks in ipairs(cuts(case[1])) do
        local v, err = decode(chunks)
        assert.same(case[2], v, table.concat(chunks, "|") .. ": " .. tostring(err))
      end
    end)
  end

  it("a Redis error reply is a value marked as one, in every cut", function()
    for _, chunks in ipairs(cuts("-ERR wrong\r\n")) do
      local v = decode(chunks)
      assert.is_true(resp.is_server_error(v))
      assert.equal("ERR wrong", v.message)
    end
  end)

  local MALFORMED = {
    "\r\n",                 -- a line without a type
    "?x\r\n",               -- an unknown type
    ":12a\r\n",             -- an integer with a letter
    ":123456789012345678901\r\n",
    "$x\r\n",               -- a length that is no number
    "$-2\r\n",
    "$3\r\nabcXY",          -- a bulk string not ended by CRLF
    "*1\r\n\r\n",           -- an element without a type
  }
  for _, s in ipairs(MALFORMED) do
    it(("refuses %q as a protocol error in every cut, at once"):format(s), function()
      for _, chunks in ipairs(cuts(s)) do
        local v, err = decode(chunks)
        assert.is_nil(v)
        -- "timeout" would mean it read on, past the bytes that decided it
        assert.equal("protocol", err.kind, table.concat(chunks, "|") .. ": " .. tostring(err))
        assert.equal("moltflow.redis: " .. err.message, tostring(err))
      end
    end)
  end

  it("bytes after the reply, in the chunk that ended it, are a protocol error (a reply to nothing)", function()
    for _, chunks in ipairs{{"+OK\r\n+extra\r\n"}, {"+O", "K\r\n:1\r\n"}} do
      local v, err = decode(chunks)
      assert.is_nil(v)
      assert.equal("protocol", err.kind)
      assert.matches("bytes after the reply", err.message, 1, true)
    end
  end)

  it("waits for the rest of a reply cut short, until the reader says the deadline passed", function()
    for _, s in ipairs{"+OK\r", "$3\r\nab", "*2\r\n:1\r\n"} do
      for _, chunks in ipairs(cuts(s)) do
        local v, err = decode(chunks)
        assert.is_nil(v)
        assert.equal("timeout", err.kind, s)
      end
    end
  end)

  it("holds its limits whatever the cut: line, bulk, array, depth and the whole reply", function()
    local limits = {max_bulk = 4, max_array = 2, max_depth = 1, max_line = 8, max_reply = 20}
    local cases = {
      {"+" .. ("x"):rep(12) .. "\r\n", "max_line"},
      {"$5\r\nhello\r\n", "max_bulk"},
      {"*3\r\n:1\r\n:2\r\n:3\r\n", "max_array"},
      {"*1\r\n*1\r\n:1\r\n", "max_depth"},
      {"*2\r\n$4\r\nabcd\r\n$4\r\nabcd\r\n", "max_reply"},
    }
    for _, case in ipairs(cases) do
      for _, chunks in ipairs(cuts(case[1])) do
        local v, err = decode(chunks, limits)
        assert.is_nil(v)
        assert.equal("too_large", err.kind, case[1])
        assert.matches(case[2], err.message, 1, true)
      end
    end
    -- one byte under each bound is taken
    assert.equal("xxxxxx", (decode({"+xxxxxx\r\n"}, limits)))
    assert.equal("four", (decode({"$4\r\nfour\r\n"}, limits)))
  end)
end)
