# trugrade: `make demo` runs the main job, `make test` the whole suite, `make bench` the benchmarks.
# Each target first installs what is missing (.ci/setup) and builds trugrade._C.
PYTHON ?= python3
CC ?= gcc
CORE_SOURCES := $(shell find csrc -name '*.c' -not -path 'csrc/python/*' -not -path 'csrc/tests/*' -not -path 'csrc/fuzz/*' | sort)
C_TESTS := $(wildcard tests/c/test_*.c)
PKG_LIBS = $(shell pkg-config --cflags --libs openblas libpng libjpeg yaml-0.1 zlib)
C_FLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -pthread -g
SAN_FLAGS := -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: setup demo test test-c test-c-asan test-py bench clean

setup:
	PYTHON=$(PYTHON) bash .ci/setup

demo: setup
	$(PYTHON) -m trugrade.demo

test: setup test-c test-c-asan test-py

build/c/%: tests/c/%.c $(CORE_SOURCES) $(wildcard csrc/*/*.h)
	@mkdir -p build/c
	$(CC) $(C_FLAGS) -O2 -o $@ $< $(CORE_SOURCES) $(PKG_LIBS) -lm

build/c-asan/%: tests/c/%.c $(CORE_SOURCES) $(wildcard csrc/*/*.h)
	@mkdir -p build/c-asan
	$(CC) $(C_FLAGS) $(SAN_FLAGS) -o $@ $< $(CORE_SOURCES) $(PKG_LIBS) -lm

test-c: $(patsubst tests/c/%.c,build/c/%,$(C_TESTS))
	@for t in $^; do echo "== $$t"; $$t || exit 1; done

test-c-asan: $(patsubst tests/c/%.c,build/c-asan/%,$(C_TESTS))
	@for t in $^; do echo "== $$t (ASan+UBSan)"; ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t || exit 1; done

test-py:
	$(PYTHON) -m pytest -q tests

bench: setup
	$(PYTHON) -m trugrade.bench ops

clean:
	rm -rf build .build-stamp trugrade/_C*.so *.egg-info
