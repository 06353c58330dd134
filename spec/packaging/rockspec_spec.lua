-- The rockspecs: what a registry user gets. The SDK rock declares its real
-- dependencies (Lua 5.1-5.4, argparse, libcurl and OpenSSL as external
-- dependencies), builds through the Makefile (so every src/*.c is compiled
-- without being listed), passes `luarocks lint`, builds offline from a
-- checkout, and packs into a source rock that installs offline under Lua 5.1
-- and 5.4. The emulator is a rock of its own.
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local root = emu.root
local ROCKSPEC = "moltflow-admin-0.2.0-1.rockspec"
local EMULATOR_ROCKSPEC = "emulator/moltflow-emulator-0.2.0-1.rockspec"
local quote = proc.quote

-- The luarocks builds take a while: once per `make test`, in the Lua 5.4 pass.
local it_builds = proc.packaging_run and it or pending

local function load_rockspec(name)
  local env = {}
  local text = proc.slurp(root .. "/" .. name)
  local chunk
  if setfenv then
    chunk = assert(loadstring(text, name))
    setfenv(chunk, env)
  else
    chunk = assert(load(text, name, "t", env))
  end
  chunk()
  return env, text
end

local function sh_ok(cmd, log)
  local ok = proc.sh("( " .. cmd .. " ) >" .. quote(log) .. " 2>&1")
  return ok, proc.slurp(log)
end

-- The checkout's files (tracked, or new and not ignored) copied to dir/name.
local function copy_checkout(dir, name)
  assert(proc.sh(("mkdir -p %s && cd %s && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t %s")
    :format(quote(dir .. "/" .. name), quote(root), quote(dir .. "/" .. name))))
end

-- Runs `code` under `lua` with only `tree`'s modules on the paths.
local function run_in_tree(lua, abi, tree, code)
  return proc.run({lua, "-e", code}, {env = {
    LUA_PATH = tree .. "/share/lua/" .. abi .. "/?.lua;" .. tree .. "/share/lua/" .. abi .. "/?/init.lua",
    LUA_CPATH = tree .. "/lib/lua/" .. abi .. "/?.so"}})
end

local LOAD_CHECK = [[local a = require "moltflow.admin"
  require "moltflow.endpoints"; require "moltflow.retry"; require "moltflow.async"
  io.write(a.VERSION, " ", a.sha256("abc"), " ", tostring(pcall(require, "moltflow.emulator.seed")))]]
local LOADED = "0.2.0 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad false"

describe("the moltflow-admin rockspec", function()
  local spec, text = load_rockspec(ROCKSPEC)

  it("needs Lua 5.1 to 5.4 and argparse, and libcurl and OpenSSL from the system", function()
    assert.equal("moltflow-admin", spec.package)
    assert.equal("0.2.0-1", spec.version)
    assert.same({"lua >= 5.1, < 5.5", "argparse"}, spec.dependencies)
    assert.equal("curl", spec.external_dependencies.CURL.library)
    assert.equal("crypto", spec.external_dependencies.OPENSSL.library)
    assert.equal("openssl/evp.h", spec.external_dependencies.OPENSSL.header)
  end)

  it("builds through the Makefile with LuaRocks' compiler, Lua and library directories", function()
    local b = spec.build
    assert.equal("make", b.type)
    assert.same({CC = "$(CC)", CFLAGS = "$(CFLAGS)", LIBFLAG = "$(LIBFLAG)", LUA_INC = "$(LUA_INCDIR)",
                 CURL_INCDIR = "$(CURL_INCDIR)", CURL_LIBDIR = "$(CURL_LIBDIR)",
                 OPENSSL_INCDIR = "$(OPENSSL_INCDIR)", OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)"}, b.build_variables)
    assert.same({INST_LIBDIR = "$(LIBDIR)", INST_LUADIR = "$(LUADIR)"}, b.install_variables)
    -- the targets exist and use the directories
    local mk = proc.run({"make", "-n", "rock", "LUA_INC=/opt/lua/include", "CURL_INCDIR=/opt/curl/include",
                         "CURL_LIBDIR=/opt/curl/lib", "OPENSSL_INCDIR=/opt/ssl/include",
                         "OPENSSL_LIBDIR=/opt/ssl/lib"}, {cwd = root})
    assert.equal(0, mk.code, mk.stderr)
    local sub = proc.run({"make", "-n", "-B", "BUILD=build/rock", "LUA_INC=/opt/lua/include",
                          "CURL_INCDIR=/opt/curl/include", "CURL_LIBDIR=/opt/curl/lib",
                          "OPENSSL_INCDIR=/opt/ssl/include", "OPENSSL_LIBDIR=/opt/ssl/lib",
                          "build/rock/moltflow/core.so"}, {cwd = root})
    assert.equal(0, sub.code, sub.stderr)
    for _, flag in ipairs{"-I/opt/lua/include", "-I/opt/curl/include", "-I/opt/ssl/include",
                          "-L/opt/curl/lib", "-L/opt/ssl/lib"} do
      assert.truthy(sub.stdout:find(flag, 1, true), flag)
    end
    assert.equal(0, proc.run({"make", "-n", "rock-install", "INST_LIBDIR=/x", "INST_LUADIR=/y"}, {cwd = root}).code)
    assert.is_nil(b.modules, "the sources are the Makefile's business")
  end)

  it("installs the moltflow-admin command, not the emulator", function()
    assert.same({["moltflow-admin"] = "bin/moltflow-admin"}, spec.build.install.bin)
  end)

  it_builds("passes luarocks lint, and so does the emulator's", function()
    local tmp = proc.tmpdir()
    local ok, log = sh_ok("cd " .. quote(root) .. " && luarocks lint " .. ROCKSPEC, tmp .. "/log")
    assert.is_true(ok, log)
    ok, log = sh_ok("cd " .. quote(root) .. " && luarocks lint " .. EMULATOR_ROCKSPEC, tmp .. "/log")
    os.execute("rm -rf " .. quote(tmp))
    assert.is_true(ok, log)
  end)

  it_builds("luarocks make --deps-mode=none builds a tree offline from a checkout; its command runs, from cron too",
            function()
    local tmp = proc.tmpdir()
    copy_checkout(tmp, "src")
    -- the tree of `luarocks make --local`: ~/.luarocks
    local tree = tmp .. "/home/.luarocks"
    local ok, log = sh_ok(("cd %s/src && luarocks --lua-version=5.4 make --deps-mode=none --tree %s %s")
      :format(quote(tmp), quote(tree), ROCKSPEC), tmp .. "/log")
    local loaded = run_in_tree("lua5.4", "5.4", tree, LOAD_CHECK)
    local cli = proc.run({tree .. "/bin/moltflow-admin", "--json", "--base-url", emu.url, "plans"},
      {cwd = "/", env = {LUA_PATH = tree .. "/share/lua/5.4/?.lua;;",
                         LUA_CPATH = tree .. "/lib/lua/5.4/?.so;;"}})
    -- examples/cron_quota.sh's crontab line, under cron's PATH=/usr/bin:/bin
    emu.reset()
    local job = assert(proc.slurp(root .. "/examples/cron_quota.sh"):match("\n#%s+15 2 %* %* %*%s+([^\n]+)"))
    assert(proc.sh(("mkdir -p %s/home/bin && cp %s/examples/cron_quota.sh %s/home/bin/"):format(
      quote(tmp), quote(root), quote(tmp))))
    local cron = proc.run({"env", "-i", "PATH=/usr/bin:/bin", "HOME=" .. tmp .. "/home", "CSV_DIR=" .. tmp .. "/csv",
                           "MOLTFLOW_API_URL=" .. emu.url, "MOLTFLOW_CONFIG_DIR=" .. tmp .. "/config", "sh", "-c",
                           (job:gsub("MOLTFLOW_API_KEY=mf_%.%.%.", "MOLTFLOW_API_KEY=" .. emu.seed.keys.all))})
    local csv = proc.slurp(tmp .. "/csv/usage-" .. os.date("!%Y-%m-%d") .. ".csv")
    os.execute("rm -rf " .. quote(tmp))
    assert.is_true(ok, log)
    assert.equal(LOADED, loaded.stdout, loaded.stderr)
    assert.equal(0, cli.code, cli.stderr)
    assert.matches('"plans"', cli.stdout)
    assert.equal(0, cron.code, cron.stdout .. cron.stderr)
    assert.matches("^date,", csv)
  end)

  it_builds("luarocks pack makes a source rock that installs offline under Lua 5.1 and 5.4", function()
    local tmp = proc.tmpdir()
    copy_checkout(tmp, "moltflow-admin-0.2.0")
    -- the source as a registry user downloads it, from a local archive (no network here)
    assert(proc.sh(("cd %s && tar czf moltflow-admin-0.2.0.tar.gz moltflow-admin-0.2.0"):format(quote(tmp))))
    local local_spec = text:gsub("source = %b{}", ('source = {url = "file://%s/moltflow-admin-0.2.0.tar.gz"}')
      :format(tmp))
    assert.are_not.equal(text, local_spec)
    local f = assert(io.open(tmp .. "/" .. ROCKSPEC, "w"))
    f:write(local_spec)
    f:close()
    local ok, log = sh_ok(("cd %s && luarocks pack %s"):format(quote(tmp), ROCKSPEC), tmp .. "/log")
    assert.is_true(ok, log)
    local rock = tmp .. "/moltflow-admin-0.2.0-1.src.rock"
    assert.truthy(io.open(rock), log)
    local results = {}
    for _, v in ipairs{"5.1", "5.4"} do
      local tree = tmp .. "/tree-" .. v
      ok, log = sh_ok(("cd / && luarocks --lua-version=%s install --deps-mode=none --tree %s %s")
        :format(v, quote(tree), quote(rock)), tmp .. "/log")
      results[v] = {ok = ok, log = log, loaded = run_in_tree("lua" .. v, v, tree, LOAD_CHECK)}
    end
    os.execute("rm -rf " .. quote(tmp))
    for v, r in pairs(results) do
      assert.is_true(r.ok, v .. ": " .. r.log)
      assert.equal(LOADED, r.loaded.stdout, v .. ": " .. r.loaded.stderr)
    end
  end)
end)

describe("the moltflow-emulator rockspec", function()
  local spec = load_rockspec(EMULATOR_ROCKSPEC)

  it("depends on the SDK and names what it needs from nginx", function()
    assert.equal("moltflow-emulator", spec.package)
    assert.same({"lua >= 5.1, < 5.5", "moltflow-admin = 0.2.0"}, spec.dependencies)
    local d = spec.description.detailed
    for _, need in ipairs{"nginx", "libnginx-mod-http-lua", "LuaJIT", "lua-resty-core"} do
      assert.truthy(d:find(need, 1, true), need)
    end
    assert.same({["moltflow-emulator"] = "bin/moltflow-emulator"}, spec.build.install.bin)
  end)

  it_builds("installs the emulator beside the SDK; its launcher serves the API", function()
    local tmp = proc.tmpdir()
    copy_checkout(tmp, "src")
    local tree = tmp .. "/tree"
    local ok, log = sh_ok(("cd %s/src && luarocks --lua-version=5.4 make --deps-mode=none --tree %s %s && " ..
      "luarocks --lua-version=5.4 make --deps-mode=none --tree %s %s"):format(
      quote(tmp), quote(tree), ROCKSPEC, quote(tree), EMULATOR_ROCKSPEC), tmp .. "/log")
    local url = ok and proc.run({tree .. "/bin/moltflow-emulator", "--daemon", "--port", "0", "--prefix",
                                 tmp .. "/nginx", "--quiet"}, {cwd = "/"})
    local plans = url and url.code == 0 and proc.run({"curl", "-s", url.stdout:gsub("%s+$", "") .. "/billing/plans"})
    if url and url.code == 0 then
      proc.run({tree .. "/bin/moltflow-emulator", "--stop", "--prefix", tmp .. "/nginx", "--quiet"})
    end
    local installed = io.open(tree .. "/share/lua/5.4/moltflow/emulator/init.lua")
    if installed then installed:close() end
    os.execute("rm -rf " .. quote(tmp))
    assert.is_true(ok, log)
    assert.truthy(installed)
    assert.equal(0, url.code, url.stderr)
    assert.matches('"plans"', plans.stdout)
  end)
end)
