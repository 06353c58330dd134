-- The ngx transport's status line: "HTTP/1.x", a space, three digits, then
-- the end of the line or a space and a reason phrase (which may be empty or
-- hold spaces). Anything else is a network error. (Sampled survivor: a
-- status line without a reason phrase refused.)
local transport = require "moltflow.transport.ngx"

local BODY = "Content-Length: 2\r\n\r\n{}"

local function parse(status_line)
  local text, done = status_line .. "\r\n" .. BODY, false
  local fill = function()
    if done then return nil, "closed" end
    done = true
    return text
  end
  return transport.read_response(fill, 1024 * 1024, false)
end

describe("the ngx transport's status line", function()
  it("is read with a reason phrase, an empty one, one with spaces, or none", function()
    for _, line in ipairs{"HTTP/1.1 200 OK", "HTTP/1.1 200 ", "HTTP/1.1 200 All Good Here", "HTTP/1.1 200",
                          "HTTP/1.0 200 OK", "HTTP/1.1 404", "HTTP/1.1 599 x"} do
      local status, _, body = parse(line)
      assert.equal(tonumber(line:sub(10, 12)), status, line)
      assert.equal("{}", body, line)
    end
  end)

  it("is refused with a status of other than three digits, or no space after it", function()
    for _, line in ipairs{"HTTP/1.1 2000 OK", "HTTP/1.1 20 OK", "HTTP/1.1 200OK", "HTTP/1.1 20x OK",
                          "HTTP/1.1  200 OK", "HTTP/2 200 OK", "HTTP/1.1", "ICY 200 OK"} do
      local status, kind = parse(line)
      assert.is_nil(status, line)
      assert.equal("network", kind, line)
    end
  end)
end)
