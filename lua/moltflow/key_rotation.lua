--- moltflow.key_rotation: rotates the API key a fleet shares, with no failed
-- request (`admin.rotate_shared_key{...}`, `moltflow-admin keys rotate-shared`).
--
-- The contract's `POST /api-keys/{id}/rotate` stops the old secret at once, so
-- a fleet sharing it would fail until every worker had the new one. Instead:
--
-- 1. **create** a new key with the old one's scopes and name: key names are
--    unique (409) and cannot change, so the name gets a version suffix
--    (`billing-workers` -> `billing-workers@v2` -> `billing-workers@v3`); its
--    description names the rotation, so a run that crashed before recording
--    it finds it;
-- 2. **publish** it to the store (`api_key` with a version one higher): the
--    workers (`admin.new{api_key_store = store}`) pick it up at their next
--    version check, or at once on a 401;
-- 3. **drain**: wait `grace` seconds, or less once every worker that reported
--    in the last `grace` seconds reports the new version;
-- 4. **revoke** the old key.
--
-- Each step is recorded in the store (`api_key:rotation`, sealed with a seal
-- key) before the next starts, so a run that stops anywhere (a crash, a lost
-- connection) is finished by running it again: no key is left orphaned (a new
-- key that was created but not recorded is revoked and made again) or
-- unrevoked, and the old key is revoked only after the new one was published
-- and drained: the fleet is never locked out.
-- @module moltflow.key_rotation

local core = require "moltflow.core"

local M = {}

-- The failures of rotating key `id`: SDK errors (tostring "moltflow: <kind>
-- ROTATE <id>: <message>"); `cause`: the error behind one.
local function failures(id)
  return function(kind, message, cause)
    local err = core.new_error{kind = kind, message = message, method = "ROTATE", path = id,
                               status = type(cause) == "table" and cause.status or nil}
    err.cause = cause
    return nil, err
  end
end

local function describe(rotation) return "moltflow rotation " .. rotation end

--- Runs (or resumes) the rotation of the key `opts.id` published in `opts.store`.
-- @tparam table opts `client` (a client allowed `account:manage`), `store` (a
--   store with the shared-key methods: `admin.redis_store`, ...), `id` (the
--   key being replaced: the one the store publishes, or the fleet's key before
--   it used a store), `grace` (seconds to wait after publishing, default 60),
--   `sleep` (function(seconds), default `core.sleep`), `on_step`
--   (function(step, state): told of each step, for the CLI)
-- @return {old_id, new_id, version, drained = "reports" or "grace"}, or nil and an error
function M.rotate(opts)
  local c, store, sleep = opts.client, opts.store, opts.sleep or core.sleep
  local fail = failures(tostring(opts.id))
  local grace = opts.grace or 60
  local on_step = opts.on_step or function() end
  local state, err = store:load_rotation()
  if state == nil then return fail("store", "cannot read the rotation state: " .. tostring(err), err) end
  local function save(step)
    state.step = step
    local ok, serr = store:save_rotation(state)
    if not ok then
      return fail("store", ("cannot record the rotation's step '%s': %s"):format(step, tostring(serr)), serr)
    end
    on_step(step, {old_id = state.old_id, new_id = state.new_id, version = state.version}) -- never the secret
    return true
  end

  if not state then
    local published, perr = store:load_api_key()
    if published == nil then return fail("store", "cannot read the published key: " .. tostring(perr), perr) end
    if published and published.id ~= opts.id then
      return fail("usage", ("the store publishes key %s, not %s: rotate that one"):format(published.id, opts.id))
    end
    local old, gerr = c.api_keys:get(opts.id)
    if not old then return fail(gerr.kind or "api", "cannot read key " .. opts.id .. ": " .. tostring(gerr), gerr) end
    state = {rotation = core.sha256(core.random_bytes(16)):sub(1, 16), old_id = opts.id, name = old.name,
             scopes = old.scopes, after_version = published and published.version or 0, grace = grace,
             started_at = core.time()}
    local ok, serr = save("create")
    if not ok then return nil, serr end
  elseif state.old_id ~= opts.id then
    return fail("usage", ("a rotation of key %s is in progress in this store: run it again for that key first")
                :format(tostring(state.old_id)))
  elseif opts.grace then
    state.grace = opts.grace -- a run that resumes may shorten (or lengthen) the drain
  end

  if state.step == "create" then
    -- a key this rotation made before a crash, whose secret was never recorded: useless, revoked
    local keys, lerr = c.api_keys:list()
    if not keys then return fail(lerr.kind or "api", "cannot list the keys: " .. tostring(lerr), lerr) end
    for _, k in ipairs(keys) do
      if k.description == describe(state.rotation) and k.id ~= state.new_id then
        local done, rerr = c.api_keys:revoke(k.id)
        if done == nil and rerr.status ~= 404 then
          return fail(rerr.kind or "api", "cannot revoke the orphaned key " .. k.id .. ": " .. tostring(rerr), rerr)
        end
      end
    end
    local base = tostring(state.name):gsub("@v%d+$", "")
    local new, cerr = c.api_keys:create{name = ("%s@v%d"):format(base, state.after_version + 1), scopes = state.scopes,
                                        description = describe(state.rotation)}
    if not new then return fail(cerr.kind or "api", "cannot create the new key: " .. tostring(cerr), cerr) end
    state.new_id, state.new_key = new.id, new.raw_key
    local ok, serr = save("publish")
    if not ok then return nil, serr end
  end

  if state.step == "publish" then
    local version = state.after_version + 1
    local ok, found = store:publish_api_key({version = version, id = state.new_id, key = state.new_key,
                                             published_at = core.time()}, state.after_version)
    if ok == nil then return fail("store", "cannot publish the new key: " .. tostring(found), found) end
    if not ok then
      -- published by an earlier run of this rotation (then the store holds the new key), or by someone else
      local cur = store:load_api_key()
      if not (cur and cur.id == state.new_id) then
        return fail("conflict", ("another publication (version %s) came first: the new key %s is not published")
                    :format(tostring(found), state.new_id))
      end
    end
    state.published_at, state.version = core.time(), version
    local sok, serr = save("drain")
    if not sok then return nil, serr end
  end

  if state.step == "drain" then
    state.drained = "grace"
    while core.time() < state.published_at + state.grace do
      local reports = store:api_key_reports()
      if reports then
        local live, behind = 0, 0
        for _, r in pairs(reports) do
          if r.at > state.published_at - state.grace then
            live = live + 1
            if r.version < state.version then behind = behind + 1 end
          end
        end
        if live > 0 and behind == 0 then state.drained = "reports" break end
      end
      sleep(math.min(0.25, math.max(0.01, state.published_at + state.grace - core.time())))
    end
    local ok, serr = save("revoke")
    if not ok then return nil, serr end
  end

  if state.step == "revoke" then
    local done, rerr = c.api_keys:revoke(state.old_id)
    if done == nil and rerr.status ~= 404 then -- 404: revoked by an earlier run
      return fail(rerr.kind or "api", "cannot revoke the old key " .. state.old_id .. ": " .. tostring(rerr), rerr)
    end
    on_step("done", {old_id = state.old_id, new_id = state.new_id, version = state.version})
    local ok, serr = store:save_rotation(nil)
    if not ok then
      return fail("store", "the old key is revoked but the rotation's state stays: " .. tostring(serr), serr)
    end
  end
  return {old_id = state.old_id, new_id = state.new_id, version = state.version, drained = state.drained}
end

return M
