--- moltflow.transport.ngx.response: the HTTP/1.1 response parser of the ngx
-- transport, over any byte source. Strict where a lenient reading could
-- hand bytes to the wrong caller: a connection goes back to the pool only
-- when its response was framed correctly and read to its last byte. It does
-- no I/O of its own, so the specs run it over a table of raw responses.
--
-- Field lines follow RFC 9112 section 5: a name is a token with no space
-- before its colon; a value holds no control character but HTAB; an
-- obsolete line folding is refused (the API never folds, and a fold read
-- another way is how answers get smuggled); so is a response with both
-- Content-Length and Transfer-Encoding (RFC 9112 6.3), and a chunk size
-- line that is not a size and chunk extensions (7.1.1). The one leniency
-- kept is libcurl's: a bare LF ends a line. Header lines are read in work
-- linear in their length, however slowly they arrive.
-- @module moltflow.transport.ngx.response

local concat = table.concat

local M = {}

local MAX_CHUNK_DIGITS = 15 -- 16^15 is past any max_response_bytes; exact in a double
local MAX_LENGTH_DIGITS = 15
local TOKEN = "[%w!#%$%%&'%*%+%-%.%^_`|~]+"

-- The parser's state: the byte source, the bytes read and not yet used
-- (buf from pos), whether any byte arrived, the header budget left, and the
-- work count (`work.bytes`, for the specs).
local function new_state(fill, max_bytes, work)
  work = work or {}
  work.bytes = work.bytes or 0
  return {fill = fill, buf = "", pos = 1, arrived = false, head_budget = max_bytes, work = work}
end

-- The parser's answer for a failed read.
local function failed(st, err, what)
  if err == "timeout" then return nil, "timeout", "timed out " .. what end
  if err == "too_large" then return nil, "too_large", "response exceeds max_response_bytes" end
  if err == "closed" then return nil, "network", "connection closed " .. what, not st.arrived end
  return nil, "network", what .. ": " .. tostring(err), not st.arrived
end

-- One line without its CR LF (a bare LF is accepted as libcurl does),
-- charged to the header budget. A line that spans pieces is gathered in a
-- list and joined once: every byte is scanned once and copied at most
-- twice, however slowly the line arrives (appending each piece to the
-- buffer would copy the line again for every piece).
local function head_line(st)
  local buf, pos, work = st.buf, st.pos, st.work
  local nl = buf:find("\n", pos, true)
  work.bytes = work.bytes + ((nl or #buf) - pos + 1)
  local line
  if nl then
    line = buf:sub(pos, nl - 1)
    st.head_budget = st.head_budget - (nl - pos + 1)
    if st.head_budget < 0 then return nil, "too_large" end
    st.pos = nl + 1
  else
    local parts, size = {buf:sub(pos)}, #buf - pos + 1
    st.buf, st.pos = "", 1
    while true do
      if size > st.head_budget then return nil, "too_large" end
      local piece, err = st.fill()
      if not piece then return nil, err end
      if piece ~= "" then st.arrived = true end
      nl = piece:find("\n", 1, true)
      work.bytes = work.bytes + (nl or #piece) * 2 -- scanned, and copied into the line
      if nl then
        parts[#parts + 1] = piece:sub(1, nl - 1)
        size = size + nl
        st.buf, st.pos = piece, nl + 1
        break
      end
      parts[#parts + 1] = piece
      size = size + #piece
    end
    st.head_budget = st.head_budget - size
    if st.head_budget < 0 then return nil, "too_large" end
    line = concat(parts)
  end
  if line:sub(-1) == "\r" then line = line:sub(1, -2) end
  return line
end

-- A field line "name: value" of a head or a trailer: name, value (without
-- the spaces around it), or nil and why it is refused.
local function field(line)
  if line:find("^[ \t]") then return nil, "obsolete line folding in the header" end
  local name, value = line:match("^([^:]*):(.*)$")
  if not name then return nil, "malformed header line" end
  if name:find("[ \t]$") then return nil, "whitespace before the colon in a header" end
  if name == "" or name:find("[^%w!#%$%%&'%*%+%-%.%^_`|~]") then return nil, "invalid header name" end
  value = value:match("^[ \t]*(.-)[ \t]*$")
  if value:find("[\1-\8\10-\31\127]") or value:find("\0", 1, true) then
    return nil, "control character in a header value"
  end
  return name, value
end

-- The index after the quoted string that opens at s[i], or nil when it does
-- not close or holds a control character.
local function quoted_end(s, i)
  i = i + 1
  while i <= #s do
    local c = s:byte(i)
    if c == 34 then return i + 1 end -- "
    if (c < 32 and c ~= 9) or c == 127 then return nil end
    i = i + (c == 92 and 2 or 1) -- a backslash quotes the next byte
  end
  return nil
end

-- What follows a chunk size: nothing, or chunk extensions (RFC 9112 7.1.1):
-- *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ), a name
-- being a token. A space with no extension after it, or an empty one, is not.
local function chunk_extensions(rest)
  local at = 1
  while at <= #rest do
    at = rest:match("^[ \t]*;[ \t]*" .. TOKEN .. "()", at)
    if not at then return false end
    local v = rest:match("^[ \t]*=[ \t]*()", at)
    if v then
      at = rest:match("^" .. TOKEN .. "()", v) or (rest:sub(v, v) == '"' and quoted_end(rest, v))
      if not at then return false end
    end
  end
  return true
end

-- Exactly n bytes, or nil and the reason.
local function exactly(st, n)
  local buf, pos = st.buf, st.pos
  local have = #buf - pos + 1
  if have >= n then
    local s = buf:sub(pos, pos + n - 1)
    st.pos = pos + n
    return s
  end
  local parts, got = {buf:sub(pos)}, have
  st.buf, st.pos = "", 1
  while got < n do
    local piece, err = st.fill()
    if not piece then return nil, err end
    if got + #piece > n then
      st.buf = piece:sub(n - got + 1)
      piece = piece:sub(1, n - got)
    end
    parts[#parts + 1] = piece
    got = got + #piece
  end
  return concat(parts)
end

-- Reads one header line into h (after the status line).
local function header(h, line)
  local name, value = field(line)
  if not name then return nil, "network", value end
  name = name:lower()
  if name == "content-length" then
    if not value:match("^%d+$") or #value > MAX_LENGTH_DIGITS then
      return nil, "network", "malformed Content-Length"
    end
    local n = tonumber(value)
    if h.length and h.length ~= n then return nil, "network", "conflicting Content-Length headers" end
    h.length = n
  elseif name == "transfer-encoding" then
    h.te = h.te and (h.te .. ", " .. value) or value
  elseif name == "connection" then
    for token in value:lower():gmatch("[^,%s]+") do
      if token == "close" then h.close = true end
    end
  end
  return true
end

-- The status line and headers of one answer: {status, lines, close, te,
-- length}, or nil, kind, message.
local function head(st)
  local line, err = head_line(st)
  if not line then return failed(st, err, "before the status line") end
  local version, status = line:match("^HTTP/1%.([01]) ([1-9]%d%d)")
  if not status or not (#line == 12 or line:sub(13, 13) == " ") then
    -- kind network, as libcurl's (src/http.c): no more known than after a cut answer
    return nil, "network",
           "malformed answer, not HTTP (malformed status line): the server may have acted on the request"
  end
  local h = {status = tonumber(status), lines = {line}, close = version == "0", te = nil}
  while true do
    line, err = head_line(st)
    if not line then return failed(st, err, "in the headers") end
    if line == "" then
      if h.length and h.te then return nil, "network", "both Content-Length and Transfer-Encoding" end
      return h
    end
    h.lines[#h.lines + 1] = line
    local ok, kind, message = header(h, line)
    if not ok then return nil, kind, message end
  end
end

-- A chunked body and its trailer: the body, or nil, kind, message.
local function chunked_body(st, max_bytes)
  local parts, size = {}, 0
  local line, err
  while true do
    line, err = head_line(st)
    if not line then return failed(st, err, "in the chunked body") end
    local hex, rest = line:match("^(%x+)(.*)$")
    if not hex or #hex > MAX_CHUNK_DIGITS or not chunk_extensions(rest) then
      return nil, "network", "malformed chunk size"
    end
    local n = tonumber(hex, 16)
    if n == 0 then break end
    size = size + n
    if size > max_bytes then return failed(st, "too_large") end
    local data
    data, err = exactly(st, n)
    if not data then return failed(st, err, "in the chunked body") end
    parts[#parts + 1] = data
    local crlf
    crlf, err = exactly(st, 1)
    if crlf == "\r" then crlf, err = exactly(st, 1) end
    if not crlf then return failed(st, err, "in the chunked body") end
    if crlf ~= "\n" then return nil, "network", "missing CRLF after a chunk" end
  end
  while true do -- trailer fields, up to the empty line
    line, err = head_line(st)
    if not line then return failed(st, err, "in the trailer") end
    if line == "" then break end
    local name, why = field(line)
    if not name then return nil, "network", why .. " (trailer)" end
  end
  return concat(parts)
end

-- A body without a length: it ends when the server closes; counted as it
-- arrives. The body, or nil, kind, message.
local function body_to_close(st, max_bytes)
  local parts, size = {st.buf:sub(st.pos)}, #st.buf - st.pos + 1
  st.buf, st.pos = "", 1
  if size > max_bytes then return failed(st, "too_large") end
  while true do
    local piece, err = st.fill()
    if not piece then
      if err == "closed" then break end
      return failed(st, err, "in the body")
    end
    size = size + #piece
    if size > max_bytes then return failed(st, "too_large") end
    parts[#parts + 1] = piece
  end
  return concat(parts)
end

--- Parses one response from the byte source `fill()`, which returns the
-- next piece of bytes, or nil and "closed", "timeout" or another reason.
-- `max_bytes` bounds the body and, separately, the header blocks (interim
-- answers included), as they arrive. `work` (optional, for the specs)
-- counts in `work.bytes` the bytes the header lines' reading scanned and
-- copied.
-- @return status, raw head, body, reusable; or nil, kind ("network",
--   "timeout", "too_large"), message, nothing_arrived
function M.read(fill, max_bytes, head_only, work)
  local st = new_state(fill, max_bytes, work)
  local h, kind, message
  repeat
    h, kind, message = head(st)
    if not h then return nil, kind, message, kind == "network" and not st.arrived end
    -- 1xx answers are interim (100 Continue, 103 Early Hints): the real one follows.
    if h.status == 101 then return nil, "network", "unexpected 101 Switching Protocols" end
  until h.status >= 200
  local status, raw = h.status, concat(h.lines, "\r\n") .. "\r\n\r\n"
  local function reusable() return not h.close and st.pos > #st.buf end

  if head_only or status == 204 or status == 304 then return status, raw, "", reusable() end

  local body, nothing_arrived
  if h.te then
    if h.te:lower() ~= "chunked" then return nil, "network", "unsupported Transfer-Encoding" end
    body, kind, message, nothing_arrived = chunked_body(st, max_bytes)
    if not body then return nil, kind, message, nothing_arrived end
    return status, raw, body, reusable()
  end

  if h.length then
    if h.length > max_bytes then return failed(st, "too_large") end
    local err
    body, err = exactly(st, h.length)
    if not body then return failed(st, err, "in the body") end
    return status, raw, body, reusable()
  end

  body, kind, message, nothing_arrived = body_to_close(st, max_bytes)
  if not body then return nil, kind, message, nothing_arrived end
  return status, raw, body, false
end

return M
