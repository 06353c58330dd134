-- Fault injection: specs register faults through POST /_emulator/faults and
-- the next matching API requests are answered (or mis-answered) by them.
local json = require "moltflow.emulator.json"
local response = require "moltflow.emulator.response"
local state = require "moltflow.emulator.state"

local M = {}

local BASE = "/api/v2"

-- Checked at registration so a typo in a spec fails loudly instead of
-- silently registering a no-op fault.
local FIELDS = {
  method = "string", path = "string", times = "number", status = "number", body = "string",
  content_type = "string", headers = "table", retry_after = "number", delay = "number", drop = "boolean",
  reset_mid_body = "boolean", truncate = "boolean", malformed = "boolean", oversize = "number",
  invalid_utf8 = "boolean", trickle = "number", redirect = "string",
}

-- Returns the stored fault or nil, error message.
function M.register(spec)
  if type(spec) ~= "table" or json.is_array(spec) then return nil, "fault must be a JSON object" end
  for k, v in pairs(spec) do
    if not FIELDS[k] then return nil, "unknown fault field: " .. k end
    if type(v) ~= FIELDS[k] then return nil, "fault field " .. k .. " must be a " .. FIELDS[k] end
  end
  local fault = {}
  for k, v in pairs(spec) do fault[k] = v end
  fault.times = fault.times or 1
  if fault.times < 1 or fault.times ~= math.floor(fault.times) then return nil, "times must be an integer >= 1" end
  if fault.status and (fault.status < 100 or fault.status > 599 or fault.status ~= math.floor(fault.status)) then
    return nil, "status must be an HTTP status code"
  end
  for _, k in ipairs({ "delay", "retry_after" }) do
    if fault[k] and fault[k] < 0 then return nil, k .. " must be >= 0" end
  end
  for _, k in ipairs({ "oversize", "trickle" }) do
    if fault[k] and fault[k] <= 0 then return nil, k .. " must be > 0" end
  end
  -- Accept the full path too, but match on the path after /api/v2.
  if fault.path and fault.path:sub(1, #BASE + 1) == BASE .. "/" then fault.path = fault.path:sub(#BASE + 1) end
  if fault.method then fault.method = fault.method:upper() end
  state.faults[#state.faults + 1] = fault
  return fault
end

-- The first registered fault matching the request, consumed once.
function M.take(method, path)
  for i, f in ipairs(state.faults) do
    if (not f.method or f.method == method) and (not f.path or f.path == path) then
      f.times = f.times - 1
      if f.times == 0 then table.remove(state.faults, i) end
      return f
    end
  end
end

-- Faults that replace the answer entirely (the API handler never runs, so no
-- state changes). The rest (delay, trickle, truncate, reset_mid_body alone)
-- distort the real answer.
function M.answers_itself(f)
  return f.drop or f.status or f.body or f.malformed or f.oversize or f.invalid_utf8
    or f.redirect or f.retry_after
end

local REASONS = { [200] = "OK", [201] = "Created", [204] = "No Content", [302] = "Found",
                  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
                  [405] = "Method Not Allowed", [409] = "Conflict", [422] = "Unprocessable Entity",
                  [429] = "Too Many Requests", [500] = "Internal Server Error", [502] = "Bad Gateway",
                  [503] = "Service Unavailable", [504] = "Gateway Timeout" }

-- Write a response straight onto the connection, bypassing nginx's HTTP
-- framing: the only way to send a lying Content-Length or an unterminated
-- chunked body. nginx closes a raw-socket connection when the handler ends.
local function raw_send(req, status, headers, payload)
  local sock = assert(ngx.req.socket(true))
  local lines = { string.format("HTTP/1.1 %d %s", status, REASONS[status] or "Status") }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  lines[#lines + 1] = "X-Request-Id: " .. req.id
  lines[#lines + 1] = "Connection: close"
  sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. payload)
  return ngx.exit(ngx.OK)
end

local function oversize_body(n)
  -- Valid JSON of exactly n bytes: {"data":"xxx..."}
  return '{"data":"', math.max(0, n - 11), '"}'
end

-- Answer `req` under fault `f`. status/body/headers are the real answer when
-- the fault distorts it (nil when the fault answers itself).
function M.apply(req, f, status, body, headers)
  local send = response.send
  if f.drop then
    req.log.status = 444
    return ngx.exit(444)
  end
  headers = headers or {}
  if M.answers_itself(f) then
    status = f.status or (f.redirect and 302) or (f.retry_after and 429) or 200
    if f.body then
      body = f.body
    elseif f.malformed then
      body = '{"detail": "this is not valid JSON'
    elseif f.invalid_utf8 then
      body = '{"detail": "invalid \255\254 bytes"}'
    elseif f.redirect then
      body = { detail = "Found" }
    elseif not f.oversize then
      body = { detail = "Injected fault" }
    end
  end
  if f.retry_after then headers["Retry-After"] = f.retry_after end
  if f.redirect then headers["Location"] = f.redirect end
  if f.content_type then headers["Content-Type"] = f.content_type end
  for k, v in pairs(f.headers or {}) do headers[k] = v end
  if type(body) == "table" then body = json.encode(body) end

  if f.oversize then
    req.log.status = status
    ngx.status = status
    ngx.header["X-Request-Id"] = req.id
    ngx.header["Content-Type"] = headers["Content-Type"] or "application/json"
    for k, v in pairs(headers) do ngx.header[k] = v end
    ngx.header["Content-Length"] = math.max(11, f.oversize)
    local head, n, tail = oversize_body(f.oversize)
    ngx.print(head)
    local chunk = string.rep("x", 65536)
    while n > 0 do
      ngx.print(n >= #chunk and chunk or chunk:sub(1, n))
      n = n - #chunk
      local ok = ngx.flush(true)
      if not ok then return ngx.exit(ngx.OK) end -- client went away
    end
    ngx.print(tail)
    return ngx.exit(ngx.OK)
  end

  if f.truncate or f.reset_mid_body then
    req.log.status = status
    body = body or ""
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
    local half = body:sub(1, math.floor(#body / 2))
    if f.truncate then
      headers["Content-Length"] = #body + 1
      return raw_send(req, status, headers, half)
    end
    headers["Transfer-Encoding"] = "chunked"
    return raw_send(req, status, headers, string.format("%x\r\n%s\r\n", #half, half))
  end

  if f.trickle and body then
    req.log.status = status
    ngx.status = status
    ngx.header["X-Request-Id"] = req.id
    ngx.header["Content-Type"] = "application/json"
    for k, v in pairs(headers) do ngx.header[k] = v end
    ngx.header["Content-Length"] = #body
    -- Ten slices a second at the requested bytes per second.
    local step = math.max(1, math.floor(f.trickle / 10))
    for i = 1, #body, step do
      ngx.print(body:sub(i, i + step - 1))
      if not ngx.flush(true) then return ngx.exit(ngx.OK) end
      if i + step <= #body then ngx.sleep(step / f.trickle) end
    end
    return ngx.exit(ngx.OK)
  end

  return send(req, status, body, headers)
end

return M
