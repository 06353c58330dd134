-- Spec helper: no secret may appear in anything an SDK call hands back.
--
--   local secrets = require "spec.support.secrets"
--   secrets.assert_clean(values, {password = "..."})  -- every reachable string searched
local M = {}

--- Every string reachable from v: keys, values, tostring() of tables and
-- userdata (so a `__tostring` is searched too), numbers and booleans as text.
function M.collect(v, out, seen)
  out, seen = out or {}, seen or {}
  local t = type(v)
  if t == "string" then
    out[#out + 1] = v
  elseif t == "number" or t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "table" and not seen[v] then
    seen[v] = true
    out[#out + 1] = tostring(v)
    for k, x in pairs(v) do
      M.collect(k, out, seen)
      M.collect(x, out, seen)
    end
  elseif t == "userdata" then
    out[#out + 1] = tostring(v)
  end
  return out, seen
end

--- Fails, naming the secret, when any of `secrets` ({name = value}) occurs in
-- a string reachable from `what`.
function M.assert_clean(what, secrets)
  local strings = M.collect(what)
  for name, s in pairs(secrets) do
    for _, text in ipairs(strings) do
      local at = text:find(s, 1, true)
      -- the failure shows where the secret was, itself masked
      if at then
        error(name .. " leaked, in: " .. text:sub(math.max(1, at - 200), at - 1) .. "<" .. name .. ">"
              .. text:sub(at + #s, at + #s + 200), 2)
      end
    end
  end
end

--- A fresh seal key: 32 random bytes, base64 (what MOLTFLOW_SEAL_KEY holds).
function M.seal_key()
  local p = assert(io.popen("openssl rand -base64 32"))
  local k = p:read("*l")
  p:close()
  -- a missing key would make a store fall back to the default one: a test of nothing
  assert(k and #k == 44, "openssl rand -base64 32 gave no key")
  return k
end

return M
