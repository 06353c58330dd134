--- moltflow.redis: a small Redis client for the shared stores.
-- One RESP codec in Lua over two socket backends: nginx cosockets
-- (`ngx.socket.tcp`, non-blocking for the worker, connections kept in
-- nginx's pool) where a request can yield, and LuaSocket (`socket.tcp`,
-- blocking, bounded by the timeout) everywhere else. Only what the stores
-- need: one command at a time, its reply as Lua values.
--
--   local conn = redis.new{url = "redis://127.0.0.1:6379/0", password = ..., timeout = 1}
--   local value, err = conn:call("GET", "key")   -- err: a message (never the password)
-- @module moltflow.redis

local nginx = require "moltflow.transport.ngx.host"

local M = {}

--- The RESP encoding of a command (an array of bulk strings).
-- @param argv the command and its arguments (strings or numbers)
-- @treturn string
function M.encode(argv)
  local out = {"*" .. #argv .. "\r\n"}
  for i = 1, #argv do
    local s = tostring(argv[i])
    out[#out + 1] = "$" .. #s .. "\r\n" .. s .. "\r\n"
  end
  return table.concat(out)
end

local server_error_mt = {__tostring = function(e) return e.message end}

--- Reads one reply from `sock` (anything with LuaSocket's `receive("*l")`
-- and `receive(n)`): a string, an integer, nil (null), a list, or a table
-- `{message = ...}` for a Redis error reply; or nil and a message when the
-- connection failed (then the reply is incomplete: the connection is done).
-- @return reply (false for a null, to tell it from a failure), or nil, message
function M.decode(sock)
  local line, err = sock:receive("*l")
  if not line then return nil, err end
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then return rest end
  if kind == "-" then return setmetatable({message = rest}, server_error_mt) end
  if kind == ":" then return math.tointeger and math.tointeger(tonumber(rest)) or tonumber(rest) end
  if kind == "$" then
    local n = tonumber(rest)
    if not n then return nil, "malformed reply" end
    if n < 0 then return false end
    local data, rerr = sock:receive(n + 2)
    if not data then return nil, rerr end
    return data:sub(1, n)
  end
  if kind == "*" then
    local n = tonumber(rest)
    if not n then return nil, "malformed reply" end
    if n < 0 then return false end
    local list = {}
    for i = 1, n do
      local v, verr = M.decode(sock)
      if v == nil then return nil, verr end
      list[i] = v
    end
    return list
  end
  return nil, "malformed reply"
end

--- Whether a reply is a Redis error reply.
function M.is_server_error(v)
  return type(v) == "table" and getmetatable(v) == server_error_mt
end

--- Parses `redis://[:password@]host[:port][/db]`.
-- @return {host, port, db, password} or nil and a message (never the password)
function M.parse_url(url)
  local rest = url:match("^redis://(.+)$")
  if not rest then return nil, "the url must start with redis://" end
  local password
  local userinfo, hostpart = rest:match("^(.*)@([^@]*)$")
  if userinfo then
    password = userinfo:match("^[^:]*:(.*)$") or userinfo
    rest = hostpart
  end
  local host, port, db = rest:match("^%[?([^%]/]-)%]?:(%d+)/?(%d*)$")
  if not host then host, db = rest:match("^([^:/]+)/?(%d*)$") end
  if not host or host == "" then return nil, "the url has no host" end
  return {host = host, port = tonumber(port) or 6379, db = tonumber(db) or 0,
          password = password ~= "" and password or nil}
end

local Conn = {}
Conn.__index = Conn
Conn.__name = "moltflow.redis"
function Conn:__tostring()
  return ("moltflow.redis(%s:%d/%d)"):format(self._host, self._port, self._db)
end

--- A connection to one Redis server (connected on first use, again after a failure).
-- @param opts `host`, `port`, `db`, `password`, `timeout` (seconds, default 1)
function M.new(opts)
  local password = opts.password
  local self = setmetatable({_host = opts.host, _port = opts.port, _db = opts.db or 0,
                             _timeout = opts.timeout or 1}, Conn)
  -- the password stays in this closure: not a field tostring or a dump would show
  function self._auth(sock)
    local argv = {{"AUTH", password}, {"SELECT", self._db}}
    for i = password and 1 or 2, (self._db ~= 0) and 2 or 1 do
      local ok, err = sock:send(M.encode(argv[i]))
      if not ok then return nil, err end
      local v, rerr = M.decode(sock)
      if v == nil then return nil, rerr end
      if M.is_server_error(v) then return nil, (i == 1 and "AUTH refused: " or "SELECT refused: ") .. v.message end
    end
    return true
  end
  -- the cosocket pool is per password and db, so a pooled connection is ready
  self._pool = ("moltflow-redis:%s:%d:%d:%s"):format(self._host, self._port, self._db,
    password and require("moltflow.core").sha256(password) or "")
  return self
end

-- A connected socket for this call: (sock, pooled) or nil, message.
function Conn:_socket()
  local sock = nginx.cosocket() -- where nginx lets a request wait
  if sock then
    sock:settimeout(self._timeout * 1000)
    local ok, err = sock:connect(self._host, self._port, {pool = self._pool})
    if not ok then return nil, err end
    if sock:getreusedtimes() == 0 then
      local aok, aerr = self._auth(sock)
      if not aok then sock:close() return nil, aerr end
    end
    return sock, true
  end
  if self._sock then return self._sock, false end
  local socket = require "socket"
  sock = socket.tcp()
  sock:settimeout(self._timeout)
  local ok, err = sock:connect(self._host, self._port)
  if not ok then sock:close() return nil, err end
  local aok, aerr = self._auth(sock)
  if not aok then sock:close() return nil, aerr end
  self._sock = sock
  return sock, false
end

--- Sends one command and reads its reply.
-- @param ... the command and its arguments
-- @return the reply (false for a null), or nil and a message: a failed
--   connection, or a Redis error reply
function Conn:call(...)
  local sock, pooled = self:_socket()
  if not sock then return nil, ("cannot reach Redis at %s:%d: %s"):format(self._host, self._port, tostring(pooled)) end
  local ok, err = sock:send(M.encode({...}))
  local v
  if ok then v, err = M.decode(sock) end
  if v == nil then
    sock:close()
    if not pooled then self._sock = nil end
    return nil, ("Redis at %s:%d: %s"):format(self._host, self._port, tostring(err))
  end
  if pooled then sock:setkeepalive(60000, 16) end
  if M.is_server_error(v) then return nil, "Redis: " .. v.message end
  return v
end

--- Closes the LuaSocket connection (cosockets go back to nginx's pool after each call).
function Conn:close()
  if self._sock then self._sock:close() self._sock = nil end
end

return M
