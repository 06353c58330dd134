--- moltflow.transport.ngx: the SDK inside OpenResty/nginx, on cosockets.
-- `admin.new` picks it by itself when `ngx.socket` exists (outside the init
-- phase): a blocking libcurl call would stall every request of the worker.
-- The C core still builds requests and reads responses (`cc:wire`,
-- `cc:read`); this module only moves bytes: HTTP/1.1 with keep-alive
-- (`setkeepalive`, only for a response read to its end and framed correctly),
-- Content-Length and chunked bodies, 1xx interim answers skipped, TLS with
-- certificate verification (`lua_ssl_trusted_certificate` must name the CA
-- bundle; `ca_file` raises at admin.new; nginx checks an IP-address host
-- against the certificate's DNS names only) and sessions resumed across the
-- requests of a worker, `proxy` (http:// only: CONNECT for https, the
-- absolute form for http), `timeout` as the deadline of a whole attempt and
-- `max_response_bytes` bounding headers and bodies as they arrive. Framing
-- a server got wrong is a `network` error, as with libcurl. Sleeps between
-- retries use `ngx.sleep`.
-- Writes (POST, PATCH) use kept-alive connections too and are never sent
-- twice: only a request the server cannot have seen whole (the send on a
-- kept-alive connection failed) goes again on a new connection; `once`
-- endpoints always take a new one. In phases without cosockets (init, set,
-- log, header and body filters) a call blocks the worker through libcurl:
-- logged once per worker, or raised with `blocking = false`.
-- @module moltflow.transport.ngx

local admin = require "moltflow.admin"

local ngx = ngx
local concat = table.concat

local KEEPALIVE_MS = 60000
local POOL_SIZE = 32
local RECEIVE_BYTES = 65536

local function fail(req, kind, message, connect_failed)
  local method, path = req:info()
  return nil, admin.error{kind = kind, message = message, method = method, path = path,
                          connect_failed = connect_failed or nil}
end

local function network_kind(err)
  return err == "timeout" and "timeout" or "network"
end

local function parse_url(url)
  local scheme, authority, path = url:match("^(https?)://([^/]+)(.*)$")
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  return scheme, host, port, authority, path ~= "" and path or "/"
end

-- HTTP/1.1 response parsing, strict where a lenient reading could hand bytes
-- to the wrong caller: a connection goes back to the pool only when its
-- response was framed correctly and read to its last byte.
local MAX_CHUNK_DIGITS = 15 -- 16^15 is past any max_response_bytes; exact in a double
local MAX_LENGTH_DIGITS = 15

--- read_response(fill, max_bytes, head_only) parses one response from the
-- byte source `fill()`, which returns the next piece of bytes, or nil and
-- "closed", "timeout" or another reason. It does no I/O of its own, so the
-- specs run it over a table of raw responses.
-- Returns status, raw head, body, reusable; or nil, kind ("network",
-- "timeout", "too_large"), message, nothing_arrived. `max_bytes` bounds the
-- body and, separately, the header blocks (interim answers included), as
-- they arrive.
local function read_response(fill, max_bytes, head_only)
  local buf, pos = "", 1
  local arrived = false
  local head_budget = max_bytes

  local function more()
    local piece, err = fill()
    if not piece then return nil, err end
    if piece ~= "" then arrived = true end
    buf = pos > #buf and piece or buf:sub(pos) .. piece
    pos = 1
    return true
  end

  local function failed(err, what)
    if err == "timeout" then return nil, "timeout", "timed out " .. what end
    if err == "too_large" then return nil, "too_large", "response exceeds max_response_bytes" end
    if err == "closed" then return nil, "network", "connection closed " .. what, not arrived end
    return nil, "network", what .. ": " .. tostring(err), not arrived
  end

  -- One line without its CR LF (a bare LF is accepted as libcurl does),
  -- charged to the header budget.
  local function head_line(what)
    local from = pos
    while true do
      local nl = buf:find("\n", from, true)
      if nl then
        local line = buf:sub(pos, nl - 1)
        head_budget = head_budget - (nl - pos + 1)
        if head_budget < 0 then return nil, "too_large" end
        pos = nl + 1
        if line:sub(-1) == "\r" then line = line:sub(1, -2) end
        return line
      end
      if #buf - pos + 1 > head_budget then return nil, "too_large" end
      local scanned = #buf - pos + 1
      local ok, err = more()
      if not ok then return nil, err end
      from = scanned + 1
    end
  end

  -- Exactly n bytes, or nil and the reason.
  local function exactly(n)
    local have = #buf - pos + 1
    if have >= n then
      local s = buf:sub(pos, pos + n - 1)
      pos = pos + n
      return s
    end
    local parts, got = {buf:sub(pos)}, have
    buf, pos = "", 1
    while got < n do
      local piece, err = fill()
      if not piece then return nil, err end
      if got + #piece > n then
        buf = piece:sub(n - got + 1)
        piece = piece:sub(1, n - got)
      end
      parts[#parts + 1] = piece
      got = got + #piece
    end
    return concat(parts)
  end

  -- The status line and headers of one answer.
  local function head()
    local line, err = head_line("before the status line")
    if not line then return failed(err, "before the status line") end
    local version, status = line:match("^HTTP/1%.([01]) ([1-9]%d%d)")
    if not status or not (#line == 12 or line:sub(13, 13) == " ") then
      return nil, "network", "malformed status line"
    end
    local h = {status = tonumber(status), lines = {line}, close = version == "0", te = nil}
    while true do
      line, err = head_line("in the headers")
      if not line then return failed(err, "in the headers") end
      if line == "" then return h end
      h.lines[#h.lines + 1] = line
      local name, value = line:match("^([^:]+):[ \t]*(.-)[ \t]*$")
      if not name then return nil, "network", "malformed header line" end
      name = name:lower()
      if name == "content-length" then
        if not value:match("^%d+$") or #value > MAX_LENGTH_DIGITS then
          return nil, "network", "malformed Content-Length"
        end
        local n = tonumber(value)
        if h.length and h.length ~= n then return nil, "network", "conflicting Content-Length headers" end
        h.length = n
      elseif name == "transfer-encoding" then
        h.te = h.te and (h.te .. ", " .. value) or value
      elseif name == "connection" then
        for token in value:lower():gmatch("[^,%s]+") do
          if token == "close" then h.close = true end
        end
      end
    end
  end

  local h, kind, message
  repeat
    h, kind, message = head()
    if not h then return nil, kind, message, kind == "network" and not arrived end
    -- 1xx answers are interim (100 Continue, 103 Early Hints): the real one follows.
    if h.status == 101 then return nil, "network", "unexpected 101 Switching Protocols" end
  until h.status >= 200
  local status, raw = h.status, concat(h.lines, "\r\n") .. "\r\n\r\n"
  local function reusable() return not h.close and pos > #buf end

  if head_only or status == 204 or status == 304 then return status, raw, "", reusable() end

  local err
  if h.te then
    if h.te:lower() ~= "chunked" then return nil, "network", "unsupported Transfer-Encoding" end
    local parts, size = {}, 0
    while true do
      local line
      line, err = head_line("in a chunk size line")
      if not line then return failed(err, "in the chunked body") end
      local hex, rest = line:match("^(%x+)(.*)$")
      if not hex or #hex > MAX_CHUNK_DIGITS or not (rest:match("^[ \t]*$") or rest:match("^[ \t]*;")) then
        return nil, "network", "malformed chunk size"
      end
      local n = tonumber(hex, 16)
      if n == 0 then break end
      size = size + n
      if size > max_bytes then return failed("too_large") end
      local data
      data, err = exactly(n)
      if not data then return failed(err, "in the chunked body") end
      parts[#parts + 1] = data
      local crlf
      crlf, err = exactly(1)
      if crlf == "\r" then crlf, err = exactly(1) end
      if not crlf then return failed(err, "in the chunked body") end
      if crlf ~= "\n" then return nil, "network", "missing CRLF after a chunk" end
    end
    repeat -- trailer fields, up to the empty line
      local line
      line, err = head_line("in the trailer")
      if not line then return failed(err, "in the trailer") end
    until line == ""
    -- a length next to chunked could have been read another way: no reuse
    return status, raw, concat(parts), reusable() and not h.length
  end

  if h.length then
    if h.length > max_bytes then return failed("too_large") end
    local body
    body, err = exactly(h.length)
    if not body then return failed(err, "in the body") end
    return status, raw, body, reusable()
  end

  -- no length: the body ends when the server closes; counted as it arrives
  local parts, size = {buf:sub(pos)}, #buf - pos + 1
  buf, pos = "", 1
  if size > max_bytes then return failed("too_large") end
  while true do
    local piece
    piece, err = fill()
    if not piece then
      if err == "closed" then break end
      return failed(err, "in the body")
    end
    size = size + #piece
    if size > max_bytes then return failed("too_large") end
    parts[#parts + 1] = piece
  end
  return status, raw, concat(parts), false
end

-- TLS sessions of this worker, by "host:port": a new connection resumes the
-- last one instead of a full handshake. Each worker has its own Lua VM.
local tls_sessions, tls_session_count = {}, 0
local MAX_TLS_SESSIONS = 64

local function remember_session(key, session)
  if session == nil or type(session) == "boolean" then return end
  if not tls_sessions[key] then
    if tls_session_count >= MAX_TLS_SESSIONS then tls_sessions, tls_session_count = {}, 0 end
    tls_session_count = tls_session_count + 1
  end
  tls_sessions[key] = session
end

-- Asks the proxy, on a new connection to it, for a tunnel to `authority`
-- (CONNECT), before the TLS handshake. Returns true, or nil and an error.
local function open_tunnel(sock, req, proxy, authority, left_ms)
  local out = {"CONNECT ", authority, " HTTP/1.1\r\nHost: ", authority, "\r\n"}
  if proxy.authorization then out[#out + 1] = "Proxy-Authorization: " .. proxy.authorization .. "\r\n" end
  out[#out + 1] = "\r\n"
  sock:settimeout(left_ms())
  local sent, err = sock:send(out)
  out = nil -- held the proxy's credential
  if not sent then return fail(req, network_kind(err), "sending CONNECT to the proxy failed: " .. err, true) end
  local status, kind, message = read_response(function()
    sock:settimeout(left_ms())
    return sock:receiveany(RECEIVE_BYTES)
  end, 65536, true)
  if not status then return fail(req, kind, "the proxy's answer to CONNECT: " .. message, true) end
  if status ~= 200 then
    return fail(req, "network", ("the proxy refused CONNECT %s: HTTP %d"):format(authority, status), true)
  end
  return true
end

-- One attempt on one connection. `fresh` takes a new connection and closes
-- it afterwards (its pool name keeps it out of the kept-alive pool).
-- Returns the core's reading of the answer, or nil and an error, or nil and
-- "stale" when a kept-alive connection proved dead before the server could
-- have acted on the request: the caller may send it again on a new one.
local function exchange(client, req, wire, fresh, idempotent)
  local info = client._ngx_info
  if not info then
    info = client._core:info()
    client._ngx_info = info
  end
  local proxy = client._io_conf
  local method, url, headers, body = wire[1], wire[2], wire[3], wire[4]
  local scheme, host, port, authority, path = parse_url(url)
  -- `timeout` bounds the whole attempt, as CURLOPT_TIMEOUT does: every wait
  -- below gets the time left, so a server trickling bytes cannot stretch it.
  local deadline = ngx.now() + info.timeout
  local function left_ms()
    return math.max(1, math.ceil((deadline - ngx.now()) * 1000))
  end
  local sock = ngx.socket.tcp()
  sock:settimeouts(math.min(info.connect_timeout, info.timeout) * 1000, left_ms(), left_ms())
  -- a connection through a proxy is its own pool (a tunnel, or the proxy's)
  local pool = scheme .. "://" .. authority .. (proxy and (" via " .. proxy.pool) or "") .. (fresh and "#fresh" or "")
  local ok, err
  if proxy then
    ok, err = sock:connect(proxy.host, proxy.port, {pool = pool, pool_size = POOL_SIZE})
    if not ok then
      return fail(req, network_kind(err), "connect to the proxy " .. proxy.authority .. " failed: " .. err, true)
    end
  else
    ok, err = sock:connect(host, port, {pool = pool, pool_size = POOL_SIZE})
    if not ok then return fail(req, network_kind(err), "connect to " .. authority .. " failed: " .. err, true) end
  end
  local reused = sock:getreusedtimes() > 0
  local session_key = host .. ":" .. port
  if scheme == "https" and not reused then
    if proxy then
      local tunnel, terr = open_tunnel(sock, req, proxy, authority, left_ms)
      if not tunnel then
        sock:close()
        return nil, terr
      end
    end
    sock:settimeout(left_ms())
    -- pcall: lua-resty-core 0.1.25 can raise an assertion where a failed
    -- verification should return nil, err
    local called, session
    called, session, err = pcall(sock.sslhandshake, sock, tls_sessions[session_key], host, true)
    if not called then session, err = nil, session end
    if not session then
      sock:close()
      return fail(req, network_kind(err), "TLS handshake with " .. host .. " failed: " .. tostring(err), true)
    end
    remember_session(session_key, session)
  end
  -- through a proxy, plain http names the whole URL (absolute form)
  local target = (proxy and scheme == "http") and (scheme .. "://" .. authority .. path) or path
  local out = {method, " ", target, " HTTP/1.1\r\nHost: ", authority, "\r\n"}
  if proxy and scheme == "http" and proxy.authorization then
    out[#out + 1] = "Proxy-Authorization: " .. proxy.authorization .. "\r\n"
  end
  for name, value in pairs(headers) do
    out[#out + 1] = name .. ": " .. value .. "\r\n"
  end
  if body or method ~= "GET" then out[#out + 1] = "Content-Length: " .. (body and #body or 0) .. "\r\n" end
  out[#out + 1] = "\r\n"
  if body then out[#out + 1] = body end
  sock:settimeout(left_ms())
  local sent
  sent, err = sock:send(out)
  out = nil -- held the credential
  if not sent then
    sock:close()
    -- the server never got the whole request, so it cannot have acted on
    -- it: a kept-alive connection that died in the pool, whatever the method
    if reused then return nil, "stale" end
    return fail(req, network_kind(err), "sending the request failed: " .. err)
  end
  local function fill()
    if deadline <= ngx.now() then return nil, "timeout" end
    sock:settimeout(left_ms())
    return sock:receiveany(RECEIVE_BYTES)
  end
  local status, raw, text, reusable = read_response(fill, info.max_response_bytes, method == "HEAD")
  if not status then
    sock:close()
    -- raw is the error kind, text the message, reusable: nothing arrived.
    -- The request left whole: only an idempotent one may go again.
    if reused and reusable and idempotent then return nil, "stale" end
    if reused and reusable then
      text = text .. " (a kept-alive connection; a " .. method .. " is never sent twice)"
    end
    return fail(req, raw, raw == "too_large" and text or "reading the response failed: " .. text)
  end
  if scheme == "https" and not reused and reusable then
    -- TLS 1.3 tickets arrive after the handshake: the session read now,
    -- with the answer, is the one a new connection can resume
    -- (on a connection already handshaken, sslhandshake only returns its session)
    local called, session = pcall(sock.sslhandshake, sock, nil, host, true)
    if called then remember_session(session_key, session) end
  end
  if reusable and not fresh then sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE) else sock:close() end
  return client._core:read(req, status, raw, text)
end

-- Phases where cosockets and ngx.sleep work; elsewhere (init, init_worker,
-- set, log, filters) only a blocking call is possible.
local COSOCKET_PHASES = {rewrite = true, access = true, content = true, timer = true,
                         ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true}

local warned_blocking = false -- once per worker

-- Outside the cosocket phases a call can only block the worker (libcurl):
-- it warns once per worker, or raises when the client says `blocking = false`.
local function blocking_send(client, req)
  local phase = ngx.get_phase()
  if client._blocking == false then
    error(("moltflow: cannot call the API in nginx's '%s' phase: it has no cosockets, and the client "
           .. "was made with blocking = false (a blocking call would stall the worker)"):format(phase), 0)
  end
  if not warned_blocking then
    warned_blocking = true
    ngx.log(ngx.WARN, ("moltflow: a call in nginx's '%s' phase (no cosockets) blocks this worker until it "
                       .. "ends; call from a cosocket phase (access, content, ngx.timer.at) or make the client "
                       .. "with blocking = false to refuse such calls (logged once per worker)"):format(phase))
  end
  return client._core:send(req)
end

local function send(client, req)
  if not COSOCKET_PHASES[ngx.get_phase()] then return blocking_send(client, req) end
  local method, url, headers, body = client._core:wire(req)
  if method == nil then return nil, url end -- no credentials: the core's error
  local wire = {method, url, headers, body}
  -- A `once` endpoint takes a fresh connection: nothing about a kept-alive
  -- one can make it fail before the server decided.
  if select(3, req:info()) then return exchange(client, req, wire, true, false) end
  -- POST and PATCH use kept-alive connections too, and are re-sent only when
  -- the server cannot have seen them (see exchange).
  local idempotent = method ~= "POST" and method ~= "PATCH"
  local v, r = exchange(client, req, wire, false, idempotent)
  if v == nil and r == "stale" then
    -- a kept-alive connection the server had closed: send again on a new one
    v, r = exchange(client, req, wire, true, idempotent)
  end
  return v, r
end

-- Options checked at admin.new: `proxy` is honoured (http:// only: CONNECT
-- for https, the absolute form for http); `ca_file` cannot be, since
-- cosockets verify against nginx's lua_ssl_trusted_certificate.
-- Returns the client's transport settings (its proxy, or nil).
local function configure(opts)
  if opts.ca_file ~= nil then
    error("moltflow.new: the ngx transport cannot honour 'ca_file': cosockets verify certificates against "
          .. "nginx's lua_ssl_trusted_certificate directive; name the CA bundle there instead", 3)
  end
  local proxy = opts.proxy
  if proxy == nil or proxy == "" then return nil end
  local scheme, rest = proxy:match("^([%a][%w+.-]*)://(.*)$")
  if not scheme then scheme, rest = "http", proxy end
  if scheme:lower() ~= "http" then
    error("moltflow.new: the ngx transport supports only http:// proxies (field 'proxy')", 3)
  end
  rest = rest:gsub("/.*$", "")
  local userinfo, hostport = rest:match("^(.*)@([^@]*)$")
  hostport = hostport or rest
  local host, port = hostport:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]+):?(%d*)$") end
  if not host then error("moltflow.new: field 'proxy' must be an http://host[:port] URL", 3) end
  port = tonumber(port) or 1080 -- libcurl's default proxy port
  local conf = {host = host, port = port, authority = host .. ":" .. port}
  if userinfo then
    conf.authorization = "Basic " .. ngx.encode_base64(ngx.unescape_uri(userinfo))
    -- connections opened with one credential are not lent to another
    conf.pool = conf.authority .. "#" .. ngx.md5(userinfo)
  else
    conf.pool = conf.authority
  end
  return conf
end

local transport = {
  send = send,
  configure = configure,
  read_response = read_response, -- for the specs: the parser over any byte source
  sleep = function(seconds)
    if COSOCKET_PHASES[ngx.get_phase()] then return ngx.sleep(seconds) end
    return require("moltflow.core").sleep(seconds)
  end,
}

admin.register_transport("ngx", transport)
return transport
