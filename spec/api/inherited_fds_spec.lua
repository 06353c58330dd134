-- A client's pooled connection is close-on-exec: a process the host spawns
-- (os.execute, io.popen) does not inherit it, so it cannot outlive the
-- client there or keep the server's end open. (libcurl 7.88's own wakeup
-- socket pair, made by curl_multi_init, is still inherited: curl issue 13618,
-- fixed in libcurl 8.8; no libcurl option reaches it.)
local emu = require "spec.support.emulator"

-- The inodes of the sockets a process holds, read from `ls -l /proc/PID/fd`.
local function socket_inodes(pid)
  local p = assert(io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null"))
  local set = {}
  for line in p:lines() do
    local inode = line:match("socket:%[(%d+)%]")
    if inode then set[inode] = true end
  end
  p:close()
  return set
end

-- The inodes of the established TCP connections to 127.0.0.1:port.
local function connections_to(port)
  local set, n = {}, 0
  for line in io.lines("/proc/net/tcp") do
    local rem_port, state, inode = line:match("^%s*%d+:%s+%x+:%x+%s+0100007F:(%x+)%s+(%x+)%s+%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(%d+)")
    if rem_port and tonumber(rem_port, 16) == port and state == "01" and inode ~= "0" then
      set[inode], n = true, n + 1
    end
  end
  return set, n
end

describe("a child process", function()
  it("does not inherit the connections a client keeps open", function()
    local port = tonumber(emu.url:match(":(%d+)/"))
    local c = emu.client()
    assert(c.usage:current()) -- a call, whose connection stays in the pool
    local pid = assert(io.open("/proc/self/stat")):read("*l"):match("^(%d+)")
    local mine = socket_inodes(pid)
    local pooled, n = connections_to(port)
    local held = 0
    for inode in pairs(pooled) do
      if mine[inode] then held = held + 1 end
    end
    assert.is_true(held >= 1, ("this process holds none of the %d connections to the emulator"):format(n))
    -- `ls` lists its own descriptors: those it inherited
    local child = socket_inodes("self")
    for inode in pairs(pooled) do
      assert.is_nil(child[inode], "a child inherited connection " .. inode)
    end
    c:close()
  end)
end)
