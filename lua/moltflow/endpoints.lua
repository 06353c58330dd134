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
-- that cannot be undone, such as deleting the account).
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

  -- group     name                  method  path                        auth     scope              fields [, flags]
  {"auth",     "login",              "POST",  "/auth/login",             "none",  nil,               "email:string! password:secret!"},
  {"auth",     "refresh",            "POST",  "/auth/refresh",           "none",  nil,               "refresh_token:secret!"},
  {"auth",     "me",                 "GET",   "/auth/me",                "any",   nil,               ""},
  {"auth",     "logout",             "POST",  "/auth/logout",            "token", nil,               "refresh_token:secret"},
  {"auth",     "forgot_password",    "POST",  "/auth/forgot-password",   "none",  nil,               "email:string!"},
  {"auth",     "reset_password",     "POST",  "/auth/reset-password",    "none",  nil,               "token:secret! new_password:secret!"},
  {"auth",     "verify_email",       "POST",  "/auth/verify-email",      "none",  nil,               "token:secret!"},
  {"auth",     "magic_link_request", "POST",  "/auth/magic-link/request","none",  nil,               "email:string!"},
  {"auth",     "magic_link_verify",  "POST",  "/auth/magic-link/verify", "none",  nil,               "token:secret!"},
  {"auth",     "set_password",       "POST",  "/auth/setup-password",    "token", nil,               "password:secret!"},
  {"users",    "me",                 "GET",   "/users/me",               "any",   "account:manage",  ""},
  {"users",    "update_me",          "PATCH", "/users/me",               "any",   "account:manage",  "full_name:string"},
  {"api_keys", "list",               "GET",   "/api-keys",               "any",   "account:manage",  ""},
  {"api_keys", "create",             "POST",  "/api-keys",               "any",   "account:manage",  "name:string! scopes:array! expires_in_days:integer description:string"},
  {"api_keys", "get",                "GET",   "/api-keys/{id}",          "any",   "account:manage",  ""},
  {"api_keys", "revoke",             "DELETE","/api-keys/{id}",          "any",   "account:manage",  ""},
  {"api_keys", "rotate",             "POST",  "/api-keys/{id}/rotate",   "any",   "account:manage",  ""},
  {"billing",  "subscription",       "GET",   "/billing/subscription",   "any",   "billing:manage",  ""},
  {"billing",  "checkout",           "POST",  "/billing/checkout",       "any",   "billing:manage",  "plan_id:string! billing_cycle:string!"},
  {"billing",  "portal",             "POST",  "/billing/portal",         "any",   "billing:manage",  "return_url:string"},
  {"billing",  "cancel",             "POST",  "/billing/cancel",         "any",   "billing:manage",  ""},
  {"billing",  "plans",              "GET",   "/billing/plans",          "none",  nil,               ""},
  {"billing",  "signup_checkout",    "POST",  "/billing/signup-checkout","none",  nil,               "email:string! plan_id:string! billing_cycle:string!"},
  {"usage",    "current",            "GET",   "/usage/current",          "any",   "usage:read",      ""},
  {"usage",    "history",            "GET",   "/usage/history",          "any",   "usage:read",      "months:integer"},
  {"usage",    "daily",              "GET",   "/usage/daily",            "any",   "usage:read",      "days:integer"},
  {"tenant",   "settings",           "GET",   "/tenant/settings",        "any",   "settings:manage", ""},
  {"tenant",   "update_settings",    "PATCH", "/tenant/settings",        "any",   "settings:manage", "allowed_numbers:array require_approval:boolean ai_consent_enabled:boolean"},
  {"gdpr",     "contact_erasure",    "POST",  "/gdpr/contact-erasure",   "any",   "gdpr:manage",     "phone:string! reason:string"},
  {"gdpr",     "export",             "GET",   "/users/me/export",        "any",   "gdpr:manage",     ""},
  {"gdpr",     "delete_account",     "DELETE","/users/me",               "any",   "gdpr:manage",     "current_password:secret!", "body once"},
}
