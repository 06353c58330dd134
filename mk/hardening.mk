# Included by the Makefile: fuzzing, sanitizers, valgrind and soak.
# ---------------------------------------------------------------- hardening
# make fuzz           every libFuzzer target for FUZZ_SECONDS (60) each
# make fuzz-short     each for 3 s (part of make test)
# make check-valgrind the Lua 5.4 specs under valgrind memcheck
# make check-sanitize the specs on a core built with ASan + UBSan (build/asan)
# make soak           SOAK_REQUESTS (100000) requests with random faults, flat RSS; then
#                     the chaos run on CHAOS_SOAK_SEEDS (1-20) x CHAOS_SOAK_CALLS (400)
FUZZ_CC ?= clang
FUZZ_TARGETS := json token response_headers error_body request
FUZZ_SECONDS ?= 60
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_OBJ := $(patsubst src/%.c,build/fuzz/obj/%.o,$(SRC))
FUZZ_BIN := $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))

build/fuzz/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(call compile,$(FUZZ_CC),-g -O1 -fsanitize=fuzzer-no-link $(SAN_FLAGS),$(HOST_LUA_INC)) -c $< -o $@

build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/harness.h $(FUZZ_OBJ)
	$(call compile,$(FUZZ_CC),-g -O1 -fsanitize=fuzzer $(SAN_FLAGS),$(HOST_LUA_INC)) \
	  $< $(FUZZ_OBJ) -l:liblua5.4.a $(LIBS) -lm -ldl -o $@

# Request building alone (layers 1 and 2): no client, no http.c, no libcurl.
FUZZ_LAYER2_OBJ := $(patsubst %,build/fuzz/obj/%.o,buffer clock json request response)
build/fuzz/fuzz_request: fuzz/fuzz_request.c fuzz/harness.h $(FUZZ_LAYER2_OBJ)
	$(call compile,$(FUZZ_CC),-g -O1 -fsanitize=fuzzer $(SAN_FLAGS),$(HOST_LUA_INC)) \
	  $< $(FUZZ_LAYER2_OBJ) -l:liblua5.4.a -lcrypto -lm -ldl -o $@

.SECONDARY: $(FUZZ_OBJ)
fuzz-build: $(FUZZ_BIN)

# New inputs go to build/fuzz/corpus; fuzz/corpus (seeds and regressions) is read only.
fuzz fuzz-short: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t build/fuzz/crashes; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 -print_final_stats=0 \
	    -artifact_prefix=build/fuzz/crashes/$$t- build/fuzz/corpus/$$t fuzz/corpus/$$t \
	    2> build/fuzz/$$t.log || { tail -40 build/fuzz/$$t.log; exit 1; }; \
	  grep -E '^(#[0-9]+ +DONE|Done)' build/fuzz/$$t.log | tail -1; \
	done

fuzz-short: FUZZ_SECONDS = 3

# Memcheck on the Lua 5.4 build: no error, nothing definitely or indirectly
# lost (one-time libldap/SASL init suppressed: spec/support/valgrind.supp).
VALGRIND := valgrind -q --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --error-exitcode=1 --keep-debuginfo=yes \
  --suppressions=spec/support/valgrind.supp --num-callers=30
check-valgrind: all
	SOAK_REQUESTS=$${SOAK_REQUESTS:-300} SOAK_CHECK_RSS=0 MOLTFLOW_SKIP_PACKAGING=1 LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/5.4/?.so;;' \
	  $(VALGRIND) lua5.4 /usr/bin/busted $(BUSTED_OUTPUT) $(HARDENING_EXCLUDE) spec $(call tag,valgrind)

# ASan + UBSan: the core built into build/asan and loaded by a small Lua 5.4
# host linked with the sanitizer runtimes (no LD_PRELOAD for child processes).
ASAN_OBJ := $(patsubst src/%.c,build/asan/obj/%.o,$(SRC))
.SECONDARY: $(ASAN_OBJ)

build/asan/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(call compile,$(FUZZ_CC),$(SO_FLAGS) -g -O1 $(SAN_FLAGS),$(HOST_LUA_INC)) -c $< -o $@

build/asan/moltflow/core.so: $(ASAN_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -shared $(SAN_FLAGS) $(ASAN_OBJ) $(LIBS) -o $@

build/asan/lua: spec/support/asan_lua.c
	@mkdir -p $(dir $@)
	$(call compile,$(FUZZ_CC),-g -O1 $(SAN_FLAGS),$(HOST_LUA_INC)) $< -l:liblua5.4.a -lm -ldl -Wl,-E -o $@

check-sanitize: all build/asan/lua build/asan/moltflow/core.so
	SOAK_REQUESTS=$${SOAK_REQUESTS:-1000} SOAK_CHECK_RSS=0 MOLTFLOW_SKIP_PACKAGING=1 ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 MOLTFLOW_ASAN_CPATH='build/asan/?.so' \
	  LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/5.4/?.so;;' \
	  build/asan/lua /usr/bin/busted $(BUSTED_OUTPUT) $(HARDENING_EXCLUDE) spec $(call tag,asan)

# 100000 requests with random faults; RSS must stay flat (spec/hardening/soak_spec.lua).
# Then the chaos spec on more seeds and calls than in `make test` (each seed's
# success rates on stderr).
# Under $(LUA) (Lua 5.4 unless LUA= names another).
SOAK_REQUESTS ?= 100000
CHAOS_SOAK_SEEDS ?= 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20
CHAOS_SOAK_CALLS ?= 400
soak: all
	SOAK_ALONE=1 SOAK_REQUESTS=$(SOAK_REQUESTS) LUA_PATH='$(SPEC_LUA_PATH)' LUA_CPATH='$(BUILD)/?.so;;' MOLTFLOW_TEST_LUA=$(LUA) \
	  $(LUA) /usr/bin/busted $(BUSTED_OUTPUT) spec/hardening/soak_spec.lua
	CHAOS_SEEDS=$(CHAOS_SOAK_SEEDS) CHAOS_CALLS=$(CHAOS_SOAK_CALLS) LUA_PATH='$(SPEC_LUA_PATH)' \
	  LUA_CPATH='$(BUILD)/?.so;;' MOLTFLOW_TEST_LUA=$(LUA) $(LUA) /usr/bin/busted $(BUSTED_OUTPUT) spec/hardening/chaos_spec.lua
