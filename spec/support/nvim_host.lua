-- Run by spec/hosts/nvim_spec.lua inside headless Neovim (`nvim --headless --clean
-- -u NONE -i NONE -c "luafile spec/support/nvim_host.lua"`), as a plugin would
-- use the SDK: calls started from a vim.loop timer, chained, and each result
-- written to a scratch buffer from the completion callback via vim.schedule.
-- Settings come from the environment (MOLTFLOW_SPEC_*); the outcome is
-- written as JSON to MOLTFLOW_SPEC_OUT, then Neovim quits.
-- luacheck: globals vim
local root = assert(os.getenv("MOLTFLOW_SPEC_ROOT"))
package.path = ("%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua;"):format(root, root, root) .. package.path
package.cpath = root .. "/build/luajit/?.so;" .. package.cpath

local uv = vim.loop
local CALLS = 20
local out = {driver = os.getenv("MOLTFLOW_SPEC_DRIVER")}

local function finish()
  out.lines = vim.api.nvim_buf_get_lines(out.buf, 0, -1, false)
  out.buf = nil
  local f = assert(io.open(os.getenv("MOLTFLOW_SPEC_OUT"), "w"))
  f:write(vim.fn.json_encode(out))
  f:close()
  vim.cmd("qa!")
end

local ok, err = pcall(function()
  local admin = require "moltflow.admin"
  local driver = require "spec.support.host_driver"
  local attach
  for _, d in ipairs(driver.drivers) do
    if d.name == out.driver then attach = d.attach end
  end
  assert(attach, "unknown driver")
  local c = admin.new{base_url = os.getenv("MOLTFLOW_SPEC_URL"), api_key = os.getenv("MOLTFLOW_SPEC_KEY"),
                      retry = false}
  out.buf = vim.api.nvim_create_buf(false, true)
  local detach = attach(uv, {c}, {schedule = vim.schedule})
  local t0

  local function step(i)
    c:spawn("usage.current"):on_done(function(v, call_err)
      if i == 1 then
        -- where does on_done run? Inside libuv's callback, the editor's API
        -- is off limits (E5560); a host then needs vim.schedule
        out.fast_context = vim.in_fast_event()
        local direct_ok, direct_err = pcall(vim.api.nvim_buf_set_lines, out.buf, 0, 0, false, {})
        out.direct_buffer_edit = direct_ok and "allowed" or tostring(direct_err)
      end
      local line = v and ("call %d: limit_messages=%s"):format(i, tostring(v.limit_messages))
                   or ("call %d: %s"):format(i, tostring(call_err))
      vim.schedule(function()
        vim.api.nvim_buf_set_lines(out.buf, i - 1, i, false, {line})
        if i == CALLS then
          out.chain_ms = (uv.hrtime() - t0) / 1e6
          detach()
          finish()
        end
      end)
      if i < CALLS then step(i + 1) end
    end)
  end

  -- the first call starts from a timer callback, like a plugin's refresh
  local start = uv.new_timer()
  start:start(10, 0, function()
    start:close()
    t0 = uv.hrtime()
    step(1)
  end)

  local guard = uv.new_timer()
  guard:start(15000, 0, function()
    out.error = "timed out"
    vim.schedule(finish)
  end)
end)
if not ok then
  out.error = tostring(err)
  out.buf = out.buf or vim.api.nvim_create_buf(false, true)
  finish()
end
