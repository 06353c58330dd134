-- A forward HTTP proxy on loopback for the proxy specs: CONNECT tunnels
-- (https) and absolute-form requests (http), with an optional Basic
-- credential. Runs on luv (Debian lua-luv).
--
--   lua5.4 spec/support/http_proxy_server.lua --port-file PATH --log PATH
--          [--auth user:password] [--owner-pid PID] [--lifetime S] [--host ADDRESS]
--
-- Writes "PORT PID\n" to --port-file once listening. Each connection's
-- first request line goes to --log as "<status> <line>" (407 when the
-- credential is missing or wrong, 200 when it was let through); what
-- follows on a connection is piped as is (the origin reads absolute-form
-- requests itself). Exits after --lifetime seconds (600) or once --owner-pid
-- is gone.
local uv = require "luv"

local opts = {lifetime = 600, host = "127.0.0.1"}
do
  local i = 1
  while arg[i] do
    local k, v = arg[i]:match("^%-%-(.+)$"), arg[i + 1]
    if k == "lifetime" or k == "owner-pid" then
      opts[k] = tonumber(v) or error("http_proxy_server: --" .. k .. " needs a number")
    elseif k == "port-file" or k == "log" or k == "auth" or k == "host" then
      opts[k] = v
    else
      error("http_proxy_server: unknown argument " .. tostring(arg[i]))
    end
    i = i + 2
  end
  assert(opts["port-file"] and opts.log, "http_proxy_server: --port-file and --log are required")
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local x, y, z = s:byte(i, i + 2)
    local n = x * 65536 + (y or 0) * 256 + (z or 0)
    local c = {}
    for j = 1, 4 do
      local k = math.floor(n / 64 ^ (4 - j)) % 64
      c[j] = B64:sub(k + 1, k + 1)
    end
    if not y then c[3], c[4] = "=", "=" elseif not z then c[4] = "=" end
    out[#out + 1] = table.concat(c)
  end
  return table.concat(out)
end
local expected = opts.auth and ("Basic " .. base64(opts.auth))

local function log(status, line)
  local f = assert(io.open(opts.log, "a"))
  f:write(status, " ", line, "\n")
  f:close()
end

local function pipe(from, to, close_all)
  from:read_start(function(err, data)
    if err or not data then return close_all() end
    to:write(data)
  end)
end

local server = uv.new_tcp()
assert(server:bind(opts.host, 0))
assert(server:listen(256, function(err)
  if err then return end
  local client = uv.new_tcp()
  server:accept(client)
  local upstream, buf, done = nil, "", false
  local function close_all()
    if done then return end
    done = true
    if not client:is_closing() then client:close() end
    if upstream and not upstream:is_closing() then upstream:close() end
  end
  client:read_start(function(rerr, data)
    if rerr or not data then return close_all() end
    buf = buf .. data
    local head_end = buf:find("\r\n\r\n", 1, true)
    if not head_end then return end
    client:read_stop()
    local line = buf:match("^([^\r\n]*)")
    local method, target = line:match("^(%u+) (%S+) HTTP/1%.1$")
    local given = buf:sub(1, head_end):match("\n[Pp]roxy%-[Aa]uthorization:[ \t]*([^\r\n]*)")
    if expected and given ~= expected then
      log(407, line)
      client:write("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"p\"\r\n"
                   .. "Content-Length: 0\r\nConnection: close\r\n\r\n", close_all)
      return
    end
    local host, port
    if method == "CONNECT" then
      host, port = target:match("^([^:]+):(%d+)$")
    elseif method then
      host, port = target:match("^http://([^:/]+):?(%d*)")
      port = port ~= "" and port or "80"
    end
    if not host then
      log(400, line)
      client:write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", close_all)
      return
    end
    log(200, line)
    upstream = uv.new_tcp()
    upstream:connect(host, tonumber(port), function(cerr)
      if cerr or done then
        if not done then client:write("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", close_all) end
        return
      end
      if method == "CONNECT" then
        client:write("HTTP/1.1 200 Connection established\r\n\r\n" )
        if #buf > head_end + 3 then upstream:write(buf:sub(head_end + 4)) end
      else
        upstream:write(buf)
      end
      buf = nil
      pipe(client, upstream, close_all)
      pipe(upstream, client, close_all)
    end)
  end)
end))

local tmp = opts["port-file"] .. ".tmp"
local f = assert(io.open(tmp, "w"))
f:write(("%d %d\n"):format(server:getsockname().port, uv.os_getpid()))
f:close()
assert(os.rename(tmp, opts["port-file"]))

local function owner_alive(pid)
  local s = io.open("/proc/" .. pid .. "/stat")
  if not s then return false end
  local stat = s:read("*a")
  s:close()
  return stat:match("%) (%a)") ~= "Z"
end

local started = uv.now()
local watchdog = uv.new_timer()
watchdog:start(500, 500, function()
  if uv.now() - started > opts.lifetime * 1000 or (opts["owner-pid"] and not owner_alive(opts["owner-pid"])) then
    uv.stop()
  end
end)
local sigterm = uv.new_signal()
sigterm:start("sigterm", function() uv.stop() end)
uv.run()
os.exit(0)
