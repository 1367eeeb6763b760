# bptt -- build, test, sanitize, demo, bench.
#
#   make            build build/bptt/core.so (the C core and its Lua binding)
#   make test       install missing Debian packages, build, run every spec
#   make sanitize   the specs against an ASan+UBSan build, then valgrind memcheck
#   make rock       install the rock into a temporary tree and require it from a bare luajit
#   make NATIVE=1   tune for this CPU (-march=native)

CC      ?= cc
LUAJIT  ?= luajit
PKGS    := luajit openblas
BUILD   ?= build
DEBS    := luajit libluajit-5.1-dev liblua5.1-0-dev libopenblas-dev lua-busted luarocks lua-argparse pkg-config gcc make valgrind

WARN    := -std=c99 -Wall -Wextra -Wpedantic -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wcast-qual -Wformat=2 -Wvla
OPT     ?= -O3
ifeq ($(NATIVE),1)
OPT     += -march=native
endif
CFLAGS_ALL  = $(WARN) $(OPT) -fPIC -fno-strict-aliasing $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LIBS_ALL    = $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas) -lm

SRC     := $(wildcard c/*.c)
HDR     := $(wildcard c/*.h)
MODULE  := $(BUILD)/bptt/core.so

BUSTED  = LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUAJIT) /usr/bin/busted

.PHONY: all deps test sanitize valgrind rock clean

all: $(MODULE)

$(MODULE): $(SRC) $(HDR) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -shared -o $@ $(SRC) $(LIBS_ALL) $(LDFLAGS)

# Installs what is missing, with apt-get (through sudo when not root).
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test: deps
	@$(MAKE) --no-print-directory all
	@$(BUSTED)

# ASan+UBSan: LuaJIT itself is not instrumented, so the runtime is preloaded.
SAN_BUILD := build-san
sanitize: deps
	@$(MAKE) --no-print-directory all BUILD=$(SAN_BUILD) OPT='-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all'
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(MAKE) --no-print-directory BUILD=$(SAN_BUILD) run-specs
	@$(MAKE) --no-print-directory valgrind

run-specs:
	@$(BUSTED)

VALGRIND_SPECS ?= spec/tensor_spec.lua spec/rng_spec.lua
valgrind: all
	LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='$(BUILD)/?.so;;' BPTT_SPEC_LIGHT=1 \
	valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	  $(LUAJIT) /usr/bin/busted $(VALGRIND_SPECS)

rock: deps
	.ci/rock-check

clean:
	rm -rf build build-san
