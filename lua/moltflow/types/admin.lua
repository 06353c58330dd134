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


---The `c.auth` methods.
---@class moltflow.auth
local Auth = {}

---Fields of `c.auth:login`.
---@class moltflow.auth.login.Args
---@field email string
---@field password string a secret: never in errors, hooks or tostring()

---`POST /auth/login` · auth: public
---@param args moltflow.auth.login.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Auth:login(args) end

---`POST /auth/refresh` · auth: public: sends the stored refresh token and stores the new pair
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Auth:refresh() end

---`GET /auth/me` · auth: bearer token or API key
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Auth:me() end

---`POST /auth/logout` · auth: bearer token only: sends the stored refresh token, then forgets both tokens
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Auth:logout() end

---Fields of `c.auth:forgot_password`.
---@class moltflow.auth.forgot_password.Args
---@field email string

---`POST /auth/forgot-password` · auth: public
---@param args moltflow.auth.forgot_password.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Auth:forgot_password(args) end

---Fields of `c.auth:reset_password`.
---@class moltflow.auth.reset_password.Args
---@field token string a secret: never in errors, hooks or tostring()
---@field new_password string a secret: never in errors, hooks or tostring()

---`POST /auth/reset-password` · auth: public
---@param args moltflow.auth.reset_password.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Auth:reset_password(args) end

---Fields of `c.auth:verify_email`.
---@class moltflow.auth.verify_email.Args
---@field token string a secret: never in errors, hooks or tostring()

---`POST /auth/verify-email` · auth: public
---@param args moltflow.auth.verify_email.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Auth:verify_email(args) end

---Fields of `c.auth:magic_link_request`.
---@class moltflow.auth.magic_link_request.Args
---@field email string

---`POST /auth/magic-link/request` · auth: public
---@param args moltflow.auth.magic_link_request.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Auth:magic_link_request(args) end

---Fields of `c.auth:magic_link_verify`.
---@class moltflow.auth.magic_link_verify.Args
---@field token string a secret: never in errors, hooks or tostring()

---`POST /auth/magic-link/verify` · auth: public
---@param args moltflow.auth.magic_link_verify.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Auth:magic_link_verify(args) end

---Fields of `c.auth:set_password`.
---@class moltflow.auth.set_password.Args
---@field password string a secret: never in errors, hooks or tostring()

---`POST /auth/setup-password` · auth: bearer token only
---@param args moltflow.auth.set_password.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Auth:set_password(args) end

---The `c.users` methods.
---@class moltflow.users
local Users = {}

---`GET /users/me` · auth: bearer token or API key · API-key scope: `account:manage`
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Users:me() end

---Fields of `c.users:update_me`.
---@class moltflow.users.update_me.Args
---@field full_name? string

---`PATCH /users/me` · auth: bearer token or API key · API-key scope: `account:manage`
---@param args? moltflow.users.update_me.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Users:update_me(args) end

---The `c.api_keys` methods.
---@class moltflow.api_keys
local ApiKeys = {}

---`GET /api-keys` · auth: bearer token or API key · API-key scope: `account:manage`
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function ApiKeys:list() end

---Fields of `c.api_keys:create`.
---@class moltflow.api_keys.create.Args
---@field name string
---@field scopes string[]
---@field expires_in_days? integer
---@field description? string

---`POST /api-keys` · auth: bearer token or API key · API-key scope: `account:manage`
---@param args moltflow.api_keys.create.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function ApiKeys:create(args) end

---`GET /api-keys/{id}` · auth: bearer token or API key · API-key scope: `account:manage`
---@param id string
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function ApiKeys:get(id) end

---`DELETE /api-keys/{id}` · auth: bearer token or API key · API-key scope: `account:manage`
---@param id string
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function ApiKeys:revoke(id) end

---`POST /api-keys/{id}/rotate` · auth: bearer token or API key · API-key scope: `account:manage`
---@param id string
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function ApiKeys:rotate(id) end

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

---The `c.billing` methods.
---@class moltflow.billing
local Billing = {}

---`GET /billing/subscription` · auth: bearer token or API key · API-key scope: `billing:manage`
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Billing:subscription() end

---Fields of `c.billing:checkout`.
---@class moltflow.billing.checkout.Args
---@field plan_id string
---@field billing_cycle string

---`POST /billing/checkout` · auth: bearer token or API key · API-key scope: `billing:manage`
---@param args moltflow.billing.checkout.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Billing:checkout(args) end

---Fields of `c.billing:portal`.
---@class moltflow.billing.portal.Args
---@field return_url? string

---`POST /billing/portal` · auth: bearer token or API key · API-key scope: `billing:manage`
---@param args? moltflow.billing.portal.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Billing:portal(args) end

---`POST /billing/cancel` · auth: bearer token or API key · API-key scope: `billing:manage`
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Billing:cancel() end

---`GET /billing/plans` · auth: public
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Billing:plans() end

---Fields of `c.billing:signup_checkout`.
---@class moltflow.billing.signup_checkout.Args
---@field email string
---@field plan_id string
---@field billing_cycle string

---`POST /billing/signup-checkout` · auth: public
---@param args moltflow.billing.signup_checkout.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Billing:signup_checkout(args) end

---The `c.usage` methods.
---@class moltflow.usage
local Usage = {}

---`GET /usage/current` · auth: bearer token or API key · API-key scope: `usage:read`
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Usage:current() end

---Fields of `c.usage:history`.
---@class moltflow.usage.history.Args
---@field months? integer

---`GET /usage/history` · auth: bearer token or API key · API-key scope: `usage:read`
---@param args? moltflow.usage.history.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Usage:history(args) end

---Fields of `c.usage:daily`.
---@class moltflow.usage.daily.Args
---@field days? integer

---`GET /usage/daily` · auth: bearer token or API key · API-key scope: `usage:read`
---@param args? moltflow.usage.daily.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Usage:daily(args) end

---Daily usage as flat rows (`{days = n}` or `{month = true}`), for `admin.to_csv`.
---@param args? {days?: integer, month?: boolean}
---@return table[]? rows
---@return moltflow.Response|moltflow.Error res_or_err
function Usage:daily_rows(args) end

---The `c.tenant` methods.
---@class moltflow.tenant
local Tenant = {}

---`GET /tenant/settings` · auth: bearer token or API key · API-key scope: `settings:manage`
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Tenant:settings() end

---Fields of `c.tenant:update_settings`.
---@class moltflow.tenant.update_settings.Args
---@field allowed_numbers? string[]
---@field require_approval? boolean
---@field ai_consent_enabled? boolean

---`PATCH /tenant/settings` · auth: bearer token or API key · API-key scope: `settings:manage`
---@param args? moltflow.tenant.update_settings.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Tenant:update_settings(args) end

---The `c.gdpr` methods.
---@class moltflow.gdpr
local Gdpr = {}

---Fields of `c.gdpr:contact_erasure`.
---@class moltflow.gdpr.contact_erasure.Args
---@field phone string
---@field reason? string

---`POST /gdpr/contact-erasure` · auth: bearer token or API key · API-key scope: `gdpr:manage`
---@param args moltflow.gdpr.contact_erasure.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Gdpr:contact_erasure(args) end

---`GET /users/me/export` · auth: bearer token or API key · API-key scope: `gdpr:manage`
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Gdpr:export() end

---Fields of `c.gdpr:delete_account`.
---@class moltflow.gdpr.delete_account.Args
---@field current_password string a secret: never in errors, hooks or tostring()

---`DELETE /users/me` · auth: bearer token or API key · API-key scope: `gdpr:manage`
---@param args moltflow.gdpr.delete_account.Args
---@return moltflow.Value? value
---@return moltflow.Response|moltflow.Error res_or_err
function Gdpr:delete_account(args) end

---A client: `admin.new{...}`.
---@class moltflow.Client
---@field auth moltflow.auth
---@field users moltflow.users
---@field api_keys moltflow.api_keys
---@field billing moltflow.billing
---@field usage moltflow.usage
---@field tenant moltflow.tenant
---@field gdpr moltflow.gdpr
local Client = {}

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

return admin
