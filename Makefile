# Realm — the two commands of the README, and a few helpers.
#
#   make serve [MODEL=path.gguf] [PORT=8080]   install dependencies, build, serve the model
#   make test [SANITIZE=1]         install dependencies, build, run every test
#   make fuzz [FUZZ_SECONDS=60]    build the libFuzzer targets with clang and run them
#   make bench                     build and run the kernel benchmark
#   make format | format-check     rewrite / check the sources with clang-format
#
# Build directories: build/ (normal), build-asan/ (SANITIZE=1), build-fuzz/.

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SANITIZE ?= 0
FUZZ_SECONDS ?= 60
MODEL ?= models/stories260K.gguf
HOST ?= 127.0.0.1
PORT ?= 8080

ifeq ($(SANITIZE),1)
BUILD_DIR ?= build-asan
CMAKE_FLAGS += -DREALM_SANITIZE=ON
else
BUILD_DIR ?= build
endif

.PHONY: all deps build test serve fuzz bench clean format format-check

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900

# The main job: serve MODEL (default: the small model kept in models/) on
# 127.0.0.1:$(PORT); the startup lines say how to call it. Ctrl-C drains and stops.
serve: build
	$(BUILD_DIR)/realm serve --model $(MODEL) --host $(HOST) --port $(PORT)

fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DREALM_FUZZ=ON \
	    -DREALM_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_gguf fuzz_module fuzz_http gen_corpus
	cd build-fuzz && ctest --output-on-failure -R '^fuzz_' --timeout $$(( $(FUZZ_SECONDS) + 300 ))

bench: build
	$(BUILD_DIR)/realm bench-kernels

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# Fails (and names the files) when a tracked source is not clang-formatted.
format-check: deps
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz
