-- splice(file, heading, section, commentary): replaces the part of a
-- markdown file that starts with the line `heading` (a "## " heading), up to
-- the next "## " heading, by section and commentary; appends them when the
-- file has no such heading. For the benches that write one section of
-- BENCHMARKS.md when run alone (bench/scale.lua, bench/ngx_pool.lua).
return function(file, heading, section, commentary)
  local f = assert(io.open(file, "rb"))
  local text = f:read("*a")
  f:close()
  if commentary and commentary ~= "" then section = section .. "\n" .. commentary end
  if not section:match("\n$") then section = section .. "\n" end
  local from = text:find("\n" .. heading, 1, true)
  if from then
    local to = text:find("\n## ", from + 1, true)
    text = text:sub(1, from) .. section .. (to and text:sub(to) or "")
  else
    text = text .. (text:match("\n$") and "" or "\n") .. "\n" .. section
  end
  f = assert(io.open(file, "wb"))
  f:write(text)
  f:close()
end
