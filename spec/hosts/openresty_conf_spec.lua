-- examples/openresty/nginx.conf, as a reader would run it: a real nginx
-- (Debian's, with the Lua module) started with that exact file, only the
-- values of its "# template: NAME" lines replaced (the listen address and
-- where the SDK is), against the emulator, credentials from the environment.
local dkjson = require "dkjson"
local core = require "moltflow.core"
local emu = require "spec.support.emulator"
local http = require "spec.support.http"
local proc = require "spec.support.process"

local root = assert(io.popen("cd " .. proc.quote(emu.root) .. " && pwd")):read("*l")
local CONF = root .. "/examples/openresty/nginx.conf"

-- The file with each "# template: NAME" line's value replaced; raises when a
-- name is missing or unknown, so the mechanism stays what the file documents.
local function instantiate(text, values)
  local used, out = {}, {}
  for line in (text .. "\n"):gmatch("(.-)\n") do
    local name = line:match("# template: (%S+)%s*$")
    if name then
      local value = assert(values[name], "no value for template " .. name)
      local head = assert(line:match("^(%s*%S+%s+)"), line)
      line = head .. value .. "; # template: " .. name
      used[name] = true
    end
    out[#out + 1] = line
  end
  for name in pairs(values) do assert(used[name], "the file has no template line " .. name) end
  return table.concat(out, "\n")
end

local running = {}

-- Starts nginx from the example with env (NAME = value) and returns its origin.
local function start(env)
  local prefix = proc.tmpdir()
  assert(proc.sh("mkdir -p " .. proc.quote(prefix .. "/logs")))
  os.execute("chmod 755 " .. proc.quote(prefix)) -- workers may run as nobody (nginx started as root)
  local port = proc.free_port()
  local f = assert(io.open(prefix .. "/nginx.conf", "w"))
  f:write(instantiate(proc.slurp(CONF), {
    listen = "127.0.0.1:" .. port,
    lua_package_path = ('"%s/lua/?.lua;%s/lua/?/init.lua;;"'):format(root, root),
    lua_package_cpath = ('"%s/build/luajit/?.so;;"'):format(root),
  }))
  f:close()
  -- by its path: /usr/sbin is not on a normal user's PATH on Debian
  local argv = {os.getenv("NGINX") or "/usr/sbin/nginx", "-p", prefix, "-c", prefix .. "/nginx.conf", "-e", prefix .. "/logs/error.log"}
  local r = proc.run(argv, {env = env})
  assert(r.code == 0, "nginx did not start: " .. r.stderr .. proc.slurp(prefix .. "/logs/error.log"))
  running[#running + 1] = prefix
  return "http://127.0.0.1:" .. port, prefix
end

-- Stops it by its pid and waits until it is gone.
local function stop(prefix)
  local pid = proc.slurp(prefix .. "/logs/nginx.pid"):match("%d+")
  if pid then
    os.execute("kill -QUIT " .. pid)
    local deadline = core.monotime() + 10
    while proc.sh("kill -0 " .. pid .. " 2>/dev/null") and core.monotime() < deadline do core.sleep(0.02) end
  end
  local log = proc.slurp(prefix .. "/logs/error.log")
  os.execute("rm -rf " .. proc.quote(prefix))
  return log
end

local function get(url)
  local res = assert(http.request{method = "GET", url = url})
  return res.status, dkjson.decode(res.body), res.headers
end

-- one nginx run is enough (under Lua 5.4); its workers (nobody under root) must read the checkout
local describe_ngx = (proc.reference_run and proc.nginx_workers_can_read_checkout) and describe or pending

describe_ngx("examples/openresty/nginx.conf", function()
  before_each(function() emu.reset() end)
  after_each(function()
    for i = #running, 1, -1 do
      local log = stop(table.remove(running, i))
      assert.is_nil(log:find("[error]", 1, true), log) -- no Lua error, no failed login
    end
  end)

  it("the template mechanism replaces the marked values only", function()
    local text = proc.slurp(CONF)
    local out = instantiate(text, {listen = "127.0.0.1:1", lua_package_path = '"p"', lua_package_cpath = '"c"'})
    local a, b = {}, {}
    for l in text:gmatch("[^\n]*") do a[#a + 1] = l end
    for l in out:gmatch("[^\n]*") do b[#b + 1] = l end
    assert.equal(#a, #b)
    local changed = 0
    for i = 1, #a do if a[i] ~= b[i] then changed = changed + 1 end end
    assert.equal(3, changed)
    for _, directive in ipairs{"load_module /usr/share/nginx/modules/ndk_http_module.so;",
                               "load_module /usr/share/nginx/modules/ngx_http_lua_module.so;",
                               "env MOLTFLOW_API_KEY;", "env MOLTFLOW_API_URL;", "default_type application/json;"} do
      assert.truthy(text:find("\n" .. directive, 1, true) or text:find("\n    " .. directive, 1, true), directive)
    end
    assert.is_nil(text:find("%f[%w]set %$"), "no key in set lines")
    assert.is_nil(text:find("_io", 1, true), "no private fields")
  end)

  it("answers the tenant's usage as JSON, with the API key from the environment", function()
    -- the URL as the emulator prints it, /api/v2 included
    local origin = start{MOLTFLOW_API_KEY = emu.seed.keys.all, MOLTFLOW_API_URL = emu.url}
    local status, body, headers = get(origin .. "/usage")
    assert.equal(200, status, dkjson.encode(body))
    assert.matches("^application/json", headers["content-type"])
    assert.equal(1247, body.usage.total_messages)
    assert.equal("ngx", body.transport)
    local log = emu.requests()
    assert.equal("/api/v2/usage/current", log[#log].path)
    assert.equal(emu.seed.keys.all, log[#log].headers["x-api-key"])
  end)

  it("logs token users in once, from a timer, for every worker", function()
    local origin = start{MOLTFLOW_EMAIL = emu.seed.owner.email, MOLTFLOW_PASSWORD = emu.seed.owner.password,
                         MOLTFLOW_API_URL = emu.url}
    local deadline, status, body = core.monotime() + 10
    repeat -- 503 until the first login has finished
      status, body = get(origin .. "/usage")
      if status == 503 then core.sleep(0.02) end
    until status ~= 503 or core.monotime() > deadline
    assert.equal(200, status, dkjson.encode(body))
    for _ = 1, 6 do assert.equal(200, (get(origin .. "/usage"))) end -- both workers
    local logins, bearer = 0, 0
    for _, r in ipairs(emu.requests()) do
      if r.path == "/api/v2/auth/login" then logins = logins + 1 end
      if r.path == "/api/v2/usage/current" then
        assert.matches("^Bearer ", r.headers.authorization)
        bearer = bearer + 1
      end
    end
    assert.equal(1, logins)
    assert.equal(7, bearer)
  end)

  it("without the key, the error names the env directive", function()
    local origin = start{MOLTFLOW_API_URL = emu.url}
    local status, body = get(origin .. "/usage")
    assert.equal(502, status)
    assert.equal("auth", body.kind)
    assert.matches("no credentials", body.error)
    assert.truthy(body.error:find("env MOLTFLOW_API_KEY;", 1, true), body.error)
    assert.same({}, emu.requests())
  end)
end)
