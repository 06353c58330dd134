-- Hashing and randomness through LuaJIT FFI against OpenSSL's libcrypto.
-- nginx already links libcrypto, so its symbols are usually reachable via
-- ffi.C; otherwise libcrypto.so.3 is loaded explicitly. The emulator must not
-- depend on the SDK's C core, so it carries its own bindings.
local ffi = require "ffi"

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
int RAND_bytes(unsigned char *buf, int num);
int PKCS5_PBKDF2_HMAC(const char *pass, int passlen, const unsigned char *salt, int saltlen,
                      int iter, const EVP_MD *digest, int keylen, unsigned char *out);
]]

local lib = ffi.C
if not pcall(function() return lib.RAND_bytes end) then
  lib = ffi.load("libcrypto.so.3")
end

local M = {}

local function hex(buf, n)
  local s = ffi.string(buf, n)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function M.random_bytes(n)
  local buf = ffi.new("unsigned char[?]", n)
  if lib.RAND_bytes(buf, n) ~= 1 then error("RAND_bytes failed") end
  return ffi.string(buf, n)
end

function M.random_hex(n_bytes)
  local raw = M.random_bytes(n_bytes)
  return (raw:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

-- n characters of [A-Za-z0-9] from the CSPRNG; bytes >= 248 are rejected so
-- every character is equally likely (248 = 4 * 62).
function M.random_alnum(n)
  local out = {}
  while #out < n do
    local raw = M.random_bytes(n)
    for i = 1, #raw do
      local b = raw:byte(i)
      if b < 248 and #out < n then
        local k = b % 62 + 1
        out[#out + 1] = ALNUM:sub(k, k)
      end
    end
  end
  return table.concat(out)
end

function M.sha256_hex(data)
  local md = ffi.new("unsigned char[32]")
  lib.SHA256(data, #data, md)
  return hex(md, 32)
end

-- Raw (binary) HMAC-SHA256, as JWT signatures need.
function M.hmac_sha256(key, data)
  local md = ffi.new("unsigned char[32]")
  local len = ffi.new("unsigned int[1]")
  lib.HMAC(lib.EVP_sha256(), key, #key, data, #data, md, len)
  return ffi.string(md, len[0])
end

function M.pbkdf2_sha256_hex(password, salt, iterations)
  local out = ffi.new("unsigned char[32]")
  if lib.PKCS5_PBKDF2_HMAC(password, #password, salt, #salt, iterations, lib.EVP_sha256(), 32, out) ~= 1 then
    error("PKCS5_PBKDF2_HMAC failed")
  end
  return hex(out, 32)
end

-- Compare without an early exit, so timing does not reveal the matching prefix.
function M.constant_time_equal(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do
    diff = bit.bor(diff, bit.bxor(a:byte(i), b:byte(i)))
  end
  return diff == 0
end

-- Passwords are stored as "pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>".
-- The iteration count is low on purpose: this is a test server, and specs log
-- in hundreds of times.
local PBKDF2_ITERATIONS = 1000

function M.hash_password(password, iterations)
  iterations = iterations or PBKDF2_ITERATIONS
  local salt = M.random_hex(16)
  return string.format("pbkdf2_sha256$%d$%s$%s", iterations, salt,
    M.pbkdf2_sha256_hex(password, salt, iterations))
end

function M.verify_password(password, stored)
  if type(stored) ~= "string" then return false end
  local iter, salt, want = stored:match("^pbkdf2_sha256%$(%d+)%$(%x+)%$(%x+)$")
  if not iter then return false end
  return M.constant_time_equal(M.pbkdf2_sha256_hex(password, salt, tonumber(iter)), want)
end

return M
