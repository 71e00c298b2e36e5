# splitvm front door.  Everything real happens in meson (build/), in
# qemu-patches/build-qemu.sh (the patched QEMU, cached outside the checkout)
# and in tests/run-all.sh (the test harness).
#
#   make            build libsplitvm, the daemons, the CLI and the guest
#   make qemu       build (or reuse from cache) the patched qemu-system-x86_64
#   make check      install, build, run every test; ends with "N passed, N failed"
#   make demo       install, build, start a local rack, launch a split VM
#   make bench      run the benchmarks, write bench/report/
#   make fuzz       run the fuzz targets for longer (FUZZ_SECONDS, default 600)

BUILD        ?= build
FUZZ_SECONDS ?= 600
export SPLITVM_CACHE ?= /var/cache/splitvm

.PHONY: all setup configure build qemu check demo bench fuzz clean

all: build

setup:
	@./scripts/setup-host.sh

$(BUILD)/build.ninja:
	@meson setup $(BUILD)

configure: setup $(BUILD)/build.ninja

build: configure
	@ninja -C $(BUILD)

qemu: build
	@SPLITVM_PKG_CONFIG_PATH=$(CURDIR)/$(BUILD)/meson-uninstalled ./qemu-patches/build-qemu.sh

check: qemu
	@./tests/run-all.sh $(BUILD)

demo: qemu
	@./orchestration/demo.sh $(BUILD)

bench: qemu
	@./bench/run.sh --build $(BUILD)

# Wire parsers' fuzz targets (clang + libFuzzer, built outside the gcc build);
# make check runs each for about 60 s.
fuzz: build
	@./tests/memserver/fuzz.sh --seconds $(FUZZ_SECONDS) --workdir $(BUILD)/fuzz-memserver

clean:
	rm -rf $(BUILD)
