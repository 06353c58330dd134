# moltflow-admin: a Lua SDK for the MoltFlow admin API.
#   make                 build the C core for Lua 5.4 into build/5.4
#   make LUA=X           build it for X = lua5.1 | lua5.2 | lua5.3 | lua5.4 | luajit
#                        into build/5.1 ... build/5.4 | build/luajit (LUA_INC overrides
#                        the header directory)
#   make lint            luacheck (.luacheckrc) over every Lua file; the first step of make test
#   make test            lint, C unit tests, specs under Lua 5.1-5.4 and LuaJIT against the emulator, fuzz-short,
#                        check-sanitize, check-valgrind (see the hardening section below)
#   make demo            examples/quickstart.lua against a local emulator
#   make embed           examples/embed: a C host with the core linked in statically
#   make bench           benchmarks side by side; rewrites BENCHMARKS.md (not part of test)
#   make bench-scale     agency scale: tenants x 1 call, memory per client (make bench runs it)
#   make bench-ngx       the SDK inside nginx under wrk: connections, req/s, p99 (make bench runs it)
#   make bench-wan       TLS at a 50 ms round trip: build/bench/wan.md (make bench runs it and
#                        puts it in BENCHMARKS.md; alone, `lua5.4 bench/report.lua --wan` does)
#   make mutate          mutation testing: tools/mutants.txt against the Lua 5.4 suite (not part of test)
#   make mutate-sample   sampled mutation: SEED=s N=40 random one-line mutants (tools/mutate_sample.lua)
#   make emulator        the emulator in the foreground (PORT=8787)
#   make docs            LDoc reference in build/docs; docs/api.md, README's CLI table
#                        and the LuaLS annotations (lua/moltflow/types/admin.lua)
#   make install PREFIX=/usr/local LUA=X   modules under share/lua/<abi>, lib/lua/<abi>
#   make uninstall PREFIX=/usr/local LUA=X the same files removed
#   make deb             build/lua-moltflow-admin_<version>_<arch>.deb (Lua 5.1-5.4)
#   make deps            Debian packages (as root)

LUA ?= lua5.4
PREFIX ?= /usr/local
PORT ?= 8787
CC ?= cc

# One build directory per interpreter; LUA_ABI is the share/lua/<abi> and
# lib/lua/<abi> component (LuaJIT loads 5.1 modules).
LUA_VERSIONS := lua5.1 lua5.2 lua5.3 lua5.4 luajit
ifeq ($(LUA),luajit)
  LUA_INC ?= /usr/include/luajit-2.1
  LUA_ABI := 5.1
  BUILD := build/luajit
else ifneq ($(filter $(LUA),lua5.1 lua5.2 lua5.3 lua5.4),)
  LUA_ABI := $(patsubst lua%,%,$(LUA))
  LUA_INC ?= /usr/include/lua$(LUA_ABI)
  BUILD := build/$(LUA_ABI)
else
  $(error LUA=$(LUA) is not one of: $(LUA_VERSIONS))
endif

WARN := -Wall -Wextra -Wpedantic
CFLAGS ?= -O2 -g
# CURL_* and OPENSSL_* (LuaRocks' external_dependencies) for libraries
# outside the default paths; empty on Debian.
DEP_INC := $(foreach d,$(CURL_INCDIR) $(OPENSSL_INCDIR),-I$(d))
DEP_LIB := $(foreach d,$(CURL_LIBDIR) $(OPENSSL_LIBDIR),-L$(d))
LIBFLAG ?= -shared
# The one compile line of every C recipe (the core, the embedded hosts, the C
# tests, the fuzz and sanitizer builds): $(call compile,COMPILER,FLAGS[,LUA
# HEADERS]) is C11 with the warnings, FLAGS, then the Lua headers (LUA_INC
# unless named) and the dependencies' headers.
compile = $(1) -std=c11 -D_DEFAULT_SOURCE $(WARN) $(2) -I$(or $(3),$(LUA_INC)) $(DEP_INC)
# The embedded hosts, the fuzz targets and the ASan build link Lua 5.4
# whatever LUA says: their headers are LUA_INC when LUA is lua5.4 (the
# default), else LUA54_INC.
LUA54_INC ?= /usr/include/lua5.4
HOST_LUA_INC := $(if $(filter lua5.4,$(LUA)),$(LUA_INC),$(LUA54_INC))
# Hidden by default: core.so exports luaopen_moltflow_core alone (src/core.c).
SO_FLAGS := -fPIC -fvisibility=hidden
LIBS := $(DEP_LIB) -lcurl -lcrypto -lpthread
SRC := $(wildcard src/*.c)
HDR := $(wildcard src/*.h)
OBJ := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRC))
CORE := $(BUILD)/moltflow/core.so

# Build and test tools, the Lua versions of the matrix, the emulator's nginx,
# the hardening and packaging tools, and what the other parts of the suite run
# (redis, neovim, LÖVE under Xvfb). Installed without recommended packages.
DEBIAN_PACKAGES := build-essential git lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev \
  lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev \
  libcurl4-openssl-dev libssl-dev lua-cjson lua-dkjson lua-busted lua-socket lua-sec nginx \
  libnginx-mod-http-lua lua-resty-core lua-argparse lua-ldoc lua-discount lua-check luarocks valgrind \
  clang libclang-rt-14-dev wrk gnuplot-nox curl openssl python3-requests \
  redis-server libhiredis-dev neovim love lua-luv xvfb xauth dh-lua debhelper dpkg-dev

# bash with pipefail: a pass piped through its output tag keeps busted's status.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# $(call tag,NAME): prefixes each output line with [NAME] when passes run in
# parallel, and keeps the pass's output in build/test-logs/NAME.log.
TEST_LOGS := build/test-logs
tag = $(if $(TAG_OUTPUT),2>&1 | sed -u 's/^/[$(1)] /' | { mkdir -p $(TEST_LOGS) && tee $(TEST_LOGS)/$(1).log; })
SPEC_LUA_PATH := lua/?.lua;lua/?/init.lua;./?.lua;;
BUSTED_54 := LUA_PATH='$(SPEC_LUA_PATH)' LUA_CPATH='build/5.4/?.so;;' MOLTFLOW_TEST_LUA=lua5.4 lua5.4 /usr/bin/busted
BUSTED_JIT := LUA_PATH='$(SPEC_LUA_PATH)' LUA_CPATH='build/luajit/?.so;;' MOLTFLOW_TEST_LUA=luajit luajit /usr/bin/busted
# Dots on a terminal; one line per file and test otherwise (CI, logs), flushed as it goes.
BUSTED_OUTPUT = --output=$$([ -t 1 ] && echo utfTerminal || echo gtest)

.PHONY: all core core-all embed lint mutate mutate-sample test test-c test-51 test-52 test-53 test-54 test-luajit test-spec \
  demo bench bench-wan bench-scale bench-ngx emulator install uninstall deps clean docs annotations deb rock rock-install \
  rock-install-emulator \
  fuzz fuzz-short fuzz-build check-valgrind check-sanitize soak soak-short

all: $(CORE)

$(BUILD)/obj/%.o: src/%.c $(HDR) Makefile
	@mkdir -p $(dir $@)
	$(call compile,$(CC),$(SO_FLAGS) $(CFLAGS)) -c $< -o $@

$(CORE): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) -o $@ $(OBJ) $(LDFLAGS) $(LIBS)

# Every interpreter, warnings as errors.
core-all:
	@for v in $(LUA_VERSIONS); do \
	  $(MAKE) --no-print-directory LUA=$$v CFLAGS="$(CFLAGS) -Werror" || exit 1; \
	done

# Lint first (mk/lint.mk), then the suite under each interpreter, then the hardening checks (Lua 5.4 only):
# short fuzzing, ASan+UBSan and valgrind runs of the whole suite (each a few
# minutes at most; spec/hardening/soak_spec.lua is short here).
#
# The seven spec passes mostly wait on sockets and servers (about a quarter of
# their wall time is CPU), so they run TEST_JOBS at a time; each line of their
# output is tagged with its pass ([lua5.1] ... [valgrind]).
TEST_JOBS ?= 3
TEST_PASSES := check-valgrind test-54 test-51 test-52 test-53 test-luajit check-sanitize
# When a pass fails, the failed tests of every pass (from its RUN line to its
# FAILED or ERROR line) are printed again at the end, where a CI log's tail
# shows them.
test: lint core-all embed test-c build/asan/lua build/asan/moltflow/core.so
	@rm -rf $(TEST_LOGS) && mkdir -p $(TEST_LOGS)
	@$(MAKE) --no-print-directory -k -j$(TEST_JOBS) TAG_OUTPUT=1 $(TEST_PASSES) || { \
	  echo "make test: failed; the failed tests of each pass:"; shopt -s nullglob; \
	  awk '/\[ RUN      \]/ { n = 0 } { if (n < 60) buf[n++] = $$0 } \
	       /\[  (FAILED|ERROR)   ?\] .*\(.* ms\)$$/ { for (i = 0; i < n; i++) print buf[i]; n = 0 }' \
	    /dev/null $(TEST_LOGS)/*.log; exit 1; }
	@$(MAKE) --no-print-directory fuzz-short
	@echo "make test: every pass passed ($(TEST_PASSES) fuzz-short)"

# C hosts with the core's sources compiled in: examples/embed/host.c, and
# examples/embed/frame.c (a frame loop; its cc line is quoted in
# examples/embed/README.md, and spec/hosts/embed_spec.lua checks that it matches).
EMBED := build/embed/moltflow-embed
FRAME := build/embed/moltflow-frame
embed: $(EMBED) $(FRAME)

$(FRAME): examples/embed/frame.c $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(call compile,$(CC),$(CFLAGS) -Werror,$(HOST_LUA_INC)) -Isrc \
	  -o $@ examples/embed/frame.c src/*.c $(LDFLAGS) -llua5.4 $(LIBS) -lm

$(EMBED): examples/embed/host.c $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(call compile,$(CC),$(CFLAGS) -Werror,$(HOST_LUA_INC)) -Isrc -o $@ \
	  examples/embed/host.c $(SRC) $(LDFLAGS) -llua5.4 $(LIBS) -lm

# C unit tests (tests/c/*_test.c): what no spec can see from Lua, e.g. that
# the buffer wipes the bytes it frees (free() wrapped by the linker).
C_TESTS := $(patsubst tests/c/%.c,build/ctest/%,$(wildcard tests/c/*_test.c))
build/ctest/buffer_wipe_test: tests/c/buffer_wipe_test.c src/buffer.c src/buffer.h
	@mkdir -p $(dir $@)
	$(call compile,$(CC),$(CFLAGS) -Werror) -Isrc -Wl,--wrap=free -o $@ $< src/buffer.c -lcrypto

test-c: $(C_TESTS)
	@for t in $(C_TESTS); do $$t || exit 1; done

# Each mutant of tools/mutants.txt in a scratch copy; MUTATE_JOBS=2 runs two
# copies at once, MUTANTS=id,id a subset (see tools/mutate.lua).
mutate:
	lua5.4 tools/mutate.lua

# Sampled mutation (tools/mutate_sample.lua): N (40) one-line mutants drawn
# by SEED (one or several, "1 2 3") across src/ and lua/moltflow/; exits 1
# when a seed scores below MUTATE_MIN (90) %. MUTATE_JOBS=2 runs two copies.
N ?= 40
mutate-sample:
	SEED='$(SEED)' N='$(N)' lua5.4 tools/mutate_sample.lua

# The specs under $(LUA), on its build; MOLTFLOW_TEST_LUA names the interpreter
# for the child processes the specs start.
test-spec: all
	LUA_PATH='$(SPEC_LUA_PATH)' LUA_CPATH='$(BUILD)/?.so;;' MOLTFLOW_TEST_LUA=$(LUA) \
	  $(LUA) /usr/bin/busted $(BUSTED_OUTPUT) $(SPEC_EXCLUDE) spec $(call tag,$(LUA))

test-54:
	@$(MAKE) --no-print-directory test-spec LUA=lua5.4

# Specs whose subject runs in a host of its own, whatever VM runs busted: the
# emulator and the OpenResty specs (nginx's LuaJIT), Neovim and LÖVE (their
# LuaJIT), the TLS nginx and delay proxy helpers, the packaging (which builds
# and runs every Lua version itself) and the generated docs. They run once, in
# the Lua 5.4 pass.
HOST_SPECS := emulator_spec openresty_spec openresty_conf_spec nvim_spec love_spec wan_harness_spec \
  rockspec_spec deb_spec annotations_spec doc_blocks_spec generated_docs_spec redis_tls_nginx_spec \
  shdict_seal_spec key_rotation_wrk_spec
HOST_EXCLUDE := $(foreach s,$(HOST_SPECS),--exclude-pattern=$(s))
# The ASan and valgrind passes also leave out the fleet: its work happens in
# child processes that run the plain build, so there is nothing to instrument;
# and the chaos run, which checks the retry policy against wall-clock timeouts
# (its C paths, garbled answers included, run there in garbled_answer_spec).
HARDENING_EXCLUDE := $(HOST_EXCLUDE) --exclude-pattern=fleet_spec --exclude-pattern=chaos_spec

# The short in-suite soak keeps its faults but not its RSS check in the 5.1 to
# 5.3 passes: the heap left by the specs before it still settles in these VMs
# (the check stays in the 5.4 and LuaJIT passes and in `make soak LUA=...`).
test-51 test-52 test-53:
	@SOAK_CHECK_RSS=0 $(MAKE) --no-print-directory test-spec LUA=lua$(subst test-5,5.,$@) \
	  SPEC_EXCLUDE='$(HOST_EXCLUDE)'

test-luajit:
	@$(MAKE) --no-print-directory test-spec LUA=luajit SPEC_EXCLUDE='$(HOST_EXCLUDE)'

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
	$(MAKE) --no-print-directory bench-wan
	$(MAKE) --no-print-directory bench-scale
	$(MAKE) --no-print-directory bench-ngx
	bench/run.sh

# The workloads of issue 12 over TLS through bench/delay_proxy.lua (25 ms each
# way); BENCH_WAN_REPS (3) runs each, the median counts.
bench-wan:
	$(MAKE) --no-print-directory LUA=lua5.4
	$(MAKE) --no-print-directory LUA=luajit
	lua5.4 bench/wan.lua

# Agency scale (issue 26): 100, 1,000 and 10,000 tenants x 1 call through
# admin.batch at concurrency 64 over TLS at a 50 ms round trip, and the
# 32-call batch on HTTP/2 and HTTP/1.1-only servers; writes the section
# "Agency scale" of BENCHMARKS.md and bench/scale.png (needs gnuplot).
# BENCH_SCALE_N ("100 1000 10000"), BENCH_SCALE_REPS (3), BENCH_SCALE_SPLICE=0.
bench-scale:
	$(MAKE) --no-print-directory LUA=lua5.4
	lua5.4 bench/scale.lua

# The SDK inside nginx under wrk (issue 26): connections, churn, req/s and
# p99 against a plain cosocket handler; build/bench/ngx.md. BENCH_NGX_SECONDS
# (10), BENCH_NGX_POOLS ("16 32 64 128").
bench-ngx:
	$(MAKE) --no-print-directory LUA=luajit
	lua5.4 bench/ngx_pool.lua

emulator:
	PORT=$(PORT) bin/moltflow-emulator --port $(PORT)

# The command's shebang names the interpreter it was installed for.
# The command's interpreter by its absolute path, so that it runs with any PATH
# (cron's /usr/bin:/bin, or none under env -i).
LUA_PROGRAM := $(or $(shell command -v $(LUA) 2>/dev/null),/usr/bin/env $(LUA))
INSTALL_LUA_DIRS = $(DESTDIR)$(PREFIX)/share/lua/$(LUA_ABI)/moltflow $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_ABI)/moltflow
install: all
	install -d $(INSTALL_LUA_DIRS)
	cp -r lua/moltflow/. $(DESTDIR)$(PREFIX)/share/lua/$(LUA_ABI)/moltflow/
	install -m 0755 $(CORE) $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_ABI)/moltflow/core.so
	install -d $(DESTDIR)$(PREFIX)/bin
	sed '1s|^#!.*|#!$(LUA_PROGRAM)|' bin/moltflow-admin >$(DESTDIR)$(PREFIX)/bin/moltflow-admin
	chmod 0755 $(DESTDIR)$(PREFIX)/bin/moltflow-admin
	install -m 0755 bin/moltflow-emulator $(DESTDIR)$(PREFIX)/bin/

# Undoes `make install` with the same PREFIX, DESTDIR and LUA: that Lua's
# modules and core; the two commands too once no other Lua's modules are left
# under PREFIX; then the directories it emptied. Nothing else is touched.
uninstall:
	rm -rf $(INSTALL_LUA_DIRS)
	@set -e; left=$$(ls -d $(DESTDIR)$(PREFIX)/share/lua/*/moltflow 2>/dev/null || true); \
	if [ -z "$$left" ]; then rm -f $(DESTDIR)$(PREFIX)/bin/moltflow-admin $(DESTDIR)$(PREFIX)/bin/moltflow-emulator; \
	else echo "uninstall: moltflow-admin and moltflow-emulator stay for the other Lua versions in $$left"; fi
	-@for d in share/lua/$(LUA_ABI) share/lua lib/lua/$(LUA_ABI) lib/lua; do \
	  rmdir $(DESTDIR)$(PREFIX)/$$d 2>/dev/null; done; true

# LuaRocks' side (build.type = "make" in the rockspecs): it passes LUA_INC
# (LUA_INCDIR), CC, CFLAGS, LIBFLAG, the CURL_/OPENSSL_ directories and the
# INST_ directories of its tree. build/rock is rebuilt every time: one checkout
# may be built for several Lua versions in turn.
rock:
	rm -rf build/rock
	$(MAKE) --no-print-directory BUILD=build/rock LUA_INC='$(LUA_INC)' build/rock/moltflow/core.so

rock-install:
	install -d '$(INST_LIBDIR)/moltflow' '$(INST_LUADIR)'
	install -m 0755 build/rock/moltflow/core.so '$(INST_LIBDIR)/moltflow/core.so'
	tar -C lua --exclude=moltflow/emulator -cf - moltflow | tar -C '$(INST_LUADIR)' -xf -

rock-install-emulator:
	install -d '$(INST_LUADIR)/moltflow'
	tar -C lua -cf - moltflow/emulator | tar -C '$(INST_LUADIR)' -xf -

# The Debian package, from a staged tree with Debian's own tools: one core per
# Lua version under /usr/lib/<multiarch>/lua/<v> (LuaJIT loads the 5.1 one),
# the Lua modules under /usr/share/lua/<v> (not the emulator: it needs nginx),
# the command run by lua5.4. Depends: dpkg-shlibdeps' libraries + debian/control.
DEB_NAME := lua-moltflow-admin
DEB_LUAS := 5.1 5.2 5.3 5.4
DEB_STAGE := build/deb/root
DEB_DOC := $(DEB_STAGE)/usr/share/doc/$(DEB_NAME)
deb:
	@for v in $(DEB_LUAS); do $(MAKE) --no-print-directory LUA=lua$$v CFLAGS="$(CFLAGS) -Werror" || exit 1; done
	@set -e; version=$$(dpkg-parsechangelog -S Version); arch=$$(dpkg-architecture -qDEB_HOST_ARCH); \
	multiarch=$$(dpkg-architecture -qDEB_HOST_MULTIARCH); \
	rm -rf build/deb; \
	for v in $(DEB_LUAS); do \
	  install -d $(DEB_STAGE)/usr/share/lua/$$v $(DEB_STAGE)/usr/lib/$$multiarch/lua/$$v/moltflow; \
	  tar -C lua --exclude=moltflow/emulator -cf - moltflow | tar -C $(DEB_STAGE)/usr/share/lua/$$v -xf -; \
	  install -m 0644 build/$$v/moltflow/core.so $(DEB_STAGE)/usr/lib/$$multiarch/lua/$$v/moltflow/core.so; \
	  strip --strip-unneeded --remove-section=.comment $(DEB_STAGE)/usr/lib/$$multiarch/lua/$$v/moltflow/core.so; \
	done; \
	install -d $(DEB_STAGE)/usr/bin $(DEB_DOC); \
	sed '1s|^#!.*|#!/usr/bin/lua5.4|' bin/moltflow-admin >$(DEB_STAGE)/usr/bin/moltflow-admin; \
	chmod 0755 $(DEB_STAGE)/usr/bin/moltflow-admin; \
	install -m 0644 debian/copyright $(DEB_DOC)/copyright; \
	gzip -9n <debian/changelog >$(DEB_DOC)/changelog.Debian.gz; chmod 0644 $(DEB_DOC)/changelog.Debian.gz; \
	find $(DEB_STAGE) -type d -exec chmod 0755 {} +; \
	dpkg-shlibdeps -Tbuild/deb/substvars $(DEB_STAGE)/usr/lib/$$multiarch/lua/*/moltflow/core.so; \
	install -d $(DEB_STAGE)/DEBIAN; \
	dpkg-gencontrol -p$(DEB_NAME) -P$(DEB_STAGE) -Tbuild/deb/substvars -fbuild/deb/files; \
	dpkg-deb --root-owner-group -Zxz --build $(DEB_STAGE) build/$(DEB_NAME)_$${version}_$${arch}.deb

# The LDoc HTML reference (build/docs, not committed) from the source comments,
# and docs/api.md's endpoint reference, README's CLI credentials table and the
# LuaLS annotations from the endpoint table (spec/docs/generated_docs_spec.lua and
# spec/docs/annotations_spec.lua fail when stale).
docs: all
	LUA_PATH='lua/?.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUA) tools/gen-endpoint-docs.lua docs/api.md README.md
	LUA_PATH='lua/?.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUA) tools/gen-annotations.lua
	ldoc -c config.ld .

# Installs what is missing (as root), waiting up to 2 minutes for a dpkg lock
# held elsewhere; fails with apt's status. Debian starts the nginx it installs
# on port 80: that one is stopped and disabled (the specs run private nginx
# instances); an nginx that was already installed is left alone.
APT_GET := apt-get -o DPkg::Lock::Timeout=120
deps:
	@set -e; \
	missing=$$(for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "all Debian packages present"; exit 0; fi; \
	echo "installing:" $$missing; \
	had_nginx=no; dpkg-query -W -f='$${Status}\n' nginx 2>/dev/null | grep -q 'ok installed' && had_nginx=yes; \
	$(APT_GET) update -qq; \
	DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $$missing; \
	if [ $$had_nginx = no ]; then \
	  if [ -d /run/systemd/system ]; then systemctl disable --now nginx >/dev/null 2>&1 || true; \
	  else service nginx stop >/dev/null 2>&1 || true; fi; \
	fi

include mk/hardening.mk mk/lint.mk

clean:
	rm -rf build
