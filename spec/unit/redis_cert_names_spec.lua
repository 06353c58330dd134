-- moltflow.redis.certificate_names, the hostname check of rediss:// outside
-- nginx (RFC 6125): a name is matched against the certificate's
-- subjectAltName only, never its subject's CN, and an IP address only
-- against IP entries. Certificates made here by `openssl req`, read by LuaSec.
local redis = require "moltflow.redis"
local x509 = require "ssl.x509"
local proc = require "spec.support.process"

-- A self-signed certificate for CN=`cn`, with `san` ("DNS:a,IP:1.2.3.4") when given.
local function certificate(dir, cn, san)
  local out = dir .. "/cert.pem"
  local cmd = ("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 -subj %s %s 2>/dev/null")
    :format(proc.quote(dir .. "/key.pem"), proc.quote(out), proc.quote("/CN=" .. cn),
            san and ("-addext " .. proc.quote("subjectAltName=" .. san)) or "")
  assert(os.execute(cmd), "openssl req failed")
  return assert(x509.load(proc.slurp(out)))
end

describe("moltflow.redis.certificate_names", function()
  local dir
  setup(function() dir = proc.tmpdir() end)
  teardown(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  it("a certificate with no subjectAltName names nobody, not even its CN", function()
    local cert = certificate(dir, "redis.example")
    assert.is_false(redis.certificate_names(cert, "redis.example"))
    local ip_cn = certificate(dir, "127.0.0.1")
    assert.is_false(redis.certificate_names(ip_cn, "127.0.0.1"))
  end)

  it("names its DNS entries (one leftmost wildcard label) and its IP entries, each for its own kind", function()
    local cert = certificate(dir, "ignored.example", "DNS:redis.example,DNS:*.cache.example,IP:127.0.0.1")
    assert.is_true(redis.certificate_names(cert, "redis.example"))
    assert.is_true(redis.certificate_names(cert, "REDIS.example"))
    assert.is_true(redis.certificate_names(cert, "a.cache.example"))
    assert.is_false(redis.certificate_names(cert, "a.b.cache.example"))
    assert.is_false(redis.certificate_names(cert, "cache.example"))
    assert.is_false(redis.certificate_names(cert, "ignored.example"))
    assert.is_true(redis.certificate_names(cert, "127.0.0.1"))
    assert.is_false(redis.certificate_names(cert, "127.0.0.2"))
    -- an IP address is not matched against DNS entries, nor a name against IP entries
    local dns_ip = certificate(dir, "x", "DNS:127.0.0.1")
    assert.is_false(redis.certificate_names(dns_ip, "127.0.0.1"))
  end)
end)
