-- The checkout's bin/moltflow-admin through symbolic links, as users put it
-- on their PATH (~/bin/moltflow-admin -> checkout/bin/moltflow-admin).
local proc = require "spec.support.process"

local root = assert(io.popen("pwd")):read("*l")

describe("bin/moltflow-admin through a symbolic link", function()
  if not proc.reference_run then
    pending("the command runs under lua5.4 (its shebang): once, in the Lua 5.4 pass")
    return
  end
  local dir
  before_each(function() dir = proc.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  local function version_via(link)
    return proc.run({"env", "-i", "PATH=/usr/bin:/bin", link, "--version"})
  end

  it("finds its modules in the checkout the link points to", function()
    assert.is_true(proc.sh(("ln -s %s %s"):format(proc.quote(root .. "/bin/moltflow-admin"),
      proc.quote(dir .. "/moltflow-admin"))))
    local r = version_via(dir .. "/moltflow-admin")
    assert.equal(0, r.code, r.stderr)
    assert.equal("moltflow-admin " .. require("moltflow.admin").VERSION .. "\n", r.stdout)
  end)

  it("follows a chain of links, relative ones included", function()
    assert.is_true(proc.sh(("mkdir %s/bin && ln -s %s %s/bin/first && ln -s ../bin/first %s/bin/moltflow-admin")
      :format(proc.quote(dir), proc.quote(root .. "/bin/moltflow-admin"), proc.quote(dir), proc.quote(dir))))
    local r = version_via(dir .. "/bin/moltflow-admin")
    assert.equal(0, r.code, r.stderr)
    assert.matches("^moltflow%-admin %d+%.%d+%.%d+\n$", r.stdout)
  end)
end)
