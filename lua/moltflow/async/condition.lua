--- moltflow.async.condition: a one-shot condition. Signalled once (the end
-- of a token refresh), it wakes every waiter; waiters are functions
-- registered with `on_signal`.
-- @module moltflow.async.condition

local Condition = {}
Condition.__index = Condition
Condition.__name = "moltflow.condition"

local condition = {Condition = Condition}

--- A new condition: `cond.signalled`, `cond:signal()`, `cond:on_signal(fn)`.
function condition.new()
  return setmetatable({signalled = false, waiters = {}}, Condition)
end

function Condition:on_signal(fn)
  local w = self.waiters
  w[#w + 1] = fn
end

function Condition:signal()
  self.signalled = true
  local w = self.waiters
  self.waiters = {}
  for i = 1, #w do w[i]() end
end

return condition
