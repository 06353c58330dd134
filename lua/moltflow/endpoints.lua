--- The MoltFlow admin endpoints: the single source of truth.
-- Each line is one endpoint: the group and name of its Lua method, the HTTP
-- method and path (`{id}` becomes a positional argument), who may call it
-- (`none` public, `any` bearer token or API key, `token` bearer only), the
-- API-key scope the server checks, and its fields as `name:type` words
-- (`!` = required; types: string, secret, integer, number, boolean, array,
-- table, any). GET and DELETE fields go to the query string, others to the
-- JSON body. An optional last column holds flags: `body` sends the fields as
-- a JSON body whatever the method; `once` means the call is never retried or
-- replayed by the SDK and goes out on a connection of its own (an action
-- that cannot be undone, such as deleting the account); `idempotent` means
-- that sending the call twice leaves the server as sending it once did, by
-- the wire contract: the retry policy (moltflow.retry) sends it again after
-- an ambiguous failure (a reset, a cut or garbled answer, a timeout: the
-- server may have acted), under the same budget and deadline as a GET. A
-- call without the flag is sent again only when the server certainly did
-- not act (the connection failed, or it answered 429). The HTTP method does
-- not decide: each line's comment says why it is flagged or not.
-- Methods, argument checks and the README's endpoint list come from here.
-- `scopes` (a field beside the list) names every API-key scope the server
-- knows: the emulator accepts these and no other, `keys create --help`
-- lists them.
-- @module moltflow.endpoints

return {
  scopes = {"*", "account:manage", "billing:manage", "usage:read", "settings:manage", "gdpr:manage",
            "sessions:read", "sessions:manage", "messages:read", "messages:send", "groups:read", "groups:manage",
            "labels:read", "labels:manage", "webhooks:read", "webhooks:manage", "custom-groups:manage",
            "bulk-send:manage"},

  -- group     name                  method  path                        auth     scope              fields [, flags] -- idempotent?
  {"auth",     "login",              "POST",  "/auth/login",             "none",  nil,               "email:string! password:secret!"}, -- no: every login opens a session of its own (a new token pair)
  {"auth",     "refresh",            "POST",  "/auth/refresh",           "none",  nil,               "refresh_token:secret!"}, -- no: the pair rotates; a replay sends a refresh token the first attempt spent
  {"auth",     "me",                 "GET",   "/auth/me",                "any",   nil,               "", "idempotent"}, -- a read
  {"auth",     "logout",             "POST",  "/auth/logout",            "token", nil,               "refresh_token:secret"}, -- no: a replay after the first went through is refused (the tokens are dead)
  {"auth",     "forgot_password",    "POST",  "/auth/forgot-password",   "none",  nil,               "email:string!"}, -- no: each call mails a new reset link
  {"auth",     "reset_password",     "POST",  "/auth/reset-password",    "none",  nil,               "token:secret! new_password:secret!"}, -- no: the first attempt spends the one-time token
  {"auth",     "verify_email",       "POST",  "/auth/verify-email",      "none",  nil,               "token:secret!"}, -- no: the first attempt spends the one-time token
  {"auth",     "magic_link_request", "POST",  "/auth/magic-link/request","none",  nil,               "email:string!"}, -- no: each call mails a new link
  {"auth",     "magic_link_verify",  "POST",  "/auth/magic-link/verify", "none",  nil,               "token:secret!"}, -- no: the first attempt spends the one-time token
  {"auth",     "set_password",       "POST",  "/auth/setup-password",    "token", nil,               "password:secret!"}, -- no: a first-time setup; the contract does not say a second one is accepted
  {"users",    "me",                 "GET",   "/users/me",               "any",   "account:manage",  "", "idempotent"}, -- a read
  {"users",    "update_me",          "PATCH", "/users/me",               "any",   "account:manage",  "full_name:string", "idempotent"}, -- sets the fields sent to the values sent: twice leaves the same user
  {"api_keys", "list",               "GET",   "/api-keys",               "any",   "account:manage",  "", "idempotent"}, -- a read
  {"api_keys", "create",             "POST",  "/api-keys",               "any",   "account:manage",  "name:string! scopes:array! expires_in_days:integer description:string"}, -- no: each call makes a key and a secret (api_keys:ensure reconciles)
  {"api_keys", "get",                "GET",   "/api-keys/{id}",          "any",   "account:manage",  "", "idempotent"}, -- a read
  {"api_keys", "revoke",             "DELETE","/api-keys/{id}",          "any",   "account:manage",  "", "idempotent"}, -- a deleted key stays deleted (a replay after the first went through gets 404)
  {"api_keys", "rotate",             "POST",  "/api-keys/{id}/rotate",   "any",   "account:manage",  ""}, -- no: each call makes a new secret and kills the one before
  {"billing",  "subscription",       "GET",   "/billing/subscription",   "any",   "billing:manage",  "", "idempotent"}, -- a read
  {"billing",  "checkout",           "POST",  "/billing/checkout",       "any",   "billing:manage",  "plan_id:string! billing_cycle:string!"}, -- no: each call opens a checkout session
  {"billing",  "portal",             "POST",  "/billing/portal",         "any",   "billing:manage",  "return_url:string"}, -- no: each call opens a portal session
  {"billing",  "cancel",             "POST",  "/billing/cancel",         "any",   "billing:manage",  "", "idempotent"}, -- sets cancel-at-period-end: twice leaves the same subscription
  {"billing",  "plans",              "GET",   "/billing/plans",          "none",  nil,               "", "idempotent"}, -- a read
  {"billing",  "signup_checkout",    "POST",  "/billing/signup-checkout","none",  nil,               "email:string! plan_id:string! billing_cycle:string!"}, -- no: each call opens a checkout session
  {"usage",    "current",            "GET",   "/usage/current",          "any",   "usage:read",      "", "idempotent"}, -- a read
  {"usage",    "history",            "GET",   "/usage/history",          "any",   "usage:read",      "months:integer", "idempotent"}, -- a read
  {"usage",    "daily",              "GET",   "/usage/daily",            "any",   "usage:read",      "days:integer", "idempotent"}, -- a read
  {"tenant",   "settings",           "GET",   "/tenant/settings",        "any",   "settings:manage", "", "idempotent"}, -- a read
  {"tenant",   "update_settings",    "PATCH", "/tenant/settings",        "any",   "settings:manage", "allowed_numbers:array require_approval:boolean ai_consent_enabled:boolean", "idempotent"}, -- sets the fields sent to the values sent; consent is recorded only when it turns on
  {"gdpr",     "contact_erasure",    "POST",  "/gdpr/contact-erasure",   "any",   "gdpr:manage",     "phone:string! reason:string"}, -- no: each call writes an audit record and reports what it deleted
  {"gdpr",     "export",             "GET",   "/users/me/export",        "any",   "gdpr:manage",     "", "idempotent"}, -- a read
  {"gdpr",     "delete_account",     "DELETE","/users/me",               "any",   "gdpr:manage",     "current_password:secret!", "body once"}, -- no: it cannot be undone (once)
}
