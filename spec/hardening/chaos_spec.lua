-- Chaos: mixed SDK calls through a seeded fault proxy in front of the
-- emulator (resets before and after the server got the request, truncated and
-- garbled answers, stalls past the timeout), then the invariants of
-- spec/support/chaos.lua against the emulator's request log and stored keys.
--
-- CHAOS_SEEDS (comma-separated; default 1,2,3,4, the short run of `make test`)
-- and CHAOS_CALLS (calls per seed; default 200). `make soak` runs more seeds
-- and calls. Each seed's success rates go to stderr. The 99 % is over the reads
-- and idempotent writes of every seed together (about 500 calls here): each
-- fails only when all three of its attempts meet a fault.
local chaos = require "spec.support.chaos"
local emu = require "spec.support.emulator"
local fault_proxy = require "spec.support.fault_proxy"

local SEEDS = {}
for s in (os.getenv("CHAOS_SEEDS") or "1,2,3,4"):gmatch("%d+") do SEEDS[#SEEDS + 1] = tonumber(s) end
local CALLS = tonumber(os.getenv("CHAOS_CALLS")) or 200
-- reads and idempotent writes: retried after any ambiguous failure
local WANTED_RATE = 0.99

describe("chaos", function()
  local proxy
  setup(function()
    proxy = fault_proxy.start{target = tonumber(emu.url:match("^http://[^:/]+:(%d+)/"))}
  end)
  teardown(function()
    if proxy then proxy:stop() end
    emu.reset()
  end)

  it(("%d calls per seed (%s) keep every invariant, and %d %% of reads and idempotent writes succeed")
       :format(CALLS, table.concat(SEEDS, ","), WANTED_RATE * 100), function()
    local total = {}
    for _, seed in ipairs(SEEDS) do
      local report = chaos.run{seed = seed, calls = CALLS, proxy = proxy}
      io.stderr:write(chaos.summary(report), "\n")
      chaos.add(total, report)
    end
    io.stderr:write(chaos.summary(total, "all seeds"), "\n")
    assert.are.same({}, total.violations)
    assert.is_true(total.faults > 0)
    local reads, writes = total.kinds.read, total.kinds.idempotent_write
    local rate = (reads.ok + writes.ok) / (reads.calls + writes.calls)
    assert.is_true(rate >= WANTED_RATE, ("%.2f %%: "):format(100 * rate) .. chaos.summary(total, "all seeds"))
  end)
end)
