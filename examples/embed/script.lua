-- Run by examples/embed/host.c: the SDK as a game or tool host would use it.
--   moltflow-embed examples/embed/script.lua BASE_URL API_KEY
local admin = require "moltflow.admin"
local base_url, api_key = ...
local c = admin.new{base_url = base_url, api_key = api_key}

-- a blocking call, as in a script
local usage = assert(c.usage:current())
print("blocking: messages_sent " .. usage.messages_sent)

-- a batch: three calls at once
local results = c:batch({{"usage.current"}, {"usage.history", {months = 3}}, {"billing.plans"}})
print(("batch: %d, %d months, %d plans"):format(results[1][1].messages_sent,
  #results[2][1].months, #results[3][1].plans))

-- a frame loop: the call runs while frames keep coming, poll never blocks
local h = c:spawn("usage.daily", {days = 7})
local frames = 0
while not h.done do
  c:poll(0.001) -- at most 1 ms of the frame
  frames = frames + 1
end
print(("frames: the call finished after %s frames; %d days"):format(frames > 0 and "some" or "no",
  #h:result().days))
c:close()
