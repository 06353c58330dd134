-- Offline build from a checkout: luarocks --lua-version=5.4 make --tree DIR
-- (or luarocks make --local). System libraries: libcurl and OpenSSL's
-- libcrypto (Debian: libcurl4-openssl-dev, libssl-dev). Only "lua" is a
-- dependency, so luarocks never needs a registry; the emulator and the specs
-- use Debian's lua-cjson/lua-dkjson/argparse/busted, not rocks.
-- spec/rockspec_spec.lua checks that every src/*.c and bin/* file is listed
-- here. The builtin backend also copies the whole lua/ tree, so a Lua module
-- added later (moltflow.transport.*, ...) is installed even before it is listed.
rockspec_format = "3.0"
package = "moltflow-admin"
version = "0.1.0-1"
source = {
  url = "git+https://github.com/moltflow/moltflow-admin-lua.git",
  tag = "v0.1.0",
}
description = {
  summary = "Lua SDK for the MoltFlow admin API (login, API keys, billing, usage, settings)",
  detailed = [[
    moltflow.admin covers every MoltFlow admin endpoint as a Lua function over a
    C core (libcurl transport, own JSON codec, OpenSSL hashing), for Lua 5.4 and
    LuaJIT 2.1. It bundles a local emulator of the API for tests and demos.
  ]],
  license = "MIT",
  homepage = "https://github.com/moltflow/moltflow-admin-lua",
}
dependencies = {
  "lua >= 5.1",
}
build = {
  type = "builtin",
  modules = {
    ["moltflow.core"] = {
      sources = {
        "src/buffer.c", "src/client.c", "src/core.c", "src/hash.c", "src/http.c",
        "src/json.c", "src/request.c", "src/response.c", "src/sys.c", "src/token.c",
        "src/clock.c", "src/loop.c", "src/loop_binding.c",
      },
      defines = {"_DEFAULT_SOURCE"},
      libraries = {"curl", "crypto", "pthread"},
      incdirs = {"src"},
    },
    ["moltflow.admin"] = "lua/moltflow/admin.lua",
    ["moltflow.async"] = "lua/moltflow/async.lua",
    ["moltflow.cli"] = "lua/moltflow/cli.lua",
    ["moltflow.endpoints"] = "lua/moltflow/endpoints.lua",
    ["moltflow.file_store"] = "lua/moltflow/file_store.lua",
    ["moltflow.helpers"] = "lua/moltflow/helpers.lua",
    ["moltflow.loop.uv"] = "lua/moltflow/loop/uv.lua",
    ["moltflow.retry"] = "lua/moltflow/retry.lua",
    ["moltflow.emulator"] = "lua/moltflow/emulator/init.lua",
    ["moltflow.emulator.api"] = "lua/moltflow/emulator/api.lua",
    ["moltflow.emulator.auth"] = "lua/moltflow/emulator/auth.lua",
    ["moltflow.emulator.control"] = "lua/moltflow/emulator/control.lua",
    ["moltflow.emulator.crypto"] = "lua/moltflow/emulator/crypto.lua",
    ["moltflow.emulator.faults"] = "lua/moltflow/emulator/faults.lua",
    ["moltflow.emulator.json"] = "lua/moltflow/emulator/json.lua",
    ["moltflow.emulator.jwt"] = "lua/moltflow/emulator/jwt.lua",
    ["moltflow.emulator.seed"] = "lua/moltflow/emulator/seed.lua",
    ["moltflow.emulator.state"] = "lua/moltflow/emulator/state.lua",
    ["moltflow.emulator.validate"] = "lua/moltflow/emulator/validate.lua",
  },
  install = {
    bin = {
      ["moltflow-admin"] = "bin/moltflow-admin",
      ["moltflow-emulator"] = "bin/moltflow-emulator",
    },
  },
}
