-- docs/hosts.md: every block marked `<!-- recipe: NAME -->` runs as written
-- against the emulator (MOLTFLOW_API_URL and MOLTFLOW_API_KEY set, as the
-- recipes expect). The OpenResty handler runs in an nginx built from the
-- three nginx blocks; the C host is compiled with the recipe's own command.
-- The Neovim, luv and LÖVE recipes run on the shared loop (`admin.loop`,
-- `moltflow.loop.uv`).

local dkjson = require "dkjson"
local emu = require "spec.support.emulator"
local proc = require "spec.support.process"

local root = assert(io.popen("cd " .. proc.quote(emu.root) .. " && pwd")):read("*l")
local doc = proc.slurp(root .. "/docs/hosts.md")

local recipes = {}
for name, body in doc:gmatch("<!%-%- recipe: (%S+) %-%->\n```%w*\n(.-)\n```") do recipes[name] = body end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function api_env(extra)
  local env = {MOLTFLOW_API_URL = (emu.start():gsub("/api/v2$", "")), MOLTFLOW_API_KEY = emu.seed.keys.all}
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

local function waits_for(what, check)
  for _ = 1, 500 do
    local v = check()
    if v then return v end
    os.execute("sleep 0.01")
  end
  error("timed out waiting for " .. what)
end

local has_luajit_core = io.open(root .. "/build/luajit/moltflow/core.so") ~= nil

-- the recipes run in their own processes: one pass (Lua 5.4's) is enough
local describe_once = (_VERSION == "Lua 5.4" and not jit) and describe or pending

describe_once("docs/hosts.md", function()
  local dir
  before_each(function()
    emu.reset()
    dir = proc.tmpdir()
  end)
  after_each(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  it("has a recipe for each host", function()
    for _, name in ipairs({"nvim", "luv", "love", "nginx-main", "nginx-http", "nginx-server", "c", "c-build"}) do
      assert.is_string(recipes[name], name)
    end
  end)

  it("C host: builds with the recipe's command and makes its call", function()
    write(dir .. "/host.c", recipes.c)
    local build, run = recipes["c-build"]:match("^(.-)\n(LUA_PATH=[^\n]*)$")
    assert.is_string(build, "the build recipe: a cc command, then the run line")
    -- the recipe builds in the SDK's directory; here its output goes to the temp dir
    build = build:gsub("%-o host host%.c", "-o " .. proc.quote(dir .. "/host") .. " " .. proc.quote(dir .. "/host.c"))
    local r = proc.run({"sh", "-c", build .. " -Wall -Wextra -Werror"}, {cwd = root})
    assert.equal(0, r.code, r.stderr)
    r = proc.run({"sh", "-c", (run:gsub("%./host$", proc.quote(dir .. "/host")))}, {cwd = root, env = api_env()})
    assert.equal(0, r.code, r.stderr)
    assert.equal("messages sent: 800\n", r.stdout)
    assert.equal("", r.stderr)
    assert.equal(1, #emu.requests_for("GET", "/usage/current"))
  end)

  describe("OpenResty handler", function()
    local function start_nginx()
      local port = proc.free_port()
      local modules = "/usr/lib/nginx/modules"
      write(dir .. "/nginx.conf", ([[
load_module %s/ndk_http_module.so;
load_module %s/ngx_http_lua_module.so;
%s
worker_processes 1;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %s/tmp; proxy_temp_path %s/tmp; fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;
%s
  server {
    listen 127.0.0.1:%d;
%s
  }
}
]]):format(modules, modules, recipes["nginx-main"], dir, dir, dir, dir, dir, dir, dir,
           (recipes["nginx-http"]:gsub("/opt/moltflow", root)), port, recipes["nginx-server"]))
      local r = proc.run({"/usr/sbin/nginx", "-p", dir, "-c", dir .. "/nginx.conf", "-e", dir .. "/error.log"},
                         {env = api_env()})
      assert.equal(0, r.code, r.stderr)
      return port
    end

    proc.it_nginx_reads_checkout(it, pending)("answers from a content handler on cosockets, and calls from the log phase through a timer", function()
      if not has_luajit_core then
        pending("build/luajit/moltflow/core.so is missing (make core-all)")
        return
      end
      local port = start_nginx()
      local ok, err = pcall(function()
        local http = require "spec.support.http"
        local res = assert(http.request({method = "GET", url = ("http://127.0.0.1:%d/usage"):format(port)}))
        assert.equal(200, res.status, res.body)
        assert.same({messages_sent = 800}, dkjson.decode(res.body))
        -- the log phase's timer made its call too, after the answer
        waits_for("the log phase's call", function() return #emu.requests_for("GET", "/usage/history") == 1 end)
        assert.equal(1, #emu.requests_for("GET", "/usage/current"))
        local log = proc.slurp(dir .. "/error.log")
        assert.is_nil(log:match("%[warn%]"), log)
        assert.is_nil(log:match("%[error%]"), log)
      end)
      local pid = proc.slurp(dir .. "/nginx.pid"):match("%d+")
      if pid then
        os.execute("kill -QUIT " .. pid)
        waits_for("nginx to exit", function() return proc.slurp("/proc/" .. pid .. "/stat") == "" end)
      end
      assert(ok, err)
    end)
  end)

  describe("with the shared loop", function()
    it("luv program: prints the usage and returns from uv.run", function()
      write(dir .. "/usage.lua", recipes.luv)
      local r = proc.run({"timeout", "30", "lua5.4", dir .. "/usage.lua"}, {env = api_env{
        LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;", LUA_CPATH = root .. "/build/5.4/?.so;;"}})
      assert.equal(0, r.code, r.stderr)
      assert.equal("messages sent: 800\n", r.stdout)
      assert.equal(1, #emu.requests_for("GET", "/usage/current"))
    end)

    it("Neovim plugin: :MoltflowUsage fills a buffer from the callback", function()
      if not proc.sh("command -v nvim >/dev/null 2>&1") then
        pending("nvim is not installed")
        return
      end
      os.execute("mkdir -p " .. proc.quote(dir .. "/lua"))
      write(dir .. "/lua/moltflow_usage.lua", recipes.nvim)
      write(dir .. "/driver.lua", ([[
package.path = %q .. package.path
package.cpath = %q .. package.cpath
local ok, err = pcall(function()
  require("moltflow_usage").setup()
  vim.cmd("MoltflowUsage")
  vim.wait(10000, function() return vim.api.nvim_buf_get_lines(0, 0, -1, false)[1] ~= "" end, 5)
end)
local f = io.open(%q, "w")
f:write(vim.fn.json_encode({ok = ok, err = err and tostring(err), lines = vim.api.nvim_buf_get_lines(0, 0, -1, false)}))
f:close()
vim.cmd("qa!")
]]):format(dir .. "/lua/?.lua;" .. root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;",
           root .. "/build/luajit/?.so;", dir .. "/out.json"))
      local r = proc.run({"timeout", "60", "nvim", "--headless", "--clean", "-u", "NONE", "-i", "NONE",
                          "-c", "luafile " .. dir .. "/driver.lua"}, {env = api_env{HOME = dir}})
      local out = dkjson.decode(proc.slurp(dir .. "/out.json"))
      assert.is_table(out, "no result from nvim: " .. r.stderr .. r.stdout)
      assert.is_true(out.ok, out.err)
      assert.matches("^%d+ of %d+ messages this month$", out.lines[1])
      assert.equal(1, #emu.requests_for("GET", "/usage/current"))
    end)

    it("LÖVE game: the status drawn changes once the call is done, polled per frame", function()
      if not proc.sh("command -v love >/dev/null 2>&1") then
        pending("love is not installed")
        return
      end
      write(dir .. "/recipe.lua", recipes.love)
      write(dir .. "/conf.lua", [[
function love.conf(t)
  t.window, t.modules.window, t.modules.graphics = nil, false, false
  t.modules.audio, t.modules.sound, t.modules.joystick = false, false, false
end
]])
      -- the recipe as the game, with what it draws captured instead of shown
      write(dir .. "/main.lua", ([[
local drawn
local capture = {print = function(text) drawn = text end}
assert(loadfile(%q))()
local update, frames = love.update, 0
love.update = function(dt)
  update(dt)
  frames = frames + 1
  local graphics = love.graphics -- nil without a window
  love.graphics = capture
  love.draw()
  love.graphics = graphics
  if drawn ~= "loading..." or frames > 2000 then
    local f = io.open(%q, "w")
    f:write(drawn, "\n", frames, "\n")
    f:close()
    love.event.quit()
  end
  love.timer.sleep(0.005)
end
]]):format(dir .. "/recipe.lua", dir .. "/out.txt"))
      local r = proc.run({"timeout", "60", "love", dir}, {env = api_env{
        LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;", LUA_CPATH = root .. "/build/luajit/?.so;;",
        SDL_AUDIODRIVER = "dummy", SDL_VIDEODRIVER = "dummy", HOME = dir, XDG_DATA_HOME = dir}})
      local drawn = proc.slurp(dir .. "/out.txt"):match("^(.-)\n%d+\n$")
      assert.is_string(drawn, "no result from love: " .. r.stderr .. r.stdout)
      assert.equal("800 messages sent", drawn)
      assert.equal(1, #emu.requests_for("GET", "/usage/current"))
    end)
  end)
end)
