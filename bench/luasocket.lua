-- LuaSocket's socket.http: N sequential GETs of the subscription, decoded with
-- lua-cjson (so it does the same work as the SDK). socket.http closes the
-- connection after each request: it has no keep-alive.
--   lua5.4 luasocket.lua URL N  ->  "rps <requests per second>"
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
local cjson = require "cjson"
local url, n = arg[1], tonumber(arg[2])
local KEY = "mf_AcmeAllu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOO"

local function get()
  local parts = {}
  local ok, code = http.request{url = url, sink = ltn12.sink.table(parts),
                                headers = {accept = "application/json", ["x-api-key"] = KEY}}
  if not ok or code ~= 200 then error("luasocket: " .. tostring(code)) end
  local v = cjson.decode(table.concat(parts))
  if v.plan_id ~= "pro" then error("unexpected body") end
end

get()
local t0, cpu0 = socket.gettime(), os.clock()
for _ = 1, n do get() end
print(("rps %.1f\ncpu_us %.2f"):format(n / (socket.gettime() - t0), (os.clock() - cpu0) / n * 1e6))
