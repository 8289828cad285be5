# gsvae: the single entry point.  `make` builds ./gsvae, `make test` runs the
# Check suites (fetching MNIST first if needed), `make asan` runs them under
# AddressSanitizer and UBSan, `make data` fetches MNIST, `make fuzz` fuzzes
# the IDX loader, `make bench` times training against the PyTorch peer.

CC       ?= cc
PKGS     := openblas zlib libpng
TEST_PKGS := check
WARN     := -Wall -Wextra -Wshadow -Wno-unused-parameter
CPPFLAGS += -D_POSIX_C_SOURCE=200809L
# vae/ is layered: core (numerics, rng, optimizers, files) < data < models
# (VAE, SBN, M2 on top of core) < cli (the commands and the training driver).
# Each layer is compiled seeing only its own headers and those below it, so
# an include of a higher layer fails to build.
INC_core   := -Ivae/core
INC_data   := $(INC_core) -Idata
INC_models := $(INC_data) -Ivae/models
INC_cli    := $(INC_models) -Ivae/cli
INC_tests  := $(INC_cli) -Itests
CFLAGS_COMMON := -std=c11 $(WARN) -fno-strict-aliasing
# -O3 vectorises the elementwise loops (Adam, losses) that -O2 leaves scalar;
# -fno-math-errno lets sqrtf and friends become single instructions.  Both
# keep IEEE semantics (NaN and Inf still propagate to the loss check).
RELEASE_CFLAGS := -O3 -march=native -fno-math-errno
ASAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 60
DATA_DIR ?= data/mnist

# What each goal needs installed, as groups of scripts/install-deps.sh, which
# checks them (quickly, by capability) and installs only what is missing:
# `make demo` never pulls in the test tools or python3-torch, and only
# `make bench` asks for python3-torch.
NODEPS_GOALS := clean data data-fashion distclean uninstall
deps_for = $(sort \
  $(if $(filter-out $(NODEPS_GOALS),$1),build) \
  $(if $(filter data demo test asan bench reproduce reproduce-quick figure5,$1),data) \
  $(if $(filter test asan,$1),test grid) \
  $(if $(filter reproduce reproduce-quick,$1),grid plot) \
  $(if $(filter figures figure5,$1),plot) \
  $(if $(filter fuzz,$1),fuzz) \
  $(if $(filter bench,$1),bench))
DEPS_GROUPS := $(call deps_for,$(or $(MAKECMDGOALS),all))
ifneq ($(DEPS_GROUPS),)
  DEPS_RC := $(shell sh scripts/install-deps.sh $(DEPS_GROUPS) 1>&2; echo $$?)
  ifneq ($(DEPS_RC),0)
    $(error gsvae: missing dependencies (install-deps.sh groups: $(DEPS_GROUPS)); see the message above)
  endif
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread
CHECK_CFLAGS := $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

LIB_SRCS  := $(sort $(filter-out vae/cli/main.c,$(wildcard vae/*/*.c data/*.c)))
TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TEST_HELPERS := $(sort $(filter-out $(TEST_SRCS) tests/fuzz_%.c,$(wildcard tests/*.c)))

REL := build/release
ASN := build/asan
REL_OBJS := $(LIB_SRCS:%.c=$(REL)/%.o)
ASN_OBJS := $(LIB_SRCS:%.c=$(ASN)/%.o)
REL_TESTS := $(TEST_SRCS:tests/%.c=$(REL)/tests/%)
ASN_TESTS := $(TEST_SRCS:tests/%.c=$(ASN)/tests/%)

.PHONY: all test asan data data-fashion fuzz bench demo reproduce reproduce-quick figures figure5 \
        install uninstall clean distclean
.DEFAULT_GOAL := all
all: gsvae

gsvae: $(REL_OBJS) $(REL)/vae/cli/main.o
	$(CC) $(RELEASE_CFLAGS) -o $@ $^ $(PKG_LIBS)

HEADERS := $(wildcard vae/*/*.h data/*.h tests/*.h)
$(foreach l,core models cli,$(eval $(REL)/vae/$(l)/%.o $(ASN)/vae/$(l)/%.o: LAYER_INC := $(INC_$(l))))
$(REL)/data/%.o $(ASN)/data/%.o: LAYER_INC := $(INC_data)
# The evaluation's fused likelihood (sparse.h) may contract a * b + c into
# one multiply-add; every other file keeps ISO C's separate roundings.  Its
# 16-float vectors pass between static functions only, so the note that
# their calling convention differs without AVX-512 (the sanitizer build has
# no -march=native) concerns no interface: -Wno-psabi.
$(REL)/vae/core/sparse.o $(ASN)/vae/core/sparse.o: CFLAGS_COMMON += -ffp-contract=fast -Wno-psabi
$(REL)/tests/%.o $(ASN)/tests/%.o: LAYER_INC := $(INC_tests)

$(REL)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(LAYER_INC) $(CPPFLAGS) $(CFLAGS_COMMON) $(RELEASE_CFLAGS) $(PKG_CFLAGS) $(CHECK_CFLAGS) $(CFLAGS) -c -o $@ $<

$(ASN)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(LAYER_INC) $(CPPFLAGS) $(CFLAGS_COMMON) $(ASAN_CFLAGS) $(PKG_CFLAGS) $(CHECK_CFLAGS) $(CFLAGS) -c -o $@ $<

$(REL)/tests/%: $(REL)/tests/%.o $(TEST_HELPERS:%.c=$(REL)/%.o) $(REL_OBJS)
	$(CC) $(RELEASE_CFLAGS) -o $@ $^ $(CHECK_LIBS) $(PKG_LIBS)

$(ASN)/tests/%: $(ASN)/tests/%.o $(TEST_HELPERS:%.c=$(ASN)/%.o) $(ASN_OBJS)
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(CHECK_LIBS) $(PKG_LIBS)

$(ASN)/gsvae: $(ASN_OBJS) $(ASN)/vae/cli/main.o
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(PKG_LIBS)

# The test build of the program: the same objects but the driver, which is
# compiled with its fault-injection hooks (GSVAE_TEST_HOOKS: a NaN planted at
# a given step); the released ./gsvae has none.
HOOKED := vae/cli/driver
$(REL)/gsvae-hooks: $(filter-out $(REL)/$(HOOKED).o,$(REL_OBJS)) $(REL)/$(HOOKED)-hooks.o $(REL)/vae/cli/main.o
	$(CC) $(RELEASE_CFLAGS) -o $@ $^ $(PKG_LIBS)
$(ASN)/gsvae-hooks: $(filter-out $(ASN)/$(HOOKED).o,$(ASN_OBJS)) $(ASN)/$(HOOKED)-hooks.o $(ASN)/vae/cli/main.o
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(PKG_LIBS)
$(REL)/%-hooks.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(LAYER_INC) $(CPPFLAGS) -DGSVAE_TEST_HOOKS $(CFLAGS_COMMON) $(RELEASE_CFLAGS) $(PKG_CFLAGS) $(CFLAGS) -c -o $@ $<
$(ASN)/%-hooks.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(LAYER_INC) $(CPPFLAGS) -DGSVAE_TEST_HOOKS $(CFLAGS_COMMON) $(ASAN_CFLAGS) $(PKG_CFLAGS) $(CFLAGS) -c -o $@ $<

# The suites find the program and the data through the environment.
test: gsvae $(REL)/gsvae-hooks $(REL_TESTS) data
	@GSVAE_HOOKS_BIN=$(REL)/gsvae-hooks sh tests/run-suites.sh ./gsvae $(DATA_DIR) $(REL_TESTS)

asan: $(ASN)/gsvae $(ASN)/gsvae-hooks $(ASN_TESTS) data
	@GSVAE_HOOKS_BIN=$(ASN)/gsvae-hooks ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  sh tests/run-suites.sh $(ASN)/gsvae $(DATA_DIR) $(ASN_TESTS)

data:
	@sh data/fetch-mnist.sh $(DATA_DIR)

data-fashion:
	@sh data/fetch-fashion.sh data/fashion

fuzz: build/fuzz/fuzz_idx
	@mkdir -p build/fuzz/corpus
	@sh tests/fuzz-seeds.sh build/fuzz/corpus
	build/fuzz/fuzz_idx -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz/corpus

build/fuzz/fuzz_idx: tests/fuzz_idx.c data/idx.c data/idx.h
	@mkdir -p $(dir $@)
	clang $(INC_data) $(CPPFLAGS) -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -o $@ tests/fuzz_idx.c data/idx.c $(PKG_LIBS)

bench: gsvae data
	@sh scripts/bench.sh ./gsvae $(DATA_DIR)
	@sh scripts/bench-scaling.sh ./gsvae $(DATA_DIR)

clean:
	rm -rf build gsvae

# make install PREFIX=DIR (default /usr/local; DESTDIR stages): the binary and
# its manual page, gsvae(1), which the binary writes from the same flag
# tables as its --help (`gsvae manpage`), so the two cannot drift.
PREFIX ?= /usr/local
BINDIR = $(DESTDIR)$(PREFIX)/bin
MAN1DIR = $(DESTDIR)$(PREFIX)/share/man/man1
install: gsvae
	@mkdir -p build
	./gsvae manpage > build/gsvae.1
	install -d $(BINDIR) $(MAN1DIR)
	install -m 755 gsvae $(BINDIR)/gsvae
	install -m 644 build/gsvae.1 $(MAN1DIR)/gsvae.1

uninstall:
	rm -f $(BINDIR)/gsvae $(MAN1DIR)/gsvae.1

distclean: clean
	rm -rf data/mnist data/fashion data/.cache

demo: gsvae data
	./gsvae train --steps 3000 --eval-every 1000 --iw-samples 100 --out runs/demo

# Keep the test objects between runs (make would delete them as
# intermediates and rebuild them every time).
.SECONDARY: $(TEST_SRCS:tests/%.c=$(REL)/tests/%.o) $(TEST_SRCS:tests/%.c=$(ASN)/tests/%.o) \
            $(TEST_HELPERS:%.c=$(REL)/%.o) $(TEST_HELPERS:%.c=$(ASN)/%.o)

# The paper's tables: every task x latent type x estimator x seed (see
# scripts/reproduce.sh).  JOBS sets how many run at once.
JOBS ?= $(shell nproc)
reproduce: gsvae data
	sh scripts/reproduce.sh full -j $(JOBS)

reproduce-quick: gsvae data
	sh scripts/reproduce.sh quick -j $(JOBS)

# The paper's Figure 5 for the semi-supervised task: 5a, training steps/s of
# Gumbel-Softmax and marginalisation against the number of classes (measured
# here, minutes), 5b, the analogies grid of a short conv run (trained here
# once, minutes); both PNGs and 5a's CSV in results/semisup/.
figure5: gsvae data
	sh scripts/figure5a.sh
	sh scripts/figure5b.sh

# Every PNG under results/ that comes from committed data (scripts/figures.sh
# lists them); needs gnuplot, not the data.
figures: gsvae
	@sh scripts/figures.sh
