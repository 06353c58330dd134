--- moltflow.errors: the SDK's error objects and the one message-prefix rule.
-- Runtime failures are error tables (`kind`, `message`, and `status`,
-- `method`, `path`... when known) made by the core's constructor, so C and
-- Lua errors share one metatable and one `__tostring`. Argument mistakes
-- raise a string `moltflow.<function>: <what is wrong>`.
-- @module moltflow.errors

local core = require "moltflow.core"

local errors = {}

--- The metatable of every error table.
errors.mt = core.error_mt

--- Makes an error table (`fields`: `kind` and `message`, and any of
-- `status`, `method`, `path`, `attempts`, `retry_after`, `rate_limit`,
-- `connect_failed`).
-- @function errors.new
errors.new = core.new_error

--- Whether a value is an error table of this SDK.
function errors.is_error(v)
  return type(v) == "table" and getmetatable(v) == errors.mt
end

--- An error of a call, naming the request's method and path when given.
-- @param kind the error kind
-- @param message the message
-- @param[opt] req a built request (its method and path, secrets REDACTED)
function errors.call(kind, message, req)
  local method, path
  if req then method, path = req:info() end
  return core.new_error{kind = kind, message = message, method = method, path = path}
end

--- The message of an argument mistake: `moltflow.<fn>: <message>`.
function errors.message(fn, message)
  return ("moltflow.%s: %s"):format(fn, message)
end

--- Raises an argument mistake, blamed on the caller `level` frames up
-- (default: the caller of the function that calls this).
function errors.raise(fn, message, level)
  error(errors.message(fn, message), (level or 2) + 1)
end

return errors
