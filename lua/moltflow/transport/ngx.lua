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
-- Its parts: `moltflow.transport.ngx.response` (the response parser) and
-- `moltflow.transport.ngx.host` (the phase table, and what other modules ask
-- of nginx). A transport's `send(link, req)` gets the client's transport
-- link: `link.core` (the core client), `link.settings` (its `info()`),
-- `link.conf` (what `configure` returned), `link.blocking`.
-- @module moltflow.transport.ngx

local core = require "moltflow.core"
local errors = require "moltflow.errors"
local nginx = require "moltflow.transport.ngx.host"
local response = require "moltflow.transport.ngx.response"

local ngx = ngx
local read_response = response.read

local KEEPALIVE_MS = 60000
-- Connections kept alive per worker and host (option `pool_size`): at least
-- as many as calls a worker makes at once, so that none is closed only to be
-- opened again (bench/ngx_pool.lua: at 50 calls in flight per worker, a pool
-- of 32 closed and reopened 2,000 connections in 5 s; 64 closed none).
local DEFAULT_POOL_SIZE = 64
local MAX_POOL_SIZE = 4096
local RECEIVE_BYTES = 65536

local function fail(req, kind, message, connect_failed)
  local method, path = req:info()
  return nil, errors.new{kind = kind, message = message, method = method, path = path,
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
  out = nil -- luacheck: ignore 311 (it held the proxy's credential)
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
local function exchange(link, req, wire, fresh, idempotent)
  local info = link.settings
  local proxy, pool_size = link.conf.proxy, link.conf.pool_size
  local method, url, headers, body = wire[1], wire[2], wire[3], wire[4]
  local scheme, host, port, authority, path = parse_url(url)
  -- `timeout` bounds the whole attempt, as CURLOPT_TIMEOUT does: every wait
  -- below gets the time left, so a server trickling bytes cannot stretch it.
  local deadline = ngx.now() + info.timeout
  local function left_ms()
    return math.max(1, math.ceil((deadline - ngx.now()) * 1000))
  end
  -- plain http carries the key in clear: its first hop must be loopback,
  -- as the base URL must (the libcurl transport checks the same)
  if proxy and scheme == "http" and not proxy.plain_http_ok then
    return fail(req, "network", ("refusing to send plain http:// through the proxy %s, which is not loopback; "
      .. "nothing was sent"):format(proxy.authority))
  end
  local sock = ngx.socket.tcp()
  sock:settimeouts(math.min(info.connect_timeout, info.timeout) * 1000, left_ms(), left_ms())
  -- a connection through a proxy is its own pool (a tunnel, or the proxy's)
  -- (and a pool of another size is another pool: nginx fixes a pool's size when it makes it)
  local pool = scheme .. "://" .. authority .. (proxy and (" via " .. proxy.pool) or "") .. (fresh and "#fresh" or "")
               .. (pool_size ~= DEFAULT_POOL_SIZE and ("#" .. pool_size) or "")
  local ok, err
  if proxy then
    ok, err = sock:connect(proxy.host, proxy.port, {pool = pool, pool_size = pool_size})
    if not ok then
      return fail(req, network_kind(err), "connect to the proxy " .. proxy.authority .. " failed: " .. err, true)
    end
  else
    ok, err = sock:connect(host, port, {pool = pool, pool_size = pool_size})
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
  out = nil -- luacheck: ignore 311 (it held the credential)
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
  if reusable and not fresh then sock:setkeepalive(KEEPALIVE_MS, pool_size) else sock:close() end
  return link.core:read(req, status, raw, text)
end

local warned_blocking = false -- once per worker

-- Outside the cosocket phases a call can only block the worker (libcurl):
-- it warns once per worker, or raises when the client says `blocking = false`.
local function blocking_send(link, req)
  local phase = nginx.phase_name()
  if link.blocking == false then
    error(("moltflow: cannot call the API in nginx's '%s' phase: it has no cosockets, and the client "
           .. "was made with blocking = false (a blocking call would stall the worker)"):format(phase), 0)
  end
  if not warned_blocking then
    warned_blocking = true
    ngx.log(ngx.WARN, ("moltflow: a call in nginx's '%s' phase (no cosockets) blocks this worker until it "
                       .. "ends; call from a cosocket phase (access, content, ngx.timer.at) or make the client "
                       .. "with blocking = false to refuse such calls (logged once per worker)"):format(phase))
  end
  return link.core:send(req)
end

local function send(link, req)
  if not nginx.phase().cosockets then return blocking_send(link, req) end
  local method, url, headers, body = link.core:wire(req)
  if method == nil then return nil, url end -- no credentials: the core's error
  local wire = {method, url, headers, body}
  -- A `once` endpoint takes a fresh connection: nothing about a kept-alive
  -- one can make it fail before the server decided.
  if select(3, req:info()) then return exchange(link, req, wire, true, false) end
  -- POST and PATCH use kept-alive connections too, and are re-sent only when
  -- the server cannot have seen them (see exchange).
  local idempotent = method ~= "POST" and method ~= "PATCH"
  local v, r = exchange(link, req, wire, false, idempotent)
  if v == nil and r == "stale" then
    -- a kept-alive connection the server had closed: send again on a new one
    v, r = exchange(link, req, wire, true, idempotent)
  end
  return v, r
end

-- The proxy option: nil, or how to reach and name it. Plain http goes through
-- it only when it is on loopback (or with insecure_http).
local function proxy_conf(proxy, insecure_http)
  if proxy == nil or proxy == "" then return nil end
  local scheme, rest = proxy:match("^([%a][%w+.-]*)://(.*)$")
  if not scheme then scheme, rest = "http", proxy end
  if scheme:lower() ~= "http" then
    error("moltflow.new: the ngx transport supports only http:// proxies (field 'proxy')", 4)
  end
  rest = rest:gsub("/.*$", "")
  local userinfo, hostport = rest:match("^(.*)@([^@]*)$")
  hostport = hostport or rest
  local host, port = hostport:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]+):?(%d*)$") end
  if not host then error("moltflow.new: field 'proxy' must be an http://host[:port] URL", 4) end
  port = tonumber(port) or 1080 -- libcurl's default proxy port
  local conf = {host = host, port = port, authority = host .. ":" .. port}
  -- a loopback literal (as for the base URL: a name is not resolved here),
  -- or insecure_http, lets plain http through the proxy
  conf.plain_http_ok = insecure_http == true or host == "localhost" or host == "::1"
    or host:match("^127%.[%d.]+$") ~= nil
  if userinfo then
    conf.authorization = "Basic " .. ngx.encode_base64(ngx.unescape_uri(userinfo))
    -- connections opened with one credential are not lent to another
    conf.pool = conf.authority .. "#" .. ngx.md5(userinfo)
  else
    conf.pool = conf.authority
  end
  return conf
end

-- Options checked at admin.new: `proxy` is honoured (http:// only: CONNECT
-- for https, the absolute form for http; plain http only through a proxy on
-- loopback); `ca_file` cannot be, since cosockets verify against nginx's
-- lua_ssl_trusted_certificate; `pool_size`: connections kept alive per
-- worker and host. No environment variable names a proxy here: nginx clears
-- the workers' environment, and the `proxy` option says it.
-- Returns the client's transport settings: {proxy = nil or its conf, pool_size}.
local function configure(opts)
  if opts.ca_file ~= nil then
    error("moltflow.new: the ngx transport cannot honour 'ca_file': cosockets verify certificates against "
          .. "nginx's lua_ssl_trusted_certificate directive; name the CA bundle there instead", 3)
  end
  local size = opts.pool_size
  if size == nil then
    size = DEFAULT_POOL_SIZE
  elseif not (size >= 1 and size <= MAX_POOL_SIZE and size == math.floor(size)) then
    error(("moltflow.new: field 'pool_size' must be an integer from 1 to %d"):format(MAX_POOL_SIZE), 3)
  end
  return {proxy = proxy_conf(opts.proxy, opts.insecure_http), pool_size = size}
end

local transport = {
  send = send,
  configure = configure,
  read_response = read_response, -- for the specs: the parser over any byte source
  sleep = function(seconds)
    if nginx.phase().cosockets then return ngx.sleep(seconds) end
    return core.sleep(seconds)
  end,
}

return transport
