# bptt -- build, test, sanitize, demo, bench.  The one build definition: the
# rock (rockspec/, LuaRocks' make backend) runs this file too.
#
#   make            build build/bptt/core.so: the core (c/core/, no Lua header) as a
#                   static library, linked with the Lua binding (c/lua/); and
#                   build/bptt/dist_core.so (c/dist/, bptt.dist over Open MPI) when
#                   mpi.h is found (otherwise it says so and skips it)
#   make dist       build/bptt/dist_core.so alone (an error without mpi.h)
#   make test       install missing Debian packages, build, run the C checks and every spec
#   make check-c    build and run the standalone C checks (spec/c/*.c) against the core
#   make sanitize   the specs against an ASan+UBSan build, then valgrind memcheck
#   make fuzz       the safetensors reader under libFuzzer for FUZZ_SECONDS (60) (clang)
#   make rock       dist/: a source rock and a manifest to `luarocks install` from, offline
#   make rock-check install that rock into a temporary tree and run the specs against it
#   make demo       train a small LSTM on built-in text for about a minute, then sample (DATA=file.txt for yours)
#   make bench      benchmarks against PyTorch when python3-torch is installed (examples/bench/)
#   make lint       luacheck (.luacheckrc) over the Lua, clang-format (.clang-format) check over the C
#   make install    copy the module, the Lua files and the commands to INST_LIBDIR, INST_LUADIR, INST_BINDIR
#   make NATIVE=1   tune for this CPU (-march=native)
#
# Every build product goes under $(BUILD) (build/ unless told): make leaves
# nothing else in the checkout.

CC      ?= cc
LUAJIT  ?= luajit
BUILD   ?= build
DEBS    := luajit libluajit-5.1-dev liblua5.1-0-dev libopenblas-dev lua-busted luarocks lua-argparse pkg-config gcc make \
           valgrind clang-14 libclang-rt-14-dev zip unzip git libopenmpi-dev openmpi-bin

# The flags the numerics rely on, for every build (make, the rock, sanitize,
# fuzz, check-c): ISO C99, so no contraction of a*b+c into an FMA (results must
# not depend on which CPU clone runs), and no errno from libm, so sqrt and the
# like inline.  OPT and WERROR may be changed; these may not.
NUMERIC := -std=c99 -ffp-contract=off -fno-math-errno
WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
           -Wcast-qual -Wformat=2 -Wvla
WERROR  ?= -Werror
OPT     ?= -O3
ifeq ($(NATIVE),1)
OPT     += -march=native
endif
# CFLAGS (LuaRocks passes its own, e.g. -O2 -fPIC) come first, so that ours win.
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
CORE_CFLAGS  = $(CFLAGS) $(WARN) $(WERROR) $(NUMERIC) $(OPT) -fPIC $(BLAS_CFLAGS)
LUA_INCDIR  ?=
LUA_CFLAGS   = $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell pkg-config --cflags luajit 2>/dev/null))
OPENBLAS_LIBDIR ?=
LIBS         = $(if $(OPENBLAS_LIBDIR),-L$(OPENBLAS_LIBDIR) -lopenblas,$(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)) -lm
LIBFLAG     ?= -shared

CORE_SRC := $(wildcard c/core/*.c)
LUA_SRC  := $(wildcard c/lua/*.c)
CORE_OBJ  = $(CORE_SRC:c/core/%.c=$(BUILD)/obj/core/%.o)
LUA_OBJ   = $(LUA_SRC:c/lua/%.c=$(BUILD)/obj/lua/%.o)
CORE_LIB  = $(BUILD)/libbptt_core.a
MODULE    = $(BUILD)/bptt/core.so

LUA_MODULES := $(wildcard lua/bptt/*.lua)
BIN_SCRIPTS := $(wildcard bin/*)

# --cpath wins over .busted's build/?.so, so that `make sanitize` loads build/san
BUSTED  = LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUAJIT) /usr/bin/busted --cpath='$(BUILD)/?.so'

# V=1 prints every compiler line
Q := $(if $(filter 1,$(V)),,@)

.PHONY: all deps lint format test check-c sanitize valgrind run-specs fuzz rock rock-check demo bench install lint clean \
        dist dist-maybe

all: $(MODULE) dist-maybe

# The compiler line, kept in a file that changes only when the line does, so
# that a change of flags (NATIVE=1, CFLAGS=...) rebuilds everything.
FLAGS_STAMP = $(BUILD)/cflags
FLAGS_LINE  = $(CC) $(CORE_CFLAGS) $(LUA_CFLAGS) $(LIBFLAG) $(LIBS)
.PHONY: FORCE
$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(FLAGS_LINE)' | cmp -s - $@ || echo '$(FLAGS_LINE)' > $@

# The core compiles without Lua's include path: a Lua header there is an error.
$(BUILD)/obj/core/%.o: c/core/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CORE_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/obj/lua/%.o: c/lua/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CORE_CFLAGS) -Ic/core $(LUA_CFLAGS) -MMD -MP -c -o $@ $<

$(CORE_LIB): $(CORE_OBJ)
	@rm -f $@
	@$(if $(Q),echo "  AR      $@")
	$(Q)$(AR) rcs $@ $^

$(MODULE): $(LUA_OBJ) $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@ ($$(cat $(FLAGS_STAMP)))")
	$(Q)$(CC) $(CFLAGS) $(OPT) $(LIBFLAG) -o $@ $(LUA_OBJ) $(CORE_LIB) $(LIBS) $(LDFLAGS)

-include $(CORE_OBJ:.o=.d) $(LUA_OBJ:.o=.d)

# bptt.dist's C part: its own module, linked with Open MPI, so that the core
# module never needs MPI.  Flags from mpicc (or pkg-config ompi-c); built by
# `make` only when mpi.h compiles with them.
MPI_CFLAGS  := $(shell mpicc --showme:compile 2>/dev/null || pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS    := $(shell mpicc --showme:link 2>/dev/null || pkg-config --libs ompi-c 2>/dev/null)
HAVE_MPI    := $(shell printf '\043include <mpi.h>\n' | $(CC) $(MPI_CFLAGS) -E -x c - >/dev/null 2>&1 && echo 1)
DIST_SRC    := $(wildcard c/dist/*.c)
DIST_OBJ     = $(DIST_SRC:c/dist/%.c=$(BUILD)/obj/dist/%.o)
DIST_MODULE  = $(BUILD)/bptt/dist_core.so

$(BUILD)/obj/dist/%.o: c/dist/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CORE_CFLAGS) -Ic/core -Ic/lua $(LUA_CFLAGS) $(MPI_CFLAGS) -MMD -MP -c -o $@ $<

# the binding's shared helpers (lshared.o) and the core's tensor code come
# along: the module checks tensors as core.so does
$(DIST_MODULE): $(DIST_OBJ) $(BUILD)/obj/lua/lshared.o $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $(OPT) $(LIBFLAG) -o $@ $(DIST_OBJ) $(BUILD)/obj/lua/lshared.o $(CORE_LIB) $(MPI_LIBS) $(LIBS) \
	  $(LDFLAGS)

dist:
	@test -n "$(HAVE_MPI)" || { echo "make dist: mpi.h not found (apt-get install libopenmpi-dev openmpi-bin)"; exit 2; }
	@$(MAKE) --no-print-directory $(DIST_MODULE)

ifeq ($(HAVE_MPI),1)
dist-maybe: $(DIST_MODULE)
else
dist-maybe:
	@echo "  SKIP    $(DIST_MODULE): mpi.h not found (bptt.dist needs: apt-get install libopenmpi-dev openmpi-bin)"
endif

-include $(DIST_OBJ:.o=.d)

# What LuaRocks' make backend runs after the build (rockspec/): the module, the
# Lua modules and the command-line tools into the rock's directories.
INST_LIBDIR ?=
INST_LUADIR ?=
INST_BINDIR ?=
install: $(MODULE) dist-maybe
	@test -n "$(INST_LIBDIR)" -a -n "$(INST_LUADIR)" || { echo "make install: set INST_LIBDIR and INST_LUADIR"; exit 2; }
	install -d $(INST_LIBDIR)/bptt $(INST_LUADIR)/bptt
	install -m 644 $(MODULE) $(INST_LIBDIR)/bptt/core.so
	@if [ -f $(DIST_MODULE) ]; then echo install -m 644 $(DIST_MODULE) $(INST_LIBDIR)/bptt/dist_core.so; \
	  install -m 644 $(DIST_MODULE) $(INST_LIBDIR)/bptt/dist_core.so; fi
	install -m 644 $(LUA_MODULES) $(INST_LUADIR)/bptt/
	@if [ -n "$(INST_BINDIR)" ] && [ -n "$(BIN_SCRIPTS)" ]; then \
	  install -d $(INST_BINDIR) && install -m 755 $(BIN_SCRIPTS) $(INST_BINDIR)/; fi

# The style checks: luacheck over every Lua file, clang-format over every C
# file (a file that clang-format would change fails; `make format` changes it).
LINT_DEBS := lua-check clang-format
C_FILES    = $(wildcard c/core/*.[ch] c/core/generic/*.c c/lua/*.[ch] c/dist/*.[ch] spec/c/*.c spec/fuzz/*.c)
lint:
	@$(MAKE) --no-print-directory deps DEBS="$(LINT_DEBS)"
	luacheck -q lua spec examples bin .ci
	clang-format --dry-run -Werror $(C_FILES)
format:
	clang-format -i $(C_FILES)

# Installs what is missing, with apt-get (through sudo when not root).
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test: deps
	@$(MAKE) --no-print-directory all check-c
	@$(BUSTED)

# The standalone C checks link the core library alone: no Lua at all.
CHECK_SRC := $(wildcard spec/c/*.c)
CHECK_BIN  = $(CHECK_SRC:spec/c/%.c=$(BUILD)/check/%)
$(BUILD)/check/%: spec/c/%.c $(CORE_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CORE_CFLAGS) -Ic/core -o $@ $< $(CORE_LIB) $(LIBS) $(LDFLAGS)
check-c: $(CHECK_BIN)
	@for c in $(CHECK_BIN); do echo "== $$c"; $$c > $$c.log 2>&1 || { cat $$c.log; echo "check-c: $$c failed"; exit 1; }; \
	  tail -n 1 $$c.log; done

# ASan+UBSan: LuaJIT itself is not instrumented, so the runtime is preloaded.
SAN_BUILD := build/san
sanitize: deps
	@$(MAKE) --no-print-directory all check-c BUILD=$(SAN_BUILD) OPT='-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all'
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(MAKE) --no-print-directory BUILD=$(SAN_BUILD) run-specs
	@$(MAKE) --no-print-directory valgrind

run-specs:
	@$(BUSTED)

# memcheck over the specs of the C-heavy parts (BPTT_SPEC_LIGHT shrinks the
# big-memory and gradcheck loops; definite leaks are errors)
VALGRIND_SPECS ?= spec/tensor_spec.lua spec/rng_spec.lua spec/gc_spec.lua spec/safetensors_spec.lua \
                  spec/data_spec.lua spec/optim_spec.lua spec/layers_spec.lua spec/rnn_spec.lua \
                  spec/train_spec.lua spec/numerics_spec.lua spec/resources_spec.lua \
                  spec/optim_threads_spec.lua spec/nn_threads_spec.lua
valgrind: all
	LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' BPTT_SPEC_LIGHT=1 \
	valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	  $(LUAJIT) /usr/bin/busted --cpath='$(BUILD)/?.so' $(VALGRIND_SPECS)

# libFuzzer (clang, with ASan+UBSan) on the safetensors reader, linked with the
# core library built by clang with the same instrumentation, run over a copy of
# the seed corpus in build/fuzz/ (new inputs and crash reproducers land there,
# never in spec/); any crash, leak or sanitizer report fails the target.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) \
	  OPT='-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all' \
	  $(FUZZ_BUILD)/libbptt_core.a
	$(FUZZ_CC) $(WARN) $(WERROR) $(NUMERIC) -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=all -Ic/core $(BLAS_CFLAGS) \
	  -o $(FUZZ_BUILD)/safetensors_fuzz spec/fuzz/safetensors_fuzz.c $(FUZZ_BUILD)/libbptt_core.a $(LIBS)
	rm -rf $(FUZZ_BUILD)/corpus && mkdir -p $(FUZZ_BUILD)/corpus && cp spec/fuzz/corpus/* $(FUZZ_BUILD)/corpus/
	@echo "fuzzing for $(FUZZ_SECONDS) s (log: $(FUZZ_BUILD)/fuzz.log)"
	@cd $(FUZZ_BUILD) && if ./safetensors_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	  -max_len=65536 -print_final_stats=1 corpus > fuzz.log 2>&1; then \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' fuzz.log; \
	else tail -n 60 fuzz.log; echo "make fuzz: the fuzzer found a problem (reproducer in $(FUZZ_BUILD)/)"; exit 1; fi

# dist/: the source rock (the rockspec and the sources of this checkout's
# HEAD plus uncommitted changes) and a manifest, so that
#   luarocks --lua-version=5.1 install --only-server=$(CURDIR)/dist bptt
# installs it on a machine with no checkout and no network.
rock: deps
	rockspec/pack.sh dist

rock-check: deps all
	.ci/rock-check

DATA       ?=
DEMO_ITERS ?= 2000
DEMO_OUT   := $(BUILD)/demo
demo: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p $(DEMO_OUT)
	@if [ -n "$(DATA)" ]; then \
	  data="$(DATA)"; prime=""; \
	else \
	  data=$(DEMO_OUT)/verses.txt; prime="--prime MARGOT:"; \
	  [ -f $$data ] || $(LUAJIT) examples/charlm/make_corpus.lua $$data; \
	fi; \
	rm -f $(DEMO_OUT)/checkpoint.safetensors $(DEMO_OUT)/log.csv; \
	$(LUAJIT) examples/charlm/train.lua --data "$$data" --cell lstm --hidden 128 --layers 2 --batch 32 --seq 64 \
	  --lr 3e-3 --max-iters $(DEMO_ITERS) --eval-every 250 --eval-batches 20 --out $(DEMO_OUT) && \
	echo "== a sample (temperature 0.7):" && \
	$(LUAJIT) examples/charlm/sample.lua $(DEMO_OUT)/checkpoint.safetensors $$prime --length 400 --temperature 0.7 --seed 1

# the training step (the README's table), sampling at B = 1, the RNN layers
# alone, then the GEMM kernels on the char-LM's shapes
bench: deps
	@$(MAKE) --no-print-directory all
	$(LUAJIT) examples/bench/step.lua --rounds 3
	$(LUAJIT) examples/bench/sample.lua
	$(LUAJIT) examples/bench/rnn.lua
	$(LUAJIT) examples/bench/gemm.lua --rounds 3

clean:
	rm -rf build dist
