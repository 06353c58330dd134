-- FastAPI/pydantic-v1 style validation: collect every problem, then answer
-- 422 {"detail": [{"loc": [...], "msg": ..., "type": ...}, ...]}.
local json = require "moltflow.emulator.json"

local V = {}
V.__index = V

-- `where` is "body" or "query"; `src` the decoded body object or query args.
function V.new(where, src)
  return setmetatable({ where = where, src = src, errors = json.array() }, V)
end

function V:fail(field, msg, typ, index)
  local loc = json.array({ self.where })
  if field then loc[#loc + 1] = field end
  if index then loc[#loc + 1] = index end
  self.errors[#self.errors + 1] = { loc = loc, msg = msg, type = typ }
end

function V:ok()
  return #self.errors == 0
end

local function present(v)
  return v ~= nil and v ~= json.null
end

function V:string(field, required)
  local v = self.src[field]
  if not present(v) then
    if required then self:fail(field, "field required", "value_error.missing") end
    return nil
  end
  if type(v) ~= "string" then return self:fail(field, "str type expected", "type_error.str") end
  return v
end

function V:bool(field)
  local v = self.src[field]
  if not present(v) then return nil end
  if type(v) ~= "boolean" then return self:fail(field, "value could not be parsed to a boolean", "type_error.bool") end
  return v
end

-- A positive integer (JSON number without fraction).
function V:positive_integer(field)
  local v = self.src[field]
  if not present(v) then return nil end
  if type(v) ~= "number" or v ~= math.floor(v) then
    return self:fail(field, "value is not a valid integer", "type_error.integer")
  end
  if v <= 0 then return self:fail(field, "ensure this value is greater than 0", "value_error.number.not_gt") end
  return v
end

function V:enum(field, allowed, required)
  local v = self:string(field, required)
  if v == nil then return nil end
  for _, a in ipairs(allowed) do
    if v == a then return v end
  end
  self:fail(field, "value is not a valid enumeration member; permitted: '" .. table.concat(allowed, "', '") .. "'",
    "type_error.enum")
end

-- A list of strings; `check(item)` may return an error message for an item.
function V:string_list(field, opts)
  local v = self.src[field]
  if not present(v) then
    if opts.required then self:fail(field, "field required", "value_error.missing") end
    return nil
  end
  if not json.is_array(v) then return self:fail(field, "value is not a valid list", "type_error.list") end
  if opts.non_empty and #v == 0 then
    return self:fail(field, "ensure this value has at least 1 items", "value_error.list.min_items")
  end
  local before = #self.errors
  for i, item in ipairs(v) do
    if type(item) ~= "string" then
      self:fail(field, "str type expected", "type_error.str", i - 1)
    elseif opts.check then
      local msg, typ = opts.check(item)
      if msg then self:fail(field, msg, typ, i - 1) end
    end
  end
  if #self.errors > before then return nil end
  return v
end

-- Query parameter integer within [lo, hi], with a default when absent.
function V:query_int(field, default, lo, hi)
  local raw = self.src[field]
  if raw == nil then return default end
  if type(raw) ~= "string" or not raw:match("^[-+]?%d+$") then
    return self:fail(field, "value is not a valid integer", "type_error.integer")
  end
  local n = tonumber(raw)
  if n < lo then
    return self:fail(field, "ensure this value is greater than or equal to " .. lo, "value_error.number.not_ge")
  end
  if n > hi then
    return self:fail(field, "ensure this value is less than or equal to " .. hi, "value_error.number.not_le")
  end
  return n
end

V.E164 = "^%+[1-9]%d%d%d%d%d%d%d?%d?%d?%d?%d?%d?%d?%d?$"

function V.e164_check(s)
  if not s:match(V.E164) then
    return "string does not match regex \"^\\+[1-9]\\d{6,14}$\"", "value_error.str.regex"
  end
end

-- A contact as MoltFlow's GDPR script names it: digits (`972501234567`),
-- `+` digits (E.164) or a WhatsApp chat id (`972501234567@c.us`). Returns
-- the number's digits, so every form of one contact is the same contact.
local CONTACT_DIGITS = "^[1-9]%d%d%d%d%d%d%d?%d?%d?%d?%d?%d?%d?%d?$"

function V.contact_digits(s)
  local digits = s:match("^%+(%d+)$") or s:match("^(%d+)@c%.us$") or s:match("^(%d+)$")
  if digits and digits:match(CONTACT_DIGITS) then return digits end
end

function V:phone(field, required)
  local v = self:string(field, required)
  if v == nil then return nil end
  local digits = V.contact_digits(v)
  if not digits then
    return self:fail(field, "string does not match regex \"^(\\+?[1-9]\\d{6,14}|[1-9]\\d{6,14}@c\\.us)$\"",
                     "value_error.str.regex")
  end
  return v, digits
end

return V
