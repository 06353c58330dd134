-- The emulator's one way to answer a request: status, the request id and
-- rate-limit headers, a JSON (or verbatim) body. The pipeline (init.lua),
-- the control API and fault injection all answer through it.
local json = require "moltflow.emulator.json"

local M = {}

-- Write a complete JSON response. `body` is a table (encoded), a string
-- (sent verbatim) or nil (no body, e.g. 204).
function M.send(req, status, body, headers)
  ngx.status = status
  ngx.header["X-Request-Id"] = req.id
  if req.rate then
    ngx.header["X-RateLimit-Remaining"] = req.rate.remaining
    ngx.header["X-RateLimit-Reset"] = req.rate.reset
    if req.rate.retry_after then ngx.header["Retry-After"] = req.rate.retry_after end
  end
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  if req.log then req.log.status = status end
  if body == nil then return ngx.exit(status) end
  if type(body) ~= "string" then body = json.encode(body) end
  ngx.header["Content-Type"] = ngx.header["Content-Type"] or "application/json"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

return M
