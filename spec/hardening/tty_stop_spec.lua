-- Issue 24, finding 9: Ctrl-Z at a password prompt (sys.read_tty with echo
-- off). The process stops with the terminal as it found it (echo on: the
-- shell the user gets back shows what they type), and on `fg` it hides the
-- echo again and asks again (what was typed before the stop is discarded).
-- A pseudo-terminal under a small job-control shell (spec/support/pty.lua).
local pty = require "spec.support.pty"
local proc = require "spec.support.process"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/hardening/tty_stop_spec%.lua$") or "."
local interpreter = jit and "/usr/bin/luajit" or "/usr/bin/lua5.4"
local cpath = root .. (jit and "/build/luajit/?.so" or "/build/5.4/?.so")

describe("sys.read_tty and Ctrl-Z", function()
  local dir
  before_each(function() dir = proc.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  local function prompt_script()
    local path = dir .. "/prompt.lua"
    proc.spit(path, ([[
package.cpath = %q
local sys = require("moltflow.core").sys
local line, err, signal = sys.read_tty("Password: ", false)
io.write("got:", tostring(line), ":", tostring(err), ":", tostring(signal), "\n")
]]):format(cpath))
    return {interpreter, path}
  end

  it("restores the terminal while stopped, and hides the echo again once continued", function()
    local r = pty.run(prompt_script(), {
      {expect = "Password: "}, {send = "hal"}, {send = "\26"}, -- Ctrl-Z
      {await_stop = true},
      {resume = true},
      {expect = "Password: ", count = 2}, -- asked again
      {send = "hunter2\n"},
    }, {job_control = true, timeout = 10})
    assert.equal(0, r.code, r.output)
    assert.same({{echo = true}}, r.stops) -- the shell got its terminal back with echo on
    assert.matches("got:hunter2:nil:nil", r.output, 1, true)
    assert.equal(1, select(2, r.output:gsub("hunter2", ""))) -- only the script's own line: no echo after fg
    assert.is_nil(r.output:find("hal", 1, true))
    assert.is_true(r.echo, r.stty)
    assert.is_true(r.icanon)
  end)

  it("stops and resumes more than once", function()
    local r = pty.run(prompt_script(), {
      {expect = "Password: "}, {send = "\26"}, {await_stop = true}, {resume = true},
      {expect = "Password: ", count = 2}, {send = "\26"}, {await_stop = true}, {resume = true},
      {expect = "Password: ", count = 3}, {send = "s3cret\n"},
    }, {job_control = true, timeout = 10})
    assert.equal(0, r.code, r.output)
    assert.same({{echo = true}, {echo = true}}, r.stops)
    assert.matches("got:s3cret:nil:nil", r.output, 1, true)
    assert.equal(1, select(2, r.output:gsub("s3cret", "")))
  end)
end)
