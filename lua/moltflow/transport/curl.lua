--- moltflow.transport.curl: the built-in transport, libcurl through the C
-- core, blocking the caller until the answer is read. A transport is
-- `{send = function(link, req) -> value, res | nil, err, sleep = function(seconds)}`
-- and optionally `configure(opts)` (checks at `admin.new`; its result is
-- `link.conf`). `link` is the client's transport link: `link.core` (the core
-- client), `link.loop` (its loop), `link.settings`, `link.conf`, `link.blocking`.
-- @module moltflow.transport.curl

local core = require "moltflow.core"

local curl = {}

function curl.send(link, req)
  local v, r = link.core:send(req)
  local loop = link.loop
  -- a watching host learns at once of the transfers that finished meanwhile
  if loop.watching then loop:after_blocking() end
  return v, r
end

curl.sleep = core.sleep

return curl
