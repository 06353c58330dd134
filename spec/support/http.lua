-- A small raw HTTP/1.1 client on LuaSocket for the specs.
--
-- It is deliberately literal: one connection per request, and transport
-- problems (dropped connection, short body, unterminated chunked body) are
-- reported as errors instead of being papered over, so fault-injection
-- specs can see exactly what the server did.
local socket = require "socket"

local M = {}

local function parse_url(url)
  local host, port, path = url:match("^http://([^:/]+):?(%d*)(/?.*)$")
  if not host then error("unsupported URL: " .. url) end
  return host, tonumber(port) or 80, path ~= "" and path or "/"
end

local function read_chunked(sock)
  local parts = {}
  while true do
    local line, err = sock:receive("*l")
    if not line then return nil, "chunked body: " .. err, table.concat(parts) end
    local size = tonumber(line:match("^(%x+)"), 16)
    if not size then return nil, "bad chunk size line: " .. line, table.concat(parts) end
    if size == 0 then
      sock:receive("*l")
      return table.concat(parts)
    end
    local data, cerr, partial = sock:receive(size)
    if not data then return nil, "chunked body: " .. cerr, table.concat(parts) .. (partial or "") end
    parts[#parts + 1] = data
    sock:receive("*l")
  end
end

-- opts: method, url, headers (table), body (string), timeout (seconds, default 10).
-- Returns res = {status, headers (lower-case names), body} or nil, err, partial.
function M.request(opts)
  local host, port, path = parse_url(opts.url)
  local sock = socket.tcp()
  sock:settimeout(opts.timeout or 10)
  local ok, err = sock:connect(host, port)
  if not ok then return nil, "connect: " .. err end

  local headers = { ["Host"] = host .. ":" .. port, ["Connection"] = "close" }
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.body then headers["Content-Length"] = tostring(#opts.body) end
  local lines = { (opts.method or "GET") .. " " .. path .. " HTTP/1.1" }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  ok, err = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or ""))
  if not ok then sock:close(); return nil, "send: " .. err end

  local status_line
  status_line, err = sock:receive("*l")
  if not status_line then sock:close(); return nil, "status line: " .. err end
  local res = { status = tonumber(status_line:match("^HTTP/1%.%d (%d%d%d)")), headers = {} }
  while true do
    local line
    line, err = sock:receive("*l")
    if not line then sock:close(); return nil, "headers: " .. err end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    res.headers[k:lower()] = v
  end

  local body, partial
  if opts.method == "HEAD" or res.status == 204 or res.status == 304 then
    body = ""
  elseif (res.headers["transfer-encoding"] or ""):lower():find("chunked") then
    body, err, partial = read_chunked(sock)
  elseif res.headers["content-length"] then
    local n = tonumber(res.headers["content-length"])
    body, err, partial = sock:receive(n)
    if not body then err = "body: " .. err .. " after " .. #partial .. " of " .. n .. " bytes" end
  else
    body, err, partial = sock:receive("*a")
  end
  sock:close()
  if not body then return nil, err, partial end
  res.body = body
  return res
end

return M
