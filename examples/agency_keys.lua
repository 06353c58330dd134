-- An agency gives each client its own scoped API key, from a CSV file.
-- Keys are created only for clients that have none yet (c.api_keys:ensure),
-- so the script can run again after adding rows. New raw keys, shown by the
-- server only once, go to a file created with mode 0600.
--
--   MOLTFLOW_API_URL=http://127.0.0.1:8787 lua5.4 examples/agency_keys.lua examples/clients.csv client-keys.txt
--
-- CSV columns: client, scopes (separated by spaces), expires_in_days (empty: never).
-- Credentials: MOLTFLOW_API_KEY (with account:manage and every scope it grants),
-- else MOLTFLOW_EMAIL and MOLTFLOW_PASSWORD (default: the emulator's seed owner).
local admin = require "moltflow.admin"

local csv_path = arg[1] or "examples/clients.csv"
local keys_path = arg[2] or "client-keys.txt"

-- One CSV line into fields (RFC 4180 quoting; no newlines inside fields).
local function parse_csv_line(line)
  local fields, pos = {}, 1
  while true do
    if line:sub(pos, pos) == '"' then
      local value, i = {}, pos + 1
      while true do
        local q = line:find('"', i, true)
        if not q then error("unterminated quote in: " .. line) end
        value[#value + 1] = line:sub(i, q - 1)
        if line:sub(q + 1, q + 1) == '"' then
          value[#value + 1] = '"'
          i = q + 2
        else
          pos = q + 1
          break
        end
      end
      fields[#fields + 1] = table.concat(value)
    else
      local comma = line:find(",", pos, true) or #line + 1
      fields[#fields + 1] = line:sub(pos, comma - 1)
      pos = comma
    end
    if line:sub(pos, pos) ~= "," then return fields end
    pos = pos + 1
  end
end

local function read_clients(path)
  local f = assert(io.open(path, "r"))
  local clients, header = {}, true
  for line in f:lines() do
    line = line:gsub("\r$", "")
    if header then
      header = false
    elseif line:match("%S") then
      local fields = parse_csv_line(line)
      local scopes = {}
      for s in (fields[2] or ""):gmatch("%S+") do scopes[#scopes + 1] = s end
      clients[#clients + 1] = {client = fields[1], scopes = scopes, expires_in_days = tonumber(fields[3])}
    end
  end
  f:close()
  return clients
end

-- "Clinica Sorriso, Ltda" -> "client-clinica-sorriso-ltda"
local function key_name(client)
  return "client-" .. client:lower():gsub("[^%w]+", "-"):gsub("^-+", ""):gsub("-+$", "")
end

-- Appends to a file that only its owner can read, created that way.
local function open_private(path)
  local f = io.open(path, "rb")
  if f then f:close() else assert(admin.write_private(path, "")) end
  return assert(io.open(path, "a"))
end

local c = admin.new{}
if not os.getenv("MOLTFLOW_API_KEY") or os.getenv("MOLTFLOW_API_KEY") == "" then
  local ok, err = c.auth:login{email = os.getenv("MOLTFLOW_EMAIL") or "owner@acme.test",
                               password = os.getenv("MOLTFLOW_PASSWORD") or "owner-pass-1"}
  if not ok then
    io.stderr:write("login failed: ", tostring(err), "\n")
    os.exit(1)
  end
end

local out, created, existing, failed = nil, 0, 0, 0
for _, client in ipairs(read_clients(csv_path)) do
  local name = key_name(client.client)
  local key, err = c.api_keys:ensure{name = name, scopes = client.scopes, expires_in_days = client.expires_in_days}
  if not key then
    failed = failed + 1
    io.stderr:write(("%-34s FAILED: %s\n"):format(name, tostring(err)))
  elseif key.created then
    created = created + 1
    out = out or open_private(keys_path)
    out:write(("%s\t%s\t%s\t%s\n"):format(client.client, name, key.id, key.raw_key))
    print(("%-34s created %s (%s)"):format(name, key.id, table.concat(key.scopes, " ")))
  else
    existing = existing + 1
    print(("%-34s exists  %s%s"):format(name, key.id, key.scopes_differ and " (scopes differ from the CSV)" or ""))
  end
end
if out then out:close() end
c:close()
print(("%d created, %d already present, %d failed%s"):format(created, existing, failed,
  created > 0 and ("; new raw keys in " .. keys_path .. " (mode 0600)") or ""))
os.exit(failed == 0 and 0 or 1)
