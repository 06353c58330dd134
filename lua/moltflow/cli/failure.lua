--- moltflow.cli.failure: how a command fails, and the exit status it ends with.
-- A failure carries a kind and one line for stderr; the exit status comes
-- from the kind, whether the SDK made it (its errors' `err.kind`) or the
-- command did (`usage`, `quota`, ...). Raised errors get their kind from
-- where they were raised: inside an SDK call (`failure.call`) an argument
-- error, anywhere else an internal one.
-- @module moltflow.cli.failure

local failure = {}

--- Exit statuses: `ok` 0, `http` 1 (the server refused: 4xx other than 401,
-- 5xx, or an unreadable answer), `usage` 2 (bad command line), `quota` 3
-- (`quota --fail-above` passed), `auth` 4 (not logged in, or the credentials
-- were refused: 401), `network` 5 (no connection, timeout), `interrupted` 130
-- (Ctrl-C; a signal at the password prompt exits 128 + its number, as shells
-- report it).
failure.EXIT = {ok = 0, http = 1, usage = 2, quota = 3, auth = 4, network = 5, interrupted = 130}

local EXIT = failure.EXIT

-- The exit status of each kind of error. Any other kind (the SDK's http,
-- rate_limited, decode, store ...; "internal") exits EXIT.http.
local EXIT_OF_KIND = {
  auth = EXIT.auth, -- the SDK's (a 401) and the command's (not logged in)
  network = EXIT.network,
  timeout = EXIT.network,
  argument = EXIT.usage, -- raised by the SDK: a bad value from the command line
  usage = EXIT.usage,
  quota = EXIT.quota,
  interrupted = EXIT.interrupted,
}

local Failure = {}
Failure.__index = Failure

function Failure:__tostring()
  return self.message
end

--- A failure that ends the command.
-- @tparam string kind what went wrong (see the exit status it maps to)
-- @tparam string message one line for stderr
-- @return the failure
function failure.new(kind, message)
  return setmetatable({kind = kind, message = message}, Failure)
end

--- The failure for a terminating signal (at the password prompt): it exits
-- 128 + the signal's number.
-- @tparam integer number the signal
-- @return the failure
function failure.signal(number)
  local f = failure.new("signal", "interrupted")
  f.signal = number
  return f
end

--- Whether `v` is a failure.
function failure.is(v)
  return getmetatable(v) == Failure
end

--- The exit status the failure ends the command with.
-- @treturn integer the status
function Failure:exit_status()
  if self.kind == "signal" then return 128 + self.signal end
  return EXIT_OF_KIND[self.kind] or EXIT.http
end

--- The failure for an SDK error table (`nil, err` from a call).
-- @param err the error
-- @return the failure
function failure.from_sdk(err)
  local what = err.status and ("HTTP " .. err.status) or ((err.kind or "unknown") .. " error")
  local f = failure.new(err.kind, ("%s on %s %s: %s"):format(what, tostring(err.method or "?"),
                                                             tostring(err.path or "?"), tostring(err.message or "")))
  if f:exit_status() == EXIT.auth then
    f.message = f.message .. " (log in again with 'moltflow-admin login', or check the API key)"
  end
  return f
end

--- The failure for a raised error: a failure as it is; the interpreter's
-- SIGINT handler's "interrupted!" (raised in whatever Lua code runs at
-- Ctrl-C) an interruption; anything else an error of its own `kind` when it
-- carries one, else of `kind`, its message without the source position.
-- @param e what was raised
-- @tparam string kind the kind of a plain error
-- @return the failure
function failure.from_raise(e, kind)
  if failure.is(e) then return e end
  local text = tostring(e)
  if text:match("interrupted!$") then return failure.new("interrupted", "interrupted") end
  if type(e) == "table" and type(e.kind) == "string" then kind = e.kind end
  return failure.new(kind, "error: " .. text:gsub("^[^:]*%.lua:%d+: ", ""))
end

local function returned(ok, ...)
  if not ok then error(failure.from_raise((...), "argument"), 0) end
  return ...
end

--- Calls an SDK function and returns what it returns; when it raises, the
-- command ends with an argument error (the SDK raises on bad arguments
-- only, and here they come from the command line).
-- @tparam function f the function
-- @param ... its arguments
function failure.call(f, ...)
  return returned(pcall(f, ...))
end

--- `value, res` from an SDK call: returns them, or, when the value is nil,
-- ends the command with the error (`res`).
function failure.check(v, res)
  if v == nil then error(failure.from_sdk(res), 0) end
  return v, res
end

return failure
