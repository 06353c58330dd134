-- A hostile "Redis" on loopback for the RESP client's bounds: it reads one
-- command and answers `GET <mode>` badly, one connection at a time.
--
--   local hostile = require "spec.support.hostile_redis"
--   local h = hostile.start()     -- h.port; stopped (by pid) with the Lua state, or h:stop()
--   redis.new{host = "127.0.0.1", port = h.port, timeout = 1}:call("GET", "trickle")
--
-- Modes (the key of the GET):
--   trickle        "$100000\r\n" then one byte every 50 ms, for up to 60 s
--   trickle-line   "+" then one byte every 50 ms, never a CRLF
--   trickle-array  "*1000\r\n" then one element (":1\r\n") every 200 ms: each read
--                  well within a per-read timeout, the whole reply 200 s
--   huge-bulk      "$1000000000\r\n" then bytes as fast as the client takes them
--   huge-array     "*100000000\r\n" then ":1\r\n" as fast as the client takes them
--   long-line      "+" then 64 MiB without a CRLF
--   wide-reply     an array of 1000 bulk strings of 1 MiB each (each within max_bulk)
--   inf-bulk, inf-array, nan-bulk, negative-bulk, float-array, inf-integer, overflow-bulk
--                  a length (or integer) that is not one
--   deep           "*1\r\n" nested 100000 times
--   extra          a valid reply, then another one nobody asked for
--   close-mid      half a bulk string, then a close
--   unknown-type   "%1\r\n" (a RESP3 map, not asked for)
--   ok             "$2\r\nok\r\n"
--   bytewise       a valid array (a bulk string, an integer, a status) one byte every 5 ms
-- Run as a script: lua5.4 hostile_redis.lua PORT_FILE OWNER_PID (exits when its owner is gone).

if ... == "spec.support.hostile_redis" then
  local proc = require "spec.support.process"
  local quote = proc.quote
  local here = debug.getinfo(1, "S").source:match("^@(.*)$")
  local M = {}
  function M.start()
    local dir = proc.tmpdir()
    local owner = assert(io.popen("echo $PPID")):read("*l")
    os.execute(("lua5.4 %s %s %s >%s 2>%s & echo $! >%s"):format(quote(here), quote(dir .. "/port"), owner,
      quote(dir .. "/log"), quote(dir .. "/stderr"), quote(dir .. "/pid")))
    local port = proc.await_port_file(dir .. "/port", dir, "the hostile Redis")
    local self = {port = port, dir = dir, pid = tonumber(proc.slurp(dir .. "/pid"):match("%d+"))}
    function self.stop()
      if self.pid then os.execute("kill " .. self.pid .. " 2>/dev/null") self.pid = nil end
      os.execute("rm -rf " .. quote(dir))
    end
    self.sentinel = proc.on_collect(self.stop)
    return self
  end
  return M
end

local socket = require "socket"

local port_file, owner = arg[1], tonumber(arg[2])
assert(port_file, "usage: hostile_redis.lua PORT_FILE OWNER_PID")

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(0.5)
local _, port = server:getsockname()
local f = assert(io.open(port_file .. ".tmp", "w"))
f:write(port, " ", tostring(owner or 0), "\n")
f:close()
assert(os.rename(port_file .. ".tmp", port_file))

-- Reads one RESP command (an array of bulk strings); returns its words.
local function read_command(conn)
  conn:settimeout(5)
  local head = conn:receive("*l")
  local n = head and tonumber(head:match("^%*(%d+)"))
  if not n then return nil end
  local words = {}
  for i = 1, n do
    local len = tonumber((conn:receive("*l") or ""):match("^%$(%d+)"))
    if not len then return nil end
    local data = conn:receive(len + 2)
    if not data then return nil end
    words[i] = data:sub(1, len)
  end
  return words
end

-- Sends `first`, then `each` (a string or a function of i) until the client
-- hangs up, `limit` times, or `seconds` pass; `pause` seconds apart.
local function stream(conn, first, each, opts)
  conn:settimeout(5)
  if first and not conn:send(first) then return end
  local started = socket.gettime()
  for i = 1, opts.limit or math.huge do
    local piece = type(each) == "function" and each(i) or each
    if not conn:send(piece) then return end
    if opts.pause then socket.sleep(opts.pause) end
    if socket.gettime() - started > (opts.seconds or 60) then return end
  end
end

local MIB = string.rep("x", 1024 * 1024)
local CHUNK = string.rep("y", 65536)

local modes = {
  ["trickle"] = function(c) stream(c, "$100000\r\n", "z", {pause = 0.05}) end,
  ["trickle-line"] = function(c) stream(c, "+", "z", {pause = 0.05}) end,
  ["trickle-array"] = function(c) stream(c, "*1000\r\n", ":1\r\n", {pause = 0.2, limit = 1000}) end,
  ["huge-bulk"] = function(c) stream(c, "$1000000000\r\n", CHUNK, {seconds = 20}) end,
  ["huge-array"] = function(c) stream(c, "*100000000\r\n", string.rep(":1\r\n", 4096), {seconds = 20}) end,
  ["long-line"] = function(c) stream(c, "+", CHUNK, {limit = 1024, seconds = 20}) end,
  ["wide-reply"] = function(c)
    stream(c, "*1000\r\n", "$" .. #MIB .. "\r\n" .. MIB .. "\r\n", {limit = 1000, seconds = 20})
  end,
  ["inf-bulk"] = function(c) c:send("$inf\r\nabc\r\n") end,
  ["inf-array"] = function(c) c:send("*inf\r\n") end,
  ["nan-bulk"] = function(c) c:send("$nan\r\n") end,
  ["negative-bulk"] = function(c) c:send("$-5\r\nabc\r\n") end,
  ["float-array"] = function(c) c:send("*1e3\r\n") end,
  ["inf-integer"] = function(c) c:send(":inf\r\n") end,
  ["overflow-bulk"] = function(c) c:send("$99999999999999999999999\r\n") end,
  ["deep"] = function(c) stream(c, nil, string.rep("*1\r\n", 1000), {limit = 100}) end,
  ["extra"] = function(c) c:send("$2\r\nok\r\n+PONG\r\n") end,
  ["close-mid"] = function(c) c:send("$10\r\nabcde") return "close" end,
  ["unknown-type"] = function(c) c:send("%1\r\n+a\r\n+b\r\n") end,
  ["ok"] = function(c) c:send("$2\r\nok\r\n") end,
  ["bytewise"] = function(c)
    local reply = "*4\r\n$3\r\nabc\r\n:42\r\n+OK\r\n$-1\r\n"
    stream(c, nil, function(i) return reply:sub(i, i) end, {pause = 0.005, limit = #reply})
  end,
}

while true do
  if owner and not os.execute("kill -0 " .. owner .. " 2>/dev/null") then break end
  local conn = server:accept()
  if conn then
    while true do
      local words = read_command(conn)
      if not words then break end
      local mode = modes[words[2] or ""]
      if not mode then conn:send("-ERR unknown mode\r\n") elseif mode(conn) == "close" then break end
    end
    conn:close()
  end
end
