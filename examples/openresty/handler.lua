-- An OpenResty handler calling the MoltFlow admin API through the SDK
-- (examples/openresty/server.conf mounts it on /sdk/).
--   GET /sdk/usage?i=N   usage of tenant acme (N even) or solo (N odd): two calls
--                        at once in light threads, history over N % 24 + 1 months
--   GET /sdk/login       logs in; the tokens go to the lua_shared_dict store
--   GET /sdk/me?n=N      N clients at once, each made from the shared tokens as
--                        N workers would: expired tokens are refreshed once for all
-- The keys come from server.conf's set lines because this example serves two
-- seed tenants of the emulator at once; a deployment reads its key from the
-- environment (`env MOLTFLOW_API_KEY;`): see nginx.conf beside this file, the
-- complete configuration, for that and for the one-client-per-worker rule.
local admin = require "moltflow.admin"

-- one client per API key and worker, reused by every request
local clients = package.loaded["moltflow.examples.openresty.clients"] or {}
package.loaded["moltflow.examples.openresty.clients"] = clients

local function reply(status, body)
  ngx.status = status
  ngx.say(admin.json_encode(body))
  return ngx.exit(status)
end

local function fail(err)
  return reply(502, {kind = err.kind, status = err.status, error = tostring(err)})
end

local function shared_client()
  return admin.new{base_url = ngx.var.moltflow_api, token_store = admin.shdict_store("moltflow_tokens")}
end

local route = ngx.var.uri:match("^/sdk/(.*)$")

if route == "usage" then
  local i = tonumber(ngx.var.arg_i) or 0
  local tenant = i % 2 == 0 and "acme" or "solo"
  local key = ngx.var["moltflow_key_" .. tenant]
  local c = clients[key]
  if not c then
    c = admin.new{base_url = ngx.var.moltflow_api, api_key = key}
    clients[key] = c
  end
  local months = i % 24 + 1
  local current = ngx.thread.spawn(function() return c.usage:current() end)
  local history, err = c.usage:history{months = months}
  if not history then return fail(err) end
  local _, usage, err2 = ngx.thread.wait(current)
  if not usage then return fail(err2) end
  return reply(200, {i = i, tenant = tenant, months = #history.months,
                     messages_sent = usage.messages_sent,
                     transport = c:transport_name()})
elseif route == "login" then
  local c = shared_client()
  local v, err = c.auth:login{email = ngx.var.moltflow_email, password = ngx.var.moltflow_password}
  if not v then return fail(err) end
  return reply(200, {logged_in = true})
elseif route == "me" then
  local n = math.min(tonumber(ngx.var.arg_n) or 1, 100)
  local threads, emails = {}, {}
  for k = 1, n do
    local c = shared_client()
    threads[k] = ngx.thread.spawn(function() return c.auth:me() end)
  end
  for k = 1, n do
    local _, me, err = ngx.thread.wait(threads[k])
    if not me then return fail(err) end
    emails[k] = me.email
  end
  return reply(200, {emails = emails})
end
return reply(404, {error = "unknown route"})
