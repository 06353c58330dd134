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
--   /trickle-head     the status line and headers at 1 byte every 0.1 s
--   /huge             20 MiB announced with Content-Length, streamed
--   /huge-chunked     20 MiB chunked, no length announced
--   /huge-unframed    64 MiB with neither length nor chunking, up to the close
--   /huge-header      one header line of 64 MiB
--   /html-502         a proxy's HTML 502 page
--   /wrong-type       200 text/plain
--   /json             200 {"ok":true} (a well-behaved answer)
--   /raw/NAME         the bytes of M.cases[NAME].raw, verbatim
--   /_log             the requests received so far (JSON: method, path, headers
--                     and `sent`, the bytes a streaming answer got out before
--                     the client hung up)
--   /auth/reset-password  a FastAPI (pydantic 2) 422 that echoes the input: the
--                     fields' values in `input` and `ctx`, the whole body in `input`
--   /_clear           forgets them
-- Every request but /_log and /_clear is recorded.
--
-- Required as `spec.support.raw_server` it starts nothing by itself and gives
-- the specs `cases`, `start()` (idempotent: the origin), `log()` and `clear()`.
local M = {}

-- Raw responses and what each must give on both transports (libcurl and
-- transport/ngx). `kind` is the err.kind, or nil for a success whose decoded
-- body equals `body` (an empty body decodes to true); `curl_kind` where libcurl
-- differs ("ok": libcurl accepts the answer, with an empty body). `hold`: the server
-- keeps the connection open afterwards (until the client closes it or sends
-- more), so a client that waits for more bytes hangs instead of failing.
local JSON = "Content-Type: application/json\r\n"
local OK11 = '{"ok":true}'
M.cases = {
  {name = "plain", raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: 11\r\n\r\n" .. OK11, body = {ok = true}},
  {name = "early-hints", hold = true, body = {early = true},
   raw = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" ..
         "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: 14\r\n\r\n" .. '{"early":true}'},
  {name = "continue-twice", body = {ok = true},
   raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n" ..
         "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: 11\r\n\r\n" .. OK11},
  -- the one leniency kept: libcurl also reads bare LF line ends (RFC 9112 2.2 lets a
  -- recipient), and refusing them would make the transports disagree on a success
  {name = "bare-lf", body = {ok = true},
   raw = "HTTP/1.1 200 OK\n" .. "Content-Type: application/json\nContent-Length: 11\n\n" .. OK11},
  {name = "length-equal-twice", body = {ok = true},
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: 11\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "length-negative", kind = "network", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: -1\r\n\r\n" .. OK11},
  {name = "length-hex", kind = "network", curl_kind = "ok", hold = true, -- libcurl reads "0", an empty body
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: 0x5\r\n\r\n" .. OK11},
  {name = "length-plus", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: +11\r\n\r\n" .. OK11},
  {name = "length-conflict", kind = "network", curl_kind = "timeout", hold = true, -- libcurl waits for 12 bytes
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: 11\r\nContent-Length: 12\r\n\r\n" .. OK11},
  {name = "length-overflow", kind = "network", curl_kind = "too_large", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: 99999999999999999999999\r\n\r\n" .. OK11},
  {name = "chunked", body = {ok = true},
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\n" ..
         "6\r\n" .. '{"ok":' .. "\r\n5;ext=1\r\ntrue}\r\n0\r\nX-Trailer: 1\r\n\r\n"},
  {name = "chunked-upper-case", body = {ok = true},
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: Chunked\r\n\r\nb\r\n" .. OK11 .. "\r\n0\r\n\r\n"},
  {name = "chunk-without-crlf", kind = "network", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\n6\r\n" .. '{"ok":' ..
         "XX5\r\ntrue}\r\n0\r\n\r\n"},
  -- one stray byte where the CRLF belongs, then a valid chunk: read on, it would parse
  {name = "chunk-stray-byte", kind = "network", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\n6\r\n" .. '{"ok":' ..
         "X5\r\ntrue}\r\n0\r\n\r\n"},
  {name = "chunk-size-garbage", kind = "network", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\nzz\r\n" .. OK11 .. "\r\n0\r\n\r\n"},
  {name = "chunk-size-overflow", kind = "network", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\n" ..
         "fffffffffffffffffffffffb\r\n" .. OK11 .. "\r\n0\r\n\r\n"},
  {name = "transfer-encoding-unknown", kind = "network", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: notchunked\r\n\r\n" .. OK11},
  {name = "transfer-encoding-gzip-chunked", kind = "network", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: gzip, chunked\r\n\r\nb\r\n" .. OK11 .. "\r\n0\r\n\r\n"},
  {name = "status-line-garbage", kind = "network", hold = true,
   raw = "HTTP/1.1 2x0 OK\r\n" .. JSON .. "Content-Length: 11\r\n\r\n" .. OK11},
  -- a status line with control bytes (an escape sequence, a NUL) for a terminal or a log to trip on
  {name = "status-line-control-bytes", kind = "network", hold = true,
   raw = "HTTP/1.1 2\1\27[0m0 O\0K\r\n" .. JSON .. "Content-Length: 11\r\n\r\n" .. OK11},
  -- bytes that are not HTTP at all (libcurl takes them for HTTP/0.9)
  {name = "not-http", kind = "network",
   raw = "\22\3\1\0\165\1\0\0\161\3\3\27[2J\0\255\254binary\r\n\r\n"},
  {name = "switching-protocols", kind = "network", curl_kind = "timeout", hold = true,
   raw = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n" .. OK11},
  {name = "closed-before-status", kind = "network", raw = ""},
  {name = "closed-in-headers", kind = "network", curl_kind = "ok", raw = "HTTP/1.1 200 OK\r\n" .. JSON},
  {name = "closed-in-chunk", kind = "network",
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\nb\r\n" .. '{"ok"'},
  -- Field and chunk syntax, RFC 9112 sections 5 and 7.1 (issue 24): the ngx transport
  -- refuses what a strict parser refuses. libcurl (7.88) is laxer: it reads most of
  -- these ("ok"), and skips a header with a space before its colon, so it waits for
  -- the close ("timeout"). RFC 9112 5.2 would let a client replace an obs-fold with a
  -- space; the API never folds, and a fold read another way is how answers get smuggled.
  {name = "space-before-colon-length", kind = "network", curl_kind = "timeout", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length : 11\r\n\r\n" .. OK11},
  {name = "space-before-colon-chunked", kind = "network", curl_kind = "timeout", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding : chunked\r\n\r\nb\r\n" .. OK11 .. "\r\n0\r\n\r\n"},
  {name = "obs-fold", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "X-Folded: a\r\n X-Other: b\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "obs-fold-tab", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "X-Folded: a\r\n\tb\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "name-with-space", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "X Name: a\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "name-with-control", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "X\1Name: a\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "name-with-separator", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "X(Name): a\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "name-empty", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. ": a\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "value-bare-cr", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "X-Value: a\rb\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "value-control", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "X-Value: a\1b\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "value-nul", kind = "network", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "X-Value: a\0b\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "value-del", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "X-Value: a\127b\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "value-tab-and-obs-text", body = {ok = true},
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "X-Value: a\tb \200\255\r\nContent-Length: 11\r\n\r\n" .. OK11},
  {name = "chunk-size-trailing-space", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\nb \r\n" .. OK11 .. "\r\n0\r\n\r\n"},
  {name = "chunk-ext-empty", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\nb;\r\n" .. OK11 .. "\r\n0\r\n\r\n"},
  {name = "chunk-ext-no-name", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\nb;=x\r\n" .. OK11 .. "\r\n0\r\n\r\n"},
  {name = "chunk-ext-quoted", body = {ok = true},
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\nb ; a=1;b=\"x;y\"\r\n" .. OK11 ..
         "\r\n0\r\n\r\n"},
  {name = "length-and-chunked", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: 11\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n" .. OK11 ..
         "\r\n0\r\n\r\n"},
  {name = "trailer-malformed", kind = "network", curl_kind = "ok", hold = true,
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Transfer-Encoding: chunked\r\n\r\nb\r\n" .. OK11 ..
         "\r\n0\r\nX Trailer : 1\r\n\r\n"},
  -- a second answer stuck behind the first: whoever reads it next gets the wrong one
  {name = "smuggled", hold = true, body = {ok = true},
   raw = "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: 11\r\n\r\n" .. OK11 ..
         "HTTP/1.1 200 OK\r\n" .. JSON .. "Content-Length: 16\r\n\r\n" .. '{"smuggled":true}'},
}
for _, c in ipairs(M.cases) do M.cases[c.name] = c end

if ... == "spec.support.raw_server" then
  local core = require "moltflow.core"
  local dkjson = require "dkjson"
  local http = require "spec.support.http"
  local proc = require "spec.support.process"
  local quote = proc.quote
  local here = debug.getinfo(1, "S").source:match("^@(.*)$")

  -- Starts the server once per process (a background lua5.4 that exits with
  -- this one); returns its origin, http://127.0.0.1:PORT.
  function M.start()
    if M.origin then return M.origin end
    local dir = assert(io.popen("mktemp -d /tmp/moltflow-raw.XXXXXX")):read("*l")
    local owner = assert(io.popen("echo $PPID")):read("*l")
    local port_file = dir .. "/port"
    os.execute(string.format("lua5.4 %s %s %s >%s 2>&1 & echo $! >%s", quote(here), quote(port_file), owner,
      quote(dir .. "/log"), quote(dir .. "/pid")))
    -- stopped when this Lua state closes (else it exits by itself once its owner is gone)
    local function stop()
      os.execute(string.format("kill $(cat %s/pid) 2>/dev/null; rm -rf %s", quote(dir), quote(dir)))
    end
    M.sentinel = proc.on_collect(stop)
    local deadline = core.monotime() + 10
    local port
    repeat
      local f = io.open(port_file)
      if f then port = f:read("*l"); f:close() end
      if not port then core.sleep(0.05) end
    until port or core.monotime() > deadline
    assert(port, "the raw server did not start")
    M.origin = "http://127.0.0.1:" .. port
    M.dir = dir
    return M.origin
  end

  function M.log()
    local res = assert(http.request{method = "GET", url = M.start() .. "/_log"})
    return dkjson.decode(res.body)
  end

  function M.clear()
    assert(http.request{method = "GET", url = M.start() .. "/_clear"})
  end

  return M
end

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

handlers["/trickle-head"] = function(conn)
  local text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " .. string.rep("s", 400) .. "\r\n"
  for i = 1, #text do
    if not conn:send(text:sub(i, i)) then return end
    socket.sleep(0.1)
  end
end

-- Streams `total` bytes of `prefix .. x...` in 64 KiB pieces; entry.sent
-- counts what got out before the client hung up.
local function stream(conn, entry, total, framing)
  local chunk = string.rep("x", 64 * 1024)
  conn:settimeout(5)
  entry.sent = 0
  while entry.sent < total do
    local ok
    if framing == "chunked" then
      ok = conn:send(string.format("%x\r\n", #chunk) .. chunk .. "\r\n")
    else
      ok = conn:send(chunk)
    end
    if not ok then return end -- the client gave up: as it should
    entry.sent = entry.sent + #chunk
  end
  if framing == "chunked" then conn:send("0\r\n\r\n") end
end

local MIB = 1024 * 1024
handlers["/huge"] = function(conn, entry)
  head(conn, "200 OK", "application/json", "Content-Length: " .. 20 * MIB .. "\r\n")
  stream(conn, entry, 20 * MIB)
end
handlers["/huge-chunked"] = function(conn, entry)
  head(conn, "200 OK", "application/json", "Transfer-Encoding: chunked\r\n")
  stream(conn, entry, 20 * MIB, "chunked")
end
handlers["/huge-unframed"] = function(conn, entry)
  head(conn, "200 OK", "application/json")
  stream(conn, entry, 64 * MIB)
end
handlers["/huge-header"] = function(conn, entry)
  conn:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Huge: ")
  stream(conn, entry, 64 * MIB)
end

-- Waits until the client closes the connection or sends anything more, or
-- another client connects (this server serves one connection at a time).
local function hold(conn)
  socket.select({conn, server}, nil, 10)
  conn:settimeout(0)
  conn:receive(65536) -- what the client sent: closing with unread bytes would reset
end

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

handlers["/auth/reset-password"] = function(conn, _, body)
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
    local lines = {}
    for i, e in ipairs(log) do
      lines[i] = string.format('{"method":%s,"path":%s,"headers":%s,"sent":%d}', quote(e.method), quote(e.path),
                               e.headers, e.sent or 0)
    end
    local listing = "[" .. table.concat(lines, ",") .. "]"
    head(conn, "200 OK", "application/json", "Content-Length: " .. #listing .. "\r\n")
    conn:send(listing)
    return
  elseif bare == "/_clear" then
    log = {}
    head(conn, "204 No Content", "application/json", "Content-Length: 0\r\n")
    return
  end
  local entry = {method = method, path = path, headers = headers}
  log[#log + 1] = entry
  local h = handlers[bare]
  local case = M.cases[bare:match("^/raw/(.+)$") or ""]
  if case then
    conn:send(case.raw)
    if case.hold then hold(conn) end
  elseif h then
    h(conn, entry, body)
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
