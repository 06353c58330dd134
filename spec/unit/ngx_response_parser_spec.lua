-- The HTTP/1.1 response parser of transport/ngx.lua, over the table of raw
-- responses in spec/support/raw_server.lua: run directly on byte sources that
-- split the bytes every which way (plus a seeded fuzz), and the same table
-- served over loopback to libcurl (blocking and multi). spec/hosts/openresty_spec.lua
-- serves it to the ngx transport inside nginx.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local dkjson = require "dkjson"
local raw = require "spec.support.raw_server"
local transport = require "moltflow.transport.ngx"

local KINDS = {network = true, timeout = true, too_large = true}

-- A byte source over `text`, `step` bytes a piece (or the sizes in a list);
-- past the end: "timeout" for a held connection, else "closed".
local function source(text, step, held)
  local i, n, calls = 1, 0, 0
  local fill = function()
    calls = calls + 1
    if i > #text then return nil, held and "timeout" or "closed" end
    n = n + 1
    local size = type(step) == "table" and step[(n - 1) % #step + 1] or step
    local piece = text:sub(i, i + size - 1)
    i = i + size
    return piece
  end
  return fill, function() return calls end
end

local function parse(text, step, held, max_bytes)
  return transport.read_response((source(text, step, held)), max_bytes or 1024 * 1024, false)
end

local function decoded(body)
  if body == "" then return true end
  return (dkjson.decode(body))
end

describe("the ngx transport's parser, over the table of raw responses", function()
  for _, case in ipairs(raw.cases) do
    it(case.name .. (case.kind and (" is " .. case.kind) or " is read"), function()
      for _, step in ipairs({1, 2, 3, 7, 64, 65536, {1, 5, 2, 40}}) do
        local status, r2, r3, r4 = parse(case.raw, step, case.hold)
        local how = case.name .. " in pieces of " .. (type(step) == "table" and "1,5,2,40" or step)
        if case.kind then
          assert.is_nil(status, how)
          assert.equal(case.kind, r2, how .. ": " .. tostring(r3))
          assert.is_string(r3)
        else
          assert.equal(200, status, how .. ": " .. tostring(r3))
          assert.same(case.body, decoded(r3), how)
          -- reusable only when nothing is left over (bytes that arrive
          -- later make nginx close the idle pooled connection itself)
          if case.name ~= "smuggled" then assert.is_true(r4, how) end
          if step == 65536 then assert.equal(case.name ~= "smuggled", r4, how) end
        end
      end
    end)
  end

  it("returns the final head only, after the interim answers", function()
    local status, head = parse(raw.cases["early-hints"].raw, 5, true)
    assert.equal(200, status)
    assert.equal("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n", head)
  end)

  it("marks a connection that closed before any byte as stale-able, and only that one", function()
    local _, kind, _, nothing = parse("", 1)
    assert.same({"network", true}, {kind, nothing})
    _, kind, _, nothing = parse(raw.cases["closed-in-headers"].raw, 3)
    assert.same({"network", false}, {kind, nothing})
  end)

  it("never pools a response that said Connection: close or came as HTTP/1.0", function()
    local body = "Content-Length: 2\r\n\r\nok"
    assert.is_false(select(4, parse("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n" .. body, 4, true)))
    assert.is_false(select(4, parse("HTTP/1.0 200 OK\r\n" .. body, 4, true)))
    assert.is_true(select(4, parse("HTTP/1.1 200 OK\r\n" .. body, 4, true)))
  end)

  it("bounds the header block by max_response_bytes as it arrives", function()
    local fill, calls = source("HTTP/1.1 200 OK\r\nX-Huge: " .. string.rep("h", 1024 * 1024), 1000)
    local status, kind = transport.read_response(fill, 10000, false)
    assert.same({nil, "too_large"}, {status, kind})
    assert.is_true(calls() <= 12, "read " .. calls() .. " pieces")
    -- interim answers count too: an endless stream of 103s ends
    fill, calls = source(string.rep("HTTP/1.1 103 Early Hints\r\n\r\n", 10000), 100)
    status, kind = transport.read_response(fill, 10000, false)
    assert.same({nil, "too_large"}, {status, kind})
    assert.is_true(calls() <= 102, "read " .. calls() .. " pieces")
  end)

  it("bounds a body without a length as it arrives", function()
    local fill, calls = source("HTTP/1.1 200 OK\r\n\r\n" .. string.rep("b", 1024 * 1024), 1000)
    local status, kind = transport.read_response(fill, 10000, false)
    assert.same({nil, "too_large"}, {status, kind})
    assert.is_true(calls() <= 12, "read " .. calls() .. " pieces")
  end)

  it("refuses announced sizes over the limit before reading them", function()
    local s, kind = parse("HTTP/1.1 200 OK\r\nContent-Length: 10001\r\n\r\n", 100, true, 10000)
    assert.same({nil, "too_large"}, {s, kind})
    s, kind = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2711\r\n", 100, true, 10000)
    assert.same({nil, "too_large"}, {s, kind})
  end)

  it("is a timeout when the source times out, at any point", function()
    local text = raw.cases.chunked.raw
    for cut = 0, #text - 1 do
      local s, kind = parse(text:sub(1, cut), 3, true)
      assert.same({nil, "timeout"}, {s, kind}, "cut at " .. cut)
    end
  end)

  it("reads no body for HEAD, 204 and 304", function()
    local fill = source("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 4, true)
    local status, _, body, reusable = transport.read_response(fill, 1000, true)
    assert.same({200, "", true}, {status, body, reusable})
    for _, st in ipairs({204, 304}) do
      status, _, body, reusable = parse("HTTP/1.1 " .. st .. " X\r\nContent-Length: 0\r\n\r\n", 4, true)
      assert.same({st, "", true}, {status, body, reusable})
    end
  end)

  it("survives a seeded fuzz of the table: never raises, always one of the documented outcomes", function()
    local seeds = {}
    for _, case in ipairs(raw.cases) do seeds[#seeds + 1] = case.raw end
    local state = 12345
    local function rand(n) -- a small LCG: the same sequence on every Lua
      state = (state * 1103515245 + 12345) % 2147483648
      return state % n + 1
    end
    local alphabet = {"\r", "\n", "\r\n", ":", " ", "0", "f", "-", ";", "chunked", "Content-Length: ",
                      "Transfer-Encoding: ", "HTTP/1.1 1", "\0", "\255"}
    for _ = 1, 3000 do
      local text = seeds[rand(#seeds)]
      for _ = 1, rand(4) do
        local at = rand(#text + 1)
        local op = rand(3)
        if op == 1 then
          text = text:sub(1, at - 1) .. text:sub(at + rand(8))
        elseif op == 2 then
          text = text:sub(1, at - 1) .. alphabet[rand(#alphabet)] .. text:sub(at)
        else
          text = text:sub(1, at - 1) .. string.char(rand(256) - 1) .. text:sub(at + 1)
        end
      end
      local ok, status, r2, r3 = pcall(transport.read_response, (source(text, rand(9), rand(2) == 1)), 4096, false)
      assert.is_true(ok, tostring(status) .. " on " .. ("%q"):format(text))
      if status then
        assert.is_true(status >= 200 and status <= 999)
        assert.is_true(#r3 <= 4096)
        assert.is_string(r2)
      else
        assert.is_true(KINDS[r2], tostring(r2))
        assert.is_string(r3)
      end
    end
  end)
end)

describe("the table of raw responses over libcurl", function()
  local origin
  setup(function() origin = raw.start() end)

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

  for _, case in ipairs(raw.cases) do
    local kind = case.curl_kind or case.kind
    it(case.name .. " is " .. (kind or "read"), function()
      local c = admin.new{base_url = origin, api_key = "mf_raw", retry = false, timeout = 2}
      for _, call in ipairs({function() return c:request("GET", "/raw/" .. case.name) end,
                             function() return run_async(c, "/raw/" .. case.name) end}) do
        local v, err = call()
        if kind == "ok" then
          assert.is_not_nil(v, tostring(err))
        elseif kind then
          assert.is_nil(v)
          assert.equal(kind, err.kind, tostring(err))
        else
          assert.same(case.body, v, tostring(err))
        end
      end
      c:close()
    end)
  end
end)
