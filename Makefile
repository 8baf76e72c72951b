# bgproc: make (build), make test, make demo, make asan, make valgrind,
# make bench, make install (via luarocks).
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

CORE_SRC := $(wildcard core/*.c)
CORE_HDR := $(wildcard core/*.h)
CORE_SO  := lua/bgproc/core.so
ASAN_SO  := build/asan/bgproc/core.so
RUNNER   := build/suite-runner

DEPS_BUILD := gcc make pkg-config lua5.4 liblua5.4-dev lua-luv lua-cjson \
              lua-argparse lua-busted
DEPS_TEST  := $(DEPS_BUILD) luarocks procps util-linux
DEPS_VALGRIND := valgrind

export LUA_PATH_5_4  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;
export LUA_CPATH_5_4 := $(CURDIR)/lua/?.so;;

.PHONY: all deps deps-test test test-core asan valgrind demo bench clean \
        rock-check

all: $(CORE_SO) $(RUNNER)

$(CORE_SO): $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -shared -o $@ $(CORE_SRC) $(LDFLAGS)

$(ASAN_SO): $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O1 -g -fPIC -fsanitize=address,undefined \
	  -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
	  $(LUA_CFLAGS) -shared -o $@ $(CORE_SRC)

$(RUNNER): spec/support/suite-runner.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -O2 -o $@ $<

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

# The core's specs with AddressSanitizer + UndefinedBehaviorSanitizer. The
# interpreter is not instrumented, so libasan is preloaded; leaks are left
# to `make valgrind` (the interpreter exits without freeing everything).
asan: deps-test $(RUNNER) $(ASAN_SO)
	LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allow_user_segv_handler=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LUA_CPATH_5_4="$(CURDIR)/build/asan/?.so;;" \
	$(RUNNER) $(BUSTED) --run=asan

# The core's specs under valgrind: any memory error or definite leak fails.
valgrind: deps-test all
	@sh tools/ensure-deps.sh $(DEPS_VALGRIND)
	$(RUNNER) valgrind --quiet --error-exitcode=99 --leak-check=full \
	  --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	  --track-fds=no $(BUSTED) --run=core

demo: deps
	@$(MAKE) --no-print-directory all
	$(LUA) tools/demo.lua

bench: deps all
	$(LUA) bench/run.lua

# luarocks make from a scratch tree: the rockspec builds and installs.
rock-check: deps-test
	sh tools/rock-check.sh

clean:
	rm -rf build lua/bgproc/*.so
