--- moltflow.transport.ngx: the SDK inside OpenResty/nginx, on cosockets.
-- `admin.new` picks it by itself when `ngx.socket` exists (outside the init
-- phase): a blocking libcurl call would stall every request of the worker.
-- The C core still builds requests and reads responses (`cc:wire`,
-- `cc:read`); this module only moves bytes: HTTP/1.1 with keep-alive
-- (`setkeepalive`, only for a response read to its end and framed correctly),
-- Content-Length and chunked bodies, 1xx interim answers skipped, TLS with
-- certificate verification (`lua_ssl_trusted_certificate` must name the CA
-- bundle), `timeout` as the deadline of a whole attempt and
-- `max_response_bytes` bounding headers and bodies as they arrive. Framing
-- a server got wrong is a `network` error, as with libcurl. Sleeps between
-- retries use `ngx.sleep`.
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

-- One attempt on one connection. `fresh` takes a new connection and closes
-- it afterwards (its pool name keeps it out of the kept-alive pool).
local function exchange(client, req, wire, fresh)
  local info = client._ngx_info
  if not info then
    info = client._core:info()
    client._ngx_info = info
  end
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
  local pool = scheme .. "://" .. authority .. (fresh and "#fresh" or "")
  local ok, err = sock:connect(host, port, {pool = pool, pool_size = POOL_SIZE})
  if not ok then return fail(req, network_kind(err), "connect to " .. authority .. " failed: " .. err, true) end
  local reused = sock:getreusedtimes() > 0
  if scheme == "https" and not reused then
    sock:settimeout(left_ms())
    ok, err = sock:sslhandshake(nil, host, true)
    if not ok then
      sock:close()
      return fail(req, network_kind(err), "TLS handshake with " .. host .. " failed: " .. tostring(err), true)
    end
  end
  local out = {method, " ", path, " HTTP/1.1\r\nHost: ", authority, "\r\n"}
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
    -- raw is the error kind, text the message, reusable: nothing arrived
    if reused and reusable then return nil, "stale" end
    return fail(req, raw, raw == "too_large" and text or "reading the response failed: " .. text)
  end
  if reusable and not fresh then sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE) else sock:close() end
  return client._core:read(req, status, raw, text)
end

-- Phases where cosockets and ngx.sleep work; elsewhere (init, init_worker,
-- set, log, filters) only a blocking call is possible.
local COSOCKET_PHASES = {rewrite = true, access = true, content = true, timer = true,
                         ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true}

local function send(client, req)
  if not COSOCKET_PHASES[ngx.get_phase()] then return client._core:send(req) end
  local method, url, headers, body = client._core:wire(req)
  if method == nil then return nil, url end -- no credentials: the core's error
  local wire = {method, url, headers, body}
  -- As with libcurl: a POST or PATCH (or a `once` endpoint) that met a dead
  -- kept-alive connection could have acted already, so it never reuses one
  -- and is never re-sent here.
  if method == "POST" or method == "PATCH" or select(3, req:info()) then
    return exchange(client, req, wire, true)
  end
  local v, r = exchange(client, req, wire, false)
  if v == nil and r == "stale" then
    -- a kept-alive connection the server had closed: send again on a new one
    v, r = exchange(client, req, wire, true)
  end
  return v, r
end

local transport = {
  send = send,
  read_response = read_response, -- for the specs: the parser over any byte source
  sleep = function(seconds)
    if COSOCKET_PHASES[ngx.get_phase()] then return ngx.sleep(seconds) end
    return require("moltflow.core").sleep(seconds)
  end,
}

admin.register_transport("ngx", transport)
return transport
