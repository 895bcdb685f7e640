# trugrade: `make demo` runs the main job, `make test` the whole suite, `make bench` the benchmarks.
# `make fuzz` runs the libFuzzer harnesses of the image decoders (clang; not part of `make test`).
# Each target first installs what is missing (.ci/setup) and builds trugrade._C.
PYTHON ?= python3
CC ?= gcc
CORE_SOURCES := $(shell find csrc -name '*.c' -not -path 'csrc/python/*' -not -path 'csrc/tests/*' -not -path 'csrc/fuzz/*' | sort)
C_TESTS := $(wildcard tests/c/test_*.c)
C_TEST_SUPPORT := tests/c/alloc_count.c
WRAP_FLAGS := -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc -Wl,--wrap=posix_memalign
PKG_LIBS = $(shell pkg-config --cflags --libs openblas libpng libjpeg yaml-0.1 zlib)
C_FLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -pthread -g
SAN_FLAGS := -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: setup demo test test-c test-c-asan test-py bench clean fuzz

setup:
	PYTHON=$(PYTHON) bash .ci/setup

demo: setup
	$(PYTHON) -m trugrade.demo

test: setup
	$(MAKE) -j2 test-c test-c-asan
	$(MAKE) test-py

HEADERS := $(wildcard csrc/*/*.h)
PKG_CFLAGS = $(shell pkg-config --cflags openblas libpng libjpeg yaml-0.1 zlib)
# the core is compiled once per flavour; each C test links those objects
CORE_OBJECTS := $(patsubst csrc/%.c,build/c/obj/%.o,$(CORE_SOURCES))
ASAN_OBJECTS := $(patsubst csrc/%.c,build/c-asan/obj/%.o,$(CORE_SOURCES))

build/c/obj/%.o: csrc/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(C_FLAGS) -O2 $(PKG_CFLAGS) -c $< -o $@

build/c-asan/obj/%.o: csrc/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(C_FLAGS) $(SAN_FLAGS) $(PKG_CFLAGS) -c $< -o $@

build/c/test_%: tests/c/test_%.c $(C_TEST_SUPPORT) $(CORE_OBJECTS)
	$(CC) $(C_FLAGS) -O2 $(PKG_CFLAGS) -o $@ $< $(C_TEST_SUPPORT) $(CORE_OBJECTS) $(PKG_LIBS) $(WRAP_FLAGS) -lm

build/c-asan/test_%: tests/c/test_%.c $(C_TEST_SUPPORT) $(ASAN_OBJECTS)
	$(CC) $(C_FLAGS) $(SAN_FLAGS) $(PKG_CFLAGS) -o $@ $< $(C_TEST_SUPPORT) $(ASAN_OBJECTS) $(PKG_LIBS) $(WRAP_FLAGS) -lm

test-c: $(patsubst tests/c/%.c,build/c/%,$(C_TESTS))
	@for t in $^; do echo "== $$t"; $$t || exit 1; done

test-c-asan: $(patsubst tests/c/%.c,build/c-asan/%,$(C_TESTS))
	@for t in $^; do echo "== $$t (ASan+UBSan)"; ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t || exit 1; done

test-py:
	$(PYTHON) -m pytest -q tests

# ---- fuzzing the image decoders: FUZZ_SECONDS each (default 60), findings under build/fuzz/
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DECODERS := png jpeg dicom idx npy
FUZZ_SOURCES := csrc/core/status.c csrc/core/tensor.c csrc/core/threads.c $(wildcard csrc/data/*.c)
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer

build/fuzz/fuzz_%: csrc/fuzz/fuzz_%.c $(FUZZ_SOURCES) $(wildcard csrc/data/*.h csrc/core/*.h)
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { echo "make fuzz: '$(FUZZ_CC)' not found; install clang and \
	libclang-rt-14-dev (apt-get install clang libclang-rt-14-dev) or set FUZZ_CC"; exit 1; }
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SOURCES) $(shell pkg-config --cflags --libs libpng libjpeg yaml-0.1 zlib) -lm

fuzz: $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_DECODERS))
	@failed=""; for d in $(FUZZ_DECODERS); do \
	  mkdir -p build/fuzz/corpus_$$d build/fuzz/crashes_$$d; \
	  echo "== fuzz_$$d for $(FUZZ_SECONDS) s"; \
	  build/fuzz/fuzz_$$d -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
	    -print_final_stats=1 -artifact_prefix=build/fuzz/crashes_$$d/ \
	    build/fuzz/corpus_$$d csrc/fuzz/corpus/$$d > build/fuzz/fuzz_$$d.log 2>&1 || failed="$$failed $$d"; \
	  execs=$$(grep -o 'number_of_executed_units: [0-9]*' build/fuzz/fuzz_$$d.log | grep -o '[0-9]*$$'); \
	  echo "fuzz_$$d: $${execs:-?} executions, $$(ls build/fuzz/crashes_$$d | wc -l) crash/leak/timeout files \
	(log: build/fuzz/fuzz_$$d.log)"; \
	done; \
	if [ -n "$$failed" ]; then echo "make fuzz: findings in:$$failed (see build/fuzz/crashes_*/)"; exit 1; fi

bench: setup
	$(PYTHON) -m trugrade.bench ops
	$(PYTHON) -m trugrade.bench data
	$(PYTHON) -m trugrade.bench train --compare
	$(PYTHON) -m trugrade.bench predict

clean:
	rm -rf build .build-stamp trugrade/_C*.so *.egg-info
