-- HS256 JSON Web Tokens (RFC 7519) signed with crypto.hmac_sha256.
local crypto = require "moltflow.emulator.crypto"
local json = require "moltflow.emulator.json"

local M = {}

local function b64url(s)
  return (ngx.encode_base64(s):gsub("%+", "-"):gsub("/", "_"):gsub("=+$", ""))
end

local function unb64url(s)
  if not s:match("^[A-Za-z0-9_-]*$") then return nil end
  s = s:gsub("%-", "+"):gsub("_", "/")
  return ngx.decode_base64(s .. string.rep("=", (4 - #s % 4) % 4))
end

local HEADER = b64url(json.encode({ alg = "HS256", typ = "JWT" }))

function M.sign(claims, secret)
  local signing_input = HEADER .. "." .. b64url(json.encode(claims))
  return signing_input .. "." .. b64url(crypto.hmac_sha256(secret, signing_input))
end

-- Returns the claims when the signature and header are valid, else nil and a
-- reason. Expiry and revocation are the caller's business (they need the
-- emulator clock and state).
function M.verify(token, secret)
  local h, p, sig = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
  if not h then return nil, "malformed token" end
  local header = json.decode(unb64url(h) or "")
  if type(header) ~= "table" or header.alg ~= "HS256" then return nil, "unsupported token algorithm" end
  local want = b64url(crypto.hmac_sha256(secret, h .. "." .. p))
  if not crypto.constant_time_equal(want, sig) then return nil, "bad token signature" end
  local claims = json.decode(unb64url(p) or "")
  if type(claims) ~= "table" then return nil, "malformed token" end
  return claims
end

return M
