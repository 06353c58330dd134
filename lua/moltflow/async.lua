--- moltflow.async: many calls at once over libcurl multi, and calls that
-- never block a host loop. The client's methods and `moltflow.admin` offer:
--
--   results = c:batch(calls, {concurrency = 8})   -- blocking, results in order
--   results = admin.batch(calls, opts)            -- calls on several clients
--   h = c:spawn(fn_or_"group.name", ...)          -- start without waiting
--   c:poll(timeout)                               -- drive; never blocks longer
--   admin.poll(timeout), loop:poll(timeout)       -- the same for a loop's (all its clients')
--   loop:watch{socket = fn, timer = fn}           -- event-driven: the host calls loop:action
--   c:set_scheduler(yield)                        -- yield inside a host coroutine
--
-- Every call runs the same `Client:_run` loop as a blocking call (refresh,
-- retries, pacing, hooks); only its I/O differs: `send` starts the request on
-- the client's curl multi handle and suspends until `poll` reports it done,
-- `sleep` suspends until a deadline. Calls run on a loop's coroutines: a
-- spawned call on one of its own, a batch on one worker per slot in flight
-- that takes the next call when its call ends. A call made from a coroutine
-- such a call itself created is not a task and blocks. Where the host has
-- light threads (nginx) `c:batch` runs its calls on them, over its transport.
--
-- Every client runs its transfers on a loop (`admin.loop()`, the Lua
-- state's default, unless given another): one curl multi handle under all
-- of them. The loop object is also the scheduler of the calls spawned on
-- its clients. Waking is by key: a request in flight is registered, by its
-- `req:key()`, in its loop's table of waiters; a poll of that loop (or a
-- host's `loop:action`) wakes exactly the waiters whose requests finished,
-- whichever scheduler (a batch's, a loop's) they belong to.
--
-- A call waiting for another call's token refresh waits on a condition
-- (`async.condition()`) that the refresh signals when it ends: a loop task
-- sleeps until it or its deadline, a blocking caller drives this client's
-- spawned calls meanwhile (`async.wait_blocking`).
--
-- The parts: `moltflow.async.loop` (the scheduler), `.runner` (the
-- coroutines it runs and their I/O), `.io` (host coroutines' I/O, blocking
-- waits), `.condition`, `.handle` (spawned calls), `.batch`. This module
-- gathers what they export.
-- @module moltflow.async

require("moltflow.compat").require_core() -- first: names the Lua to build it for
local condition = require "moltflow.async.condition"
local loops = require "moltflow.async.loop"
local runner = require "moltflow.async.runner"
local aio = require "moltflow.async.io"
local handle = require "moltflow.async.handle"
local batch = require "moltflow.async.batch"

local async = {}

--- A new condition: `cond.signalled`, `cond:signal()`, `cond:on_signal(fn)`.
async.condition = condition.new

--- The loop class (`admin.loop()`, `admin.new_loop()` make its objects).
async.Loop = loops.Loop

--- A loop object over a core loop (core.loop_new): `admin.new_loop`.
async.new_loop = loops.new

--- Blocks until `cond` is signalled or `deadline` (monotonic), driving
-- `loop`'s spawned calls meanwhile; returns whether it was signalled.
async.wait_blocking = aio.wait_blocking

--- The I/O of a host coroutine that yields through `yield(what)`.
async.host_io = aio.host_io

--- The handle class of spawned calls.
async.Handle = handle.Handle

--- Runs a list of calls (see `c:batch`).
async.run_batch = batch.run

--- What a canceled call's coroutine is resumed with.
async.CANCELED = runner.CANCELED

return async
