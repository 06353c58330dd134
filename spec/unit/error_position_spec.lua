-- Argument mistakes raise naming the function and the field, and point at
-- the caller's line, not at the library's: the message starts with this
-- spec file's name and the line of the call. (Sampled survivors: an error
-- level off by one puts the library's own position there instead.)
local admin = require "moltflow.admin"

local HERE = debug.getinfo(1, "S").short_src

local function raises_here(fn, message)
  local line = debug.getinfo(2, "l").currentline
  local ok, err = pcall(fn)
  assert.is_false(ok, message)
  err = tostring(err)
  local at, text = err:match("^(.-:%d+): (.*)$")
  assert.equal(HERE, at and at:match("^(.*):%d+$"), "the position of: " .. err)
  assert.is_true(tonumber(at:match(":(%d+)$")) <= line, err)
  assert.equal(message, text)
end

describe("an argument mistake", function()
  it("points at the caller, for the module functions", function()
    raises_here(function() admin.base_url(5) end, "moltflow.base_url: 'url' must be a string or nil")
    raises_here(function() admin.normalize_base_url(5) end, "moltflow.normalize_base_url: 'url' must be a string")
    raises_here(function() admin.redis_store(5) end, "moltflow.redis_store: expected a table of options")
    raises_here(function() admin.redis_store{url = 5} end, "moltflow.redis_store: field 'url' must be a string")
    raises_here(function() admin.file_store(5) end, "moltflow.file_store: 'path' must be a string")
    raises_here(function() admin.to_csv(5) end, "moltflow.to_csv: 'rows' must be a list of tables")
    raises_here(function() admin.to_csv({5}) end, "moltflow.to_csv: row 1 is not a table")
    raises_here(function() admin.array(5) end, "moltflow.array: 't' must be a table or nil")
    raises_here(function() admin.key_fingerprint(5) end, "moltflow.key_fingerprint: 'raw_key' must be a string")
    raises_here(function() admin.verify_signature(5, "", "") end,
                "moltflow.verify_signature: 'secret' must be a string")
    raises_here(function() admin.poll("soon") end, "moltflow.poll: 'timeout' must be a number of seconds")
    raises_here(function() admin.new_loop(5) end, "moltflow.new_loop: expected a table of options")
  end)

  it("points at the caller, for admin.new and its options", function()
    raises_here(function() admin.new(5) end, "moltflow.new: expected a table of options")
    raises_here(function() admin.new{bogus = 1} end, "moltflow.new: unknown option 'bogus'")
    raises_here(function() admin.new{timeout = "x"} end, "moltflow.new: field 'timeout' must be a number (got string)")
    raises_here(function() admin.new{retry = {retry_on = {600}}} end,
                "moltflow.new: field 'retry.retry_on[1]' must be an HTTP status (100-599)")
    raises_here(function() admin.new{loop = {}} end,
                "moltflow.new: field 'loop' must be a loop (admin.loop() or admin.new_loop())")
  end)

  it("points at the caller, for a client's and a store's methods", function()
    local c = admin.new{base_url = "http://127.0.0.1:1/api/v2", api_key = "k"}
    raises_here(function() c:set_tokens(5) end, "moltflow.set_tokens: expected a table or nil")
    raises_here(function() c.usage:daily_rows{days = 0} end,
                "moltflow.usage.daily_rows: field 'days' must be an integer from 1 to 31")
    c:close()
    local path = os.tmpname()
    local store = admin.file_store(path)
    raises_here(function() store:save(5) end, "moltflow.file_store: save: 'tokens' must be a table or nil")
    os.remove(path)
  end)

  it("a request body with a key that is not a string is refused before any I/O, whole", function()
    local c = admin.new{base_url = "http://127.0.0.1:1/api/v2", api_key = "k", retry = false}
    for _, key in ipairs{true, 5, 2.5} do
      local ok, err = pcall(c.request, c, "POST", "/x", {body = {name = "x", [key] = 1, z = "y"}})
      assert.is_false(ok, tostring(key))
      assert.matches("object keys must be strings$", tostring(err))
    end
    c:close()
  end)
end)
