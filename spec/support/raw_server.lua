-- A misbehaving HTTP server on loopback, for the fault specs: each path is a
-- way of answering badly that the emulator (nginx) cannot produce.
--
--   lua5.4 spec/support/raw_server.lua PORT_FILE [OWNER_PID]
--
-- Listens on 127.0.0.1 (a free port, written to PORT_FILE once listening),
-- serves one connection at a time and exits when OWNER_PID is gone.
--
--   /reset-mid-body   Content-Length 4096, 1000 bytes of JSON, then a TCP reset
--   /truncated        Content-Length 100, 50 bytes, then a clean close
--   /trickle          a JSON body at 1 byte every 0.25 s
--   /huge             20 MiB announced with Content-Length, streamed
--   /huge-chunked     20 MiB chunked, no length announced
--   /html-502         a proxy's HTML 502 page
--   /wrong-type       200 text/plain
--   /json             200 {"ok":true} (a well-behaved answer)
--   /auth/reset-password  a FastAPI (pydantic 2) 422 that echoes the input: the
--                     fields' values in `input` and `ctx`, the whole body in `input`
--   /_log             the requests received so far (JSON lines of method, path and headers)
--   /_clear           forgets them
-- Every request but /_log and /_clear is recorded.
local socket = require "socket"

local port_file, owner = arg[1], tonumber(arg[2])
assert(port_file, "usage: raw_server.lua PORT_FILE [OWNER_PID]")

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(0.5)
local _, port = server:getsockname()
local f = assert(io.open(port_file .. ".tmp", "w"))
f:write(port, "\n")
f:close()
assert(os.rename(port_file .. ".tmp", port_file))

local log = {}

local function quote(s)
  return '"' .. s:gsub('[%c"\\\128-\255]', function(ch) return string.format("\\u%04x", ch:byte()) end) .. '"'
end

local function read_request(conn)
  conn:settimeout(5)
  local line = conn:receive("*l")
  if not line then return nil end
  local method, path = line:match("^(%u+) (%S+) HTTP/1%.%d$")
  local headers, length = {}, 0
  while true do
    local h = conn:receive("*l")
    if not h or h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    if name then
      headers[#headers + 1] = quote(name:lower()) .. ":" .. quote(value)
      if name:lower() == "content-length" then length = tonumber(value) or 0 end
    end
  end
  local body = length > 0 and conn:receive(length) or ""
  return method, path, "{" .. table.concat(headers, ",") .. "}", body
end

local function head(conn, status, ctype, extra)
  conn:send("HTTP/1.1 " .. status .. "\r\nContent-Type: " .. ctype .. "\r\nConnection: close\r\n" ..
            (extra or "") .. "\r\n")
end

local function json_body(n)
  local s = '{"data":"' .. string.rep("x", n - 11) .. '"}'
  return s
end

local handlers = {}

handlers["/reset-mid-body"] = function(conn)
  head(conn, "200 OK", "application/json", "Content-Length: 4096\r\n")
  conn:send(json_body(4096):sub(1, 1000))
  socket.sleep(0.05)
  conn:setoption("linger", {on = true, timeout = 0}) -- close() now sends RST
end

handlers["/truncated"] = function(conn)
  head(conn, "200 OK", "application/json", "Content-Length: 100\r\n")
  conn:send(json_body(100):sub(1, 50))
end

handlers["/trickle"] = function(conn)
  local body = json_body(200)
  head(conn, "200 OK", "application/json", "Content-Length: " .. #body .. "\r\n")
  for i = 1, #body do
    if not conn:send(body:sub(i, i)) then return end
    socket.sleep(0.25)
  end
end

local function huge(conn, chunked)
  local total = 20 * 1024 * 1024
  local chunk = string.rep("x", 64 * 1024)
  if chunked then
    head(conn, "200 OK", "application/json", "Transfer-Encoding: chunked\r\n")
  else
    head(conn, "200 OK", "application/json", "Content-Length: " .. total .. "\r\n")
  end
  conn:settimeout(5)
  local sent = 0
  while sent < total do
    local ok
    if chunked then
      ok = conn:send(string.format("%x\r\n", #chunk) .. chunk .. "\r\n")
    else
      ok = conn:send(chunk)
    end
    if not ok then return end -- the client gave up: as it should
    sent = sent + #chunk
  end
  if chunked then conn:send("0\r\n\r\n") end
end
handlers["/huge"] = function(conn) huge(conn, false) end
handlers["/huge-chunked"] = function(conn) huge(conn, true) end

handlers["/html-502"] = function(conn)
  local body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n" ..
               "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
  head(conn, "502 Bad Gateway", "text/html", "Content-Length: " .. #body .. "\r\n")
  conn:send(body)
end

handlers["/wrong-type"] = function(conn)
  head(conn, "200 OK", "text/plain", "Content-Length: 2\r\n")
  conn:send("OK")
end

handlers["/json"] = function(conn)
  head(conn, "200 OK", "application/json", "Content-Length: 11\r\n")
  conn:send('{"ok":true}')
end

handlers["/auth/reset-password"] = function(conn, body)
  local function field(name) return quote(body:match('"' .. name .. '":"([^"]*)"') or "") end
  local detail = '{"detail":[' ..
    '{"type":"string_too_short","loc":["body","new_password"],"msg":"String should have at least 64 characters",' ..
    '"input":' .. field("new_password") .. ',"ctx":{"min_length":64}},' ..
    '{"type":"value_error","loc":["body","token"],"msg":"Value error, unknown token",' ..
    '"input":' .. field("token") .. ',"ctx":{"error":' .. field("token") .. '}},' ..
    '{"type":"missing","loc":["body","email"],"msg":"Field required","input":' .. body .. '}]}'
  head(conn, "422 Unprocessable Entity", "application/json", "Content-Length: " .. #detail .. "\r\n")
  conn:send(detail)
end

local function serve(conn)
  local method, path, headers, body = read_request(conn)
  if not method then return end
  local bare = path:match("^[^?]*"):gsub("^/api/v2", "")
  if bare == "/_log" then
    local body = "[" .. table.concat(log, ",") .. "]"
    head(conn, "200 OK", "application/json", "Content-Length: " .. #body .. "\r\n")
    conn:send(body)
    return
  elseif bare == "/_clear" then
    log = {}
    head(conn, "204 No Content", "application/json", "Content-Length: 0\r\n")
    return
  end
  log[#log + 1] = string.format('{"method":%s,"path":%s,"headers":%s}', quote(method), quote(path), headers)
  local h = handlers[bare]
  if h then
    h(conn, body)
  else
    head(conn, "404 Not Found", "application/json", "Content-Length: 23\r\n")
    conn:send('{"detail":"Not Found"}\n')
  end
end

local function owner_alive()
  return not owner or os.execute("kill -0 " .. owner .. " 2>/dev/null") == true
end

local last_check = socket.gettime()
while true do
  local conn = server:accept()
  if conn then
    local ok, err = pcall(serve, conn)
    if not ok then io.stderr:write("raw_server: ", tostring(err), "\n") end
    conn:close()
  end
  if socket.gettime() - last_check > 1 then
    if not owner_alive() then break end
    last_check = socket.gettime()
  end
end
server:close()
