-- Minimal JSON codec for the emulator.
--
-- Why not lua-cjson: Debian's 2.1.0 encodes every empty table as `{}`, but the
-- contract needs `[]` for empty `scopes`, `allowed_numbers` and key lists.
-- Here arrays carry a marker metatable (json.array), `null` is a sentinel
-- (json.null) so validators can tell "absent" from "null", and object keys are
-- emitted sorted so responses are byte-stable.
local json = {}

local array_mt = { __jsontype = "array" }
json.null = setmetatable({}, { __tostring = function() return "null" end })

-- Mark (or create) a table as a JSON array, so it encodes as [] when empty.
function json.array(t)
  return setmetatable(t or {}, array_mt)
end

function json.is_array(v)
  return type(v) == "table" and getmetatable(v) == array_mt
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

-- Control characters are U+0000..U+001F; DEL (0x7F) is an ordinary character
-- in JSON. (%c would include DEL; %z is \0 under Lua 5.1.)
local CONTROL = '[%z\1-\31"\\]'

local function encode_string(s)
  return '"' .. s:gsub(CONTROL, function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local encode_value

-- The shortest of %.15g..%.17g that reads back as the same double.
local function shortest_float(v)
  for digits = 15, 16 do
    local s = string.format("%." .. digits .. "g", v)
    if tonumber(s) == v then return s end
  end
  return string.format("%.17g", v)
end

-- A table is an array when marked (json.array) or when its keys are exactly
-- 1..n; an object when every key is a string. Anything else (mixed, sparse)
-- raises rather than losing entries.
local function encode_table(t, out)
  local count, strings = 0, 0
  for k in pairs(t) do
    count = count + 1
    if type(k) == "string" then strings = strings + 1 end
  end
  local n = #t
  local array = getmetatable(t) == array_mt or (count > 0 and strings == 0)
  if array then
    if count ~= n or (n > 0 and t[n] == nil) then error("json: cannot encode a mixed or sparse table") end
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = "," end
      encode_value(t[i], out)
    end
    out[#out + 1] = "]"
    return
  end
  if strings ~= count then error("json: cannot encode a mixed or sparse table") end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = encode_string(k)
    out[#out + 1] = ":"
    encode_value(t[k], out)
  end
  out[#out + 1] = "}"
end

function encode_value(v, out)
  local tv = type(v)
  if v == nil or v == json.null then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = tostring(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then error("json: cannot encode " .. tostring(v)) end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = shortest_float(v)
    end
  elseif tv == "string" then
    out[#out + 1] = encode_string(v)
  elseif tv == "table" then
    encode_table(v, out)
  else
    error("json: cannot encode " .. tv)
  end
end

function json.encode(v)
  local out = {}
  encode_value(v, out)
  return table.concat(out)
end

-- Decoder: strict RFC 8259 (no trailing commas, no comments, no trailing data).
local decode_value

local function skip_ws(s, i)
  return s:find("[^ \t\r\n]", i) or #s + 1
end

local function decode_error(_, i, what)
  error({ json_error = string.format("%s at byte %d", what, i) }, 0)
end

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40) end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return string.char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
    0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local simple_escapes = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }

local function decode_string(s, i)
  local parts, pos = {}, i + 1
  while true do
    local j = s:find(CONTROL, pos)
    if not j then decode_error(s, i, "unterminated string") end
    parts[#parts + 1] = s:sub(pos, j - 1)
    local c = s:sub(j, j)
    if c == '"' then return table.concat(parts), j + 1 end
    if c ~= "\\" then decode_error(s, j, "control character in string") end
    local e = s:sub(j + 1, j + 1)
    if simple_escapes[e] then
      parts[#parts + 1] = simple_escapes[e]
      pos = j + 2
    elseif e == "u" then
      local hex = s:match("^%x%x%x%x", j + 2)
      if not hex then decode_error(s, j, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      pos = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = s:match("^\\u(%x%x%x%x)", pos)
        local lo_cp = lo and tonumber(lo, 16)
        if not lo_cp or lo_cp < 0xDC00 or lo_cp > 0xDFFF then decode_error(s, j, "lone surrogate") end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo_cp - 0xDC00)
        pos = pos + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        decode_error(s, j, "lone surrogate")
      end
      parts[#parts + 1] = utf8_char(cp)
    else
      decode_error(s, j, "bad escape")
    end
  end
end

local literals = { ["true"] = true, ["false"] = false }

function decode_value(s, i)
  i = skip_ws(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local obj = {}
    i = skip_ws(s, i + 1)
    if s:sub(i, i) == "}" then return obj, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then decode_error(s, i, "expected object key") end
      local key
      key, i = decode_string(s, i)
      i = skip_ws(s, i)
      if s:sub(i, i) ~= ":" then decode_error(s, i, "expected ':'") end
      obj[key], i = decode_value(s, i + 1)
      i = skip_ws(s, i)
      local d = s:sub(i, i)
      if d == "}" then return obj, i + 1 end
      if d ~= "," then decode_error(s, i, "expected ',' or '}'") end
      i = skip_ws(s, i + 1)
    end
  elseif c == "[" then
    local arr = json.array()
    i = skip_ws(s, i + 1)
    if s:sub(i, i) == "]" then return arr, i + 1 end
    while true do
      arr[#arr + 1], i = decode_value(s, i)
      i = skip_ws(s, i)
      local d = s:sub(i, i)
      if d == "]" then return arr, i + 1 end
      if d ~= "," then decode_error(s, i, "expected ',' or ']'") end
      i = i + 1
    end
  elseif c == '"' then
    return decode_string(s, i)
  elseif c == "-" or c:match("%d") then
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not num then decode_error(s, i, "bad number") end
    local valid = num:match("^-?0$") or num:match("^-?0[.eE]") or num:match("^-?[1-9]")
    if not valid or not tonumber(num) or num:match("%.$") or num:match("%.[eE]") or num:match("%d[-+]") then
      decode_error(s, i, "bad number")
    end
    return tonumber(num), i + #num
  else
    for word, value in pairs(literals) do
      if s:sub(i, i + #word - 1) == word then return value, i + #word end
    end
    if s:sub(i, i + 3) == "null" then return json.null, i + 4 end
    decode_error(s, i, "unexpected character")
  end
end

-- Returns value or nil, error message. Arrays come back marked (json.is_array).
function json.decode(s)
  local ok, value, pos = pcall(decode_value, s, 1)
  if not ok then
    if type(value) == "table" and value.json_error then return nil, value.json_error end
    error(value, 0)
  end
  if skip_ws(s, pos) <= #s then return nil, "trailing data at byte " .. pos end
  return value
end

return json
