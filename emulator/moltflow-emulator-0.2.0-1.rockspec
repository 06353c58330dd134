-- The MoltFlow admin API emulator, for tests and demos without the real API.
-- Kept out of the checkout root so that a plain `luarocks make` there means the SDK.
-- Offline build from a checkout (after the SDK):
--   luarocks --lua-version=5.4 make --deps-mode=none --tree DIR emulator/moltflow-emulator-0.2.0-1.rockspec
rockspec_format = "3.0"
package = "moltflow-emulator"
version = "0.2.0-1"
source = {
  url = "git+https://github.com/moltflow/moltflow-admin-lua.git",
  tag = "v0.2.0",
}
description = {
  summary = "Local emulator of the MoltFlow admin API (nginx + Lua)",
  detailed = [[
    moltflow-emulator serves the MoltFlow admin API on loopback from a private
    nginx (its own prefix, port and config; the system service is never
    touched). It needs from the system, outside LuaRocks: nginx with the Lua
    module (lua-nginx-module, i.e. LuaJIT and its FFI; Debian:
    libnginx-mod-http-lua), lua-resty-core, and bash to run the launcher.
  ]],
  license = "MIT",
  homepage = "https://github.com/moltflow/moltflow-admin-lua",
  labels = {"testing", "emulator", "nginx", "moltflow"},
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "moltflow-admin = 0.2.0",
}
build = {
  type = "make",
  build_pass = false,
  install_target = "rock-install-emulator",
  install_variables = {
    INST_LUADIR = "$(LUADIR)",
  },
  install = {
    bin = {
      ["moltflow-emulator"] = "bin/moltflow-emulator",
    },
  },
}
