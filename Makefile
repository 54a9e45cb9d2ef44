# rpfs — GNU make, C11 (gnu11), dependencies through pkg-config.
#   make            build rpfs
#   make check      unit tests (check) and the mount tests (tests/*.sh)
#   make deps       install missing Debian packages (contrib/install-deps.sh)
#   make demo       install packages if missing, build, run the demo
#   make install    PREFIX=/usr/local DESTDIR=
#   make SANITIZE=1 ...   build with -fsanitize=address,undefined
#   make fuzz       build the libFuzzer targets (tests/fuzz/fuzz_*.c, clang)
#                   and run each for FUZZ_SECONDS (default 30); fails on any
#                   crash, leak or sanitizer report (docs/testing.md)

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
CC ?= gcc
PKG_CONFIG ?= pkg-config

CORE_PKGS := libnbd jansson libcrypto libarchive libvirt libxml-2.0
FS_PKGS := fuse3
ALL_PKGS := $(CORE_PKGS) $(FS_PKGS)

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -pthread -D_GNU_SOURCE
ifeq ($(SANITIZE),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
# The core's layers, one folder each (docs/design.md, "Split").
CORE_DIRS := core core/objects core/methods core/backends core/dataplane core/lib
CPPFLAGS += $(addprefix -I,$(CORE_DIRS)) $(shell $(PKG_CONFIG) --cflags $(ALL_PKGS) 2>/dev/null)
LIBS := $(shell $(PKG_CONFIG) --libs $(ALL_PKGS) 2>/dev/null) -pthread
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

CORE_SRC := $(wildcard core/*/*.c)
FS_SRC := $(wildcard fs/*.c)
CORE_OBJ := $(CORE_SRC:.c=.o)
FS_OBJ := $(FS_SRC:.c=.o)
UNIT_SRC := $(wildcard tests/unit/check_*.c)
UNIT_BIN := $(UNIT_SRC:.c=)
# Programs the mount tests run (a hostile user's races, ...).
TEST_HELPERS := $(patsubst %.c,%,$(wildcard tests/helpers/*.c))

all: rpfs

core/librpfscore.a: $(CORE_OBJ)
	$(AR) rcs $@ $^

rpfs: $(FS_OBJ) core/librpfscore.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(FS_OBJ) core/librpfscore.a $(LIBS)

%.o: %.c $(wildcard core/*.h core/*/*.h fs/*.h)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

tests/unit/check_%: tests/unit/check_%.c tests/unit/runner.h core/librpfscore.a
	$(CC) $(CPPFLAGS) $(CHECK_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< core/librpfscore.a $(LIBS) $(CHECK_LIBS)

tests/helpers/%: tests/helpers/%.c
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

# ---- fuzzing: clang, libFuzzer, ASan + UBSan.  The core is compiled again
# with clang into tests/fuzz/build/ (-fsanitize=fuzzer-no-link: coverage
# without libFuzzer's main); each target links it with -fsanitize=fuzzer.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 30
FUZZ_DIR := tests/fuzz
FUZZ_BUILD := $(FUZZ_DIR)/build
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -O1 -g -fno-omit-frame-pointer -std=gnu11 -Wall -Wextra \
  -Werror -pthread -D_GNU_SOURCE $(FUZZ_SAN)
FUZZ_SRC := $(wildcard $(FUZZ_DIR)/fuzz_*.c)
FUZZ_NAMES := $(patsubst $(FUZZ_DIR)/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_BIN := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_CORE_OBJ := $(CORE_SRC:core/%.c=$(FUZZ_BUILD)/core/%.o)
# -rss_limit_mb: the targets never hold much; -timeout: a hang is a finding.
FUZZ_RUN_OPTS ?= -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1

$(FUZZ_BUILD)/core/%.o: core/%.c $(wildcard core/*.h core/*/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/librpfscore.a: $(FUZZ_CORE_OBJ)
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_DIR)/fuzz_%.c $(FUZZ_BUILD)/librpfscore.a
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< \
	  $(FUZZ_BUILD)/librpfscore.a $(LIBS)

fuzz-build: $(FUZZ_BIN)

# Each target starts from its committed seed corpus (read only) and keeps
# what it finds in tests/fuzz/build/corpus/<name>; a crash leaves its input
# as tests/fuzz/build/crash-<name>-* and fails make.
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_NAMES); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1 $(FUZZ_BUILD)/fuzz_$$t $(FUZZ_RUN_OPTS) \
	    -artifact_prefix=$(FUZZ_BUILD)/crash-$$t- \
	    $(FUZZ_BUILD)/corpus/$$t $(FUZZ_DIR)/corpus/$$t \
	    >$(FUZZ_BUILD)/fuzz_$$t.log 2>&1 || \
	    { tail -n 60 $(FUZZ_BUILD)/fuzz_$$t.log; \
	      echo "fuzz_$$t FAILED (log: $(FUZZ_BUILD)/fuzz_$$t.log)"; exit 1; }; \
	  grep -E '^stat::number_of_executed_units|^Done' \
	    $(FUZZ_BUILD)/fuzz_$$t.log | tr '\n' ' '; echo; \
	done

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; ./$$t; done

# Install missing Debian packages (as root); a no-op when all are there.
deps:
	@contrib/install-deps.sh

# check and demo install packages first, then build in a sub-make, so that
# pkg-config is evaluated only once the packages are there.
# The whole suite: unit tests, then one shell test per feature on a real mount.
check: deps
	@$(MAKE) --no-print-directory check-run

check-run: rpfs $(UNIT_BIN) $(TEST_HELPERS)
	@tests/run-all.sh $(UNIT_BIN)

demo: deps
	@$(MAKE) --no-print-directory demo-run

demo-run: rpfs
	@contrib/demo.sh

install: rpfs
	install -D -m 0755 rpfs $(DESTDIR)$(BINDIR)/rpfs
	install -D -m 0644 docs/rpfs.8 $(DESTDIR)$(MANDIR)/man8/rpfs.8

clean:
	rm -f rpfs core/*/*.o fs/*.o core/librpfscore.a $(UNIT_BIN) $(TEST_HELPERS)
	rm -rf $(FUZZ_BUILD)

.PHONY: all unit deps check check-run demo demo-run install clean fuzz fuzz-build
