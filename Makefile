# bgproc: make (build), make test, make check, make demo, make asan, make valgrind,
# make bench, make bench-report, make bench-plugin, make fuzz, make install (via luarocks),
# make rock-check.
#
# `make test` and `make demo` first install any missing Debian packages
# (tools/ensure-deps.sh; apt-get, only what is missing).

LUA      ?= lua5.4
BUSTED   := $(LUA) /usr/bin/busted
CC       ?= gcc
PKGCONF  ?= pkg-config

# luarocks (bgproc-scm-1.rockspec) passes CC, CFLAGS, LIBFLAG, LUA_INCDIR and
# PCRE_CFLAGS/PCRE_LIBS; without them pkg-config finds Lua and PCRE2.
LUA_INCDIR ?=
LUA_CFLAGS := $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell $(PKGCONF) --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4))
WARN     := -std=c11 -Wall -Wextra -Werror
OPT      ?= -O2
CFLAGS   ?=
LIBFLAG  ?= -shared
ALL_CFLAGS = $(WARN) $(OPT) -fPIC $(LUA_CFLAGS) $(CFLAGS)
PCRE_CFLAGS := $(shell $(PKGCONF) --cflags libpcre2-8 2>/dev/null)
PCRE_LIBS := $(shell $(PKGCONF) --libs libpcre2-8 2>/dev/null || echo -lpcre2-8)

# One folder per Lua module: bgproc.NAME is built from core/<its folder>/*.c
# into lua/bgproc/NAME.so (build/asan/bgproc/NAME.so for make asan).
MODULES  := core sys regex jsonenc
DIR_core := core/bgproc
DIR_sys  := core/sys
DIR_regex := core/regex
DIR_jsonenc := core/jsonenc
CFLAGS_regex = $(PCRE_CFLAGS)
LIBS_regex = $(PCRE_LIBS) -lpthread
LIBS_jsonenc := -lm
SO       := $(MODULES:%=lua/bgproc/%.so)
ASAN_SO  := $(MODULES:%=build/asan/bgproc/%.so)
RUNNER   := build/suite-runner
HOST     := build/lua-host
ASAN_HOST := build/asan/lua-host
LUA_LIBS := $(shell $(PKGCONF) --libs lua5.4 2>/dev/null || echo -llua5.4)
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined

DEPS_BUILD := gcc make pkg-config procps lua5.4 liblua5.4-dev libpcre2-dev lua-luv \
              lua-cjson lua-argparse lua-busted lua-sql-sqlite3
DEPS_TEST  := $(DEPS_BUILD) luarocks procps util-linux python3 tmux sqlite3
DEPS_VALGRIND := valgrind
DEPS_DEMO  := python3 lua-sql-sqlite3 sqlite3

export LUA_PATH_5_4  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;
export LUA_CPATH_5_4 := $(CURDIR)/lua/?.so;;

.PHONY: all modules deps deps-test test test-core asan valgrind demo bench bench-report bench-plugin \
        fuzz clean install install-rock rock-check

all: modules $(RUNNER) $(HOST)

# The Lua modules alone (what luarocks builds).
modules: $(SO)

.SECONDEXPANSION:
# bgproc.core (core/bgproc/), bgproc.sys (core/sys/, the daemon's OS helpers),
# bgproc.regex (core/regex/, PCRE2 for output filters), bgproc.jsonenc
# (core/jsonenc/, the encoder of every daemon and MCP reply).
lua/bgproc/%.so: $$(wildcard $$(DIR_$$*)/*.c $$(DIR_$$*)/*.h)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(CFLAGS_$*) $(LIBFLAG) -o $@ $(wildcard $(DIR_$*)/*.c) $(LIBS_$*) $(LDFLAGS)

build/asan/bgproc/%.so: $$(wildcard $$(DIR_$$*)/*.c $$(DIR_$$*)/*.h)
	@mkdir -p $(@D)
	$(CC) $(WARN) -O1 -g -fPIC $(SANITIZE) $(LUA_CFLAGS) $(CFLAGS_$*) -shared -o $@ \
	  $(wildcard $(DIR_$*)/*.c) $(LIBS_$*)

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

# The suite's history (engines and daemons a spec starts without a state
# directory of its own) goes to a temporary one, never the user's.
SUITE_STATE = st=$$(mktemp -d /tmp/bgproc-suite-state.XXXXXX); export XDG_STATE_HOME=$$st
SUITE_END = rc=$$?; rm -rf "$$st"; exit $$rc

# The whole suite, under a subreaper that fails the run on stray processes.
test: deps-test
	@$(MAKE) --no-print-directory all
	@$(SUITE_STATE); $(RUNNER) --timeout 1200 $(BUSTED); $(SUITE_END)

# Only the core's specs (fast).
test-core: deps-test
	@$(MAKE) --no-print-directory all
	$(RUNNER) $(BUSTED) --run=core

# The core's and the engine's specs, quick (under 90 s on 2 cores): not the
# daemon's and the CLI's end-to-end specs, reliability or integrations
# (.busted's check run). `make test` stays the whole proof.
.PHONY: check
check: deps-test
	@$(MAKE) --no-print-directory all
	@$(SUITE_STATE); t0=$$(date +%s); $(RUNNER) --timeout 300 $(BUSTED) --run=check; rc=$$?; \
	  echo "make check: $$(( $$(date +%s) - t0 )) s"; rm -rf "$$st"; exit $$rc

# The core's specs with AddressSanitizer + UndefinedBehaviorSanitizer, run
# by build/asan/lua-host (the runtime linked in, nothing preloaded, so the
# processes the tests start are plain). Child Lua processes of the specs
# use the same host through BGPROC_LUA.
asan: deps-test $(RUNNER) $(ASAN_SO) $(ASAN_HOST)
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

# The tour prints only what a user types and sees (tools/demo.lua): the
# build and the private daemon it runs are quiet setup.
demo: deps
	@sh tools/ensure-deps.sh $(DEPS_DEMO)
	@$(MAKE) --no-print-directory -s all
	@$(LUA) tools/demo.lua

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

# Install with luarocks: the modules, the shipped plugins (as
# bgproc.plugins.NAME) and the bgproc command. TREE=dir installs into that
# tree, LOCAL=1 into ~/.luarocks, neither into the system's (as root). The
# dependencies (luv, lua-cjson, argparse) are used as installed (`make deps`:
# Debian packages); DEPS_MODE=one lets luarocks fetch the missing ones. A
# tree of your own needs its paths: eval "$$(luarocks --lua-version=5.4 path)".
TREE      ?=
LOCAL     ?=
DEPS_MODE ?= none
LUAROCKS  ?= luarocks --lua-version=5.4
install:
	$(LUAROCKS) make --deps-mode=$(DEPS_MODE) $(if $(TREE),--tree='$(TREE)') \
	  $(if $(LOCAL),--local) bgproc-scm-1.rockspec

# What luarocks runs after `make modules` (bgproc-scm-1.rockspec, build type
# "make"), with the rock's own directories: every Lua file of lua/bgproc,
# the shipped plugins, the compiled modules. luarocks installs bin/bgproc.
LUADIR ?= $(error LUADIR is not set: this target is luarocks', use make install)
LIBDIR ?= $(error LIBDIR is not set: this target is luarocks', use make install)
install-rock: modules
	for f in $$(find lua/bgproc -name '*.lua' | sort); do \
	  install -D -m 0644 "$$f" '$(LUADIR)'/"$${f#lua/}" || exit 1; done
	install -d '$(LUADIR)/bgproc/plugins' '$(LIBDIR)/bgproc'
	install -m 0644 plugins/*.lua '$(LUADIR)/bgproc/plugins/'
	install -m 0755 $(SO) '$(LIBDIR)/bgproc/'

# luarocks from a scratch copy of the tree: a binary rock, installed into a
# fresh tree, whose bgproc runs a job through its own daemon.
rock-check: deps-test
	sh tools/rock-check.sh

clean:
	rm -rf build lua/bgproc/*.so
