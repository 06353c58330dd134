-- Verifies a MoltFlow webhook delivery: `X-Webhook-Signature` is the
-- HMAC-SHA256 of the raw request body with the webhook's secret, lower-case
-- hex. admin.verify_signature compares in constant time. Verify the bytes as
-- received, before any JSON decoding.
--
--   WEBHOOK_SECRET=whsec_... lua5.4 examples/webhook_verify.lua SIGNATURE < body.json
--
-- Exits 0 for a valid signature, 1 for an invalid one, 2 on a usage error.
local admin = require "moltflow.admin"

-- In a web handler: headers as received (any case), body as raw bytes.
local function verify_delivery(headers, body, secret)
  local signature
  for name, value in pairs(headers) do
    if name:lower() == "x-webhook-signature" then signature = value end
  end
  return signature ~= nil and admin.verify_signature(secret, body, signature)
end

local secret = os.getenv("WEBHOOK_SECRET")
local signature = arg[1]
if not secret or secret == "" or not signature then
  io.stderr:write("usage: WEBHOOK_SECRET=... webhook_verify.lua SIGNATURE < body\n")
  os.exit(2)
end

local body = io.read("*a")
if verify_delivery({["X-Webhook-Signature"] = signature}, body, secret) then
  local event = admin.json_decode(body)
  print(("valid signature; event %s"):format(type(event) == "table" and tostring(event.event) or "(not JSON)"))
  os.exit(0)
end
print("INVALID signature: reject the delivery (HTTP 401)")
os.exit(1)
