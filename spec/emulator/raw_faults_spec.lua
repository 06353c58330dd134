-- Faults the emulator writes straight onto the connection (truncate,
-- reset_mid_body) frame their answer themselves: the status line carries the
-- standard reason phrase, the headers the fault's own, and the body is cut
-- as the fault says. Read here from a raw socket, byte for byte.
local emu = require "spec.support.emulator"
local socket = require "socket"

-- The raw answer to GET path: the status line, the header block, the body.
local function raw_get(path)
  local host, port = emu.url:match("^http://([^:/]+):(%d+)")
  local s = assert(socket.tcp())
  s:settimeout(10)
  assert(s:connect(host, tonumber(port)))
  assert(s:send(("GET /api/v2%s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n"):format(path, host, port)))
  local chunks = {}
  while true do
    local data, err, partial = s:receive(4096)
    chunks[#chunks + 1] = data or partial
    if not data then
      assert(err == "closed", err)
      break
    end
  end
  s:close()
  local text = table.concat(chunks)
  local head, body = text:match("^(.-)\r\n\r\n(.*)$")
  local status_line, headers = head:match("^([^\r\n]*)\r\n(.*)$")
  return status_line, headers, body
end

local REASONS = {[200] = "OK", [400] = "Bad Request", [401] = "Unauthorized", [404] = "Not Found",
                 [409] = "Conflict", [422] = "Unprocessable Entity", [429] = "Too Many Requests",
                 [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
                 [504] = "Gateway Timeout"}

describe("the emulator's raw-framed faults", function()
  before_each(function() emu.reset() end)

  it("send the standard reason phrase with every status", function()
    for status, reason in pairs(REASONS) do
      emu.fault{path = "/billing/plans", status = status, truncate = true}
      local line = raw_get("/billing/plans")
      assert.equal(("HTTP/1.1 %d %s"):format(status, reason), line)
    end
  end)

  it("truncate: a Content-Length one byte past half of the body sent", function()
    emu.fault{path = "/billing/plans", status = 503, truncate = true, body = '{"detail":"down for a while"}'}
    local _, headers, body = raw_get("/billing/plans")
    assert.equal(#'{"detail":"down for a while"}' + 1, tonumber(headers:match("Content%-Length: (%d+)")))
    assert.equal('{"detail":"dow', body)
    assert.matches("X%-Request%-Id: ", headers)
    assert.matches("Connection: close", headers)
  end)

  it("reset_mid_body: one chunk of half the body, never the last chunk", function()
    emu.fault{path = "/billing/plans", status = 200, reset_mid_body = true, body = '{"plans":[1,2,3,4]}'}
    local line, headers, body = raw_get("/billing/plans")
    assert.equal("HTTP/1.1 200 OK", line)
    assert.matches("Transfer%-Encoding: chunked", headers)
    assert.equal(('%x\r\n%s\r\n'):format(9, '{"plans":'), body)
  end)
end)
