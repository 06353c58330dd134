-- `make deb`: the Debian package, extracted with dpkg-deb -x (not installed),
-- runs from the extracted tree: the command against the emulator, and a
-- script under every Lua version Debian ships (LuaJIT on the 5.1 module).
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local root = emu.root
local quote = proc.quote

-- Building it takes a while: once per `make test`, in the Lua 5.4 pass.
local describe_deb = proc.packaging_run and describe or pending

local function output(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return (s:gsub("%s+$", ""))
end

describe_deb("make deb", function()
  local tmp, deb, tree, multiarch

  setup(function()
    tmp = proc.tmpdir()
    local version = output("cd " .. quote(root) .. " && dpkg-parsechangelog -S Version")
    local arch = output("dpkg-architecture -qDEB_HOST_ARCH")
    multiarch = output("dpkg-architecture -qDEB_HOST_MULTIARCH")
    local mk = proc.run({"make", "--no-print-directory", "-s", "deb"}, {cwd = root})
    assert(mk.code == 0, mk.stderr)
    deb = ("%s/build/lua-moltflow-admin_%s_%s.deb"):format(root, version, arch)
    tree = tmp .. "/x"
    assert(proc.sh(("dpkg-deb -x %s %s"):format(quote(deb), quote(tree))), "dpkg-deb -x " .. deb)
  end)

  teardown(function()
    if tmp then os.execute("rm -rf " .. quote(tmp)) end
  end)

  it("is named lua-moltflow-admin_<version>_<arch>.deb and depends on what the module and command use", function()
    assert.matches("/build/lua%-moltflow%-admin_0%.2%.0%-1_[%w]+%.deb$", deb)
    local depends = output("dpkg-deb -f " .. quote(deb) .. " Depends")
    for _, pkg in ipairs{"libc6", "libcurl4", "libssl3", "lua-argparse", "lua5.4"} do
      assert.matches("%f[%w]" .. pkg:gsub("%p", "%%%0") .. "%f[^%w.-]", depends)
    end
    assert.equal("lua5.1-moltflow-admin, lua5.2-moltflow-admin, lua5.3-moltflow-admin, lua5.4-moltflow-admin",
                 output("dpkg-deb -f " .. quote(deb) .. " Provides"))
  end)

  it("holds the module for Lua 5.1-5.4 with its annotations and the command, not the emulator", function()
    for _, v in ipairs{"5.1", "5.2", "5.3", "5.4"} do
      assert.truthy(io.open(("%s/usr/share/lua/%s/moltflow/admin.lua"):format(tree, v)), v)
      assert.truthy(io.open(("%s/usr/lib/%s/lua/%s/moltflow/core.so"):format(tree, multiarch, v)), v)
      assert.falsy(io.open(("%s/usr/share/lua/%s/moltflow/emulator/init.lua"):format(tree, v)), v)
      assert.truthy(io.open(("%s/usr/share/lua/%s/moltflow/types/admin.lua"):format(tree, v)), v) -- LuaLS
    end
    assert.equal("755", proc.mode(tree .. "/usr/bin/moltflow-admin"))
    assert.equal("#!/usr/bin/lua5.4", proc.slurp(tree .. "/usr/bin/moltflow-admin"):match("^[^\n]*"))
    -- /usr/bin/moltflow-admin would collide between two architectures of a Multi-Arch: same package
    assert.not_equal("same", output("dpkg-deb -f " .. quote(deb) .. " Multi-Arch"))
  end)

  it("runs moltflow-admin plans against the emulator", function()
    local r = proc.run({tree .. "/usr/bin/moltflow-admin", "--json", "--base-url", emu.url, "plans"},
      {cwd = "/", env = {LUA_CPATH = tree .. "/usr/lib/" .. multiarch .. "/lua/5.4/?.so;;"}})
    assert.equal(0, r.code, r.stderr)
    assert.equal(4, #require("dkjson").decode(r.stdout).plans)
  end)

  -- The module loads from the extracted tree only (no default paths) and
  -- talks to the emulator.
  local SCRIPT = [[
    local admin = require "moltflow.admin"
    local c = admin.new{base_url = arg[1], api_key = arg[2]}
    local plans = assert(c.billing:plans())
    local usage = assert(c.usage:current())
    io.write(#plans.plans, " ", usage.messages_sent, " ", package.loaded["moltflow.core"] and "core" or "")]]

  for _, interp in ipairs{{"lua5.1", "5.1"}, {"lua5.2", "5.2"}, {"lua5.3", "5.3"}, {"lua5.4", "5.4"},
                          {"luajit", "5.1"}} do
    it("runs a script under " .. interp[1], function()
      local share = tree .. "/usr/share/lua/" .. interp[2]
      local script = tmp .. "/script.lua"
      local f = assert(io.open(script, "w"))
      f:write(SCRIPT)
      f:close()
      local r = proc.run({interp[1], script, emu.url, emu.seed.keys.all}, {cwd = "/", env = {
        LUA_PATH = share .. "/?.lua;" .. share .. "/?/init.lua",
        LUA_CPATH = tree .. "/usr/lib/" .. multiarch .. "/lua/" .. interp[2] .. "/?.so"}})
      assert.equal(0, r.code, r.stderr)
      assert.equal("4 800 core", r.stdout)
    end)
  end
end)
