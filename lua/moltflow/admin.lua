--- moltflow.admin: the MoltFlow admin API for Lua.
-- Every endpoint of `moltflow.endpoints` becomes a method (`c.api_keys:create{...}`);
-- the C core (`moltflow.core`) builds requests, performs them with libcurl and
-- reads responses. This module is the facade: the client (`admin.new`,
-- moltflow.client) adds tokens, retries, hooks and pacing; here are the
-- loops, batches, JSON and hash helpers, token stores and transports.
-- @module moltflow.admin

local core = require("moltflow.compat").require_core()
local endpoints = require "moltflow.endpoints"
local errors = require "moltflow.errors"
local tokens = require "moltflow.tokens"
local client = require "moltflow.client"
local methods = require "moltflow.client.methods"
local transport = require "moltflow.transport"
local helpers = require "moltflow.helpers"
local batch = require "moltflow.async.batch"
local key_rotation = require "moltflow.key_rotation"

local admin = {
  VERSION = core.version,
  --- JSON null, in both directions (the same sentinel as lua-cjson's).
  null = core.null,
  endpoints = endpoints,
}

--- Marks a table as a JSON array, so that an empty one goes out as `[]`.
-- Tables decoded from JSON arrays carry the same mark: lua-cjson's
-- `array_mt` when the loaded cjson has one (OpenResty's), so that
-- `cjson.encode` writes them as arrays too.
-- @param t a table (default: a new one)
-- @return t
-- @raise when `t` is neither a table nor nil
function admin.array(t)
  if t ~= nil and type(t) ~= "table" then error("moltflow.array: 't' must be a table or nil", 2) end
  return core.json_array(t)
end

--- Encodes a value as JSON with the core's codec: integers stay integers,
-- `admin.null` is `null`, tables marked by `admin.array` (or decoded from
-- arrays) are arrays.
-- @function admin.json_encode
-- @param v the value
-- @treturn string the JSON text
-- @raise on a value JSON cannot hold (a function, a userdata, a cycle)
admin.json_encode = core.json_encode
--- Decodes JSON text: arrays come back marked as arrays, `null` as `admin.null`.
-- @function admin.json_decode
-- @tparam string text the JSON text
-- @return the value
-- @return[2] nil and a message for malformed JSON
admin.json_decode = core.json_decode

--- Lower-case hex SHA-256 of a string (OpenSSL).
-- @function admin.sha256
-- @tparam string s the data
-- @treturn string 64 hex digits
admin.sha256 = core.sha256
--- Lower-case hex HMAC-SHA256 (OpenSSL).
-- @function admin.hmac_sha256
-- @tparam string key the secret
-- @tparam string s the data
-- @treturn string 64 hex digits
admin.hmac_sha256 = core.hmac_sha256

--- The hash the server stores for a raw API key: SHA-256, lower-case hex.
-- @param raw_key the `raw_key` returned by create or rotate
-- @treturn string 64 hex digits, as `key_hash` on the server
-- @raise when `raw_key` is not a string
function admin.key_fingerprint(raw_key)
  if type(raw_key) ~= "string" then error("moltflow.key_fingerprint: 'raw_key' must be a string", 2) end
  return core.sha256(raw_key)
end

--- Verifies an `X-Webhook-Signature` (HMAC-SHA256 of the raw body, hex) in
-- constant time.
-- @tparam string secret the webhook's secret
-- @tparam string body the raw request body, as received
-- @param signature the header's value (hex, `sha256=` prefix allowed); a non-string gives false
-- @return true or false
-- @raise when `secret` or `body` is not a string
function admin.verify_signature(secret, body, signature)
  if type(secret) ~= "string" then error("moltflow.verify_signature: 'secret' must be a string", 2) end
  if type(body) ~= "string" then error("moltflow.verify_signature: 'body' must be a string", 2) end
  if type(signature) ~= "string" then return false end
  signature = signature:gsub("^sha256=", ""):lower()
  return core.equal(core.hmac_sha256(secret, body), signature)
end

--- The claims of a JWT, decoded without verifying the signature.
-- @function admin.jwt_claims
-- @tparam string token the JWT
-- @return a table, or nil and a message
admin.jwt_claims = core.jwt_claims

--- Writes a file only its owner can read (mode 0600), atomically: a new file
-- under an unpredictable name beside `path` (`O_EXCL`), every write checked,
-- synced, then renamed over `path` (a link at `path` is replaced, never
-- written through). No shell is run.
-- @function admin.write_private
-- @tparam string path the file
-- @tparam string data its content
-- @return true, or nil and a message (the old file, if any, is kept)
admin.write_private = core.sys.write_private


--- Makes an error table of the SDK's shape (for transports written in Lua),
-- with the core's own constructor: every error, C or Lua, is made there.
-- @function admin.error
-- @tparam table fields `kind` and `message` (strings), and any of `status`,
--   `method`, `path`, `attempts` (default 1), `retry_after`, `rate_limit`,
--   `connect_failed`
-- @return a new error table with the `moltflow.error` metatable (`__tostring`)
-- @raise when `kind` or `message` is missing or not a string
admin.error = errors.new

--- Whether a value is an error returned by this SDK.
-- @function admin.is_error
-- @param v any value
-- @treturn boolean
admin.is_error = errors.is_error

-- ---------------------------------------------------------- token stores

--- A token store keeping tokens in memory (the default); it can be shared.
-- A store has `store:load()`, `store:save(tokens_or_nil)` and optionally
-- `store:try_lock(ttl)` and `store:unlock(handle)` (moltflow.tokens).
-- @function admin.memory_store
-- @return a store for the `token_store` option
admin.memory_store = tokens.memory_store

--- A token store in a private file (mode 0600, atomic saves, an fcntl lock):
-- `moltflow.file_store.new`.
-- @function admin.file_store
admin.file_store = require("moltflow.file_store").new

--- Tokens and the rate budget shared through Redis by every process on
-- every host: `moltflow.redis_store.new`.
-- @function admin.redis_store
admin.redis_store = require("moltflow.redis_store").new

--- Tokens shared by every nginx worker through a `lua_shared_dict`:
-- `moltflow.shdict_store.new`.
-- @function admin.shdict_store
admin.shdict_store = require("moltflow.shdict_store").new

--- Rotates the API key a fleet takes from a store (`admin.new{api_key_store
-- = store}`): create -> publish -> drain -> revoke, safe to run again after
-- a stop at any step (`moltflow.key_rotation`).
-- syntax: `r, err = admin.rotate_shared_key{client = c, store = store, id = "key_...", grace = 60}`
-- @tparam table opts `client` (a client allowed `account:manage`), `store`,
--   `id` (the key being replaced), `grace` (seconds, default 60), `on_step`
--   (function(step, {old_id, new_id, version}))
-- @return `{old_id, new_id, version, drained}` or nil and an error
-- @raise on a missing or malformed option, before any I/O
function admin.rotate_shared_key(opts)
  local fn = "moltflow.rotate_shared_key"
  if type(opts) ~= "table" then error(fn .. ": expected a table of options", 2) end
  if type(opts.client) ~= "table" or type(opts.client.api_keys) ~= "table" then
    error(fn .. ": field 'client' must be a client (admin.new)", 2)
  end
  local store = opts.store
  if type(store) ~= "table" or type(store.publish_api_key) ~= "function"
     or type(store.save_rotation) ~= "function" then
    error(fn .. ": field 'store' must be a store with the shared-key methods (admin.redis_store, admin.file_store)", 2)
  end
  if type(opts.id) ~= "string" or opts.id == "" then error(fn .. ": field 'id' must be a key id", 2) end
  if opts.grace ~= nil and (type(opts.grace) ~= "number" or opts.grace < 0) then
    error(fn .. ": field 'grace' must be a number of seconds", 2)
  end
  if opts.on_step ~= nil and type(opts.on_step) ~= "function" then
    error(fn .. ": field 'on_step' must be a function", 2)
  end
  return key_rotation.rotate{client = opts.client, store = store, id = opts.id, grace = opts.grace,
                             on_step = opts.on_step}
end


--- Creates a client (moltflow.client): see docs/client.md, "Options".
-- @function admin.new
admin.new = client.new

--- The base URL as a client uses it (moltflow.client).
-- @function admin.normalize_base_url
admin.normalize_base_url = client.normalize_base_url

--- The base URL a client made with `base_url = url` would use: `url`
-- normalised, else `$MOLTFLOW_API_URL` normalised, else the default.
-- @function admin.base_url
admin.base_url = client.base_url

--- Registers a transport by name, for the `transport` option.
-- @tparam string name the name
-- @tparam table io `{send = function(link, req) -> value, res | nil, err, sleep = function(seconds)}`
--   (moltflow.transport.curl describes the link)
function admin.register_transport(name, io)
  transport.register(name, io)
end


--- The Lua state's default loop (moltflow.client): one curl multi handle
-- under every client that is not given another.
-- @function admin.loop
admin.loop = client.loop

--- A new loop, for clients that should not share the default one's pool.
-- @function admin.new_loop
admin.new_loop = client.new_loop

--- Drives the default loop's calls: `admin.loop():poll(timeout)`.
-- @return the number of calls still running
function admin.poll(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout) then
    error("moltflow.poll: 'timeout' must be a number of seconds", 2)
  end
  return admin.loop():poll(math.max(0, timeout or 0))
end

--- `c:batch` for calls on several clients: table calls name their client,
-- `{c, "usage.current"}`; functions may use any clients.
function admin.batch(calls, opts)
  return batch.run(calls, opts, nil, "admin.batch", transport.host().threads)
end

--- The compiled endpoint list, for generated docs and tools.
-- @function admin.describe
-- @return a list of `{label, group, name, method, path, auth, scope, body, once, idempotent,
--   params, fields = {{name, type, required}, ...}}`, in the order of
--   `moltflow.endpoints` (`body`: the fields go in a JSON body; `once`: never
--   retried)
admin.describe = methods.describe

--- Renders rows as CSV (moltflow.helpers).
-- @function admin.to_csv
admin.to_csv = helpers.to_csv

--- The method tables: `admin.Client` for clients, `admin.groups.api_keys`
-- and so on for endpoint groups; `admin.helpers`, the helpers module.
admin.Client = client.Client
admin.groups = methods.groups
admin.helpers = helpers
return admin
