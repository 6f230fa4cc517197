# deeplab: DeepLabV3 inference in C and CUDA.
#
#   make               bin/deeplab and build/libdeeplab.a; CUDA sources too when nvcc is found
#   make CUDA=0        CPU only
#   make CUDA_ARCH=sm_80   another GPU architecture (default: sm_90, Hopper)
#   make EMU=1         the emulated GPU (emu/): the .cu files built by the host C++ compiler, in
#                      build-emu/, whose deeplab runs --device cuda on the CPU (README: GPU)
#   make test          the whole test suite (see tests/run.sh); without a GPU the GPU tests run
#                      on the emulated GPU (build-emu/, built too)
#   make gpu-check     on a machine with an NVIDIA GPU: build for it, GPU tests, compute-sanitizer
#   make gpu-bench-tc  on an H100/H200: the tensor-core path checked and timed against PyTorch in one
#                      go (tools/gpu-bench.sh --tc; README: GPU)
#   make weights       download torchvision's published weights and convert them
#   make clean
#   make O=dir BIN=dir2   objects, library and tests in dir, the command in dir2
#   make test SANITIZE=1  everything with AddressSanitizer + UndefinedBehaviorSanitizer (and
#                      LeakSanitizer at exit), the GPU code on the emulated GPU, in build-asan/
#   make fuzz FUZZ_SECONDS=N   the libFuzzer targets of tests/fuzz/ (clang), N seconds each
#   make SERVE=0       without `deeplab serve` (it needs libmicrohttpd and libcurl, found by pkg-config)

ifeq ($(SANITIZE),1)
  O    ?= build-asan
  BIN  ?= build-asan/bin
  EMU  ?= 1
  SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else ifeq ($(SANITIZE),fuzz)
  O    ?= build-fuzz
  BIN  ?= build-fuzz/bin
  CUDA ?= 0
  SAN_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
endif
ifeq ($(EMU),1)
  O    ?= build-emu
  BIN  ?= build-emu/bin
  CUDA := 0
endif
O         ?= build
BIN       ?= bin
CC        ?= cc
CXX       ?= c++
PYTHON    ?= /usr/bin/python3
NVCC      ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc))
CUDA      ?= $(if $(NVCC),1,0)
CUDA_ARCH ?= sm_90
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))

CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror=implicit-function-declaration
override CFLAGS += $(SAN_FLAGS)
CPPFLAGS += -D_GNU_SOURCE
# Include paths by folder, so that the layering is enforced: base <- layers, weights <- engine <- tools.
# A file in layers/ or weights/ that includes deeplab.h or anything of engine/ does not build.
INC_base    := -Ibase
INC_layers  := -Ibase -Ilayers
INC_weights := -Ibase -Iweights
INC_engine  := -Ibase -Ilayers -Iweights -Iengine
INC_tools   := $(INC_engine) -I$(O)
INC_tests   := $(INC_engine) -Itools
INC = $(INC_$(firstword $(subst /, ,$<)))
LDLIBS   += -lpng -ljpeg -lz -lm -lpthread

LIB_SRC := $(wildcard base/*.c engine/*.c layers/*.c weights/*.c)
CU_SRC  := $(wildcard engine/*.cu layers/*.cu)
OBJ     := $(LIB_SRC:%.c=$(O)/%.o)

# `deeplab serve`: HTTP with libmicrohttpd, image_url fetching with libcurl (Debian: libmicrohttpd-dev,
# libcurl4-openssl-dev; tools/install-deps.sh). Without them the command says how to get it.
SERVE ?= $(shell pkg-config --exists libmicrohttpd libcurl 2>/dev/null && echo 1 || echo 0)
SERVE_SRC := $(wildcard tools/serve_*.c)
ifeq ($(SERVE),1)
  CPPFLAGS += -DDL_HAVE_SERVE=1
  LDLIBS   += $(shell pkg-config --libs libmicrohttpd libcurl)
  SUMMARY_SERVE := serve on
else
  SUMMARY_SERVE := serve off (no libmicrohttpd/libcurl: tools/install-deps.sh)
endif

ifeq ($(EMU),1)
  # The emulated GPU: every .cu file through the host C++ compiler with emu/ first on its include
  # path (emu/cuda_runtime.h), the emulator's runtime in place of NVIDIA's.
  CPPFLAGS  += -DDL_HAVE_CUDA=1 -DDL_EMU=1
  INC_tests += -Iemu
  # The emulated build runs where it is built (it is for tests, not for shipping): it may use
  # the build machine's vector units, which speeds the emulated kernels up by 40%.
  ifeq ($(origin EMU_ARCH),undefined)
    EMU_ARCH := $(shell for f in avx2 fma bmi2 f16c movbe; do grep -qw $$f /proc/cpuinfo 2>/dev/null || exit; done; \
                        echo -march=x86-64-v3)
  endif
  EMU_CXXFLAGS ?= -O3 -g $(EMU_ARCH)
  EMU_CXXFLAGS += -std=c++17 -Wall -Wextra -Wshadow
  override EMU_CXXFLAGS += $(SAN_FLAGS)
  EMU_SRC   := $(wildcard emu/*.cc)
  OBJ       += $(CU_SRC:%.cu=$(O)/%.cu.o) $(EMU_SRC:%.cc=$(O)/%.o)
  LDLIBS    += -lstdc++
  SUMMARY   := emulated GPU ($(CXX); the CUDA code runs on the CPU)
else ifeq ($(CUDA),1)
  CPPFLAGS  += -DDL_HAVE_CUDA=1
  NVCCFLAGS ?= -O3 -g -lineinfo
  NVCCFLAGS += -std=c++17 -arch=$(CUDA_ARCH) -Xcompiler -Wall,-Wextra
  OBJ       += $(CU_SRC:%.cu=$(O)/%.cu.o)
  # nvcc's kernel-launch stubs are C++: they need its runtime (static-local guards)
  LDLIBS    += -L$(CUDA_HOME)/lib64 -lcudart_static -lstdc++ -ldl -lrt
  SUMMARY   := CUDA on ($(NVCC), $(CUDA_ARCH))
else
  SUMMARY   := CUDA off (CPU only)
endif

# Objects depend on $(O)/config, rewritten only when the configuration changes, so that
# `make CUDA=0` after `make` (or new CFLAGS) rebuilds everything instead of mixing objects.
CONFIG := CC=$(CC) CFLAGS=$(CFLAGS) CUDA=$(CUDA) ARCH=$(CUDA_ARCH) NVCC=$(NVCC) NVCCFLAGS=$(NVCCFLAGS) EMU=$(EMU) CXX=$(CXX) EMU_CXXFLAGS=$(EMU_CXXFLAGS) SERVE=$(SERVE)
$(shell mkdir -p $(O) && (echo '$(CONFIG)' | cmp -s - $(O)/config || echo '$(CONFIG)' > $(O)/config))

# The commit the command reports (deeplab --version, bench): a header rewritten only when it
# changes, so that only tools/cli.c recompiles after a commit. Outside a git checkout (a copy of
# the tree on another machine) give it: make GIT_COMMIT=abc123.
ifeq ($(origin GIT_COMMIT),undefined)
  GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git rev-parse HEAD >/dev/null 2>&1 && { git diff --quiet HEAD -- || echo -dirty; })
endif
$(shell mkdir -p $(O) && (echo '#define DEEPLAB_COMMIT "$(GIT_COMMIT)"' | cmp -s - $(O)/commit.h || echo '#define DEEPLAB_COMMIT "$(GIT_COMMIT)"' > $(O)/commit.h))

TOOL_SRC := $(wildcard tools/*.c)
ifneq ($(SERVE),1)
  TOOL_SRC := $(filter-out $(SERVE_SRC),$(TOOL_SRC))
endif
TOOL_OBJ := $(TOOL_SRC:%.c=$(O)/%.o)
ifeq ($(SERVE),1)
  TOOL_OBJ += $(O)/tools/web_assets.o
endif
WEB_FILES := $(sort $(wildcard web/*))
TEST_SRC := $(wildcard tests/*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(O)/tests/%)
# tests with kernels of their own (tests/*.cu), where there is a GPU to build them for
ifneq ($(filter 1,$(CUDA) $(EMU)),)
  TEST_BIN += $(patsubst tests/%.cu,$(O)/tests/%,$(wildcard tests/*.cu))
endif

.PHONY: all test weights clean summary gpu-check gpu-bench-tc fuzz fuzz-build
all: $(BIN)/deeplab $(TEST_BIN) summary

summary:
	@echo "deeplab: built $(BIN)/deeplab, $(O)/libdeeplab.a; $(SUMMARY); $(SUMMARY_SERVE)"

$(O)/libdeeplab.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/deeplab: $(TOOL_OBJ) $(O)/libdeeplab.a | $(BIN)
	$(CC) $(CFLAGS) -o $@ $(TOOL_OBJ) $(O)/libdeeplab.a $(LDFLAGS) $(LDLIBS)

# test programs; their header dependencies (tests/conv_check.h, testutil.h, ...) in $(O)/tests/.deps/
$(O)/tests/%: tests/%.c $(O)/libdeeplab.a $(O)/config
	@mkdir -p $(dir $@) $(O)/tests/.deps
	$(CC) $(CPPFLAGS) $(INC) $(CFLAGS) -MMD -MP -MF $(O)/tests/.deps/$*.d -o $@ $< $(O)/libdeeplab.a $(LDFLAGS) $(LDLIBS)

$(O)/%.o: %.c $(O)/config
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(INC) $(CFLAGS) -MMD -MP -c -o $@ $<

# The editor's files (web/) compiled into the binary, so that `deeplab serve` needs nothing beside it.
$(O)/tools/web_assets.c: tools/embed.sh $(WEB_FILES)
	@mkdir -p $(dir $@)
	tools/embed.sh $(WEB_FILES) > $@.tmp && mv $@.tmp $@
$(O)/tools/web_assets.o: $(O)/tools/web_assets.c $(O)/config
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

ifeq ($(EMU),1)
# x.cu.o, not x.o: layers/conv2d.cu sits beside layers/conv2d.c
$(O)/%.cu.o: %.cu $(O)/config
	@mkdir -p $(dir $@)
	$(CXX) -x c++ $(CPPFLAGS) -Iemu $(INC) $(EMU_CXXFLAGS) -MMD -MP -MF $(@:.o=.d) -c -o $@ $<

$(O)/emu/%.o: emu/%.cc $(O)/config
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) -Iemu $(EMU_CXXFLAGS) -MMD -MP -c -o $@ $<

$(O)/tests/%: tests/%.cu $(O)/libdeeplab.a $(O)/config
	@mkdir -p $(dir $@)
	$(CXX) -x c++ $(CPPFLAGS) -Iemu $(INC) $(EMU_CXXFLAGS) -o $@ $< -x none $(O)/libdeeplab.a $(LDFLAGS) $(LDLIBS)
else
$(O)/%.cu.o: %.cu $(O)/config
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(INC) -MD -MP -MF $(@:.o=.d) -c -o $@ $<

$(O)/tests/%: tests/%.cu $(O)/libdeeplab.a $(O)/config
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(CPPFLAGS) $(INC) -o $@ $< $(O)/libdeeplab.a $(LDFLAGS) $(filter-out -lcudart_static,$(LDLIBS))
endif

$(BIN):
	@mkdir -p $(BIN)

# Without a GPU, the GPU tests run on the emulated GPU: build-emu/ is built too (unless this build
# is emulated itself, as SANITIZE=1's is) and tests/run.sh runs them from there.
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(EMU),1)
  # under the sanitizers the emulated GPU tests leave out their largest cases (DL_TEST_QUICK)
  GPU_TESTS := EMU_BUILD_DIR=$(O) EMU_DEEPLAB=$(CURDIR)/$(BIN)/deeplab $(if $(SAN_FLAGS),EMU_QUICK=1)
  TEST_DEPS := all
else ifeq ($(HAVE_GPU),1)
  GPU_TESTS :=
  TEST_DEPS := all
else
  GPU_TESTS := EMU_BUILD_DIR=build-emu EMU_DEEPLAB=$(CURDIR)/build-emu/bin/deeplab
  TEST_DEPS := all emu
endif

.PHONY: emu
emu:
	$(MAKE) EMU=1 all

test: $(TEST_DEPS)
	PYTHON=$(PYTHON) BUILD_DIR=$(O) DEEPLAB=$(CURDIR)/$(BIN)/deeplab $(GPU_TESTS) tests/run.sh

gpu-check:
	tools/gpu-check.sh

gpu-bench-tc:
	tools/gpu-bench.sh --tc

# Fuzzing: tests/fuzz/fuzz_*.c linked with libFuzzer against a library built for it (see
# tests/fuzz/README.md); fuzz_cli and fuzz_request also take the commands' objects (all but main).
FUZZ_SECONDS ?= 60
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(O)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
ifneq ($(SERVE),1)
  FUZZ_BIN := $(filter-out $(O)/fuzz/fuzz_request,$(FUZZ_BIN)) # the API's parameters need serve's objects
endif
FUZZ_TOOLS := $(filter-out $(O)/tools/deeplab.o,$(TOOL_OBJ))
fuzz:
	$(MAKE) SANITIZE=fuzz CC=clang fuzz-build
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)
fuzz-build: $(FUZZ_BIN)
$(O)/fuzz/%: tests/fuzz/%.c $(O)/libdeeplab.a $(FUZZ_TOOLS) $(O)/config
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(INC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_TOOLS) $(O)/libdeeplab.a $(LDFLAGS) $(LDLIBS)

weights: $(BIN)/deeplab
	DEEPLAB=$(BIN)/deeplab tools/get_weights.sh

clean:
	rm -rf build bin build-asan build-fuzz build-emu

-include $(OBJ:.o=.d) $(TOOL_OBJ:.o=.d)
-include $(wildcard $(O)/tests/.deps/*.d)
