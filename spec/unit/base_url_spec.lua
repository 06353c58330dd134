-- admin.base_url: the base URL a client would talk to, by admin.new's rule
-- (the given URL normalised, else $MOLTFLOW_API_URL, else the default); the
-- CLI asks it instead of building a client to learn it.
local admin = require "moltflow.admin"
local proc = require "spec.support.process"

describe("admin.base_url", function()
  it("normalises a given URL as admin.new does", function()
    for _, url in ipairs{"https://api.example.com", "https://api.example.com/", "https://api.example.com/api/v2/",
                         "http://127.0.0.1:8787", "http://127.0.0.1:8787/proxy/v2//"} do
      local c = admin.new{base_url = url, api_key = "mf_unused"}
      assert.equal(c:info().base_url, admin.base_url(url), url)
      c:close()
    end
    assert.equal("https://api.example.com/api/v2", admin.base_url("https://api.example.com/"))
    assert.equal("http://127.0.0.1:8787/proxy/v2", admin.base_url("http://127.0.0.1:8787/proxy/v2//"))
  end)

  it("without a URL: $MOLTFLOW_API_URL normalised, else the default, as admin.new", function()
    local code = [[local a = require "moltflow.admin"
      local c = a.new{api_key = "mf_unused"}
      io.write(a.base_url(), " ", c:info().base_url)]]
    for _, case in ipairs{{{MOLTFLOW_API_URL = "http://127.0.0.1:9"}, "http://127.0.0.1:9/api/v2"},
                          {{MOLTFLOW_API_URL = ""}, "https://apiv2.waiflow.app/api/v2"},
                          {{}, "https://apiv2.waiflow.app/api/v2"}} do
      local r = proc.run({proc.lua, "-e", code}, {env = case[1]})
      assert.equal(0, r.code, r.stderr)
      assert.equal(case[2] .. " " .. case[2], r.stdout)
    end
  end)

  it("raises, naming the function, on a URL that is not a string", function()
    local ok, err = pcall(admin.base_url, 42)
    assert.is_false(ok)
    assert.matches("^moltflow%.[%w_.]*base_url: 'url' must be a string", err)
  end)
end)
