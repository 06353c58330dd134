-- The handlers of bench/ngx_pool.lua, inside nginx (one copy per worker):
-- the same request to the API, GET /billing/subscription, decoded, through
-- the SDK (cosocket transport) or through a plain cosocket HTTP/1.1 request
-- with keep-alive (the baseline). Both answer 200 and the plan's id.
local admin = require "moltflow.admin"
local core = require "moltflow.core"

local M = {}

local KEY = "mf_AcmeAllu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOO"

local client -- one per worker, made on its first request

function M.sdk(api_url, pool_size)
  if not client then
    client = admin.new{base_url = api_url, api_key = KEY, retry = false, pool_size = pool_size}
  end
  local v, err = client.billing:subscription()
  if not v then
    ngx.status = 502
    ngx.say(tostring(err))
    return
  end
  ngx.say(v.plan_id)
end

-- The baseline: what a handler written by hand does, on the same kind of
-- pool (one per host and port, pool_size kept connections).
function M.plain(api_url, pool_size)
  local host, port, path = api_url:match("^http://([^/:]+):(%d+)(.*)$")
  local sock = ngx.socket.tcp()
  sock:settimeouts(10000, 30000, 30000)
  local ok = sock:connect(host, tonumber(port), {pool = "plain:" .. host .. ":" .. port,
                                                       pool_size = pool_size})
  if not ok then return ngx.exit(502) end
  ok = sock:send("GET " .. path .. "/billing/subscription HTTP/1.1\r\nHost: " .. host .. ":" .. port ..
                      "\r\nAccept: application/json\r\nX-API-Key: " .. KEY .. "\r\n\r\n")
  if not ok then return ngx.exit(502) end
  local head = sock:receiveuntil("\r\n\r\n")()
  if not head then return ngx.exit(502) end
  local length = tonumber(head:lower():match("\r\ncontent%-length:%s*(%d+)"))
  local body = length and sock:receive(length)
  if not body then return ngx.exit(502) end
  sock:setkeepalive(60000, pool_size)
  local v = core.json_decode(body)
  ngx.say(v.plan_id)
end

return M
