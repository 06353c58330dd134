--- moltflow.cli.session: the client a command talks through. It picks the
-- credentials (`--api-key`, else `$MOLTFLOW_API_KEY`, else the saved login,
-- whose refreshed tokens are written back) and calls the SDK so that each of
-- its failures ends the command with the exit status of its kind.
-- @module moltflow.cli.session

local admin = require "moltflow.admin"
local config = require "moltflow.cli.config"
local failure = require "moltflow.cli.failure"
local LoginStore = require "moltflow.cli.login_store"
local output = require "moltflow.cli.output"

local Session = {}
Session.__index = Session

local function not_logged_in(store, url)
  if store.notice then output.warn("warning: " .. store.notice) end
  if store.other_server then
    return failure.new("auth", ("not logged in to %s: the saved login is for %s; run 'moltflow-admin --base-url %s "
                                .. "login' to log in there"):format(url, store.other_server, url))
  end
  return failure.new("auth", "not logged in: run 'moltflow-admin login', or pass --api-key or set MOLTFLOW_API_KEY")
end

--- The session of a command. With no API key the saved login is the token
-- store; the command fails when there is none.
-- @param args the parsed command line
-- @tparam[opt] boolean auth false: a public endpoint, no credentials needed
-- @return the session
function Session.open(args, auth)
  local url = config.base_url(args)
  local opts = {base_url = url}
  local key = config.nonempty(args.api_key) or config.nonempty(os.getenv("MOLTFLOW_API_KEY"))
  local store
  if key then
    opts.api_key = key
  elseif auth ~= false then
    store = LoginStore.new(url)
    opts.token_store = store
  end
  local c = failure.call(admin.new, opts)
  if store and not c:tokens() then
    c:close()
    error(not_logged_in(store, url), 0)
  end
  return setmetatable({client = c}, Session)
end

--- The session of `login` and `logout`: the saved login's tokens in `store`
-- only, never `$MOLTFLOW_API_KEY`.
-- @tparam string url the base URL (`config.base_url`)
-- @param store its `LoginStore`
-- @return the session
function Session.login(url, store)
  local c = failure.call(admin.new, {base_url = url, token_store = store})
  c:set_api_key(nil)
  return setmetatable({client = c}, Session)
end

--- How the session authenticates: "saved login" or "API key".
function Session:credentials()
  return self.client:tokens() and "saved login" or "API key"
end

-- The function a label names and its first argument: "api_keys.get" is
-- c.api_keys:get, "quota" c:quota.
local function method(c, label)
  local group, name = label:match("^([%w_]+)%.([%w_]+)$")
  if group then return c[group][name], c[group] end
  return c[label], c
end

--- Calls a client method: `value, res`, or `nil, err` as the SDK returns
-- them; a raised error ends the command as an argument error.
-- @tparam string label the method: `"group.name"` (as in
--   `moltflow.endpoints`) or a client method's name (`"quota"`)
-- @param ... its arguments
function Session:try(label, ...)
  local f, target = method(self.client, label)
  return failure.call(f, target, ...)
end

--- Calls a client method like `try`: `value, res`; an SDK error ends the command.
function Session:call(label, ...)
  return failure.check(self:try(label, ...))
end

--- Closes the client.
function Session:close()
  self.client:close()
end

return Session
