-- Writes the Lua Language Server annotations of the public API,
-- lua/moltflow/types/admin.lua: the client, every endpoint group with its
-- methods, argument fields and types (from the endpoint table, through
-- admin.describe(), like README's endpoint reference), the results and the
-- error. The rest of the API (module functions, client methods, async and
-- helper methods) is described below, next to the generator.
--
--   lua5.4 tools/gen-annotations.lua [FILE]           rewrite the file
--   lua5.4 tools/gen-annotations.lua --check [FILE]   exit 1 when it is stale
--   lua5.4 tools/gen-annotations.lua --stdout         print it
--
-- Needs the built core on LUA_CPATH (`make docs` sets it).
local admin = require "moltflow.admin"

local DEFAULT_PATH = "lua/moltflow/types/admin.lua"

local LUA_TYPES = {string = "string", secret = "string", integer = "integer", number = "number",
                   boolean = "boolean", array = "string[]", table = "table", any = "any"}

local AUTH_TEXT = {none = "public", any = "bearer token or API key", token = "bearer token only"}

-- Methods whose Lua side differs from the wire (see the special table in admin.lua).
local NO_ARGUMENTS = {["auth.refresh"] = "sends the stored refresh token and stores the new pair",
                      ["auth.logout"] = "sends the stored refresh token, then forgets both tokens"}

-- moltflow.api_keys -> "ApiKeys" (class names of the groups)
local function camel(s)
  return (s:gsub("^%l", string.upper):gsub("_(%l)", string.upper))
end

local HEADER = [[
---@meta moltflow.admin
-- Lua Language Server annotations for moltflow.admin. Generated from
-- lua/moltflow/endpoints.lua by tools/gen-annotations.lua (`make docs`): edit
-- the endpoint table or the generator, not this file. Installed with the
-- module; add its directory (share/lua/<version>/moltflow/types) or the
-- installed share/lua/<version> tree to the language server's
-- `workspace.library`.

---The decoded JSON answer: a table (arrays are marked as arrays), `true` for a 204.
---@alias moltflow.Value table|true

---@alias moltflow.ErrorKind
---| "http"      # a non-2xx answer
---| "auth"      # a 401, or no credentials to send
---| "network"   # connection, DNS, TLS, a dropped or cut answer
---| "timeout"
---| "decode"    # a 2xx that is not JSON
---| "too_large" # larger than max_response_bytes
---| "canceled"  # an async call canceled
---| "closed"    # its client was closed meanwhile

---What a successful call returns after the value.
---@class moltflow.Response
---@field status integer
---@field request_id? string
---@field rate_limit {remaining?: integer, reset?: integer}
---@field headers table<string, string> lower-case names, built when first read

---What a failed call returns after nil (metatable `moltflow.error`, with `__tostring`).
---@class moltflow.Error
---@field kind moltflow.ErrorKind
---@field status? integer the HTTP status, when there was an answer
---@field message string the server's `detail`, or a description; never a secret
---@field detail? any the raw `detail`
---@field validation_errors? {field: string, message: string, type: string}[] for a 422
---@field method? string
---@field path? string relative to the base URL
---@field attempts integer
---@field retry_after? number
---@field rate_limit? {remaining?: integer, reset?: integer}
---@field request_id? string
---@field headers? table<string, string>
---@field connect_failed? boolean true when the request never reached the server

---@class moltflow.Tokens
---@field access_token? string
---@field refresh_token? string
---@field expires_at? integer

---@class moltflow.TokenStore
---@field load fun(): moltflow.Tokens?
---@field save fun(tokens: moltflow.Tokens?)

---@class moltflow.RetryPolicy
---@field max_attempts? integer
---@field base_delay? number
---@field max_delay? number
---@field max_elapsed? number
---@field retry_on? integer[]

---@class moltflow.HookEvent
---@field method string
---@field path string
---@field attempt integer
---@field status? integer
---@field kind? moltflow.ErrorKind
---@field request_id? string
---@field duration? number

---What a transport gets of the client (moltflow.transport.curl).
---@class moltflow.TransportLink
---@field core userdata the core client (`wire`, `read`, `send`, `start`, `finish`...)
---@field loop table the client's loop
---@field settings table the client's `info()`
---@field conf any what the transport's `configure` returned
---@field blocking? boolean the `blocking` option

---@class moltflow.Transport
---@field send fun(link: moltflow.TransportLink, req: table): any, any
---@field sleep fun(seconds: number)
---@field configure? fun(opts: moltflow.Options): any checks the options at `admin.new` (raises), returns the client's transport settings

---Options of `admin.new`; an unknown option or a wrong type raises before any I/O.
---@class moltflow.Options
---@field base_url? string default `$MOLTFLOW_API_URL` + `/api/v2`, else the public API
---@field api_key? string|false sent as `X-API-Key`; default `$MOLTFLOW_API_KEY`; false: none (a client that only logs in)
---@field access_token? string
---@field refresh_token? string
---@field token_store? moltflow.TokenStore
---@field timeout? number seconds per attempt (30)
---@field connect_timeout? number seconds (10)
---@field max_response_bytes? integer (8 MiB)
---@field retry? moltflow.RetryPolicy|false
---@field refresh_skew? number seconds before expiry to renew the access token (60)
---@field pace? boolean wait for `X-RateLimit-Reset` when none remain
---@field blocking? boolean `false`: inside nginx, a call from a phase without cosockets raises instead of blocking the worker
---@field on_request? fun(event: moltflow.HookEvent)
---@field on_response? fun(event: moltflow.HookEvent)
---@field on_tokens? fun(tokens: moltflow.Tokens?)
---@field sleep? fun(seconds: number)
---@field user_agent? string
---@field ca_file? string
---@field proxy? string
---@field insecure_http? boolean allow `http://` to a non-loopback host
---@field transport? string|moltflow.Transport

---An async call started by `c:spawn`.
---@class moltflow.Handle
---@field done boolean
local Handle = {}

---Whether the call has finished.
---@return boolean
function Handle:is_done() end

---The call's results (`value, res` or `nil, err`); raises while it runs.
---@return any
---@return any
function Handle:result() end

---Calls `fn(value, res)` (or `fn(nil, err)`) when the call finishes.
---@param fn fun(value: any, res_or_err: any)
function Handle:on_done(fn) end

---Cancels the call: it finishes with `err.kind == "canceled"`.
function Handle:cancel() end

---@class moltflow.Quota
---@field sessions? table
---@field messages? table
---@field groups? table
]]

local MODULE = [[

---@class moltflow.admin
---@field VERSION string
---@field null userdata JSON `null`, both ways
---@field Client moltflow.Client the client methods (helper modules add to them)
local admin = {}

---Creates a client.
---@param opts? moltflow.Options
---@return moltflow.Client
function admin.new(opts) end

---Marks a table as a JSON array, so that an empty one goes out as `[]`.
---@generic T: table
---@param t? T
---@return T
function admin.array(t) end

---Encodes a value as JSON (integers stay integers); raises on a value JSON cannot hold.
---@param v any
---@return string
function admin.json_encode(v) end

---Decodes JSON text: arrays come back marked as arrays, `null` as `admin.null`.
---@param text string
---@return any value
---@return string? message for malformed JSON
function admin.json_decode(text) end

---Lower-case hex SHA-256.
---@param s string
---@return string
function admin.sha256(s) end

---Lower-case hex HMAC-SHA256.
---@param key string
---@param s string
---@return string
function admin.hmac_sha256(key, s) end

---The hash the server stores for a raw API key (SHA-256, hex).
---@param raw_key string
---@return string
function admin.key_fingerprint(raw_key) end

---Whether `X-Webhook-Signature` matches the raw body (constant time; `sha256=` prefix accepted).
---@param secret string
---@param body string
---@param signature any
---@return boolean
function admin.verify_signature(secret, body, signature) end

---The claims of a JWT, not verified.
---@param token string
---@return table? claims
---@return string? message
function admin.jwt_claims(token) end

---Makes an error of the SDK's shape (for transports written in Lua).
---@param fields table `kind` and `message`, and any other `moltflow.Error` field
---@return moltflow.Error
function admin.error(fields) end

---Whether a value is an error returned by this SDK.
---@param v any
---@return boolean
function admin.is_error(v) end

---A token store in memory (the default).
---@return moltflow.TokenStore
function admin.memory_store() end

---A token store in a file written with mode 0600.
---@param path string
---@return moltflow.TokenStore
function admin.file_store(path) end

---The base URL a client made with `base_url = url` would use: `url` normalised, else
---`$MOLTFLOW_API_URL` normalised, else the default.
---@param url? string
---@return string
function admin.base_url(url) end

---Registers a transport by name, for the `transport` option.
---@param name string
---@param io moltflow.Transport
function admin.register_transport(name, io) end

---The compiled endpoint list, for generated docs and tools.
---@return table[]
function admin.describe() end

---`c:batch` for calls on several clients: table calls name their client (`{c, "usage.current"}`).
---@param calls table
---@param opts? {concurrency?: integer}
---@return table[] results `{value, res}` or `{nil, err}` per call, in order
function admin.batch(calls, opts) end

---Rows as CSV text.
---@param rows table[]
---@param columns? string[]
---@return string
function admin.to_csv(rows, columns) end
]]

local CLIENT_METHODS = [[

---Closes the client: connections and secrets are released. Idempotent; also `__close` and `__gc`.
function Client:close() end

---Whether `close()` has run.
---@return boolean
function Client:is_closed() end

---Settings that hold no secret.
---@return {base_url: string, timeout: number, connect_timeout: number, max_response_bytes: integer, user_agent: string}
function Client:info() end

---The current tokens, or nil when there are none.
---@return moltflow.Tokens?
function Client:tokens() end

---Replaces the tokens (nil forgets them).
---@param t moltflow.Tokens?
function Client:set_tokens(t) end

---Replaces the API key (nil removes it).
---@param key string?
function Client:set_api_key(key) end

---The last rate-limit headers seen.
---@return {remaining?: integer, reset?: integer}
function Client:rate_limit() end

---Calls an endpoint that has no method yet.
---@param method "GET"|"POST"|"PUT"|"PATCH"|"DELETE"
---@param path string relative to the base URL, e.g. "/usage/current"
---@param opts? {query?: table, body?: table, auth?: "none"|"any"|"token"}
---@return any value
---@return moltflow.Response|moltflow.Error res_or_err
function Client:request(method, path, opts) end

---Runs calls concurrently over libcurl multi and waits for all of them.
---@param calls (fun(): any, any)[]|table[] functions, or `{"group.name", args...}`
---@param opts? {concurrency?: integer}
---@return table[] results `{value, res}` or `{nil, err}` per call, in order
function Client:batch(calls, opts) end

---Starts a call without waiting; `c:poll()` drives it.
---@param fn function|string a function, or "group.name" followed by its arguments
---@param ... any
---@return moltflow.Handle
function Client:spawn(fn, ...) end

---Drives this client's spawned calls; never blocks longer than `timeout`.
---@param timeout? number seconds
---@return integer running calls still running
function Client:poll(timeout) end

---Makes calls inside a host's own coroutines yield instead of block (nil: block again).
---@param yield? fun()
function Client:set_scheduler(yield) end

---The plan limits with what is used and what remains.
---@return moltflow.Quota? quota
---@return moltflow.Response|moltflow.Error res_or_err
function Client:quota() end

---Whether planned amounts would pass what remains of the plan.
---@param plan table<string, integer>
---@return boolean? exceeds
---@return table detail_or_err
function Client:will_exceed(plan) end
]]

-- Helper methods on endpoint groups (lua/moltflow/helpers.lua).
local GROUP_EXTRAS = {
  api_keys = [[

---The API key with that name (an active one first), or false when none has it.
---@param args {name: string}
---@return table|false|nil key
---@return moltflow.Response|moltflow.Error res_or_err
function ApiKeys:find(args) end

---The API key with that name, created when missing (`name`, `scopes`, `expires_in_days`).
---@param args {name: string, scopes: string[], expires_in_days?: integer}
---@return table? key
---@return moltflow.Response|moltflow.Error res_or_err
function ApiKeys:ensure(args) end
]],
  usage = [[

---Daily usage as flat rows (`{days = n}` or `{month = true}`), for `admin.to_csv`.
---@param args? {days?: integer, month?: boolean}
---@return table[]? rows
---@return moltflow.Response|moltflow.Error res_or_err
function Usage:daily_rows(args) end
]],
}

local function endpoint_lines(d, class, out)
  local function add(s) out[#out + 1] = s end
  local args_class = ("moltflow.%s.%s.Args"):format(d.group, d.name)
  local no_args = NO_ARGUMENTS[d.label]
  local has_fields = #d.fields > 0 and not no_args
  if has_fields then
    add("")
    add(("---Fields of `c.%s:%s`."):format(d.group, d.name))
    add("---@class " .. args_class)
    for _, f in ipairs(d.fields) do
      add(("---@field %s%s %s%s"):format(f.name, f.required and "" or "?", LUA_TYPES[f.type] or "any",
                                        f.type == "secret" and " a secret: never in errors, hooks or tostring()" or ""))
    end
  end
  add("")
  add(("---`%s %s` · auth: %s%s%s"):format(d.method, d.path, AUTH_TEXT[d.auth] or d.auth,
    d.scope and (" · API-key scope: `" .. d.scope .. "`") or "", no_args and (": " .. no_args) or ""))
  local names = {}
  if not no_args then
    for _, p in ipairs(d.params) do
      add(("---@param %s string"):format(p))
      names[#names + 1] = p
    end
  end
  if has_fields then
    local required = false
    for _, f in ipairs(d.fields) do required = required or f.required end
    add(("---@param args%s %s"):format(required and "" or "?", args_class))
    names[#names + 1] = "args"
  end
  add("---@return moltflow.Value? value")
  add("---@return moltflow.Response|moltflow.Error res_or_err")
  add(("function %s:%s(%s) end"):format(class, d.name, table.concat(names, ", ")))
end

--- The generated file.
local function render()
  local groups, by_group = {}, {}
  for _, d in ipairs(admin.describe()) do
    if not by_group[d.group] then
      by_group[d.group] = {}
      groups[#groups + 1] = d.group
    end
    table.insert(by_group[d.group], d)
  end
  local out = {HEADER}
  local function add(s) out[#out + 1] = s end
  for _, g in ipairs(groups) do
    local class = camel(g)
    add("")
    add(("---The `c.%s` methods."):format(g))
    add(("---@class moltflow.%s"):format(g))
    add(("local %s = {}"):format(class))
    for _, d in ipairs(by_group[g]) do endpoint_lines(d, class, out) end
    if GROUP_EXTRAS[g] then add((GROUP_EXTRAS[g]:gsub("\n$", ""))) end
  end
  add("")
  add("---A client: `admin.new{...}`.")
  add("---@class moltflow.Client")
  for _, g in ipairs(groups) do add(("---@field %s moltflow.%s"):format(g, g)) end
  add("local Client = {}")
  add((CLIENT_METHODS:gsub("\n$", "")))
  add((MODULE:gsub("\n$", "")))
  add("")
  add("return admin")
  return table.concat(out, "\n") .. "\n"
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local check, stdout, path = false, false, nil
for _, a in ipairs(arg) do
  if a == "--check" then check = true
  elseif a == "--stdout" then stdout = true
  else path = a end
end
path = path or DEFAULT_PATH

local text = render()
if stdout then
  io.write(text)
  os.exit(0)
end
local current = read(path)
if check then
  if current ~= text then
    io.stderr:write(path .. ": the annotations are out of date; run 'make docs'\n")
    os.exit(1)
  end
  os.exit(0)
end
if current ~= text then
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  print("updated " .. path)
end
