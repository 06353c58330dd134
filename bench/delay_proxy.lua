-- A loopback TCP proxy that adds a fixed one-way delay to every chunk, in
-- each direction, keeping the order of the bytes: a WAN round trip on one
-- machine without tc/netem. Runs on luv (Debian lua-luv) under any Lua.
--
--   lua5.4 bench/delay_proxy.lua --target PORT [--delay MS] [--lifetime S]
--                                [--owner-pid PID] [--port-file PATH]
--
-- Listens on a free 127.0.0.1 port and writes "PORT PID\n" to --port-file
-- (atomically, once listening) or to stdout. Exits by itself after
-- --lifetime seconds (default 600), or once --owner-pid is gone.
local uv = require "luv"

local opts = {delay = 25, lifetime = 600}
do
  local i = 1
  while arg[i] do
    local k, v = arg[i]:match("^%-%-(.+)$"), arg[i + 1]
    if k == "target" or k == "delay" or k == "lifetime" or k == "owner-pid" then
      opts[k] = tonumber(v) or error("delay_proxy: --" .. k .. " needs a number")
    elseif k == "port-file" then
      opts[k] = v
    else
      error("delay_proxy: unknown argument " .. tostring(arg[i]))
    end
    i = i + 2
  end
  assert(opts.target, "delay_proxy: --target PORT is required")
end
local DELAY = opts.delay

-- One direction of one connection: chunks wait in a FIFO until their due
-- time; a single timer always targets the head, so order is kept whatever
-- the timer granularity. No chunk is due before `not_before` (ms, uv.now()).
-- on_end runs once the end of the stream has been passed on, on_error on a
-- read or write error.
local function pipe(from, to, not_before, on_end, on_error)
  local queue, head, tail = {}, 1, 0
  local timer = uv.new_timer()
  local stopped = false

  local function flush()
    if stopped then return end
    local now = uv.now()
    while head <= tail and queue[head].due <= now do
      local item = queue[head]
      queue[head] = nil
      head = head + 1
      if item.data then
        to:write(item.data, function(err) if err then on_error() end end)
      else -- the end of the stream, after the same delay
        to:shutdown(function() on_end() end)
      end
    end
    if head <= tail then timer:start(math.max(0, queue[head].due - now), 0, flush) end
  end

  from:read_start(function(err, data)
    if stopped then return end
    if err then return on_error() end
    tail = tail + 1
    queue[tail] = {due = math.max(uv.now() + DELAY, not_before), data = data}
    if head == tail then timer:start(math.max(0, queue[head].due - uv.now()), 0, flush) end
    if not data then from:read_stop() end
  end)
  return function()
    stopped = true
    timer:close()
  end
end

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
assert(server:listen(256, function(err)
  if err then return end
  local client = uv.new_tcp()
  server:accept(client)
  client:nodelay(true)
  -- The client's connect completed at once, on loopback. On a real path its
  -- first bytes would leave one round trip later (SYN, SYN-ACK) and arrive
  -- half a round trip after that: nothing reaches the server sooner.
  local first_bytes_due = uv.now() + 3 * DELAY
  local upstream = uv.new_tcp()
  local stops, ends, done = {}, 0, false
  local function close_all()
    if done then return end
    done = true
    for _, stop in ipairs(stops) do stop() end
    if not client:is_closing() then client:close() end
    if not upstream:is_closing() then upstream:close() end
  end
  local function one_end()
    ends = ends + 1
    if ends == 2 then close_all() end
  end
  upstream:connect("127.0.0.1", opts.target, function(cerr)
    if cerr or done then return close_all() end
    upstream:nodelay(true)
    stops[1] = pipe(client, upstream, first_bytes_due, one_end, close_all)
    stops[2] = pipe(upstream, client, 0, one_end, close_all)
  end)
end))

local port = server:getsockname().port
local line = ("%d %d\n"):format(port, uv.os_getpid())
if opts["port-file"] then
  local tmp = opts["port-file"] .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(line)
  f:close()
  assert(os.rename(tmp, opts["port-file"]))
else
  io.stdout:write(line)
  io.stdout:flush()
end

local function owner_alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("*a")
  f:close()
  return stat:match("%) (%a)") ~= "Z"
end

local started = uv.now()
local watchdog = uv.new_timer()
watchdog:start(500, 500, function()
  if uv.now() - started > opts.lifetime * 1000
     or (opts["owner-pid"] and not owner_alive(opts["owner-pid"])) then
    uv.stop()
  end
end)

-- SIGTERM ends it cleanly (stop by pid)
local sigterm = uv.new_signal()
sigterm:start("sigterm", function() uv.stop() end)

uv.run()
os.exit(0)
