# moltflow-admin: a Lua SDK for the MoltFlow admin API.
#   make                 build the C core for Lua 5.4
#   make LUA=luajit      build it for LuaJIT 2.1 (OpenResty)
#   make test            C unit tests, specs under Lua 5.4 and LuaJIT against the emulator, fuzz-short,
#                        check-sanitize, check-valgrind (see the hardening section below)
#   make demo            examples/quickstart.lua against a local emulator
#   make embed           examples/embed: a C host with the core linked in statically
#   make bench           benchmarks side by side; rewrites BENCHMARKS.md (not part of test)
#   make mutate          mutation testing: tools/mutants.txt against the Lua 5.4 suite (not part of test)
#   make emulator        the emulator in the foreground (PORT=8787)
#   make docs            LDoc reference in build/docs; README's generated endpoint reference
#   make install PREFIX=/usr/local
#   make deps            Debian packages (as root)

LUA ?= lua5.4
PREFIX ?= /usr/local
PORT ?= 8787
CC ?= cc

ifeq ($(LUA),luajit)
  LUA_INC := /usr/include/luajit-2.1
  LUA_ABI := 5.1
  BUILD := build/luajit
else
  LUA_INC := /usr/include/lua5.4
  LUA_ABI := 5.4
  BUILD := build/5.4
endif

WARN := -Wall -Wextra -Wpedantic
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -fPIC $(WARN) $(CFLAGS) -I$(LUA_INC)
LIBS := -lcurl -lcrypto -lpthread
SRC := $(wildcard src/*.c)
HDR := $(wildcard src/*.h)
OBJ := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRC))
CORE := $(BUILD)/moltflow/core.so

DEBIAN_PACKAGES := build-essential lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev \
  libcurl4-openssl-dev libssl-dev lua-cjson lua-dkjson lua-busted lua-socket nginx \
  libnginx-mod-http-lua lua-resty-core lua-argparse lua-ldoc lua-markdown lua-check luarocks valgrind \
  clang libclang-rt-14-dev wrk gnuplot-nox curl openssl python3-requests

BUSTED_54 := LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 /usr/bin/busted
BUSTED_JIT := LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/luajit/?.so;;' luajit /usr/bin/busted

.PHONY: all core core-all embed mutate test test-c test-54 test-luajit demo bench emulator install uninstall deps clean docs \
  fuzz fuzz-short fuzz-build check-valgrind check-sanitize soak soak-short

all: $(CORE)

$(BUILD)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(CORE): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(OBJ) $(LDFLAGS) $(LIBS)

# Both hosts, warnings as errors.
core-all:
	$(MAKE) --no-print-directory LUA=lua5.4 CFLAGS="$(CFLAGS) -Werror"
	$(MAKE) --no-print-directory LUA=luajit CFLAGS="$(CFLAGS) -Werror"

# Then the hardening checks: short fuzzing, ASan+UBSan and valgrind runs of
# the whole suite (each a few minutes at most; spec/soak_spec.lua is short here).
test: core-all embed test-c test-54 test-luajit fuzz-short check-sanitize check-valgrind

# A C host (examples/embed/host.c) with the core's sources compiled in.
EMBED := build/embed/moltflow-embed
embed: $(EMBED)

$(EMBED): examples/embed/host.c $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_DEFAULT_SOURCE $(WARN) $(CFLAGS) -Werror -I/usr/include/lua5.4 -Isrc -o $@ \
	  examples/embed/host.c $(SRC) $(LDFLAGS) -llua5.4 $(LIBS) -lm

# C unit tests (tests/c/*_test.c): what no spec can see from Lua, e.g. that
# the buffer wipes the bytes it frees (free() wrapped by the linker).
C_TESTS := $(patsubst tests/c/%.c,build/ctest/%,$(wildcard tests/c/*_test.c))
build/ctest/buffer_wipe_test: tests/c/buffer_wipe_test.c src/buffer.c src/buffer.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_DEFAULT_SOURCE $(WARN) $(CFLAGS) -Werror -Isrc -Wl,--wrap=free -o $@ $< src/buffer.c -lcrypto

test-c: $(C_TESTS)
	@for t in $(C_TESTS); do $$t || exit 1; done

# Each mutant of tools/mutants.txt in a scratch copy; MUTATE_JOBS=2 runs two
# copies at once, MUTANTS=id,id a subset (see tools/mutate.lua).
mutate:
	lua5.4 tools/mutate.lua

test-54:
	$(BUSTED_54) --output=utfTerminal spec

test-luajit:
	$(BUSTED_JIT) --output=utfTerminal --exclude-pattern=emulator_spec spec

demo: all
	@prefix=$$(mktemp -d); \
	url=$$(bin/moltflow-emulator --daemon --port 0 --prefix "$$prefix" --quiet) || exit 1; \
	trap 'bin/moltflow-emulator --stop --prefix "$$prefix" --quiet; rm -rf "$$prefix"' EXIT; \
	LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/5.4/?.so;;' MOLTFLOW_API_KEY= \
	MOLTFLOW_API_URL="$${url%/api/v2}" lua5.4 examples/quickstart.lua

# BENCH_N (20000) requests per sample, BENCH_REPS (5) samples, BENCH_QUICK=1 a smoke run.
bench:
	$(MAKE) --no-print-directory LUA=lua5.4
	$(MAKE) --no-print-directory LUA=luajit
	bench/run.sh

emulator:
	PORT=$(PORT) bin/moltflow-emulator --port $(PORT)

install: all
	install -d $(DESTDIR)$(PREFIX)/share/lua/$(LUA_ABI)/moltflow $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_ABI)/moltflow
	cp -r lua/moltflow/. $(DESTDIR)$(PREFIX)/share/lua/$(LUA_ABI)/moltflow/
	install -m 0755 $(CORE) $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_ABI)/moltflow/core.so
	install -d $(DESTDIR)$(PREFIX)/bin
	for f in bin/*; do install -m 0755 $$f $(DESTDIR)$(PREFIX)/bin/; done

# The LDoc HTML reference (build/docs, not committed) from the source comments,
# and README's endpoint reference from the endpoint table (spec/readme_spec.lua
# fails when it is stale).
docs: all
	LUA_PATH='lua/?.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUA) tools/gen-endpoint-docs.lua README.md
	ldoc -c config.ld .

deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  if command -v systemctl >/dev/null; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi; \
	  service nginx stop >/dev/null 2>&1 || true; \
	else echo "all Debian packages present"; fi

# ---------------------------------------------------------------- hardening
# make fuzz           every libFuzzer target for FUZZ_SECONDS (60) each
# make fuzz-short     each for 3 s (part of make test)
# make check-valgrind the Lua 5.4 specs under valgrind memcheck
# make check-sanitize the specs on a core built with ASan + UBSan (build/asan)
# make soak           SOAK_REQUESTS (100000) requests with random faults, flat RSS
FUZZ_CC ?= clang
FUZZ_TARGETS := json token response_headers error_body request
FUZZ_SECONDS ?= 60
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_OBJ := $(patsubst src/%.c,build/fuzz/obj/%.o,$(SRC))
FUZZ_BIN := $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))

build/fuzz/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_DEFAULT_SOURCE -g -O1 $(WARN) -fsanitize=fuzzer-no-link $(SAN_FLAGS) -I/usr/include/lua5.4 -c $< -o $@

build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/harness.h $(FUZZ_OBJ)
	$(FUZZ_CC) -std=c11 -D_DEFAULT_SOURCE -g -O1 $(WARN) -fsanitize=fuzzer $(SAN_FLAGS) -I/usr/include/lua5.4 \
	  $< $(FUZZ_OBJ) -l:liblua5.4.a $(LIBS) -lm -ldl -o $@

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
	SOAK_REQUESTS=$${SOAK_REQUESTS:-300} SOAK_CHECK_RSS=0 LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/5.4/?.so;;' \
	  $(VALGRIND) lua5.4 /usr/bin/busted --output=utfTerminal spec

# ASan + UBSan: the core built into build/asan and loaded by a small Lua 5.4
# host linked with the sanitizer runtimes (no LD_PRELOAD for child processes).
ASAN_OBJ := $(patsubst src/%.c,build/asan/obj/%.o,$(SRC))
.SECONDARY: $(ASAN_OBJ)

build/asan/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_DEFAULT_SOURCE -fPIC -g -O1 $(WARN) $(SAN_FLAGS) -I/usr/include/lua5.4 -c $< -o $@

build/asan/moltflow/core.so: $(ASAN_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -shared $(SAN_FLAGS) $(ASAN_OBJ) $(LIBS) -o $@

build/asan/lua: spec/support/asan_lua.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -g -O1 $(WARN) $(SAN_FLAGS) -I/usr/include/lua5.4 $< -l:liblua5.4.a -lm -ldl -Wl,-E -o $@

check-sanitize: all build/asan/lua build/asan/moltflow/core.so
	SOAK_REQUESTS=$${SOAK_REQUESTS:-1000} SOAK_CHECK_RSS=0 ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 MOLTFLOW_ASAN_CPATH='build/asan/?.so' \
	  LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/5.4/?.so;;' \
	  build/asan/lua /usr/bin/busted --output=utfTerminal spec

# 100000 requests with random faults; RSS must stay flat (spec/soak_spec.lua).
SOAK_REQUESTS ?= 100000
soak: all
	SOAK_REQUESTS=$(SOAK_REQUESTS) $(BUSTED_54) --output=utfTerminal spec/soak_spec.lua

clean:
	rm -rf build
