-- Runs a command on a pseudo-terminal (spec/support/pty_session.py, Python's
-- pty module) and plays a dialogue with it:
--
--   local r = pty.run({"/usr/bin/lua5.4", "x.lua"}, {{expect = "Password: "}, {send = "s3cret\n"}},
--                     {env = {HOME = dir}, ignore = {"SIGINT"}})
--   r.code, r.signal, r.output (what the terminal showed), r.echo (echo still on
--   after the child exited), r.stty (`stty -a` on that terminal)
--   opts.job_control: the command runs under a small job-control shell, so that
--   Ctrl-Z ("\26") stops it; steps {await_stop = true} (r.stops[i].echo: the
--   terminal's echo while stopped) and {resume = true} (as `fg`)
--
-- "\3" is Ctrl-C and "\28" Ctrl-\ when sent; the terminal turns them into
-- SIGINT and SIGQUIT for the child.
local dkjson = require "dkjson"
local proc = require "spec.support.process"

local M = {}

local script = debug.getinfo(1, "S").source:match("^@(.*)/pty%.lua$") .. "/pty_session.py"

function M.run(argv, steps, opts)
  opts = opts or {}
  local spec = dkjson.encode({argv = argv, steps = steps, env = opts.env or {}, timeout = opts.timeout or 20,
                              ignore = opts.ignore, job_control = opts.job_control})
  local p = assert(io.popen("python3 " .. proc.quote(script) .. " " .. proc.quote(spec)))
  local text = p:read("*a")
  p:close()
  local r = dkjson.decode(text)
  assert(type(r) == "table", "pty_session.py failed: " .. text)
  assert(not r.timed_out, "the dialogue timed out; the terminal showed: " .. r.output)
  return r
end

return M
