-- Garbled answers (issue 25, item 4): a status line with control bytes, or
-- bytes that are not HTTP at all, come back as kind "network": like a cut
-- answer they say nothing of whether the server acted (an idempotent call is
-- retried, another is not), and "decode" stays the kind of an HTTP answer
-- with a known status whose body is not JSON. The message says what happened
-- and carries no control byte, on both transports (spec/unit/ngx_response_parser_spec.lua
-- and the OpenResty spec give every raw case to the ngx transport).
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local raw = require "spec.support.raw_server"

local function run_async(c, path)
  local ep = core.endpoint{label = "request", method = "GET", path = "/", auth = "any", raw = true}
  local req = c._core:build(ep, path)
  assert(c._core:start(req))
  local deadline = core.monotime() + 30
  while core.monotime() < deadline do
    if #c._core:poll(0.2) > 0 then return c._core:finish(req) end
  end
  error("the async request never finished")
end

describe("a garbled answer", function()
  local origin
  setup(function() origin = raw.start() end)

  for _, name in ipairs({"status-line-control-bytes", "not-http"}) do
    it(name .. " is a network error that says the answer was not HTTP, without the bytes", function()
      local c = admin.new{base_url = origin, api_key = "mf_raw", retry = false, timeout = 2}
      for _, call in ipairs({function() return c:request("GET", "/raw/" .. name) end,
                             function() return run_async(c, "/raw/" .. name) end}) do
        local v, err = call()
        assert.is_nil(v)
        assert.is_true(admin.is_error(err))
        assert.equal("network", err.kind, tostring(err))
        assert.is_nil(err.status)
        assert.is_truthy(err.message:find("^malformed answer, not HTTP %("), err.message)
        assert.is_truthy(err.message:find("the server may have acted on the request$"), err.message)
        assert.is_nil(tostring(err):find("[%z\1-\31\127]"), tostring(err))
      end
      c:close()
    end)
  end

  it("reads the same from the ngx transport's parser", function()
    local transport = require "moltflow.transport.ngx"
    for _, name in ipairs({"status-line-control-bytes", "not-http"}) do
      local text, given = raw.cases[name].raw, false
      local status, kind, message = transport.read_response(function()
        if given then return nil, "closed" end
        given = true
        return text
      end, 1024 * 1024, false)
      assert.is_nil(status)
      assert.equal("network", kind, name)
      assert.equal("malformed answer, not HTTP (malformed status line): the server may have acted on the request",
                   message, name)
    end
  end)

  it("is retried for an idempotent call, like a cut answer", function()
    local c = admin.new{base_url = origin, api_key = "mf_raw", timeout = 2, sleep = function() end,
                        retry = {max_attempts = 2}}
    local _, err = c:request("GET", "/raw/not-http")
    assert.equal(2, err.attempts)
    local _, err2 = c:request("POST", "/raw/not-http")
    assert.equal(1, err2.attempts)
    c:close()
  end)
end)
