-- Seed data of the emulator: plain data with no dependencies, so the specs'
-- helper (plain Lua 5.4) can load the very same credentials the server uses.
-- docs/emulator.md documents every value here.
return {
  tenants = {
    { id = "t_acme", name = "Acme", plan_id = "pro", billing_cycle = "monthly",
      settings = { allowed_numbers = { "+5511999999999" }, require_approval = false, ai_consent_enabled = false },
      -- This month's message counters (api_calls are counted live).
      usage = { messages_sent = 800, messages_received = 447, leads_detected = 31,
                sessions = 2, groups = 5, labels = 12, ai_replies_this_month = 89 } },
    { id = "t_solo", name = "Solo", plan_id = "free", billing_cycle = "monthly",
      settings = { allowed_numbers = {}, require_approval = false, ai_consent_enabled = false },
      usage = { messages_sent = 12, messages_received = 9, leads_detected = 1,
                sessions = 1, groups = 0, labels = 1, ai_replies_this_month = 0 } },
  },
  users = {
    owner = { id = "usr_acme_owner", tenant_id = "t_acme", role = "owner", email = "owner@acme.test",
              password = "owner-pass-1", full_name = "Olivia Owner" },
    admin = { id = "usr_acme_admin", tenant_id = "t_acme", role = "admin", email = "admin@acme.test",
              password = "admin-pass-1", full_name = "Adam Admin" },
    member = { id = "usr_acme_member", tenant_id = "t_acme", role = "member", email = "member@acme.test",
               password = "member-pass-1", full_name = "Mia Member" },
    -- No password: signs in by magic link (or sets one with setup-password).
    magic = { id = "usr_acme_magic", tenant_id = "t_acme", role = "member", email = "magic@acme.test",
              full_name = "Max Magic" },
    free_owner = { id = "usr_solo_owner", tenant_id = "t_solo", role = "owner", email = "solo@solo.test",
                   password = "solo-pass-1", full_name = "Sam Solo" },
  },
  keys = {
    all = { id = "key_acme_all", tenant_id = "t_acme", user_id = "usr_acme_owner", name = "acme-all",
            scopes = { "*" }, raw_key = "mf_AcmeAllu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOO" },
    usage_only = { id = "key_acme_usage", tenant_id = "t_acme", user_id = "usr_acme_owner", name = "acme-usage",
                   scopes = { "usage:read" }, raw_key = "mf_AcmeUseL8dKLzdocJ2isAjIhKtJ0RlgLKOmxgJTe" },
    solo_all = { id = "key_solo_all", tenant_id = "t_solo", user_id = "usr_solo_owner", name = "solo-all",
                 scopes = { "*" }, raw_key = "mf_SoloAllKdNnFRIBXuDL7DxtpYlSXpfKtHF4vUCsM" },
  },
}
