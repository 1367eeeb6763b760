# bptt -- build, test, sanitize, demo, bench.
#
#   make            build build/bptt/core.so (the C core and its Lua binding)
#   make test       install missing Debian packages, build, run every spec
#   make sanitize   the specs against an ASan+UBSan build, then valgrind memcheck
#   make fuzz       the safetensors reader under libFuzzer for FUZZ_SECONDS (60) over spec/fuzz/corpus (clang)
#   make rock       install the rock into a temporary tree and require it from a bare luajit
#   make demo       train a small LSTM on built-in text for about a minute, then sample (DATA=file.txt for yours)
#   make bench      benchmarks against PyTorch when python3-torch is installed (examples/bench/)
#   make NATIVE=1   tune for this CPU (-march=native)

CC      ?= cc
LUAJIT  ?= luajit
PKGS    := luajit openblas
BUILD   ?= build
DEBS    := luajit libluajit-5.1-dev liblua5.1-0-dev libopenblas-dev lua-busted luarocks lua-argparse pkg-config gcc make valgrind \
           clang-14 libclang-rt-14-dev

WARN    := -std=c99 -Wall -Wextra -Wpedantic -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wcast-qual -Wformat=2 -Wvla
OPT     ?= -O3
ifeq ($(NATIVE),1)
OPT     += -march=native
endif
CFLAGS_ALL  = $(WARN) $(OPT) -fPIC -fno-strict-aliasing -fno-math-errno $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LIBS_ALL    = $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas) -lm

SRC     := $(wildcard c/*.c)
HDR     := $(wildcard c/*.h)
MODULE  := $(BUILD)/bptt/core.so

# --cpath wins over .busted's build/?.so, so that `make sanitize` loads build-san
BUSTED  = LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUAJIT) /usr/bin/busted --cpath='$(BUILD)/?.so'

.PHONY: all deps test sanitize valgrind fuzz rock demo bench clean

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

# libFuzzer (clang, with ASan+UBSan) on the safetensors reader, from a copy of the
# seed corpus in build-fuzz/ (new inputs and crash reproducers land there, never
# in spec/); any crash, leak or sanitizer report fails the target.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build-fuzz
FUZZ_SRC     := spec/fuzz/safetensors_fuzz.c c/safetensors.c c/crc32.c c/tensor.c c/core.c c/gemm.c c/packed.c c/parallel.c
fuzz: deps
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(WARN) -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=all -Ic $(shell pkg-config --cflags openblas 2>/dev/null) \
	  -o $(FUZZ_BUILD)/safetensors_fuzz $(FUZZ_SRC) $(LIBS_ALL)
	rm -rf $(FUZZ_BUILD)/corpus && mkdir -p $(FUZZ_BUILD)/corpus && cp spec/fuzz/corpus/* $(FUZZ_BUILD)/corpus/
	@echo "fuzzing for $(FUZZ_SECONDS) s (log: $(FUZZ_BUILD)/fuzz.log)"
	@cd $(FUZZ_BUILD) && if ./safetensors_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	  -max_len=65536 -print_final_stats=1 corpus > fuzz.log 2>&1; then \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' fuzz.log; \
	else tail -n 60 fuzz.log; echo "make fuzz: the fuzzer found a problem (reproducer in $(FUZZ_BUILD)/)"; exit 1; fi

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

# the training step (the README's table), sampling at B = 1, then the RNN layers alone
bench: deps
	@$(MAKE) --no-print-directory all
	$(LUAJIT) examples/bench/step.lua
	$(LUAJIT) examples/bench/sample.lua
	$(LUAJIT) examples/bench/rnn.lua

rock: deps
	.ci/rock-check

clean:
	rm -rf build build-san build-fuzz
