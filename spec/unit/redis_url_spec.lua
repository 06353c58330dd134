-- admin.redis_store's url, checked before any connection: a URL without a
-- host is refused naming the field. (Sampled survivor: an empty host let
-- through.)
local admin = require "moltflow.admin"

describe("admin.redis_store's url", function()
  it("is refused without a host", function()
    for _, url in ipairs{"redis://:6379/0", "redis://:6379", "redis:///0", "redis://user:pw@:6379/1"} do
      local ok, err = pcall(admin.redis_store, {url = url})
      assert.is_false(ok, url)
      assert.matches("moltflow.redis_store: field 'url': the url has no host", tostring(err), 1, true)
    end
  end)
end)
