-- Issue 23, measured: nginx with two workers serving through the SDK, the
-- fleet's API key taken from Redis (api_key_store), under wrk (50
-- connections, 20 s) against the emulator. The key is rotated three times
-- during the run (create -> publish -> drain -> revoke): no request fails,
-- and the emulator shows each old key last used before its revoke.
local emu = require "spec.support.emulator"
local redis_server = require "spec.support.redis"
local sdk_nginx = require "spec.support.sdk_nginx"
local proc = require "spec.support.process"
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local rotation = require "moltflow.key_rotation"

local SECONDS = tonumber(os.getenv("ROTATION_WRK_SECONDS") or "20")

describe("key rotation under load", function()
  local defer, cleanup = proc.cleanups()
  after_each(cleanup)
  it("wrk -c50 -d20s through two nginx workers, three rotations: 0 non-2xx", function()
    emu.reset()
    emu.control("POST", "config", {rate_limit = false}) -- the load is the SDK's, not the plan's
    defer(function() emu.control("POST", "config", {rate_limit = true}) end)
    local server = redis_server.start()
    defer(function() server:stop() end)
    local store = admin.redis_store{url = server.url, prefix = "wrk:", seal_key = false}
    -- the fleet starts on acme's usage key, published as version 1
    assert(store:publish_api_key({version = 1, id = "key_acme_usage", key = emu.seed.keys.usage_only}, 0))
    local nginx = sdk_nginx.start{base_url = emu.url, redis = server.url, prefix = "wrk:"}
    defer(nginx.stop)
    local warm = proc.run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", nginx.url})
    assert.equal("200", warm.stdout, nginx.log())

    local dir = proc.tmpdir()
    defer(function() os.execute("rm -rf " .. proc.quote(dir)) end)
    assert(proc.sh(("%s & echo $! >%s"):format(proc.without_inherited_fds(("exec wrk -t2 -c50 -d%ds %s >%s 2>&1")
      :format(SECONDS, proc.quote(nginx.url), proc.quote(dir .. "/wrk.out"))), proc.quote(dir .. "/wrk.pid"))))
    local started = core.monotime()
    local manager = admin.new{base_url = emu.url, api_key = emu.seed.keys.all}
    local id, results = "key_acme_usage", {}
    for i = 1, 3 do
      -- rotations start at 15%, 40% and 65% of the run; each drains up to 2 s
      local at = started + SECONDS * (0.15 + 0.25 * (i - 1))
      while core.monotime() < at do core.sleep(0.05) end
      local r, err = rotation.rotate{client = manager, store = store, id = id, grace = 2}
      assert(r, tostring(err))
      results[i], id = r, r.new_id
    end
    local wrk_pid = proc.slurp(dir .. "/wrk.pid"):match("%d+")
    proc.wait_for(function() return not proc.sh("kill -0 " .. wrk_pid .. " 2>/dev/null") end, SECONDS + 30)
    local out = proc.slurp(dir .. "/wrk.out")
    -- the workers' version checks
    local gets = tonumber(server:cli("INFO", "commandstats"):match("cmdstat_get:calls=(%d+)"))
    -- the statuses the emulator answered, in its log (which keeps the latest 10,000 to 20,000)
    local answered, logged = {}, emu.statuses_for("GET", "/usage/current")
    for _, status in ipairs(logged) do answered[status] = (answered[status] or 0) + 1 end
    local statuses = {}
    for status, n in pairs(answered) do statuses[#statuses + 1] = status .. ": " .. n end
    table.sort(statuses)
    local requests = tonumber(out:match("(%d+) requests in"))
    local non2xx = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)") or "0")
    local socket_errors = out:match("Socket errors: ([^\n]+)")
    print(("\n  wrk: %s requests in %d s, %d non-2xx, rotations %d (drained by: %s, %s, %s)%s;"
           .. " Redis GETs %d; the emulator's last %d answers: %s"):format(
      tostring(requests), SECONDS, non2xx, #results, results[1].drained, results[2].drained, results[3].drained,
      socket_errors and (", socket errors: " .. socket_errors) or "", gets or -1, #logged, table.concat(statuses, ", ")))
    -- not a read per call: after a worker's first calls (each reads the store until it holds a key),
    -- the version comes from the shared dict, which one worker refreshes once a second
    assert.is_true(gets < (requests or 0) / 100, gets .. " Redis GETs for " .. tostring(requests) .. " requests")
    assert.is_number(requests, out)
    assert.is_true(requests > 1000, out)
    assert.equal(0, non2xx, out .. "\n" .. nginx.log())
    assert.is_nil(socket_errors, out)
    -- each old key: used during the run, last used before its revoke
    local revoked = emu.control("GET", "revoked-keys")
    assert.equal(3, #revoked)
    local olds = {"key_acme_usage", results[1].new_id, results[2].new_id}
    for i, k in ipairs(revoked) do
      assert.equal(olds[i], k.id)
      assert.is_true(k.uses > 0, k.id .. " was never used")
      assert.is_true(k.last_used < k.revoked_at, k.id .. " used after its revoke")
      print(("  %s: %d uses, last %.3f s before its revoke"):format(k.id, k.uses, k.revoked_at - k.last_used))
    end
  end)
end)
