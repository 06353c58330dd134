--- moltflow.transport.ngx: the SDK inside OpenResty/nginx, on cosockets.
-- `admin.new` picks it by itself when `ngx.socket` exists (outside the init
-- phase): a blocking libcurl call would stall every request of the worker.
-- The C core still builds requests and reads responses (`cc:wire`,
-- `cc:read`); this module only moves bytes: HTTP/1.1 with keep-alive
-- (`setkeepalive`), Content-Length and chunked bodies, TLS with certificate
-- verification (`lua_ssl_trusted_certificate` must name the CA bundle),
-- timeouts from the client's `timeout` and `connect_timeout`. Sleeps between
-- retries use `ngx.sleep`.
-- @module moltflow.transport.ngx

local admin = require "moltflow.admin"

local ngx = ngx
local concat = table.concat

local KEEPALIVE_MS = 60000
local POOL_SIZE = 32

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

-- Reads one response; returns status, raw header lines, body, keepalive ok.
local function read_response(sock, max_bytes, deadline, head_only)
  local function receive(pattern)
    local left = deadline - ngx.now()
    if left <= 0 then return nil, "timeout" end
    sock:settimeout(left * 1000)
    return sock:receive(pattern)
  end
  local line, err = receive("*l")
  if not line then return nil, err, true end -- true: nothing of the answer arrived
  local status = tonumber(line:match("^HTTP/1%.[01] (%d%d%d)"))
  if not status then return nil, "malformed status line" end
  local lines, length, chunked, close = {line}, nil, false, line:match("^HTTP/1%.0") ~= nil
  while true do
    line, err = receive("*l")
    if not line then return nil, err end
    if line == "" then break end
    lines[#lines + 1] = line
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      if name == "content-length" then
        length = tonumber(value)
        if not length then return nil, "bad Content-Length" end
      elseif name == "transfer-encoding" then
        chunked = value:lower():find("chunked", 1, true) ~= nil
      elseif name == "connection" then
        close = value:lower() == "close"
      end
    end
  end
  local raw = concat(lines, "\r\n") .. "\r\n\r\n"
  if head_only or status == 204 or status == 304 or (status >= 100 and status < 200) then
    return status, raw, "", not close
  end
  if chunked then
    local parts, size = {}, 0
    while true do
      line, err = receive("*l")
      if not line then return nil, err end
      local n = tonumber(line:match("^%x+"), 16)
      if not n then return nil, "malformed chunk size" end
      if n == 0 then
        repeat -- trailer
          line, err = receive("*l")
          if not line then return nil, err end
        until line == ""
        break
      end
      size = size + n
      if size > max_bytes then return nil, "too_large" end
      local data
      data, err = receive(n)
      if not data then return nil, err end
      parts[#parts + 1] = data
      line, err = receive("*l")
      if not line then return nil, err end
    end
    return status, raw, concat(parts), not close
  end
  if length then
    if length > max_bytes then return nil, "too_large" end
    if length == 0 then return status, raw, "", not close end
    local body
    body, err = receive(length)
    if not body then return nil, err end
    return status, raw, body, not close
  end
  -- no length: the body ends when the server closes
  local body
  body, err = receive("*a")
  if not body then return nil, err end
  if #body > max_bytes then return nil, "too_large" end
  return status, raw, body, false
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
  local sock = ngx.socket.tcp()
  sock:settimeouts(info.connect_timeout * 1000, info.timeout * 1000, info.timeout * 1000)
  local pool = scheme .. "://" .. authority .. (fresh and "#fresh" or "")
  local ok, err = sock:connect(host, port, {pool = pool, pool_size = POOL_SIZE})
  if not ok then return fail(req, network_kind(err), "connect to " .. authority .. " failed: " .. err, true) end
  local reused = sock:getreusedtimes() > 0
  if scheme == "https" and not reused then
    ok, err = sock:sslhandshake(nil, host, true)
    if not ok then
      sock:close()
      return fail(req, "network", "TLS handshake with " .. host .. " failed: " .. tostring(err), true)
    end
  end
  local out = {method, " ", path, " HTTP/1.1\r\nHost: ", authority, "\r\n"}
  for name, value in pairs(headers) do
    out[#out + 1] = name .. ": " .. value .. "\r\n"
  end
  if body or method ~= "GET" then out[#out + 1] = "Content-Length: " .. (body and #body or 0) .. "\r\n" end
  out[#out + 1] = "\r\n"
  if body then out[#out + 1] = body end
  local deadline = ngx.now() + info.timeout
  local sent
  sent, err = sock:send(out)
  out = nil -- held the credential
  if not sent then
    sock:close()
    if reused then return nil, "stale" end
    return fail(req, network_kind(err), "sending the request failed: " .. err)
  end
  local status, raw, text, keep = read_response(sock, info.max_response_bytes, deadline, method == "HEAD")
  if not status then
    sock:close()
    if reused and keep == true and raw == "closed" then return nil, "stale" end
    if raw == "too_large" then return fail(req, "too_large", "response body exceeds max_response_bytes") end
    return fail(req, network_kind(raw), "reading the response failed: " .. tostring(raw))
  end
  if keep and not fresh then sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE) else sock:close() end
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
  sleep = function(seconds)
    if COSOCKET_PHASES[ngx.get_phase()] then return ngx.sleep(seconds) end
    return require("moltflow.core").sleep(seconds)
  end,
}

admin.register_transport("ngx", transport)
return transport
