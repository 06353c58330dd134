-- The raw server (spec/support/raw_server.lua) as a background lua5.4
-- process that exits with this one: start() returns its origin.
local core = require "moltflow.core"
local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local http = require "spec.support.http"
local proc = require "spec.support.process"

local shell_quote = proc.quote
local raw = {}

function raw.start()
  if raw.origin then return raw.origin end
  local dir = proc.tmpdir()
  local owner = assert(io.popen("echo $PPID")):read("*l")
  local port_file = dir .. "/port"
  os.execute(string.format("lua5.4 %s %s %s >%s 2>&1 & echo $! >%s",
    shell_quote(emu.root .. "/spec/support/raw_server.lua"), shell_quote(port_file), owner,
    shell_quote(dir .. "/log"), shell_quote(dir .. "/pid")))
  -- stopped when this Lua state closes (else it exits by itself once its owner is gone)
  local function stop()
    os.execute(string.format("kill $(cat %s/pid) 2>/dev/null; rm -rf %s", shell_quote(dir), shell_quote(dir)))
  end
  if newproxy then
    raw.sentinel = newproxy(true)
    getmetatable(raw.sentinel).__gc = stop
  else
    raw.sentinel = setmetatable({}, {__gc = stop})
  end
  local deadline = core.monotime() + 10
  local port
  repeat
    local f = io.open(port_file)
    if f then port = f:read("*l"); f:close() end
    if not port then core.sleep(0.05) end
  until port or core.monotime() > deadline
  assert(port, "the raw server did not start")
  raw.origin = "http://127.0.0.1:" .. port
  raw.dir = dir
  return raw.origin
end

function raw.log()
  local res = assert(http.request{method = "GET", url = raw.start() .. "/_log"})
  return dkjson.decode(res.body)
end

function raw.clear()
  assert(http.request{method = "GET", url = raw.start() .. "/_clear"})
end

return raw
