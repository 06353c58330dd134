-- luacheck's configuration (`make lint`). The SDK runs on Lua 5.1 to 5.4 and
-- LuaJIT: the standard globals are those of the four PUC Lua versions, and
-- the hosts' own globals (ngx_lua, busted, LÖVE, Neovim, LuaJIT's `jit`) are
-- given only to the files that run in that host.
std = "lua51+lua52+lua53+lua54"
max_line_length = 120
-- Generated from the endpoint table (tools/gen-annotations.lua): annotations
-- only, never run.
exclude_files = {"lua/moltflow/types/", "build/"}

-- Code that tells LuaJIT from PUC Lua by the `jit` global.
local jit = {read_globals = {"jit"}}
files["lua/moltflow/compat.lua"] = jit
files["lua/moltflow/client.lua"] = jit
files["bin/moltflow-admin"] = jit

-- nginx's Lua module: the OpenResty transport, the emulator (it runs inside
-- nginx), the OpenResty example, the fleet worker nginx runs and the nginx
-- sides of the WAN and nginx benchmarks.
files["lua/moltflow/transport/ngx.lua"] = {std = "+ngx_lua"}
files["lua/moltflow/transport/ngx/"] = {std = "+ngx_lua"}
files["lua/moltflow/emulator/"] = {std = "+ngx_lua"}
files["examples/openresty/"] = {std = "+ngx_lua"}
files["spec/support/fleet_worker.lua"] = {std = "+ngx_lua+busted"}
files["bench/wan_ngx.lua"] = {std = "+ngx_lua"}
files["bench/ngx_pool_handler.lua"] = {std = "+ngx_lua"}

-- busted's globals in the specs and their helpers; the specs run under every
-- interpreter and ask `jit` which one. Specs quote wire bytes and whole
-- messages, so their lines may run longer.
files["spec/"] = {std = "+busted", read_globals = {"jit"}, max_line_length = 160}

-- The LuaLS annotations' template is quoted whole in a long string.
files["tools/gen-annotations.lua"] = {max_string_line_length = false}

-- The host programs: LÖVE's callbacks are fields of its `love` global, and
-- the Neovim host runs with `vim`.
files["examples/love/"] = {globals = {"love"}}
files["spec/support/nvim_host.lua"] = {read_globals = {"vim"}}

-- The endpoint table: one line per endpoint, whatever its length, so that
-- adding an endpoint stays a one-line change.
files["lua/moltflow/endpoints.lua"] = {max_line_length = false}
