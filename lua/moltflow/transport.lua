--- moltflow.transport: the transports by name, and the host a client runs in.
-- "curl" (`moltflow.transport.curl`) and "ngx" (`moltflow.transport.ngx`)
-- are loaded when a client first names them; `register` adds others.
-- Without a `transport` option a client inside nginx takes "ngx" (also when
-- made in init_by_lua: that transport uses libcurl itself in the phases
-- without cosockets), else "curl".
-- @module moltflow.transport

local nginx = require "moltflow.transport.ngx.host"

local M = {}

local BUILT_IN = {["curl"] = true, ["ngx"] = true} -- names, as users give them
local by_name, names = {}, {}

--- Registers a transport under a name (for the `transport` option).
function M.register(name, io)
  by_name[name] = io
  names[io] = name
end

--- The name a transport was registered under, or nil.
function M.name_of(io)
  return names[io]
end

--- The transport for a client's `transport` option (a name, a table or
-- nil), or nil and the name when none has that name.
function M.pick(t)
  if type(t) == "table" then return t end
  if t == nil and nginx.active() then t = "ngx" end
  t = t or "curl"
  if not by_name[t] and BUILT_IN[t] then M.register(t, require("moltflow.transport." .. t)) end
  local io = by_name[t]
  if not io then return nil, t end
  return io
end

--- The host's services a client asks for (nginx's, which decline outside
-- nginx): `log(line)`, `wait(cond, deadline, now)`, `threads(n, body,
-- stop)`, `explain(err)`. See moltflow.transport.ngx.host.
function M.host()
  return nginx
end

return M
