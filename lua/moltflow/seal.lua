--- moltflow.seal: the seal key of the token stores (tokens sealed at rest).
-- A store given a seal key writes its tokens as authenticated ciphertext
-- (AES-256-GCM in the C core: `core.seal`, a random nonce per write, a key
-- id) and reads back only what the key opens. Without a key, or with the
-- wrong one, or after tampering, the store holds no tokens for this process:
-- one warning, never a crash, never the plaintext.
--
--   local sealer = seal.from_options(opts, "moltflow.redis_store")
--   -- opts.seal_key: 32 random bytes in base64 (default: $MOLTFLOW_SEAL_KEY); false: no sealing
--   -- opts.old_seal_keys: keys being retired, still read (default: $MOLTFLOW_OLD_SEAL_KEYS,
--   --                     comma separated); a value they open is sealed again with seal_key
--   --                     at its next save
--   local text = sealer:seal(json)          local json, err = sealer:unseal(text)
--
-- Make a key with `openssl rand -base64 32`. The keys stay in closures: no
-- field, error or tostring shows them. Like lua-resty-session (AES-256-GCM
-- over the session data, `secret_fallbacks` for rotation), but each value
-- names its key's id, so a reader picks the key instead of trying them all.
-- @module moltflow.seal

local core = require "moltflow.core"

local M = {}

-- The additional data binds a sealed value to what it holds: tokens cannot
-- be swapped for an API key record or a rotation's state.
local function aad(purpose) return "moltflow " .. (purpose or "tokens") end

local error_mt = {__tostring = function(e) return "moltflow.seal: " .. e.message end}
local function seal_error(message)
  return setmetatable({kind = "seal", message = message}, error_mt)
end

-- The 32 bytes of a base64 (or base64url) key, or nil.
local function decode_key(text)
  if type(text) ~= "string" then return nil end
  text = text:gsub("%s+", "")
  local ok, raw = pcall(core.base64url_decode, text)
  if ok and type(raw) == "string" and #raw == 32 then return raw end
  return nil
end

--- Whether `text` is a sealed value (of any key).
function M.is_sealed(text)
  return type(text) == "string" and text:match("^v1%.%x%x%x%x%x%x%x%x%.") ~= nil
end

--- A sealer for a store's options, or nil when no seal key is set.
-- @param opts the store's options (`seal_key`, `old_seal_keys`)
-- @param fn the store's name, for error messages
-- @param level the error level for a bad option (default 3: the store's caller)
-- @raise when a key is not 32 bytes in base64 (naming the field, never the value)
function M.from_options(opts, fn, level)
  level = (level or 3) + 1
  opts = opts or {}
  local main, field = opts.seal_key, "seal_key"
  if main == false then return nil end
  if main == nil then main, field = os.getenv("MOLTFLOW_SEAL_KEY"), "MOLTFLOW_SEAL_KEY" end
  if main == nil or main == "" then return nil end
  local key = decode_key(main)
  if not key then error(("%s: %s must be 32 bytes in base64 (openssl rand -base64 32)"):format(fn, field), level) end
  local old = opts.old_seal_keys
  local old_field = "old_seal_keys"
  if old == nil then
    old, old_field = {}, "MOLTFLOW_OLD_SEAL_KEYS"
    for item in (os.getenv("MOLTFLOW_OLD_SEAL_KEYS") or ""):gmatch("[^,%s]+") do old[#old + 1] = item end
  elseif type(old) ~= "table" then
    error(("%s: field 'old_seal_keys' must be a list of keys"):format(fn), level)
  end
  local keys = {[core.seal_key_id(key)] = key}
  for i, text in ipairs(old) do
    local k = decode_key(text)
    if not k then
      error(("%s: %s[%d] must be 32 bytes in base64"):format(fn, old_field, i), level)
    end
    keys[core.seal_key_id(k)] = keys[core.seal_key_id(k)] or k
  end
  local id = core.seal_key_id(key)
  local sealer = {key_id = id}

  --- Seals `plaintext` with the current key (`purpose`: "tokens" by default).
  function sealer.seal(_, plaintext, purpose)
    local text, err = core.seal(key, plaintext, aad(purpose))
    if not text then return nil, seal_error(err) end
    return text
  end

  --- Opens a sealed value: the plaintext and whether an old key opened it;
  -- or nil and an error of kind "seal" (not sealed, an unknown key, tampered).
  function sealer.unseal(_, text, purpose)
    if not M.is_sealed(text) then
      return nil, seal_error(("the store holds %s that are not sealed, and this process has a seal key: "
                              .. "ignored (write them again to replace them)"):format(purpose or "tokens"))
    end
    local kid = text:sub(4, 11)
    local k = keys[kid]
    if not k then
      return nil, seal_error(("the stored %s are sealed with key id %s, which this process does not have "
                              .. "(seal_key is %s)"):format(purpose or "tokens", kid, id))
    end
    local plain, err = core.unseal(k, text, aad(purpose))
    if not plain then
      return nil, seal_error(("the stored %s cannot be opened: %s"):format(purpose or "tokens", err))
    end
    return plain, kid ~= id
  end

  return setmetatable(sealer, {__tostring = function() return "moltflow.seal(key id " .. id .. ")" end,
                               __metatable = false})
end

--- The stored text of a tokens table: JSON, sealed when `sealer` is set.
function M.encode(sealer, json, purpose)
  if sealer then return sealer:seal(json, purpose) end
  return json
end

--- The JSON of a stored text: unsealed when `sealer` is set; nil and an
-- error of kind "seal" when it cannot be (see `sealer.unseal`), or when it is
-- sealed and this process has no key. The second value on success: whether
-- the text should be sealed again (an old key opened it).
function M.decode(sealer, text, purpose)
  if sealer then return sealer:unseal(text, purpose) end
  if M.is_sealed(text) then
    return nil, seal_error(("the stored %s are sealed and this process has no seal key "
                            .. "(set seal_key or MOLTFLOW_SEAL_KEY)"):format(purpose or "tokens"))
  end
  return text, false
end

return M
