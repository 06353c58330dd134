-- admin.new{api_key = false}: a client that only logs in, even where
-- $MOLTFLOW_API_KEY is set (a CLI or a cron job's environment). The
-- environment of this process cannot change, so the client runs in a child.
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local SCRIPT = [[
local admin = require "moltflow.admin"
local c = admin.new{api_key = false, base_url = os.getenv("URL"), retry = false}
local v, err = c.usage:current()
io.write("before:", tostring(v ~= nil), ":", err and err.kind or "-", "\n")
assert(c.auth:login{email = "owner@acme.test", password = "owner-pass-1"})
v, err = c.usage:current()
io.write("after:", tostring(v ~= nil), ":", err and err.kind or "-", "\n")
local ok = pcall(admin.new, {api_key = true})
io.write("true:", tostring(ok), "\n")
]]

describe("a login-only client (api_key = false)", function()
  before_each(function() emu.reset() end)

  it("sends no X-API-Key, not even $MOLTFLOW_API_KEY's, and uses its login", function()
    local r = proc.run({proc.lua, "-e", SCRIPT}, {env = {
      LUA_PATH = "lua/?.lua;lua/?/init.lua;;", LUA_CPATH = proc.cpath .. ";;",
      URL = emu.url, MOLTFLOW_API_KEY = emu.seed.keys.all}})
    assert.equal(0, r.code, r.stderr)
    assert.matches("before:false:auth\n", r.stdout, 1, true)
    assert.matches("after:true:-\n", r.stdout, 1, true)
    assert.matches("true:false\n", r.stdout, 1, true) -- api_key = true raises
    for _, q in ipairs(emu.requests()) do
      assert.is_nil(q.headers["x-api-key"], q.method .. " " .. q.path .. " carried the environment's key")
    end
    local usage = emu.requests_for("GET", "/usage/current")
    assert.matches("^Bearer ", usage[#usage].headers.authorization)
  end)
end)
