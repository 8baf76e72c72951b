# bgproc: make (build), make test, make demo, make asan, make valgrind,
# make bench, make bench-report, make bench-plugin, make fuzz, make install (via luarocks).
#
# `make test` and `make demo` first install any missing Debian packages
# (tools/ensure-deps.sh; apt-get, only what is missing).

LUA      ?= lua5.4
BUSTED   := $(LUA) /usr/bin/busted
CC       ?= gcc
PKGCONF  ?= pkg-config

LUA_CFLAGS := $(shell $(PKGCONF) --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
WARN     := -std=c11 -Wall -Wextra -Werror
OPT      ?= -O2
CFLAGS   ?=
ALL_CFLAGS = $(WARN) $(OPT) -fPIC $(LUA_CFLAGS) $(CFLAGS)

CORE_SRC := $(filter-out core/regex.c core/jsonenc.c,$(wildcard core/*.c))
CORE_HDR := $(wildcard core/*.h)
CORE_SO  := lua/bgproc/core.so
ASAN_SO  := build/asan/bgproc/core.so
REGEX_SO := lua/bgproc/regex.so
ASAN_REGEX_SO := build/asan/bgproc/regex.so
JSONENC_SO := lua/bgproc/jsonenc.so
ASAN_JSONENC_SO := build/asan/bgproc/jsonenc.so
PCRE_CFLAGS := $(shell $(PKGCONF) --cflags libpcre2-8 2>/dev/null)
PCRE_LIBS := $(shell $(PKGCONF) --libs libpcre2-8 2>/dev/null || echo -lpcre2-8)
RUNNER   := build/suite-runner
HOST     := build/lua-host
ASAN_HOST := build/asan/lua-host
LUA_LIBS := $(shell $(PKGCONF) --libs lua5.4 2>/dev/null || echo -llua5.4)
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined

DEPS_BUILD := gcc make pkg-config procps lua5.4 liblua5.4-dev libpcre2-dev lua-luv \
              lua-cjson lua-argparse lua-busted
DEPS_TEST  := $(DEPS_BUILD) luarocks procps util-linux
DEPS_VALGRIND := valgrind

export LUA_PATH_5_4  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;
export LUA_CPATH_5_4 := $(CURDIR)/lua/?.so;;

.PHONY: all deps deps-test test test-core asan valgrind demo bench bench-report bench-plugin fuzz clean \
        rock-check

all: $(CORE_SO) $(REGEX_SO) $(JSONENC_SO) $(RUNNER) $(HOST)

$(CORE_SO): $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -shared -o $@ $(CORE_SRC) $(LDFLAGS)

$(ASAN_SO): $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O1 -g -fPIC $(SANITIZE) $(LUA_CFLAGS) -shared -o $@ $(CORE_SRC)

# bgproc.regex: PCRE2 for output filters (its own module, not the core).
$(REGEX_SO): core/regex.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PCRE_CFLAGS) -shared -o $@ $< $(PCRE_LIBS)

# bgproc.jsonenc: the JSON encoder of every daemon and MCP reply.
$(JSONENC_SO): core/jsonenc.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -shared -o $@ $< -lm

$(ASAN_JSONENC_SO): core/jsonenc.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O1 -g -fPIC $(SANITIZE) $(LUA_CFLAGS) -shared -o $@ $< -lm

$(ASAN_REGEX_SO): core/regex.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O1 -g -fPIC $(SANITIZE) $(LUA_CFLAGS) $(PCRE_CFLAGS) -shared -o $@ $< $(PCRE_LIBS)

$(RUNNER): spec/support/suite-runner.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O2 -o $@ $<

# A C program embedding liblua5.4 (spec/support/lua-host.c).
$(HOST): spec/support/lua-host.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O2 $(LUA_CFLAGS) -o $@ $< $(LUA_LIBS)

# The same host with the sanitizer runtime linked in first.
$(ASAN_HOST): spec/support/lua-host.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O1 -g $(SANITIZE) $(LUA_CFLAGS) -o $@ $< $(LUA_LIBS)

deps:
	@sh tools/ensure-deps.sh $(DEPS_BUILD)

deps-test:
	@sh tools/ensure-deps.sh $(DEPS_TEST)

# The whole suite, under a subreaper that fails the run on stray processes.
test: deps-test
	@$(MAKE) --no-print-directory all
	$(RUNNER) --timeout 1200 $(BUSTED)

# Only the core's specs (fast).
test-core: deps-test
	@$(MAKE) --no-print-directory all
	$(RUNNER) $(BUSTED) --run=core

# The core's specs with AddressSanitizer + UndefinedBehaviorSanitizer, run
# by build/asan/lua-host (the runtime linked in, nothing preloaded, so the
# processes the tests start are plain). Child Lua processes of the specs
# use the same host through BGPROC_LUA.
asan: deps-test $(RUNNER) $(ASAN_SO) $(ASAN_REGEX_SO) $(ASAN_JSONENC_SO) $(ASAN_HOST)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LUA_CPATH_5_4="$(CURDIR)/build/asan/?.so;;" \
	BGPROC_LUA="$(CURDIR)/$(ASAN_HOST)" \
	$(RUNNER) $(ASAN_HOST) /usr/bin/busted --run=asan

# The core's specs under valgrind: any memory error or definite leak fails.
valgrind: deps-test all
	@sh tools/ensure-deps.sh $(DEPS_VALGRIND)
	BGPROC_REGEX_JIT=0 $(RUNNER) valgrind --quiet --error-exitcode=99 --leak-check=full \
	  --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	  --track-fds=no $(BUSTED) --run=core

demo: deps
	@$(MAKE) --no-print-directory all
	$(LUA) tools/demo.lua

bench: deps all
	$(LUA) bench/run.lua

# Every bench with its C baseline, luv's uv.spawn and the seed (Bun and the
# seed's npm package, fetched into ~/.cache/bgproc-bench by
# bench/seed/setup.sh), then the table in bench/README.md.
bench-report: deps all
	@mkdir -p build
	$(LUA) bench/run.lua --json --luv --seed > build/bench-report.jsonl
	$(LUA) bench/report.lua build/bench-report.jsonl bench/README.md

# The OpenCode plugin's cost over a direct daemon call, and notice latency.
bench-plugin: deps all
	node bench/plugin.mjs

# 100,000 fuzzed JSON-RPC lines at bgproc mcp (through the daemon and
# standalone) and at the daemon (a 2,000-line run is in make test).
fuzz: deps all
	$(LUA) bench/fuzz.lua --lines 100000 --target all

# luarocks make from a scratch tree: the rockspec builds and installs.
rock-check: deps-test
	sh tools/rock-check.sh

clean:
	rm -rf build lua/bgproc/*.so
