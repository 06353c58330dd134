-- admin.file_store (moltflow.file_store): atomic private saves, failures
-- reported with the old file kept, concurrent writers, a hostile shared
-- directory, unsafe or corrupt files, the fcntl lock, and no shell at all.
local admin = require "moltflow.admin"
local dkjson = require "dkjson"
local proc = require "spec.support.process"
local emu = require "spec.support.emulator"

local root = assert(io.popen("cd " .. proc.quote(emu.root) .. " && pwd")):read("*l")
local interpreter = jit and "/usr/bin/luajit" or "/usr/bin/lua5.4"
local cpath = root .. (jit and "/build/luajit/?.so;;" or "/build/5.4/?.so;;")
local lpath = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"

local dir

local spit, listing = proc.spit, proc.listing


-- A shell command running Lua code with the SDK on its path (env -i: no PATH,
-- nothing inherited); prefix goes before the interpreter (setpriv, prlimit).
local function lua_command(code, prefix)
  return ("%s env -i PATH= LUA_PATH=%s LUA_CPATH=%s %s -e %s"):format(prefix or "", proc.quote(lpath),
    proc.quote(cpath), interpreter, proc.quote(code))
end

local function run_shell(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local text = p:read("*a")
  p:close()
  return text
end

local TOKENS = {access_token = "at.one.two", refresh_token = "rt_one", expires_at = 1893456000}

-- A token file as a previous save left it.
local function saved_file(path)
  spit(path, dkjson.encode(TOKENS))
  assert(os.execute("chmod 600 " .. proc.quote(path)))
  return proc.slurp(path)
end

describe("file_store", function()
  before_each(function() dir = proc.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  it("saves 0600 JSON, loads it back with extra fields, deletes on save(nil); dot or colon calls", function()
    local path = dir .. "/tokens.json"
    local store = admin.file_store(path)
    assert.is_nil(store.load())
    assert.is_true(store.save{access_token = "a", refresh_token = "r", expires_at = 5, base_url = "http://x",
                              nested = {ignored = true}})
    assert.equal("600", proc.mode(path))
    assert.same({access_token = "a", refresh_token = "r", expires_at = 5, base_url = "http://x"}, store:load())
    assert.is_true(store:save(TOKENS))
    assert.same(TOKENS, dkjson.decode(proc.slurp(path)))
    assert.equal("tokens.json", listing(dir))
    assert.is_true(store:save(nil))
    assert.is_nil(proc.mode(path))
    assert.is_true(store.save(nil))
    assert.has_error(function() admin.file_store(42) end, "moltflow.file_store: 'path' must be a string")
    assert.has_error(function() store:save("x") end, "moltflow.file_store: save: 'tokens' must be a table or nil")
  end)

  it("returns nil and an error when a write fails (ulimit -f 0), keeping the old file", function()
    local path = dir .. "/tokens.json"
    local before = saved_file(path)
    -- SIGXFSZ ignored, as a shell may have it: the write then fails with EFBIG
    local code = ("local s = require('moltflow.admin').file_store(%q) "
                  .. "local ok, res = pcall(s.save, {access_token = 'at.new.new', refresh_token = 'rt_new'}) "
                  .. "io.write(tostring(ok), ' ', tostring(res), ' ', tostring(select(3, pcall(s.save, {})))) "):format(path)
    local text = run_shell("bash -c " .. proc.quote("trap '' XFSZ; ulimit -f 0; " .. lua_command(code)))
    assert.equal(before, proc.slurp(path))
    assert.matches("^true nil ", text)
    assert.matches("cannot write " .. path .. ": File too large", text, 1, true)
    assert.equal("tokens.json", listing(dir)) -- the temporary file is gone
  end)

  it("two processes saving 150 times each always leave a valid file", function()
    local path = dir .. "/tokens.json"
    local code = ([[
local s = require('moltflow.admin').file_store(%q)
local failed, bad = 0, 0
for i = 1, 150 do
  local ok, _, err = pcall(s.save, {access_token = 'at.' .. WHO .. '.' .. i, refresh_token = 'rt_' .. WHO .. i})
  if not ok or err then failed = failed + 1 end
  local t = s.load()
  if type(t) ~= 'table' or type(t.access_token) ~= 'string' then bad = bad + 1 end
end
io.write(WHO, ' read bad ', bad, ' save failed ', failed, '\n')
]]):format(path)
    local text = run_shell(lua_command("WHO = 'a' " .. code) .. " & " .. lua_command("WHO = 'b' " .. code) .. "; wait")
    assert.matches("a read bad 0 save failed 0\n", text, 1, true)
    assert.matches("b read bad 0 save failed 0\n", text, 1, true)
    assert.matches("^at%.[ab]%.150$", admin.file_store(path).load().access_token)
    assert.equal("tokens.json", listing(dir))
  end)

  proc.it_as_other_user(it, pending)("writes nothing into a temporary file another user planted in a shared sticky directory", function()
    local shared = dir .. "/shared"
    assert(os.execute("chmod 755 " .. proc.quote(dir) .. " && mkdir -m 1777 " .. proc.quote(shared)))
    local path = shared .. "/tokens.json"
    -- nobody (65534) plants the old fixed name, world-writable; daemon (1) saves
    spit(path .. ".tmp", "")
    assert(os.execute("chown 65534:65534 " .. proc.quote(path .. ".tmp") .. " && chmod 666 " .. proc.quote(path .. ".tmp")))
    local code = ("local s = require('moltflow.admin').file_store(%q) io.write(tostring((select(2, "
                  .. "pcall(s.save, {access_token = 'at.secret.x', refresh_token = 'rt_secret'})))))"):format(path)
    local text = run_shell(lua_command(code, "setpriv --reuid=1 --regid=1 --clear-groups"))
    assert.equal("", proc.slurp(path .. ".tmp"))
    assert.equal("true", text)
    assert.equal("600", proc.mode(path))
    assert.equal("rt_secret", dkjson.decode(proc.slurp(path)).refresh_token)
  end)

  it("ignores a file that group or others may read, or that is corrupt, with a warning naming it and the fix", function()
    local path = dir .. "/tokens.json"
    local store = admin.file_store(path)
    saved_file(path)
    local t, warning
    for _, mode in ipairs{"644", "640", "620", "604", "602"} do -- any one group or other bit
      assert(os.execute("chmod " .. mode .. " " .. proc.quote(path)))
      t, warning = store.load()
      assert.is_nil(t, mode)
      assert.equal("ignoring the token file " .. path .. ": group or others may read or write it (mode " .. mode
                   .. "); remove it and log in again (then it is written with mode 600)", warning)
    end
    assert(os.execute("chmod 600 " .. proc.quote(path)))
    assert.same(TOKENS, store.load())
    for _, text in ipairs({"", "{\"access_tok", "[1,2]", "{\"access_token\": 5}"}) do
      spit(path, text)
      t, warning = store.load()
      assert.is_nil(t)
      assert.equal("ignoring the token file " .. path .. ": it is corrupt (not the JSON tokens this store writes); "
                   .. "remove it and log in again", warning)
    end
  end)

  proc.it_chowning(it, pending)("ignores a token file of another user, even with mode 600", function()
    local path = dir .. "/tokens.json"
    saved_file(path)
    assert(os.execute("chown 65534:65534 " .. proc.quote(path)))
    local t, warning = admin.file_store(path).load()
    assert.is_nil(t)
    assert.equal("ignoring the token file " .. path .. ": it is not a regular file of this user; "
                 .. "remove it and log in again", warning)
  end)

  it("try_lock excludes other stores and processes until unlock", function()
    local path = dir .. "/tokens.json"
    local store = admin.file_store(path)
    local handle = store:try_lock(30)
    assert.is_not_nil(handle)
    assert.equal("600", proc.mode(path .. ".lock"))
    assert.is_nil(admin.file_store(path):try_lock(30))
    local probe = lua_command(("local s = require('moltflow.admin').file_store(%q) "
                               .. "io.write(s:try_lock(5) and 'got' or 'busy')"):format(path))
    assert.equal("busy", run_shell(probe))
    store:unlock(handle)
    assert.equal("got", run_shell(probe))
    store.unlock(assert(store.try_lock(30)))
  end)

  proc.it_as_other_user(it, pending)("works in a process that cannot start another one, with an empty PATH", function()
    local code = ([[
local s = require('moltflow.admin').file_store(%q)
assert(s.save({access_token = 'at.x.y', refresh_token = 'rt_z'}))
local h = assert(s.try_lock(10))
s.unlock(h)
local shell = os.execute('true') -- Lua 5.4: true/nil, LuaJIT: a status
io.write(s.load().refresh_token, ' shell works: ', tostring(shell == true or shell == 0))
]]):format(dir .. "/tokens.json")
    assert(os.execute("chown 1 " .. proc.quote(dir)))
    -- as daemon (1) with at most one process: fork fails, so any shell-out would
    local text = run_shell(lua_command(code, "setpriv --reuid=1 --regid=1 --clear-groups prlimit --nproc=1"))
    assert.equal("rt_z shell works: false", text)
  end)
end)
