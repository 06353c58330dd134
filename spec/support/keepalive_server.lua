-- An HTTP/1.1 server on loopback that keeps connections alive and misbehaves
-- on them, for the never-sent-twice specs (issue 12): the emulator's nginx
-- cannot close a kept-alive connection on cue.
--
--   lua5.4 spec/support/keepalive_server.lua PORT_FILE [OWNER_PID]
--
-- Serves several connections at once (socket.select), each request answered
-- `200 {"ok":true}` and the connection kept open, except:
--   /drop         the request (and its body) is read and recorded, then the
--                 connection is closed without an answer
--   /close-idle   answered, then the connection is closed (an idle kept-alive
--                 connection the server gives up on)
--   /_log         {"requests":[{method, path, conn}], "closed": n}: requests
--                 (conn numbers the connection), closes done by the server
--                 (on a connection of its own, closed after the answer)
--
-- Required as `spec.support.keepalive_server`: `start()` (idempotent: the
-- origin), `log()`; the server stops when the Lua state closes or its owner dies.
local M = {}

if ... == "spec.support.keepalive_server" then
  local proc = require "spec.support.process"
  local dkjson = require "dkjson"
  local http = require "spec.support.http"
  local core = require "moltflow.core"
  local here = debug.getinfo(1, "S").source:match("^@(.*)$")

  function M.start()
    if M.origin then return M.origin end
    local dir = proc.tmpdir()
    local owner = assert(io.popen("echo $PPID")):read("*l")
    os.execute(("lua5.4 %s %s %s >%s 2>&1 & echo $! >%s"):format(proc.quote(here), proc.quote(dir .. "/port"),
      owner, proc.quote(dir .. "/log"), proc.quote(dir .. "/pid")))
    local function stop()
      os.execute(("kill $(cat %s/pid) 2>/dev/null; rm -rf %s"):format(proc.quote(dir), proc.quote(dir)))
    end
    M.sentinel = newproxy and newproxy(true) or setmetatable({}, {__gc = stop})
    if newproxy then getmetatable(M.sentinel).__gc = stop end
    local deadline, port = core.monotime() + 10
    repeat
      port = proc.slurp(dir .. "/port"):match("%d+")
      if not port then core.sleep(0.02) end
    until port or core.monotime() > deadline
    assert(port, "the keep-alive server did not start")
    M.origin = "http://127.0.0.1:" .. port
    return M.origin
  end

  function M.log()
    local res = assert(http.request{method = "GET", url = M.start() .. "/_log"})
    return dkjson.decode(res.body)
  end

  return M
end

local socket = require "socket"

local port_file, owner = arg[1], tonumber(arg[2])
assert(port_file, "usage: keepalive_server.lua PORT_FILE [OWNER_PID]")
local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(0)
local _, port = server:getsockname()
local f = assert(io.open(port_file .. ".tmp", "w"))
f:write(port, "\n")
f:close()
assert(os.rename(port_file .. ".tmp", port_file))

local log, closed, next_conn = {}, 0, 0
local conns = {} -- socket -> {id, buffer}

local function answer(sock, body, close)
  sock:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\n" ..
            (close and "Connection: close\r\n" or "") .. "\r\n" .. body)
end

local function drop(sock)
  conns[sock] = nil
  sock:close()
end

-- One whole request in c.buf, or nil: method, path, the rest of the buffer.
local function parse(buf)
  local head_end = buf:find("\r\n\r\n", 1, true)
  if not head_end then return nil end
  local head = buf:sub(1, head_end - 1)
  local method, path = head:match("^(%u+) (%S+) HTTP/1%.%d")
  local length = tonumber(head:lower():match("\ncontent%-length:%s*(%d+)") or "0")
  if #buf < head_end + 3 + length then return nil end
  return method, path, buf:sub(head_end + 4 + length)
end

local function quote(s) return '"' .. s:gsub('[%c"\\]', "") .. '"' end

local function serve(sock, c)
  while true do
    local method, path, rest = parse(c.buf)
    if not method then return end
    c.buf = rest
    local bare = path:match("^[^?]*"):gsub("^/api/v2", "")
    if bare == "/_log" then
      local items = {}
      for i, e in ipairs(log) do
        items[i] = ('{"method":%s,"path":%s,"conn":%d}'):format(quote(e.method), quote(e.path), e.conn)
      end
      answer(sock, ('{"requests":[%s],"closed":%d}'):format(table.concat(items, ","), closed), true)
      return drop(sock)
    end
    log[#log + 1] = {method = method, path = bare, conn = c.id}
    if bare == "/drop" then
      closed = closed + 1
      return drop(sock)
    end
    answer(sock, '{"ok":true}')
    if bare == "/close-idle" then
      drop(sock)
      closed = closed + 1
      return
    end
  end
end

local function owner_alive()
  return not owner or os.execute("kill -0 " .. owner .. " 2>/dev/null") == true
end

local last_check = socket.gettime()
while true do
  local watch = {server}
  for sock in pairs(conns) do watch[#watch + 1] = sock end
  local ready = socket.select(watch, nil, 0.5)
  for _, sock in ipairs(ready or {}) do
    if sock == server then
      local conn = server:accept()
      if conn then
        conn:settimeout(0)
        next_conn = next_conn + 1
        conns[conn] = {id = next_conn, buf = ""}
      end
    elseif conns[sock] then
      local c = conns[sock]
      local data, err, partial = sock:receive(65536)
      data = data or partial
      if data and #data > 0 then c.buf = c.buf .. data end
      if err == "closed" then drop(sock) else serve(sock, c) end
    end
  end
  if socket.gettime() - last_check > 1 then
    last_check = socket.gettime()
    if not owner_alive() then break end
  end
end
