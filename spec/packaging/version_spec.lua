-- One version everywhere it lives: the core (`admin.VERSION`, `moltflow-admin
-- --version`), both rockspecs (their file names too), the Debian changelog
-- and a dated CHANGELOG section.
local admin = require "moltflow.admin"
local proc = require "spec.support.process"

local root = assert(io.popen("pwd")):read("*l")

describe("the version", function()
  local v = admin.VERSION

  it("is a semantic version, and moltflow-admin --version says it", function()
    assert.matches("^%d+%.%d+%.%d+$", v)
    if proc.reference_run then -- the command runs under lua5.4
      local r = proc.run({root .. "/bin/moltflow-admin", "--version"})
      assert.equal("moltflow-admin " .. v .. "\n", r.stdout)
    end
  end)

  it("names the rockspecs and is their version", function()
    local sdk = proc.slurp(("%s/moltflow-admin-%s-1.rockspec"):format(root, v))
    local emulator = proc.slurp(("%s/emulator/moltflow-emulator-%s-1.rockspec"):format(root, v))
    assert.matches('\nversion = "' .. v:gsub("%.", "%%.") .. '%-1"', sdk)
    assert.matches('tag = "v' .. v:gsub("%.", "%%.") .. '"', sdk)
    assert.matches('"moltflow%-admin = ' .. v:gsub("%.", "%%.") .. '"', emulator)
  end)

  it("is the Debian package's, and the CHANGELOG dates it", function()
    local deb = proc.slurp(root .. "/debian/changelog"):match("^lua%-moltflow%-admin %(([^)]+)%)")
    assert.equal(v .. "-1", deb)
    assert.matches("\n## %[" .. v:gsub("%.", "%%.") .. "%] %- %d%d%d%d%-%d%d%-%d%d\n", proc.slurp(root .. "/CHANGELOG.md"))
  end)
end)
