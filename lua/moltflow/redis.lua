--- moltflow.redis: a small, bounded Redis client for the shared stores.
-- One RESP2 codec in Lua (moltflow.redis.resp) over two socket backends: nginx cosockets
-- (`ngx.socket.tcp`, non-blocking for the worker, connections kept in
-- nginx's pool) where a request can yield, and LuaSocket (`socket.tcp`,
-- blocking, with LuaSec for `rediss://`) everywhere else. One command at a
-- time, its reply as Lua values.
--
--   local conn = redis.new{host = "10.0.0.5", port = 6380, tls = true, ca_file = "/etc/redis/ca.pem",
--                          username = "moltflow", password = pw, timeout = 1}
--   local value, err = conn:call("GET", "key")   -- err.kind, err.message (never a secret)
--
-- Bounds (a hostile or broken server cannot hold or bloat the caller):
-- * one deadline per command (`timeout` seconds from sending it to the end of
--   its reply), however the bytes are trickled; connecting (TCP, TLS, AUTH,
--   SELECT) has its own (`connect_timeout`, default `timeout`);
-- * `max_bulk` bytes in one bulk string (default 1 MiB), `max_array`
--   elements in one array (default 1024), `max_depth` nested arrays (default
--   8), `max_line` bytes in a status line (default 64 KiB) and `max_reply`
--   bytes in a whole reply (default 4 MiB). A length is checked when it is
--   announced, before any of it is read.
--
-- Every failure is `nil, err`: `err.kind` is "timeout", "network" (refused,
-- reset, closed), "tls" (handshake or certificate), "auth" (AUTH or SELECT
-- refused), "protocol" (a malformed reply), "too_large" (a bound above) or
-- "server" (a Redis error reply, the connection stays usable); `tostring(err)`
-- is "moltflow.redis: <message>". After any failure but "server" the
-- connection is closed: the reply stream can no longer be trusted.
-- @module moltflow.redis

local core = require "moltflow.core"
local resp = require "moltflow.redis.resp"
local nginx = require "moltflow.transport.ngx.host"

local M = {}

local monotime = core.monotime

M.LIMITS = resp.LIMITS
M.error_mt = resp.error_mt
M.encode = resp.encode
M.decode = resp.decode
M.is_server_error = resp.is_server_error

local fail = resp.fail
local LATE = "timeout: no complete reply before the command's deadline"

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- Parses `redis://[[user]:password@]host[:port][/db]` (or `rediss://`, TLS).
-- The user and password may be percent-encoded. A userinfo without a colon
-- is a password (the form of moltflow 0.1).
-- @return {host, port, db, tls, username, password} or nil and a message
--   (never the password)
function M.parse_url(url)
  local scheme, rest = url:match("^(rediss?)://(.+)$")
  if not rest then return nil, "the url must start with redis:// or rediss://" end
  local username, password
  local userinfo, hostpart = rest:match("^(.*)@([^@]*)$")
  if userinfo then
    local user, pass = userinfo:match("^([^:]*):(.*)$")
    if user then username, password = user, pass else password = userinfo end
    username = username and username ~= "" and unescape(username) or nil
    password = password and password ~= "" and unescape(password) or nil
    rest = hostpart
  end
  local host, port, db = rest:match("^%[([^%]]+)%]:?(%d*)/?(%d*)$")
  if not host then host, port, db = rest:match("^([^:/%[%]]+):?(%d*)/?(%d*)$") end
  if not host or host == "" then return nil, "the url has no host, or a malformed port or database" end
  return {host = host, port = tonumber(port) or 6379, db = tonumber(db) or 0, tls = scheme == "rediss",
          username = username, password = password}
end

-- Whether certificate name `pattern` (a SAN dNSName) covers `host`: equal
-- (case-insensitively), or a wildcard for the leftmost label only.
local function name_matches(pattern, host)
  pattern, host = pattern:lower(), host:lower()
  if pattern == host then return true end
  local suffix = pattern:match("^%*(%.[^*]+%.[^*]+)$")
  if not suffix then return false end
  local label, rest = host:match("^([^.]+)(%..+)$")
  return label ~= nil and rest == suffix
end

--- Whether a LuaSec certificate names `host` (a DNS name or an IP address)
-- in its subjectAltName. The subject's CN is not considered (RFC 6125).
function M.certificate_names(cert, host)
  local ok, ext = pcall(cert.extensions, cert)
  local san = ok and type(ext) == "table" and ext["2.5.29.17"]
  if type(san) ~= "table" then return false end
  local is_ip = host:match("^%d+%.%d+%.%d+%.%d+$") or host:find(":", 1, true)
  for _, name in ipairs(is_ip and (san.iPAddress or {}) or (san.dNSName or {})) do
    if (is_ip and name:lower() == host:lower()) or (not is_ip and name_matches(name, host)) then return true end
  end
  return false
end

-- LuaSocket (and LuaSec) reads: whatever is available, at most `max`
-- bytes, waiting at most until the deadline.
local function luasocket_reader(sock)
  local socket = require "socket"
  return function(max, deadline)
    while true do
      local left = deadline - monotime()
      if left <= 0 then return nil, "timeout", LATE end
      if not (sock.dirty and sock:dirty()) then -- bytes LuaSocket or LuaSec already buffered
        local ready = socket.select({sock}, nil, left)
        if not ready or not ready[1] then return nil, "timeout", LATE end
      end
      sock:settimeout(0)
      local data, err, partial = sock:receive(max)
      data = data or partial
      if data and #data > 0 then return data end
      if err ~= "timeout" and err ~= "wantread" and err ~= "wantwrite" then
        return nil, "network", "the connection " .. tostring(err)
      end
    end
  end
end

local function cosocket_reader(sock)
  return function(max, deadline)
    local left = deadline - monotime()
    if left <= 0 then return nil, "timeout", LATE end
    sock:settimeout(math.max(1, math.floor(left * 1000)))
    local data, err = sock:receiveany(max)
    if data and #data > 0 then return data end
    if err == "timeout" then return nil, "timeout", LATE end
    return nil, "network", "the connection " .. tostring(err)
  end
end

local Conn = {}
Conn.__index = Conn
Conn.__name = "moltflow.redis"
function Conn:__tostring()
  return ("moltflow.redis(%s://%s:%d/%d%s)"):format(self._tls and "rediss" or "redis", self._host, self._port,
                                                    self._db, self._username and (" as " .. self._username) or "")
end

local function check_opts(opts)
  local function bad(field, what) error(("moltflow.redis: field '%s' must be %s"):format(field, what), 4) end
  if type(opts.host) ~= "string" or opts.host == "" then bad("host", "a string") end
  if type(opts.port) ~= "number" then bad("port", "a number") end
  for _, f in ipairs{"username", "password", "ca_file", "server_name"} do
    if opts[f] ~= nil and type(opts[f]) ~= "string" then bad(f, "a string") end
  end
  for _, f in ipairs{"timeout", "connect_timeout"} do
    if opts[f] ~= nil and (type(opts[f]) ~= "number" or opts[f] <= 0) then bad(f, "a positive number") end
  end
  for f in pairs(M.LIMITS) do
    if opts[f] ~= nil and (type(opts[f]) ~= "number" or opts[f] < 1) then bad(f, "a positive number") end
  end
end

--- A connection to one Redis server (connected on first use, again after a failure).
-- @param opts `host`, `port`, `db`, `tls` (true for TLS), `ca_file` (PEM
--   bundle of the CAs to trust; default: the system's, /etc/ssl/certs),
--   `server_name` (for SNI and the certificate check; default `host`),
--   `username` (an ACL user), `password`, `timeout` (seconds per command,
--   default 1), `connect_timeout` (default `timeout`), and the bounds of
--   `M.LIMITS`
function M.new(opts)
  check_opts(opts)
  local password = opts.password
  local limits = {}
  for k, v in pairs(M.LIMITS) do limits[k] = opts[k] or v end
  local self = setmetatable({_host = opts.host, _port = opts.port, _db = opts.db or 0, _tls = opts.tls and true,
                             _ca_file = opts.ca_file, _server_name = opts.server_name or opts.host,
                             _username = opts.username, _timeout = opts.timeout or 1,
                             _connect_timeout = opts.connect_timeout or opts.timeout or 1,
                             _limits = limits}, Conn)
  -- the password stays in this closure: not a field that tostring or a dump would show
  function self._auth(sock, read, deadline)
    local steps = {}
    if password then
      steps[#steps + 1] = self._username and {"AUTH", self._username, password} or {"AUTH", password}
    end
    if self._db ~= 0 then steps[#steps + 1] = {"SELECT", self._db} end
    for _, argv in ipairs(steps) do
      local v, err = self:_exchange(sock, read, argv, deadline)
      if v == nil then return nil, err end
      if M.is_server_error(v) then
        if argv[1] == "AUTH" then
          return fail("auth", ("AUTH refused%s: %s"):format(self._username and (" for user " .. self._username) or "",
                                                           v.message))
        end
        return fail("auth", "SELECT refused: " .. v.message)
      end
    end
    return true
  end
  -- the cosocket pool is per user, password, db and TLS name, so a pooled connection is ready
  self._pool = ("moltflow-redis:%s:%d:%d:%s:%s:%s"):format(self._host, self._port, self._db,
    self._tls and self._server_name or "", self._username or "", password and core.sha256(password) or "")
  return self
end

-- Sends argv and reads its reply before `deadline`.
function Conn:_exchange(sock, read, argv, deadline)
  local left = deadline - monotime()
  if left <= 0 then return fail("timeout", "no time left to send the command") end
  if self._cosocket then sock:settimeout(math.max(1, math.floor(left * 1000))) else sock:settimeout(left) end
  local ok, err = sock:send(M.encode(argv))
  if not ok then
    if err == "timeout" then return fail("timeout", "sending the command timed out") end
    return fail("network", "sending the command failed: " .. tostring(err))
  end
  return M.decode(read, deadline, self._limits)
end

function Conn:_tls_luasec(sock, deadline)
  local ok, ssl = pcall(require, "ssl")
  if not ok then return fail("tls", "rediss:// outside nginx needs LuaSec (Debian: lua-sec)") end
  local params = {mode = "client", protocol = "any", verify = "peer",
                  options = {"all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1"}}
  if self._ca_file then params.cafile = self._ca_file else params.capath = "/etc/ssl/certs" end
  local conn, werr = ssl.wrap(sock, params)
  if not conn then return fail("tls", "TLS setup failed: " .. tostring(werr)) end
  if not self._server_name:match("^%d+%.%d+%.%d+%.%d+$") and not self._server_name:find(":", 1, true) then
    conn:sni(self._server_name)
  end
  local left = deadline - monotime()
  if left <= 0 then conn:close() return fail("timeout", "no time left for the TLS handshake") end
  conn:settimeout(left)
  local hok, herr = conn:dohandshake()
  if not hok then
    conn:close()
    if herr == "timeout" or herr == "wantread" or herr == "wantwrite" then
      return fail("timeout", "the TLS handshake timed out")
    end
    return fail("tls", "the TLS handshake failed: " .. tostring(herr))
  end
  local cert = conn:getpeercertificate()
  if not cert or not M.certificate_names(cert, self._server_name) then
    conn:close()
    return fail("tls", ("the server's certificate is not valid for %s"):format(self._server_name))
  end
  return conn
end

-- A connected, authenticated socket and its reader: sock, read; or nil, err.
function Conn:_connect()
  local deadline = monotime() + self._connect_timeout
  local sock, read
  if self._cosocket then
    sock = nginx.cosocket()
    sock:settimeout(math.max(1, math.floor(self._connect_timeout * 1000)))
    local ok, err = sock:connect(self._host, self._port, {pool = self._pool})
    if not ok then
      return fail(err == "timeout" and "timeout" or "network", ("cannot connect: %s"):format(tostring(err)))
    end
    if sock:getreusedtimes() > 0 then return sock, cosocket_reader(sock) end
    if self._tls then
      local hok, herr = sock:sslhandshake(false, self._server_name, true) -- false: no session object
      -- nginx-lua 0.10.23 can report success for a certificate it refused
      -- (its name did not match) after closing the connection: a closed
      -- socket answers getreusedtimes() with nil, and nothing was sent on it
      if hok and not sock:getreusedtimes() then hok, herr = nil, "the certificate was refused (connection closed)" end
      if not hok then
        sock:close()
        return fail(herr == "timeout" and "timeout" or "tls", "the TLS handshake failed: " .. tostring(herr))
      end
    end
    read = cosocket_reader(sock)
  else
    local socket = require "socket"
    sock = socket.tcp()
    sock:settimeout(self._connect_timeout)
    local ok, err = sock:connect(self._host, self._port)
    if not ok then
      sock:close()
      return fail(err == "timeout" and "timeout" or "network", ("cannot connect: %s"):format(tostring(err)))
    end
    if self._tls then
      local conn, terr = self:_tls_luasec(sock, deadline)
      if not conn then sock:close() return nil, terr end
      sock = conn
    end
    read = luasocket_reader(sock)
  end
  local aok, aerr = self._auth(sock, read, deadline)
  if not aok then sock:close() return nil, aerr end
  return sock, read
end

--- Sends one command and reads its reply, within `timeout` seconds.
-- @param ... the command and its arguments
-- @return the reply (false for a null), or nil and an error (see the module)
function Conn:call(...)
  self._cosocket = nginx.phase().yield == true -- where nginx lets a request wait: cosockets
  local sock, read = self._sock, self._read
  if self._cosocket or not sock then
    local err
    sock, err = self:_connect()
    if not sock then
      err.message = ("Redis at %s:%d: %s"):format(self._host, self._port, err.message)
      return nil, err
    end
    read = err
    if not self._cosocket then self._sock, self._read = sock, read end
  end
  local v, err = self:_exchange(sock, read, {...}, monotime() + self._timeout)
  if v == nil then
    sock:close()
    self._sock, self._read = nil, nil
    err.message = ("Redis at %s:%d: %s"):format(self._host, self._port, err.message)
    return nil, err
  end
  if self._cosocket then sock:setkeepalive(60000, 16) end
  if M.is_server_error(v) then return fail("server", "Redis: " .. v.message) end
  return v
end

--- Closes the LuaSocket connection (cosockets go back to nginx's pool after each call).
function Conn:close()
  if self._sock then self._sock:close() self._sock, self._read = nil, nil end
end

return M
