-- Authentication: access/refresh token issuance and verification, API key
-- lookup. A "principal" is who a request acts as:
--   { kind = "token" | "key", user = <user>, tenant = <tenant>, key = <key>?, claims = <jwt claims>? }
local crypto = require "moltflow.emulator.crypto"
local jwt = require "moltflow.emulator.jwt"
local state = require "moltflow.emulator.state"

local M = {}

M.ACCESS_TTL = 1800               -- 30 minutes, per the contract
M.REFRESH_TTL = 30 * 86400

function M.user_object(u)
  return { id = u.id, email = u.email, full_name = u.full_name, role = u.role,
           tenant_id = u.tenant_id, email_verified = u.email_verified }
end

local function new_refresh_token(session_id)
  local token = "rt_" .. crypto.random_alnum(48)
  state.refresh_tokens[token] = { session_id = session_id, spent = false,
                                  expires = state.now_s() + M.REFRESH_TTL }
  return token
end

local function new_access_token(user, session_id)
  local iat = state.now_s()
  return jwt.sign({ sub = user.id, tenant_id = user.tenant_id, role = user.role, type = "access",
                    iat = iat, exp = iat + M.ACCESS_TTL, jti = crypto.random_hex(16), sid = session_id },
                  state.jwt_secret)
end

-- A fresh login session (login, magic-link verify): the shape of /auth/login.
function M.login_response(user)
  local sid = state.new_id("ses_")
  state.sessions[sid] = { user_id = user.id, revoked = false }
  return { access_token = new_access_token(user, sid), refresh_token = new_refresh_token(sid),
           token_type = "bearer", user = M.user_object(user) }
end

-- Rotation: the presented refresh token is spent, a new pair is issued in the
-- same session. Returns the response or nil, detail.
function M.refresh(token)
  local rt = state.refresh_tokens[token]
  if not rt then return nil, "Invalid refresh token" end
  if rt.spent then return nil, "Refresh token already used" end
  if rt.expires <= state.now_s() then return nil, "Refresh token expired" end
  local session = state.sessions[rt.session_id]
  if not session or session.revoked then return nil, "Session revoked" end
  local user = state.users[session.user_id]
  if not user then return nil, "User not found" end
  rt.spent = true
  return { access_token = new_access_token(user, rt.session_id),
           refresh_token = new_refresh_token(rt.session_id), token_type = "bearer" }
end

-- Logout ends the whole login session: its access tokens (every one names
-- its session: the flag refuses them all) and every refresh token issued in it.
function M.logout(principal, refresh_token)
  local sid = principal.claims.sid
  if state.sessions[sid] then state.sessions[sid].revoked = true end
  local rt = refresh_token and state.refresh_tokens[refresh_token]
  if rt then rt.spent = true end
  for _, r in pairs(state.refresh_tokens) do
    if r.session_id == sid then r.spent = true end
  end
end

local function bearer(token)
  local claims, err = jwt.verify(token, state.jwt_secret)
  if not claims then return nil, "Invalid token: " .. err end
  if claims.type ~= "access" then return nil, "Invalid token type" end
  if type(claims.exp) ~= "number" or claims.exp <= state.now() then return nil, "Token expired" end
  local session = state.sessions[claims.sid]
  if not session or session.revoked then return nil, "Token revoked" end
  local user = state.users[claims.sub]
  if not user or user.tenant_id ~= claims.tenant_id then return nil, "User not found" end
  return { kind = "token", user = user, tenant = state.tenants[user.tenant_id], claims = claims }
end

-- By the SHA-256 of the raw key: a table lookup by hash tells a timing
-- observer nothing about any raw key (it would have to invert the hash).
local function find_key(raw_key)
  return state.key_for_hash(crypto.sha256_hex(raw_key))
end

local function api_key(raw_key)
  local key = find_key(raw_key)
  if not key or not key.is_active then return nil, "Invalid API key" end
  if key.expires_at and key.expires_at <= state.now() then return nil, "API key expired" end
  key.last_used_at = state.now_s()
  key.last_used, key.uses = state.now(), (key.uses or 0) + 1 -- for the control API (rotation specs)
  return { kind = "key", key = key, user = state.users[key.user_id], tenant = state.tenants[key.tenant_id] }
end

-- Returns principal | nil, detail. (nil, nil) means no credentials at all.
-- A bearer token wins when both headers are present.
function M.authenticate(headers)
  local authz = headers["authorization"]
  if authz then
    local token = authz:match("^[Bb]earer%s+(%S+)%s*$")
    if not token then return nil, "Invalid authorization header" end
    return bearer(token)
  end
  local key = headers["x-api-key"]
  if key then return api_key(key) end
  return nil, nil
end

-- `*` grants every scope.
function M.has_scope(key, scope)
  for _, s in ipairs(key.scopes) do
    if s == "*" or s == scope then return true end
  end
  return false
end

return M
