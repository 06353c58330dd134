-- Issue 23: admin.file_store with a seal key writes its tokens sealed
-- (AES-256-GCM, moltflow.seal); a reader without the key, with another key, or
-- of a tampered file gets no tokens and a message, never the plaintext.
local admin = require "moltflow.admin"
local core = require "moltflow.core"
local proc = require "spec.support.process"

local b64key = require("spec.support.secrets").seal_key

describe("admin.file_store with a seal key", function()
  local dir, path
  local TOKENS = {access_token = "acc-" .. core.sha256("x"), refresh_token = "ref-" .. core.sha256("y"),
                  base_url = "http://127.0.0.1:1"}
  before_each(function()
    dir = proc.tmpdir()
    path = dir .. "/tokens"
  end)
  after_each(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  it("the file holds ciphertext, mode 600; the same key reads the tokens back", function()
    local key = b64key()
    assert.is_true(admin.file_store(path, {seal_key = key}):save(TOKENS))
    local text = proc.slurp(path)
    assert.matches("^v1%.%x+%.[%w_-]+$", text)
    for _, secret in ipairs{TOKENS.access_token, TOKENS.refresh_token, "acc-", "ref-"} do
      assert.is_nil(text:find(secret, 1, true))
    end
    assert.equal("600", proc.mode(path))
    assert.same(TOKENS, admin.file_store(path, {seal_key = key}):load())
  end)

  it("another key, no key, a tampered file: nil and a message naming the file, without the tokens", function()
    local key = b64key()
    admin.file_store(path, {seal_key = key}):save(TOKENS)
    local function refused(store, pattern)
      local t, message = store:load()
      assert.is_nil(t)
      assert.matches("ignoring the token file " .. path, message, 1, true)
      assert.matches(pattern, message, 1, true)
      assert.is_nil(message:find(TOKENS.refresh_token, 1, true))
      assert.is_nil(message:find(key, 1, true))
    end
    refused(admin.file_store(path, {seal_key = b64key()}), "does not have")
    refused(admin.file_store(path, {seal_key = false}), "no seal key")
    local text = proc.slurp(path)
    proc.spit(path, text:sub(1, -4) .. (text:sub(-3, -3) == "A" and "B" or "A") .. text:sub(-2))
    refused(admin.file_store(path, {seal_key = key}), "cannot be opened")
    -- a client on that store starts without tokens, without raising
    local c = admin.new{base_url = "http://127.0.0.1:1", token_store = admin.file_store(path, {seal_key = key})}
    assert.is_nil(c:tokens())
  end)

  it("rotation: the old key opens the file, which is sealed again with the new key", function()
    local old, new = b64key(), b64key()
    admin.file_store(path, {seal_key = old}):save(TOKENS)
    local before = proc.slurp(path)
    assert.same(TOKENS, admin.file_store(path, {seal_key = new, old_seal_keys = {old}}):load())
    assert.are_not.equal(before:sub(1, 12), proc.slurp(path):sub(1, 12))
    assert.same(TOKENS, admin.file_store(path, {seal_key = new}):load())
  end)

  it("a malformed key raises before any I/O, naming the option and not its value", function()
    local ok, err = pcall(admin.file_store, path, {seal_key = "dG9vIHNob3J0"})
    assert.is_false(ok)
    assert.matches("moltflow.file_store: seal_key must be 32 bytes in base64", err, 1, true)
    assert.is_nil(err:find("dG9vIHNob3J0", 1, true))
    assert.has_error(function() admin.file_store(path, "key") end, "moltflow.file_store: 'opts' must be a table")
  end)
end)
