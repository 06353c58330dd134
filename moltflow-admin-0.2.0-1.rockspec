-- The SDK: moltflow.admin and its C core, for Lua 5.1-5.4 and LuaJIT 2.1.
-- Offline build from a checkout:
--   luarocks --lua-version=5.4 make --deps-mode=none --tree DIR
-- The build runs the Makefile (`make rock`, `make rock-install`), which
-- compiles every src/*.c, so a new C file needs no edit here. System
-- libraries: libcurl and OpenSSL's libcrypto (Debian: libcurl4-openssl-dev,
-- libssl-dev); elsewhere point LuaRocks at them with CURL_DIR / OPENSSL_DIR.
-- The emulator is a separate rock: emulator/moltflow-emulator-0.2.0-1.rockspec.
rockspec_format = "3.0"
package = "moltflow-admin"
version = "0.2.0-1"
source = {
  url = "git+https://github.com/moltflow/moltflow-admin-lua.git",
  tag = "v0.2.0",
}
description = {
  summary = "Lua SDK for the MoltFlow admin API (login, API keys, billing, usage, settings)",
  detailed = [[
    moltflow.admin covers every MoltFlow admin endpoint as a Lua function over a
    C core (libcurl transport, own JSON codec, OpenSSL hashing), for Lua 5.1 to
    5.4 and LuaJIT 2.1, with the moltflow-admin command line.
  ]],
  license = "MIT",
  homepage = "https://github.com/moltflow/moltflow-admin-lua",
  labels = {"api", "sdk", "http", "moltflow"},
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "argparse", -- the moltflow-admin command
}
-- CURL by its library only: Debian keeps curl/curl.h in a multiarch include
-- directory that LuaRocks 3.8 does not search (the compiler does).
external_dependencies = {
  CURL = {library = "curl"},
  OPENSSL = {header = "openssl/evp.h", library = "crypto"},
}
build = {
  type = "make",
  build_target = "rock",
  build_variables = {
    CC = "$(CC)",
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INC = "$(LUA_INCDIR)",
    CURL_INCDIR = "$(CURL_INCDIR)",
    CURL_LIBDIR = "$(CURL_LIBDIR)",
    OPENSSL_INCDIR = "$(OPENSSL_INCDIR)",
    OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)",
  },
  install_target = "rock-install",
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
  },
  install = {
    bin = {
      ["moltflow-admin"] = "bin/moltflow-admin",
    },
  },
}
