--- moltflow.transport.ngx.host: what the SDK knows about nginx, in one
-- place: the phase table, and the services other modules ask for inside
-- nginx (a semaphore wait, light threads for a batch, the error log, the
-- hint for a missing `env` directive, cosockets and shared dicts for the
-- stores). Outside nginx `active()` is false and the services decline.
-- @module moltflow.transport.ngx.host

local M = {}

--- The one phase table: what each nginx phase allows. `cosockets`: TCP
-- cosockets and ngx.sleep; `yield`: a request may wait (semaphores, the
-- stores' cosockets); `threads`: ngx.thread. Phases not listed (init,
-- init_worker, set, log, header and body filters) allow none: a call there
-- can only block the worker.
M.PHASES = {
  rewrite = {cosockets = true, yield = true, threads = true},
  access = {cosockets = true, yield = true, threads = true},
  content = {cosockets = true, yield = true, threads = true},
  timer = {cosockets = true, yield = true, threads = true},
  ssl_cert = {cosockets = true, yield = true},
  ssl_session_fetch = {cosockets = true, yield = true},
  ssl_client_hello = {cosockets = true},
}

local NONE = {}

--- Whether this Lua state runs inside nginx (OpenResty's ngx API).
function M.active()
  return ngx ~= nil and ngx.socket ~= nil and ngx.get_phase ~= nil
end

--- What the current phase allows (a row of `PHASES`; empty outside nginx).
function M.phase()
  if not (ngx and ngx.get_phase) then return NONE end
  return M.PHASES[ngx.get_phase()] or NONE
end

--- The current phase's name (nil outside nginx).
function M.phase_name()
  return ngx and ngx.get_phase and ngx.get_phase()
end

--- Writes a warning to nginx's error log: true, or false outside nginx.
function M.log(line)
  if ngx and ngx.log then
    ngx.log(ngx.WARN, line)
    return true
  end
  return false
end

--- Waits on a semaphore until `cond` (moltflow.async.condition) is
-- signalled or `deadline` (monotonic seconds, `now` the current reading);
-- returns whether signalled, or nil where the phase cannot wait.
function M.wait(cond, deadline, now)
  if not M.phase().yield then return nil end
  local sema = cond.sema
  if not sema then
    sema = require("ngx.semaphore").new()
    cond.sema, cond.sema_waiters = sema, 0
    cond:on_signal(function() sema:post(cond.sema_waiters) end)
  end
  cond.sema_waiters = cond.sema_waiters + 1
  local left = deadline - now
  if left > 0 then sema:wait(left) end
  return cond.signalled
end

--- Runs `body` on n light threads and waits for them all: true; or false
-- where the phase has no threads. The first thread that raises calls
-- `stop()` and its error is raised once all have ended.
function M.threads(n, body, stop)
  if not (ngx and ngx.thread and M.phase().threads) then return false end
  local threads = {}
  for w = 1, n do threads[w] = ngx.thread.spawn(body) end
  local failure
  for w = 1, #threads do
    local ok, err = ngx.thread.wait(threads[w])
    if not ok and not failure then
      failure = err
      stop()
    end
  end
  if failure then error(failure, 0) end
  return true
end

--- Adds what a reader inside nginx needs to an error: "no credentials"
-- names the `env` directive, without which nginx hides $MOLTFLOW_API_KEY
-- from the workers.
function M.explain(err)
  if ngx and err.kind == "auth" and not err.status and tostring(err.message):find("^no credentials") then
    err.message = err.message .. " (nginx passes a variable such as MOLTFLOW_API_KEY to its workers only when "
                  .. "nginx.conf declares it: env MOLTFLOW_API_KEY;)"
  end
end

--- A TCP cosocket where the phase can yield, else nil (the stores then use
-- LuaSocket).
function M.cosocket()
  if ngx and ngx.socket and M.phase().yield then return ngx.socket.tcp() end
  return nil
end

--- `ngx.shared[name]`, or nil.
function M.shared_dict(name)
  return ngx and ngx.shared and ngx.shared[name] or nil
end

--- A number shared by the workers through the shared dict `dict_name`,
-- kept `ttl` seconds: a function returning the cached value (a dict read),
-- or after it expired `fetch()`'s, fetched by one worker at a time (the
-- others return nil meanwhile). For the shared API key's version: one store
-- read per `ttl` for the whole nginx, whatever the number of workers or calls.
-- Raises when the dict is not declared (`lua_shared_dict`).
function M.cached_number(dict_name, key, ttl, fetch)
  local dict = M.shared_dict(dict_name)
  if not dict then
    error(("moltflow.new: field 'api_key_shdict': no lua_shared_dict %s in nginx.conf"):format(dict_name), 3)
  end
  local lock = key .. ":fetching"
  return function()
    local v = dict:get(key)
    if v ~= nil then return v end
    if not M.phase().yield or not dict:add(lock, true, 5) then return nil end
    local ok, fetched = pcall(fetch)
    if ok and type(fetched) == "number" then dict:set(key, fetched, ttl) end
    dict:delete(lock)
    return ok and fetched or nil
  end
end

--- This worker's pid.
function M.worker_pid()
  return ngx.worker.pid()
end

return M
