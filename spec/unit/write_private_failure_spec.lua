-- core.sys.write_private when the write itself fails (a file size limit,
-- RLIMIT_FSIZE, with SIGXFSZ ignored: write() fails with EFBIG): it returns
-- nil and the reason, the old file stays as it was, and no temporary file
-- is left beside it. (Sampled survivor: the temporary file's unlink dropped.)
local proc = require "spec.support.process"

local function listing(dir)
  local p = io.popen("ls -A " .. proc.quote(dir))
  local names = {}
  for name in p:lines() do names[#names + 1] = name end
  p:close()
  table.sort(names)
  return names
end

describe("core.sys.write_private past a file size limit", function()
  local dir
  before_each(function() dir = proc.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  local function write_limited(path)
    local code = ("local ok, err = require('moltflow.core').sys.write_private(%q, ('x'):rep(200000)) "
                  .. "io.write(tostring(ok), '|', tostring(err))"):format(path)
    -- an ignored signal stays ignored across exec
    local cmd = ("ulimit -f 8; trap '' XFSZ; exec %s -e %s"):format(proc.lua, proc.quote(code))
    return proc.run({"sh", "-c", cmd}, {env = {LUA_PATH = package.path, LUA_CPATH = proc.cpath .. ";;"}})
  end

  it("fails, and leaves nothing behind when there was no file", function()
    local path = dir .. "/tokens.json"
    local r = write_limited(path)
    assert.equal(0, r.code, r.stderr)
    assert.matches("^nil|cannot write ", r.stdout)
    assert.matches("File too large", r.stdout)
    assert.same({}, listing(dir))
  end)

  it("fails, and keeps the old file as it was, with no temporary file beside it", function()
    local path = dir .. "/tokens.json"
    local f = assert(io.open(path, "wb"))
    f:write("old contents")
    f:close()
    local r = write_limited(path)
    assert.matches("^nil|", r.stdout, r.stderr)
    assert.same({"tokens.json"}, listing(dir))
    assert.equal("old contents", proc.slurp(path))
  end)
end)
