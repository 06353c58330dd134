--- moltflow.cli.output: what the command prints. Lines, tables and fields
-- on stdout with the server's control characters escaped, exact JSON with
-- `--json`, and `moltflow-admin: ...` messages on stderr.
-- @module moltflow.cli.output

local admin = require "moltflow.admin"

local output = {}

--- The command's name: the prefix of its messages.
output.NAME = "moltflow-admin"

--- Escapes terminal control sequences. Server text may hold them (a key
-- named "\27]0;title\7" would retitle the window): C0 controls, DEL and C1
-- controls (U+0080-U+009F, also as stray bytes) are shown as \xNN or \uNNNN.
-- Idempotent, so text escaped once can pass through again.
-- @tparam string s the text
-- @treturn string the text, safe to print
function output.escape_controls(s)
  s = s:gsub("[%z\1-\31\127]", function(c) return ("\\x%02x"):format(c:byte()) end)
  -- each run of a byte >= 0x80 and the continuation bytes after it
  return (s:gsub("[\128-\255][\128-\191]*", function(run)
    local lead = run:byte(1)
    local want = lead >= 0xF0 and lead <= 0xF4 and 4 or lead >= 0xE0 and lead <= 0xEF and 3
                 or lead >= 0xC2 and lead <= 0xDF and 2 or 0
    if #run >= want and want > 0 then
      local char, rest = run:sub(1, want), run:sub(want + 1)
      if lead == 0xC2 and char:byte(2) <= 0x9F then char = ("\\u%04x"):format(char:byte(2)) end
      return char .. rest:gsub("[\128-\159]", function(c) return ("\\x%02x"):format(c:byte()) end)
    end
    return (run:gsub("[\128-\159]", function(c) return ("\\x%02x"):format(c:byte()) end))
  end))
end

local escape_controls = output.escape_controls

--- Prints a line on stdout, escaped.
function output.out(s)
  io.stdout:write(escape_controls(s), "\n")
end

local out = output.out

--- Prints `moltflow-admin: <s>` on stderr, escaped.
function output.warn(s)
  io.stderr:write(output.NAME, ": ", escape_controls(s), "\n")
end

--- A value as a table cell: "-" for none, a list joined by commas, an
-- integer without a fraction, escaped text.
function output.show(v)
  if v == nil or v == admin.null then return "-" end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return table.concat(parts, ",")
  end
  if type(v) == "number" and v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
    return ("%d"):format(v)
  end
  return escape_controls(tostring(v))
end

local show = output.show

--- Prints rows under a header, columns padded to their widest cell.
function output.print_table(header, rows)
  local widths = {}
  for i, h in ipairs(header) do widths[i] = #h end
  for _, row in ipairs(rows) do
    for i = 1, #header do
      row[i] = show(row[i])
      if #row[i] > widths[i] then widths[i] = #row[i] end
    end
  end
  local function line(cells)
    local parts = {}
    for i = 1, #header do
      parts[i] = cells[i] .. (i < #header and (" "):rep(widths[i] - #cells[i]) or "")
    end
    out((table.concat(parts, "  "):gsub("%s+$", "")))
  end
  line(header)
  for _, row in ipairs(rows) do line(row) end
end

--- Prints "key  value" lines for the given fields, in order.
function output.print_fields(t, fields)
  local width = 0
  for _, f in ipairs(fields) do if #f > width then width = #f end end
  for _, f in ipairs(fields) do
    out(f .. (" "):rep(width - #f + 2) .. show(t[f]))
  end
end

--- Prints exact JSON: JSON strings may hold DEL and C1 controls raw;
-- written as \u escapes they decode to the same values but cannot reach
-- the terminal.
function output.print_json(v)
  local text = admin.json_encode(v):gsub("\127", "\\u007f")
  io.stdout:write((text:gsub("\194([\128-\159])", function(c) return ("\\u%04x"):format(c:byte()) end)), "\n")
end

return output
