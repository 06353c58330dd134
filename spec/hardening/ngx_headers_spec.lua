-- Issue 24, finding 7: the cosocket transport's response parser reads header
-- lines in linear work, however slowly they arrive. The strict field rules
-- (RFC 9112 section 5) are cases of the raw-response table in
-- spec/support/raw_server.lua, which spec/ngx_parse_spec.lua runs through this
-- parser and libcurl, and spec/openresty_spec.lua inside nginx.
local parser = require("moltflow.transport.ngx.response").read

local sub = string.sub -- the source's own, not counted below

-- A byte source over `text`, one byte a piece.
local function trickle(text)
  local i = 0
  return function()
    i = i + 1
    if i > #text then return nil, "closed" end
    return sub(text, i, i)
  end
end

describe("the ngx transport's header lines", function()
  local SIZE = 400 * 1024
  local response = "HTTP/1.1 200 OK\r\nX-Big: " .. ("v"):rep(SIZE) .. "\r\nContent-Length: 2\r\n\r\n{}"

  it("a 400 KB header line sent one byte at a time costs work in proportion to it", function()
    -- what string.sub returns and string.find scans, whatever the parser calls
    -- them on (`s:sub` looks the function up in `string` at each call; a find
    -- that fails counts as a scan to the end). A quadratic reading would be
    -- some 80 GB of work; past twenty times the response, stop it there
    -- luacheck: push ignore 122 (counting wrappers stand in for string.sub and string.find during one parse)
    local real_sub, real_find = string.sub, string.find
    local copied, scanned, limit = 0, 0, 20 * #response
    local function check()
      if copied + scanned > limit then error("quadratic: over " .. limit .. " bytes of work", 0) end
    end
    string.sub = function(s, i, j)
      local r = real_sub(s, i, j)
      copied = copied + #r
      check()
      return r
    end
    string.find = function(s, pattern, init, plain)
      local a, b = real_find(s, pattern, init, plain)
      local from = init or 1
      if from < 0 then from = #s + from + 1 end
      scanned = scanned + math.max(0, (b or #s) - from + 1)
      check()
      return a, b
    end
    local work = {}
    local ok, status, head, body = pcall(parser, trickle(response), 1024 * 1024, false, work)
    string.sub, string.find = real_sub, real_find
    -- luacheck: pop
    assert.is_true(ok, status)
    assert.equal(200, status)
    assert.equal("{}", body)
    assert.equal(#response - 2, #head)
    -- the parser's own count: every byte of the head scanned and copied about once
    assert.is_true(work.bytes <= 3 * #response, "work.bytes = " .. tostring(work.bytes))
    assert.is_true(copied + scanned <= 8 * #response, ("copied %d, scanned %d"):format(copied, scanned))
  end)

  it("still bounds such a line by max_response_bytes as it arrives", function()
    local pieces = 0
    local source = trickle(response)
    local status, kind = parser(function()
      pieces = pieces + 1
      return source()
    end, 64 * 1024, false)
    assert.same({nil, "too_large"}, {status, kind})
    assert.is_true(pieces <= 64 * 1024 + 2, pieces .. " pieces read")
  end)
end)
