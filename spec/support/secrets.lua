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
  local text = table.concat(M.collect(what), "\n")
  for name, s in pairs(secrets) do
    assert(text:find(s, 1, true) == nil, name .. " leaked: " .. text:sub(1, 300))
  end
end

--- A fresh seal key: 32 random bytes, base64 (what MOLTFLOW_SEAL_KEY holds).
function M.seal_key()
  local p = assert(io.popen("openssl rand -base64 32"))
  local k = p:read("*l")
  p:close()
  return k
end

return M
