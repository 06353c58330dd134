-- Issue 24, finding 6: where `export -o` writes. Its core part: sys.stat
-- names a named pipe, and sys.write_pipe writes into one in place (never
-- following a symbolic link, never into anything but a pipe).
local core = require "moltflow.core"
local proc = require "spec.support.process"

local sys = core.sys

describe("sys.write_pipe and sys.stat on pipes", function()
  local dir
  before_each(function() dir = proc.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  it("writes into a named pipe in place, for the reader at its other end", function()
    local fifo, out = dir .. "/pipe", dir .. "/out"
    assert(os.execute("mkfifo -m 600 " .. proc.quote(fifo)))
    assert.equal("fifo", sys.stat(fifo, true).kind)
    -- the reader: cat copies what comes through the pipe, then exits
    assert(os.execute(("cat %s > %s &"):format(proc.quote(fifo), proc.quote(out))))
    assert.is_true(sys.write_pipe(fifo, '{"user":1}'))
    assert.is_true(proc.wait_for(function() return proc.slurp(out) == '{"user":1}' end, 5))
    assert.equal("fifo", sys.stat(fifo, true).kind) -- still the pipe
  end)

  it("refuses a regular file and a symbolic link, and writes nothing", function()
    proc.spit(dir .. "/file", "old")
    local ok, err = sys.write_pipe(dir .. "/file", "new")
    assert.is_nil(ok)
    assert.equal("refusing " .. dir .. "/file: not a named pipe", err)
    assert.equal("old", proc.slurp(dir .. "/file"))
    assert(os.execute("mkfifo " .. proc.quote(dir .. "/pipe") .. " && ln -s pipe " .. proc.quote(dir .. "/link")))
    ok, err = sys.write_pipe(dir .. "/link", "new")
    assert.is_nil(ok)
    assert.matches("cannot open " .. dir .. "/link", err, 1, true)
    assert.has_error(function() sys.write_pipe("", "x") end,
      "moltflow.sys.write_pipe: 'path' must be a non-empty string without NUL bytes")
  end)
end)
