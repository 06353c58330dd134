--- moltflow.cli.prompt: what the user types: answers on the terminal (echo
-- off for a secret) and lines of stdin.
-- @module moltflow.cli.prompt

local failure = require "moltflow.cli.failure"
local sys = require("moltflow.core").sys

local prompt = {}

--- Asks on the terminal (echo off for a secret). Ctrl-C, Ctrl-\ or another
-- terminating signal there restores the terminal first, then ends the
-- command with 128 + the signal's number.
-- @tparam string text the question
-- @tparam boolean echo whether the answer is shown
-- @treturn ?string the line typed, nil at the end of input
function prompt.ask(text, echo)
  local line, err, signal = sys.read_tty(text, echo)
  if signal then error(failure.signal(signal), 0) end
  if not line and err ~= "end of input" then error(failure.new("usage", err), 0) end
  return line
end

--- The next line of stdin without its line end (CRLF too), or nil at its end.
function prompt.stdin_line()
  local line = io.stdin:read("*l")
  return line and (line:gsub("\r$", ""))
end

--- A line typed on the terminal, or the next line of stdin (after a
-- password read from it).
-- @tparam string text the question
-- @tparam boolean from_stdin read stdin, showing the question on stderr
function prompt.read_line(text, from_stdin)
  if not from_stdin then return prompt.ask(text, true) end
  io.stderr:write(text)
  io.stderr:flush()
  return prompt.stdin_line()
end

return prompt
