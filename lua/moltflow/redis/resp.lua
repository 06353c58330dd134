--- moltflow.redis.resp: the RESP2 codec of moltflow.redis, bounded, with
-- no socket of its own: a command's encoding, and one reply decoded through
-- a chunk reader under one deadline and the limits moltflow.redis documents.
-- Failures are `nil, err` with `err.kind` and `err.message` (`error_mt`).
-- @module moltflow.redis.resp

local M = {}

M.LIMITS = {max_bulk = 1024 * 1024, max_array = 1024, max_depth = 8, max_line = 64 * 1024,
            max_reply = 4 * 1024 * 1024}

local error_mt = {__tostring = function(e) return "moltflow.redis: " .. e.message end}
M.error_mt = error_mt

--- nil and an error of `kind` (see moltflow.redis) saying `message`.
local function fail(kind, message)
  return nil, setmetatable({kind = kind, message = message}, error_mt)
end
M.fail = fail

--- The RESP encoding of a command (an array of bulk strings).
-- @param argv the command and its arguments (strings or numbers)
-- @treturn string
function M.encode(argv)
  local out = {"*" .. #argv .. "\r\n"}
  for i = 1, #argv do
    local s = tostring(argv[i])
    out[#out + 1] = "$" .. #s .. "\r\n" .. s .. "\r\n"
  end
  return table.concat(out)
end

local server_error_mt = {__tostring = function(e) return e.message end}

--- Whether a reply is a Redis error reply.
function M.is_server_error(v)
  return type(v) == "table" and getmetatable(v) == server_error_mt
end

-- A reply reader over `read(max, deadline)` (returns a non-empty chunk, or
-- nil and a kind and message), bounded by `limits` and one `deadline`.
local Reader = {}
Reader.__index = Reader

local function new_reader(read, limits, deadline)
  return setmetatable({read = read, limits = limits, deadline = deadline, buf = "", pos = 1,
                       budget = limits.max_reply}, Reader)
end

function Reader:fill()
  local chunk, kind, message = self.read(65536, self.deadline)
  if not chunk then return fail(kind, message) end
  if self.pos > 1 then
    self.buf, self.pos = self.buf:sub(self.pos), 1
  end
  self.buf = self.buf .. chunk
  return true
end

function Reader:spend(n)
  self.budget = self.budget - n
  if self.budget < 0 then
    return fail("too_large", ("the reply is longer than max_reply (%d bytes)"):format(self.limits.max_reply))
  end
  return true
end

function Reader:line_too_long()
  return fail("too_large", ("a reply line is longer than max_line (%d bytes)"):format(self.limits.max_line))
end

-- One line, without its CRLF (at most max_line bytes, however it arrives).
function Reader:line()
  local from = self.pos
  while true do
    local e = self.buf:find("\r\n", from, true)
    if e then
      if e - self.pos > self.limits.max_line then return self:line_too_long() end
      local line = self.buf:sub(self.pos, e - 1)
      self.pos = e + 2
      local ok, err = self:spend(#line + 2)
      if not ok then return nil, err end
      return line
    end
    local pending = #self.buf - self.pos + 1
    if pending > self.limits.max_line then return self:line_too_long() end
    local searched = math.max(0, #self.buf - self.pos) -- from the last byte: a CR may end the buffer
    local ok, err = self:fill() -- (which may move the unread bytes to the buffer's start)
    if not ok then return nil, err end
    from = self.pos + searched
  end
end

-- Exactly n bytes (n already checked against the limits).
function Reader:bytes(n)
  local ok, err = self:spend(n)
  if not ok then return nil, err end
  local have = #self.buf - self.pos + 1
  if have >= n then
    local s = self.buf:sub(self.pos, self.pos + n - 1)
    self.pos = self.pos + n
    return s
  end
  local parts, total = {self.buf:sub(self.pos)}, have
  self.buf, self.pos = "", 1
  while total < n do
    local chunk, kind, message = self.read(math.min(65536, n - total), self.deadline)
    if not chunk then return fail(kind, message) end
    parts[#parts + 1] = chunk
    total = total + #chunk
  end
  local all = table.concat(parts)
  self.buf = all:sub(n + 1)
  return all:sub(1, n)
end

-- A length (of a bulk string or an array): -1 (null) or 0..limit.
local function length(text, limit, what, name)
  if not text:match("^%-?%d+$") or #text > 12 then return fail("protocol", "malformed " .. what .. " length") end
  local n = tonumber(text)
  if n < -1 then return fail("protocol", "malformed " .. what .. " length") end
  if n > limit then
    return fail("too_large", ("a %s of %d is over %s (%d)"):format(what, n, name, limit))
  end
  return n
end

local function parse(r, depth)
  local line, err = r:line()
  if not line then return nil, err end
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then return rest end
  if kind == "-" then return setmetatable({message = rest}, server_error_mt) end
  if kind == ":" then
    if not rest:match("^%-?%d+$") or #rest > 20 then return fail("protocol", "malformed integer reply") end
    local n = tonumber(rest)
    return math.tointeger and math.tointeger(n) or n
  end
  if kind == "$" then
    local n, lerr = length(rest, r.limits.max_bulk, "bulk string", "max_bulk")
    if not n then return nil, lerr end
    if n < 0 then return false end
    local data, derr = r:bytes(n + 2)
    if not data then return nil, derr end
    if data:sub(-2) ~= "\r\n" then return fail("protocol", "a bulk string does not end with CRLF") end
    return data:sub(1, n)
  end
  if kind == "*" then
    local n, lerr = length(rest, r.limits.max_array, "array", "max_array")
    if not n then return nil, lerr end
    if n < 0 then return false end
    if depth >= r.limits.max_depth then
      return fail("too_large", ("arrays nested deeper than max_depth (%d)"):format(r.limits.max_depth))
    end
    local list = {}
    for i = 1, n do
      local v, verr = parse(r, depth + 1)
      if v == nil then return nil, verr end
      list[i] = v
    end
    return list
  end
  return fail("protocol", "malformed reply")
end

--- Reads one reply through `read(max, deadline)`, a function returning a
-- non-empty chunk of at most `max` bytes, or nil, kind, message (at the
-- deadline: "timeout"). Returns the reply (false for a null, a table with
-- `message` for a Redis error reply), or nil and an error.
-- @param read the chunk reader
-- @param deadline monotonic seconds
-- @param limits optional, see `M.LIMITS`
function M.decode(read, deadline, limits)
  local r = new_reader(read, limits or M.LIMITS, deadline)
  local v, err = parse(r, 0)
  if v == nil then return nil, err end
  -- one command at a time: more bytes would be a reply to nothing
  if r.pos <= #r.buf then return fail("protocol", "bytes after the reply") end
  return v
end

return M
