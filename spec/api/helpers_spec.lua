-- The convenience helpers (moltflow.helpers) against the emulator, over HTTP.
local admin = require "moltflow.admin"
local emu = require "spec.support.emulator"

local client = emu.client

local api_requests = emu.requests_for

describe("moltflow.helpers", function()
  before_each(function() emu.reset() end)

  it("are plain functions the client's method tables reference", function()
    local helpers = require "moltflow.helpers"
    assert.equal(helpers.quota, admin.Client.quota)
    assert.equal(helpers.ensure_key, admin.groups.api_keys.ensure)
    assert.equal(helpers, admin.helpers)
    assert.equal(helpers.to_csv, admin.to_csv)
  end)

  describe("c:quota()", function()
    it("pairs each limit with its usage from one subscription read", function()
      local c = client()
      local q, res = c:quota()
      assert.is_table(q, tostring(res))
      assert.equal(200, res.status)
      assert.equal("pro", q.plan_id)
      assert.same({name = "messages", used = 1247, limit = 5000, remaining = 3753, percent = 24.94,
                   limit_field = "max_messages_per_month", usage_field = "messages_this_month"}, q.messages)
      assert.same({2, 3, 1, 66.67}, {q.sessions.used, q.sessions.limit, q.sessions.remaining, q.sessions.percent})
      assert.same({5, 10, 5, 50}, {q.groups.used, q.groups.limit, q.groups.remaining, q.groups.percent})
      assert.same({12, 50, 38, 24}, {q.labels.used, q.labels.limit, q.labels.remaining, q.labels.percent})
      assert.same({89, 500, 411, 17.8}, {q.ai_replies.used, q.ai_replies.limit, q.ai_replies.remaining,
                                          q.ai_replies.percent})
      local names = {}
      for i, item in ipairs(q.items) do names[i] = item.name end
      assert.same({"sessions", "messages", "groups", "labels", "ai_replies"}, names)
      assert.equal(1, #api_requests("GET", "/billing/subscription"))
      assert.equal(1, #emu.requests())
    end)

    it("reports a zero limit as 0 % while nothing is used (free plan AI replies)", function()
      local c = client{api_key = emu.seed.keys.solo_all}
      local q = assert(c:quota())
      assert.equal("free", q.plan_id)
      assert.same({0, 0, 0, 0}, {q.ai_replies.used, q.ai_replies.limit, q.ai_replies.remaining, q.ai_replies.percent})
      assert.same({21, 50, 29, 42}, {q.messages.used, q.messages.limit, q.messages.remaining, q.messages.percent})
    end)

    it("an exceeded limit has nothing remaining and more than 100 %", function()
      local c = client()
      local sub = assert(c.billing:subscription())
      sub.usage.messages_this_month = sub.limits.max_messages_per_month + 250
      emu.fault{method = "GET", path = "/billing/subscription", status = 200, body = admin.json_encode(sub)}
      local q = assert(c:quota())
      assert.same({5250, 5000, 0, 105}, {q.messages.used, q.messages.limit, q.messages.remaining, q.messages.percent})
    end)

    it("returns the error table when the subscription cannot be read", function()
      local c = client{api_key = emu.seed.keys.usage_only}
      local q, err = c:quota()
      assert.is_nil(q)
      assert.equal(403, err.status)
      assert.equal("http", err.kind)
      assert.matches("billing:manage", err.message)
    end)
  end)

  describe("c:will_exceed{}", function()
    it("says no while the campaign fits and yes when it does not", function()
      local c = client()
      local exceeds, d = c:will_exceed{messages = 3753}
      assert.is_false(exceeds)
      assert.same({requested = 3753, used = 1247, limit = 5000, remaining = 3753, short_by = 0, exceeds = false},
                  d.messages)
      assert.same({}, d.exceeded)
      exceeds, d = c:will_exceed{messages = 3754, groups = 1}
      assert.is_true(exceeds)
      assert.equal(1, d.messages.short_by)
      assert.same({"messages"}, d.exceeded)
      assert.is_false(d.groups.exceeds)
      assert.equal("pro", d.quota.plan_id)
    end)

    it("refuses bad plans before any request", function()
      local c = client()
      emu.control("DELETE", "requests")
      assert.has_error(function() c:will_exceed() end, "moltflow.will_exceed: expected a table of arguments")
      assert.has_error(function() c:will_exceed{} end)
      assert.has_error(function() c:will_exceed{messages = -1} end,
                       "moltflow.will_exceed: field 'messages' must be a non-negative integer")
      assert.has_error(function() c:will_exceed{messages = 1.5} end)
      assert.has_error(function() c:will_exceed{emails = 1} end, "moltflow.will_exceed: unknown field 'emails'")
      assert.same({}, emu.requests())
    end)

    it("passes the error on", function()
      emu.fault{path = "/billing/subscription", status = 500, times = 5}
      local c = client{retry = false}
      local ok, err = c:will_exceed{messages = 1}
      assert.is_nil(ok)
      assert.equal(500, err.status)
    end)
  end)

  describe("c.api_keys:find{}", function()
    it("finds a key by name, and answers false for an unknown name", function()
      local c = client()
      local key, res = c.api_keys:find{name = "acme-usage"}
      assert.equal(200, res.status)
      assert.equal(emu.seed.key_ids.usage_only, key.id)
      assert.same({"usage:read"}, key.scopes)
      assert.is_nil(key.raw_key)
      assert.is_false((c.api_keys:find{name = "nobody"}))
      assert.equal(2, #api_requests("GET", "/api-keys"))
    end)

    it("checks its arguments before any I/O", function()
      local c = client()
      emu.control("DELETE", "requests")
      assert.has_error(function() c.api_keys:find{} end,
                       "moltflow.api_keys.find: field 'name' must be a non-empty string")
      assert.has_error(function() c.api_keys:find{name = "x", id = 1} end)
      assert.has_error(function() c.api_keys.find({}, {name = "x"}) end)
      assert.same({}, emu.requests())
    end)
  end)

  describe("c.api_keys:ensure{}", function()
    it("creates a key once and never shows its raw key again", function()
      local c = client{login = emu.seed.owner}
      local first, res = c.api_keys:ensure{name = "client-a", scopes = {"usage:read"}, expires_in_days = 30}
      assert.equal(201, res.status)
      assert.is_true(first.created)
      assert.matches("^mf_", first.raw_key)
      local second, res2 = c.api_keys:ensure{name = "client-a", scopes = {"usage:read"}, expires_in_days = 30}
      assert.equal(200, res2.status)
      assert.is_false(second.created)
      assert.is_nil(second.raw_key)
      assert.is_nil(second.scopes_differ)
      assert.equal(first.id, second.id)
      assert.equal(1, #api_requests("POST", "/api-keys"))
      -- the server stores the hash of the raw key that was shown
      local stored
      for _, k in ipairs(emu.control("GET", "api-keys")) do if k.id == first.id then stored = k end end
      assert.equal(admin.key_fingerprint(first.raw_key), stored.key_hash)
      -- the new key works with exactly its scope
      local keyed = client{api_key = first.raw_key}
      assert.is_table((keyed.usage:current()))
      assert.equal(403, select(2, keyed.billing:subscription()).status)
    end)

    it("flags an existing key whose scopes differ and creates after a revoke", function()
      local c = client()
      local key = assert(c.api_keys:ensure{name = "acme-usage", scopes = {"usage:read", "billing:manage"}})
      assert.is_false(key.created)
      assert.is_true(key.scopes_differ) -- a scope wanted that the key lacks
      assert.is_true(assert(c.api_keys:ensure{name = "two-scopes", scopes = {"usage:read", "billing:manage"}}).created)
      local fewer = assert(c.api_keys:ensure{name = "two-scopes", scopes = {"usage:read"}})
      assert.is_true(fewer.scopes_differ) -- a scope the key has that is not wanted
      assert(c.api_keys:revoke(key.id))
      local again = assert(c.api_keys:ensure{name = "acme-usage", scopes = {"usage:read"}})
      assert.is_true(again.created)
      assert.not_equal(key.id, again.id)
    end)

    it("returns the server's refusal", function()
      local c = client{api_key = emu.seed.keys.usage_only}
      local key, err = c.api_keys:ensure{name = "x", scopes = {"usage:read"}}
      assert.is_nil(key)
      assert.equal(403, err.status)
    end)

    it("checks its arguments before any I/O", function()
      local c = client()
      emu.control("DELETE", "requests")
      assert.has_error(function() c.api_keys:ensure{name = "x"} end,
                       "moltflow.api_keys.ensure: field 'scopes' must be a non-empty list of strings")
      assert.has_error(function() c.api_keys:ensure{name = "x", scopes = {1}} end,
                       "moltflow.api_keys.ensure: field 'scopes[1]' must be a string")
      assert.has_error(function() c.api_keys:ensure{name = "x", scopes = {"a"}, expires_in_days = 0} end,
                       "moltflow.api_keys.ensure: field 'expires_in_days' must be a positive integer")
      assert.has_error(function() c.api_keys:ensure{name = "", scopes = {"a"}} end)
      assert.same({}, emu.requests())
    end)
  end)

  describe("c.usage:daily_rows{}", function()
    it("flattens the daily usage into CSV-ready rows", function()
      local c = client()
      local rows, res = c.usage:daily_rows{days = 7}
      assert.equal(200, res.status)
      assert.equal(7, #rows)
      local reqs = api_requests("GET", "/usage/daily")
      assert.equal("days=7", reqs[#reqs].query)
      local raw = assert(c.usage:daily{days = 7})
      for i, row in ipairs(rows) do
        local d = raw.days[i]
        -- today's api_calls grew by one with the second call
        local calls = i == 7 and d.api_calls - 1 or d.api_calls
        assert.same({date = d.date, messages_sent = d.messages_sent, messages_received = d.messages_received,
                     total_messages = d.messages_sent + d.messages_received, api_calls = calls}, row)
      end
      assert.equal(os.date("!%Y-%m-%d"), rows[7].date)
    end)

    it("keeps only the current month with month = true", function()
      local c = client()
      local rows = assert(c.usage:daily_rows{month = true})
      assert.equal(tonumber(os.date("!%d")), #rows)
      for _, row in ipairs(rows) do assert.equal(os.date("!%Y-%m"), row.date:sub(1, 7)) end
    end)

    it("renders CSV with admin.to_csv", function()
      local csv = admin.to_csv({{date = "2026-01-02", messages_sent = 3, messages_received = 4,
                                 total_messages = 7, api_calls = 1}})
      assert.equal("date,messages_sent,messages_received,total_messages,api_calls\n2026-01-02,3,4,7,1\n", csv)
      assert.equal('a,b\n"x,y","say ""hi"""\n', admin.to_csv({{a = "x,y", b = 'say "hi"'}}, {"a", "b"}))
      assert.has_error(function() admin.to_csv("x") end, "moltflow.to_csv: 'rows' must be a list of tables")
      -- whole numbers without a decimal point; others, huge ones and non-numbers as tostring gives them
      assert.equal("a,b,c,d\n7,1.5,1e+300,-\n", admin.to_csv({{a = 7.0, b = 1.5, c = 1e300, d = "-"}}, {"a", "b", "c", "d"}))
    end)

    it("refuses bad arguments before any I/O", function()
      local c = client()
      emu.control("DELETE", "requests")
      assert.has_error(function() c.usage:daily_rows{days = 0} end,
                       "moltflow.usage.daily_rows: field 'days' must be an integer from 1 to 31")
      assert.has_error(function() c.usage:daily_rows{days = 32} end)
      assert.has_error(function() c.usage:daily_rows{days = 3, month = true} end)
      assert.same({}, emu.requests())
    end)
  end)
end)
