# rpfs — GNU make, C11 (gnu11), dependencies through pkg-config.
#   make            build rpfs
#   make check      unit tests (check) and the mount tests (tests/*.sh)
#   make deps       install missing Debian packages (contrib/install-deps.sh)
#   make demo       install packages if missing, build, run the demo
#   make install    PREFIX=/usr/local DESTDIR=
#   make SANITIZE=1 ...   build with -fsanitize=address,undefined

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
CC ?= gcc
PKG_CONFIG ?= pkg-config

CORE_PKGS := libnbd jansson libcrypto libarchive
FS_PKGS := fuse3
ALL_PKGS := $(CORE_PKGS) $(FS_PKGS)

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -pthread -D_GNU_SOURCE
ifeq ($(SANITIZE),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
CPPFLAGS += -Icore $(shell $(PKG_CONFIG) --cflags $(ALL_PKGS) 2>/dev/null)
LIBS := $(shell $(PKG_CONFIG) --libs $(ALL_PKGS) 2>/dev/null) -pthread
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

CORE_SRC := $(wildcard core/*.c)
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

%.o: %.c $(wildcard core/*.h fs/*.h)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

tests/unit/check_%: tests/unit/check_%.c tests/unit/runner.h core/librpfscore.a
	$(CC) $(CPPFLAGS) $(CHECK_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< core/librpfscore.a $(LIBS) $(CHECK_LIBS)

tests/helpers/%: tests/helpers/%.c
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

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
	rm -f rpfs core/*.o fs/*.o core/librpfscore.a $(UNIT_BIN) $(TEST_HELPERS)

.PHONY: all unit deps check check-run demo demo-run install clean
