-- A LÖVE game that shows the tenant's usage: calls are spawned without
-- waiting, and the client is polled once per frame, so the frame rate never
-- depends on the network. Run it with `love examples/love` (the SDK on
-- LUA_PATH / LUA_CPATH, the LuaJIT build of the core; MOLTFLOW_API_KEY and
-- MOLTFLOW_API_URL as for any client).
--
-- With MOLTFLOW_LOVE_RESULT=path it measures itself instead: once every call
-- is done it writes frame times and the cost of each poll to that file (JSON)
-- and quits. spec/hosts/love_spec.lua runs it so.
-- luacheck: globals love
local admin = require "moltflow.admin"

local client
local hud = {status = "loading…"}
local pending = {}                       -- name -> true while in flight
local results = {}                       -- name -> {ok, summary}
local refreshes, REFRESHES = 0, 10       -- usage is refreshed 10 times in a row
local stats = {frames = 0, in_flight_frames = 0, poll_s = 0, poll_max_s = 0, frame_max_s = 0, frame_max_at = 0,
               frame_times = {}}
local result_path = os.getenv("MOLTFLOW_LOVE_RESULT")

local function start(name, summarize, ...)
  pending[name] = true
  client:spawn(...):on_done(function(value, err)
    pending[name] = nil
    results[name] = value and {ok = true, summary = summarize(value)} or {ok = false, summary = tostring(err)}
  end)
end

local function refresh_usage()
  refreshes = refreshes + 1
  start("usage", function(u)
    hud.status = ("%d / %d messages"):format(u.total_messages, u.limit_messages)
    if refreshes < REFRESHES then refresh_usage() end -- chained from the callback
    return u.limit_messages
  end, "usage.current")
end

function love.load()
  client = admin.new{}
  refresh_usage()
  start("subscription", function(s) return s.plan_id end, "billing.subscription")
  start("history", function(h) return #h.months end, "usage.history", {months = 3})
  start("plans", function(p) return #p.plans end, "billing.plans")
end

local function in_flight()
  return next(pending) ~= nil
end

local function write_result()
  local sorted = {}
  for i, t in ipairs(stats.frame_times) do sorted[i] = t end
  table.sort(sorted)
  local function percentile(p) return (sorted[math.max(1, math.ceil(#sorted * p))] or 0) * 1000 end
  local f = assert(io.open(result_path, "w"))
  f:write(admin.json_encode{
    results = results, refreshes = refreshes, frames = stats.frames,
    in_flight_frames = stats.in_flight_frames,
    poll_ms_mean = stats.poll_s / stats.frames * 1000, poll_ms_max = stats.poll_max_s * 1000,
    frame_ms_max = stats.frame_max_s * 1000, frame_max_at = stats.frame_max_at,
    frame_ms_p50 = percentile(0.5), frame_ms_p99 = percentile(0.99), window = love.window ~= nil,
  })
  f:close()
end

function love.update(dt)
  local busy = in_flight()
  local t0 = love.timer.getTime()
  admin.poll(0)                          -- every client's calls, only what is ready: never waits
  local cost = love.timer.getTime() - t0
  stats.frames = stats.frames + 1
  stats.poll_s = stats.poll_s + cost
  stats.poll_max_s = math.max(stats.poll_max_s, cost)
  if busy then
    stats.in_flight_frames = stats.in_flight_frames + 1
    stats.frame_times[#stats.frame_times + 1] = dt
    if stats.frames > 1 and dt > stats.frame_max_s then stats.frame_max_s, stats.frame_max_at = dt, stats.frames end
  end
  if result_path and not in_flight() then
    write_result()
    love.event.quit()
  end
end

function love.draw()
  love.graphics.print("MoltFlow usage: " .. hud.status, 16, 16)
  local y = 40
  for name, r in pairs(results) do
    love.graphics.print(("%s: %s"):format(name, tostring(r.summary)), 16, y)
    y = y + 16
  end
  love.graphics.print(("%d FPS"):format(love.timer.getFPS()), 16, 180)
end
