-- Issue 24, finding 5 (its core part): sys.mkdir_private, which makes the
-- CLI's configuration directory, refuses an existing directory that group
-- or others may write to: they could plant a config.json there, or replace
-- the credentials file. Its own directory with mode 700 or 755 is fine.
local core = require "moltflow.core"
local proc = require "spec.support.process"

local sys = core.sys

describe("sys.mkdir_private and a directory others may write to", function()
  local dir
  before_each(function() dir = proc.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  for _, mode in ipairs{"777", "1777", "775", "730", "702"} do
    it("refuses its own existing directory with mode " .. mode, function()
      local path = dir .. "/moltflow"
      assert(os.execute("mkdir " .. proc.quote(path) .. " && chmod " .. mode .. " " .. proc.quote(path)))
      local ok, err, errno = sys.mkdir_private(path)
      assert.is_nil(ok)
      assert.equal(("refusing %s: group or others may write to the directory (mode %s); chmod go-w it")
                   :format(path, mode), err)
      assert.equal(13, errno) -- EACCES
      assert.equal(mode, proc.mode(path)) -- left as it was
    end)
  end

  it("accepts its own directory that only it may write to, and makes missing ones 700", function()
    for _, mode in ipairs{"700", "755", "750"} do
      local path = dir .. "/m" .. mode
      assert(os.execute("mkdir " .. proc.quote(path) .. " && chmod " .. mode .. " " .. proc.quote(path)))
      assert.is_true(sys.mkdir_private(path))
    end
    assert.is_true(sys.mkdir_private(dir .. "/new/moltflow"))
    assert.equal("700", proc.mode(dir .. "/new/moltflow"))
  end)
end)
