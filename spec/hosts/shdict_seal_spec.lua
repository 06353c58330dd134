-- Issue 23: admin.shdict_store with a seal key keeps the tokens sealed in the
-- shared dict; another key, or none, sees no tokens (one warning in nginx's
-- log), never the plaintext; an old key's value is sealed again with the new.
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"
local http = require "spec.support.http"
local dkjson = require "dkjson"

local sh = proc.quote

describe("admin.shdict_store with a seal key", function()
  local prefix, origin
  local seal_key = require("spec.support.secrets").seal_key
  local KEY, OTHER = seal_key(), seal_key()
  local function run(cmd)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    return (out:gsub("%s+$", ""))
  end

  setup(function()
    local root = run("realpath " .. sh(emu.root))
    prefix = proc.tmpdir()
    proc.spit(prefix .. "/server.conf", ([=[
location = /t/seal {
    content_by_lua_block {
        local admin = require "moltflow.admin"
        local function store(opts) return admin.shdict_store("moltflow_tokens", opts) end
        local out = {}
        local t = {access_token = "acc-secret-1", refresh_token = "ref-secret-1"}
        assert(store{seal_key = %q}:save(t))
        out.raw = ngx.shared.moltflow_tokens:get("moltflow:tokens")
        out.same = store{seal_key = %q}:load()
        local other = store{seal_key = %q}
        local v, err = other:load()
        out.other = {value = v, err = tostring(err)}
        out.other_again = other:load()
        v, err = store{seal_key = false}:load()
        out.none = {value = v, err = tostring(err)}
        out.rotated = store{seal_key = %q, old_seal_keys = {%q}}:load()
        out.raw_after = ngx.shared.moltflow_tokens:get("moltflow:tokens")
        out.new_only = store{seal_key = %q}:load()
        ngx.say(admin.json_encode(out))
    }
}
]=]):format(KEY, KEY, OTHER, OTHER, KEY, OTHER))
    local cmd = ("MOLTFLOW_EMULATOR_LUA_CPATH=%s %s --daemon --port 0 --prefix %s --no-rate-limit --quiet "
      .. "--http-conf %s --server-conf %s"):format(
      sh(root .. "/build/luajit/?.so"), sh(emu.launcher), sh(prefix),
      sh(root .. "/examples/openresty/http.conf"), sh(prefix .. "/server.conf"))
    local url = run(cmd)
    assert(url:match("^http://"), "nginx did not start: " .. cmd)
    origin = url:gsub("/api/v2$", "")
  end)
  teardown(function()
    if prefix then run(("%s --stop --prefix %s --quiet"):format(sh(emu.launcher), sh(prefix))) end
  end)

  it("sealed in the dict; the same key opens it; another or none: nothing, one warning; rotation re-seals", function()
    local res = assert(http.request{method = "GET", url = origin .. "/t/seal"})
    assert.equal(200, res.status, proc.slurp(prefix .. "/error.log"))
    local out = dkjson.decode(res.body)
    assert.matches("^v1%.%x+%.", out.raw)
    assert.is_nil(out.raw:find("secret", 1, true))
    assert.equal("ref-secret-1", out.same.refresh_token)
    assert.is_nil(out.other.value)
    assert.matches("does not have", out.other.err, 1, true)
    assert.is_nil(out.other_again)
    assert.is_nil(out.none.value)
    assert.matches("no seal key", out.none.err, 1, true)
    assert.equal("ref-secret-1", out.rotated.refresh_token)
    assert.are_not.equal(out.raw:sub(1, 12), out.raw_after:sub(1, 12))
    assert.equal("ref-secret-1", out.new_only.refresh_token)
    local log = proc.slurp(prefix .. "/error.log")
    local _, warned = log:gsub("the shared dict's tokens could not be loaded", "")
    assert.equal(2, warned, log) -- one per store that could not open them
    assert.is_nil(log:find("secret", 1, true))
  end)
end)
