--- moltflow.client.hooks: a client's hooks and the warnings nobody asked
-- for. A hook that raises is reported (`on_hook_error`, else a warning in
-- the host's log or on stderr) and the call goes on; a shared store that
-- fails gives one warning per outage through the same channel.
-- @module moltflow.client.hooks

local hooks = {}

local Reporter = {}
Reporter.__index = Reporter
Reporter.__name = "moltflow.hooks"
hooks.Reporter = Reporter

--- A reporter: `on_hook_error` (or nil), `log` (function(line) -> whether the
-- host logged it; else the line goes to stderr).
function hooks.new(on_hook_error, log)
  return setmetatable({on_hook_error = on_hook_error, log = log, store_down = false}, Reporter)
end

--- A hook raised: `on_hook_error{hook = name, message = ...}` hears of it, or
-- else a warning goes to the host's log or stderr. The call goes on.
function Reporter:failed(name, err, line)
  local report = self.on_hook_error
  local message = tostring(err)
  if report and pcall(report, {hook = name, message = message}) then return end
  line = line or ("moltflow: the %s hook raised an error (the call went on): %s"):format(name, message)
  if not self.log(line) then io.stderr:write(line, "\n") end
end

--- Runs a hook; an error it raises is reported, never raised.
function Reporter:hook(name, fn, arg)
  local ok, err = pcall(fn, arg)
  if not ok then self:failed(name, err) end
end

--- A shared store (token_store, or pace) failed: the client goes on locally
-- (its own lock, its own pacing). One warning per outage, through the same
-- channel as hook errors (hook "token_store" or "pace"); the next success
-- ends the outage.
function Reporter:store_trouble(err, name)
  if self.store_down then return end
  self.store_down = true
  local message = tostring(err)
  self:failed(name or "token_store", message,
              ("moltflow: warning: the shared store failed, going on locally: %s"):format(message))
end

--- The shared store answered.
function Reporter:store_ok()
  self.store_down = false
end

return hooks
