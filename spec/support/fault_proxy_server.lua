-- A loopback TCP proxy in front of an HTTP/1.1 server that breaks requests on
-- purpose, for the chaos specs. Runs on luv (Debian lua-luv).
--
--   lua5.4 spec/support/fault_proxy_server.lua --target PORT --port-file PATH
--          [--owner-pid PID] [--lifetime S]
--
-- Writes "PORT PID\n" to --port-file once listening. Exits after --lifetime
-- seconds (600) or once --owner-pid is gone.
--
-- The proxy reads each request whole (head and Content-Length body) and each
-- answer whole before it acts, so a fault lands at a known point: before the
-- server got the request, or after the server answered it (it acted). The
-- faults come from a plan, not from chance: `POST /_fault_proxy/plan` with a
-- body of fault names separated by spaces arms them for the next requests, one
-- each, in order (then `pass`). The caller draws the plan from its own seeded
-- generator, so one seed gives the same faults to the same attempts whatever
-- the client does in between. `GET /_fault_proxy/log` lists what each request
-- got, one line each ("<n> <fault> <method> <path>"). Control requests are
-- answered by the proxy itself, on a connection of their own.
--
-- Faults:
--   pass            forwarded, answered as the server answered
--   reset_before    a TCP reset once the request arrived: the server never saw it
--   stall_before    the request is held, never forwarded: the client times out
--   reset_after     forwarded; once the server's answer is in, a TCP reset instead of it
--   truncate        forwarded; the answer's head and half its body, then a clean close
--   garbage_status  forwarded; a status line with control bytes instead of the answer
--   garbage         forwarded; bytes that are not HTTP instead of the answer
--   stall_after     forwarded; the answer is held: the client times out
local uv = require "luv"

local opts = {lifetime = 600}
do
  local i = 1
  while arg[i] do
    local k, v = arg[i]:match("^%-%-(.+)$"), arg[i + 1]
    if k == "target" or k == "lifetime" or k == "owner-pid" then
      opts[k] = tonumber(v) or error("fault_proxy_server: --" .. k .. " needs a number")
    elseif k == "port-file" then
      opts[k] = v
    else
      error("fault_proxy_server: unknown argument " .. tostring(arg[i]))
    end
    i = i + 2
  end
  assert(opts.target and opts["port-file"], "fault_proxy_server: --target and --port-file are required")
end

local FAULTS = {pass = true, reset_before = true, stall_before = true, reset_after = true, truncate = true,
                garbage_status = true, garbage = true, stall_after = true}

local plan, log, served = {}, {}, 0

local function next_fault()
  return table.remove(plan, 1) or "pass"
end

-- The end of one HTTP message in buf (a request, or an answer to a request
-- with `method`), or nil while it is incomplete. Content-Length and chunked
-- framing; an answer with neither runs to the close (not seen from nginx).
local function message_end(buf, method)
  local head_end = buf:find("\r\n\r\n", 1, true)
  if not head_end then return nil end
  local head = buf:sub(1, head_end + 1):lower()
  local status = tonumber(head:match("^http/1%.%d (%d%d%d)"))
  if status and (status == 204 or status == 304 or status < 200 or method == "HEAD") then return head_end + 3 end
  if head:find("\ntransfer%-encoding:[^\n]*chunked") then
    local pos = head_end + 4
    while true do
      local line_end = buf:find("\r\n", pos, true)
      if not line_end then return nil end
      local size = tonumber(buf:sub(pos, line_end - 1):match("^%x+"), 16)
      if not size then return #buf end -- not chunked after all: whatever came
      if size == 0 then
        local trailer_end = buf:find("\r\n\r\n", line_end, true)
        return trailer_end and trailer_end + 3 or nil
      end
      pos = line_end + 2 + size + 2
      if pos - 1 > #buf then return nil end
    end
  end
  local length = tonumber(head:match("\ncontent%-length:%s*(%d+)")) or 0
  if #buf < head_end + 3 + length then return nil end
  return head_end + 3 + length
end

local function reply_text(client, status, text)
  client:write(("HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s")
    :format(status, #text, text), function() if not client:is_closing() then client:close() end end)
end

local function control(client, method, path, body)
  if method == "POST" and path == "/_fault_proxy/plan" then
    local new = {}
    for word in body:gmatch("%S+") do
      if not FAULTS[word] then return reply_text(client, 422, "unknown fault " .. word) end
      new[#new + 1] = word
    end
    plan = new
    return reply_text(client, 200, "ok")
  elseif method == "DELETE" and path == "/_fault_proxy/plan" then
    plan = {}
    return reply_text(client, 200, "ok")
  elseif method == "GET" and path == "/_fault_proxy/log" then
    return reply_text(client, 200, table.concat(log, "\n"))
  elseif method == "DELETE" and path == "/_fault_proxy/log" then
    log = {}
    return reply_text(client, 200, "ok")
  end
  return reply_text(client, 404, "no such control route")
end

-- What the client gets instead of the server's answer.
local function distorted(fault, answer)
  if fault == "truncate" then
    local head_end = answer:find("\r\n\r\n", 1, true) or #answer
    local body = #answer - head_end - 3
    return answer:sub(1, head_end + 3 + math.floor(body / 2))
  elseif fault == "garbage_status" then
    return "HTTP/1.1 2\1\27[0m0 O\0K\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
  else -- garbage: the same bytes every time (no randomness to keep in step)
    local bytes = {}
    for i = 1, 64 do bytes[i] = string.char((i * 73 + 41) % 256) end
    return table.concat(bytes)
  end
end

local function serve(client)
  local upstream, upstream_buf, pending -- pending: the request in flight upstream
  local buf, closed = "", false

  local function close_all(reset)
    if closed then return end
    closed = true
    if not client:is_closing() then
      if reset then client:close_reset() else client:close() end
    end
    if upstream and not upstream:is_closing() then upstream:close() end
  end

  local handle_next

  local function on_answer(answer)
    local fault = pending.fault
    pending = nil
    if fault == "pass" then
      client:write(answer)
      return handle_next()
    elseif fault == "reset_after" then
      return close_all(true)
    elseif fault == "stall_after" then
      return -- held until the client gives up and closes
    end
    client:write(distorted(fault, answer), function() close_all(false) end)
  end

  local function forward(request)
    if not upstream then
      upstream, upstream_buf = uv.new_tcp(), ""
      upstream:connect("127.0.0.1", opts.target, function(err)
        if err then return close_all(true) end
        local mine = upstream
        mine:read_start(function(rerr, data)
          if rerr or not data then
            -- the server closed a kept-alive connection between requests: the
            -- next request opens another; mid-answer, the client's goes too
            if pending then return close_all(false) end
            if not mine:is_closing() then mine:close() end
            if upstream == mine then upstream = nil end
            return
          end
          upstream_buf = upstream_buf .. data
          if not pending then return end
          local stop = message_end(upstream_buf, pending.method)
          if stop then
            local answer = upstream_buf:sub(1, stop)
            upstream_buf = upstream_buf:sub(stop + 1)
            on_answer(answer)
          end
        end)
      end)
    end
    upstream:write(request)
  end

  -- Takes the next whole request from buf, if any, and acts on it.
  function handle_next()
    if closed or pending then return end
    local stop = message_end(buf)
    if not stop then return end
    local request = buf:sub(1, stop)
    buf = buf:sub(stop + 1)
    local method, path = request:match("^(%u+) (%S+)")
    if path and path:find("^/_fault_proxy/") then
      local head_end = request:find("\r\n\r\n", 1, true)
      return control(client, method, path, request:sub(head_end + 4))
    end
    local fault = next_fault()
    served = served + 1
    log[#log + 1] = ("%d %s %s %s"):format(served, fault, tostring(method), tostring(path))
    if fault == "reset_before" then return close_all(true) end
    if fault == "stall_before" then return end
    pending = {fault = fault, method = method}
    forward(request)
  end

  client:read_start(function(err, data)
    if err or not data then return close_all(false) end
    buf = buf .. data
    handle_next()
  end)
end

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
assert(server:listen(256, function(err)
  if err then return end
  local client = uv.new_tcp()
  server:accept(client)
  client:nodelay(true)
  serve(client)
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
