# The C libraries of restartable: build and install.
#
#   make                        build target/release/librestartable.a and
#                               librestartable.so.$(VERSION) (+ its links)
#   make install                install the libraries, restartable.h and
#                               restartable.pc under $(DESTDIR)$(PREFIX)
#   make install-shared         the same with the shared library only
#   make install-static         the same with the static library only
#   make uninstall              remove what `make install` installed
#   make clean                  remove what `make` built
#
# Variables (on the command line or in the environment):
#   PREFIX=/usr/local           install prefix, written into restartable.pc
#   LIBDIR, INCLUDEDIR, PKGCONFIGDIR
#                               default $(PREFIX)/lib, $(PREFIX)/include,
#                               $(LIBDIR)/pkgconfig
#   DESTDIR=                    staging root for packaging; not written
#                               into any file
#   PROFILE=release             cargo profile of the build: release or debug
#   CARGO_TARGET_DIR=target     cargo's target directory; the libraries go
#                               to $(CARGO_TARGET_DIR)/$(PROFILE)/
#   TARGET=                     a target triple to build for (with a CC
#                               for it); the libraries then go to
#                               $(CARGO_TARGET_DIR)/$(TARGET)/$(PROFILE)/
#   CARGO=cargo, CC=cc          the tools; CARGO_FLAGS and LDFLAGS are
#                               added to their command lines
#
# The static library is the crate built as a staticlib; the shared library
# is linked from all of it with restartable.map as its only version script,
# so that every linker (GNU ld, LLD, gold) exports the same symbols: the C
# API and the shared TLS area. The install targets never run cargo: run
# `make` first (as the user who owns the checkout), then `make install`.

# GNU make. Built-in rules are not used.
.SUFFIXES:

NAME = restartable
# The crate's version (the first `version` line of Cargo.toml).
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)
# The C ABI's major version, the SONAME's number; it changes only when the
# C ABI changes incompatibly.
SOVERSION = 0

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

PROFILE ?= release
CARGO ?= cargo
# CC is make's own variable (default cc).
CARGO_FLAGS ?=
LDFLAGS ?=
CARGO_TARGET_DIR ?= target
TARGET ?=

# What a program linked with librestartable.a needs besides it: `rustc
# --print native-static-libs` for the staticlib, less -lgcc_s (see
# restartable.pc.in).
STATIC_LIBS = -lutil -lrt -lpthread -lm -ldl -lc

OUT = $(CARGO_TARGET_DIR)/$(if $(TARGET),$(TARGET)/)$(PROFILE)
STATIC = $(OUT)/lib$(NAME).a
SHARED = lib$(NAME).so.$(VERSION)
SONAME = lib$(NAME).so.$(SOVERSION)
LINKS = $(OUT)/$(SONAME) $(OUT)/lib$(NAME).so

# `PROFILE=debug` is cargo's `dev` profile, built into debug/.
CARGO_PROFILE_release = release
CARGO_PROFILE_debug = dev
CARGO_PROFILE = $(CARGO_PROFILE_$(PROFILE))
# As cargo's release profile does for what it links, the release library
# leaves out the debug information (the archive's, mostly the standard
# library's); the debug one keeps it.
STRIP_release = -Wl,--strip-debug
STRIP_debug =

all: $(STATIC) $(OUT)/$(SHARED) $(LINKS)

check-profile:
	@case "$(PROFILE)" in release|debug) ;; \
	*) echo "make: PROFILE=$(PROFILE): use PROFILE=release or PROFILE=debug" >&2; exit 2;; esac

# cargo knows what is out of date: ask it every time. It leaves the
# archive alone when nothing changed, so the shared library is then not
# linked again.
$(STATIC): check-profile FORCE
	$(CARGO) rustc --profile $(CARGO_PROFILE) --lib --crate-type staticlib \
		--target-dir "$(CARGO_TARGET_DIR)" $(if $(TARGET),--target $(TARGET)) $(CARGO_FLAGS)

# --whole-archive, then --gc-sections: everything the exported functions,
# the shared TLS symbols and the constructor in .init_array (reached
# through an IFUNC) use, and nothing else. -z nodelete: dlclose never
# unmaps the library, whose TLS block holds the area the kernel writes to
# and whose code holds the critical-section descriptors. Written under a
# temporary name first, so that no reader sees half a file.
$(OUT)/$(SHARED): $(STATIC) restartable.map
	$(CC) -shared -o $@.tmp -Wl,-soname,$(SONAME) \
		-Wl,--whole-archive $(STATIC) -Wl,--no-whole-archive \
		-Wl,--version-script=restartable.map \
		-Wl,-z,nodelete -Wl,-z,relro -Wl,-z,now -Wl,--gc-sections \
		-Wl,--as-needed $(STRIP_$(PROFILE)) $(LDFLAGS) -lgcc_s $(STATIC_LIBS)
	mv -f $@.tmp $@

$(LINKS): $(OUT)/$(SHARED)
	ln -sf $(SHARED) $@

# Fails, saying what to do, where `make` has not built $(1).
define built
	@test -f $(1) || { echo "make: $(1) is missing: run 'make' (with the same PROFILE, CARGO_TARGET_DIR and TARGET) before 'make install'" >&2; exit 1; }
endef

# The header, and restartable.pc with the real prefix (libdir and
# includedir relative to it where they lie below it). Written straight
# into the destination: installing writes nothing into the build tree.
# (install(1) replaces a file rather than writing into it, so programs
# running from an installed library keep their copy.)
define install_headers
	install -d "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(PKGCONFIGDIR)"
	install -m 644 include/$(NAME).h "$(DESTDIR)$(INCLUDEDIR)/$(NAME).h"
	sed -e 's|@PREFIX@|$(PREFIX)|' \
		-e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
		-e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' \
		-e 's|@VERSION@|$(VERSION)|' \
		-e 's|@STATIC_LIBS@|$(STATIC_LIBS)|' \
		restartable.pc.in >"$(DESTDIR)$(PKGCONFIGDIR)/$(NAME).pc"
	chmod 644 "$(DESTDIR)$(PKGCONFIGDIR)/$(NAME).pc"
endef

define install_shared
	install -d "$(DESTDIR)$(LIBDIR)"
	install -m 755 $(OUT)/$(SHARED) "$(DESTDIR)$(LIBDIR)/$(SHARED)"
	ln -sf $(SHARED) "$(DESTDIR)$(LIBDIR)/$(SONAME)"
	ln -sf $(SHARED) "$(DESTDIR)$(LIBDIR)/lib$(NAME).so"
endef

define install_static
	install -d "$(DESTDIR)$(LIBDIR)"
	install -m 644 $(STATIC) "$(DESTDIR)$(LIBDIR)/lib$(NAME).a"
endef

install: check-profile
	$(call built,$(OUT)/$(SHARED))
	$(call built,$(STATIC))
	$(install_headers)
	$(install_shared)
	$(install_static)

install-shared: check-profile
	$(call built,$(OUT)/$(SHARED))
	$(install_headers)
	$(install_shared)

install-static: check-profile
	$(call built,$(STATIC))
	$(install_headers)
	$(install_static)

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/$(SHARED)" "$(DESTDIR)$(LIBDIR)/$(SONAME)" \
		"$(DESTDIR)$(LIBDIR)/lib$(NAME).so" "$(DESTDIR)$(LIBDIR)/lib$(NAME).a" \
		"$(DESTDIR)$(INCLUDEDIR)/$(NAME).h" "$(DESTDIR)$(PKGCONFIGDIR)/$(NAME).pc"

clean: check-profile
	rm -f $(STATIC) $(OUT)/$(SHARED) $(OUT)/$(SHARED).tmp $(LINKS)

FORCE:

.PHONY: all check-profile install install-shared install-static uninstall clean FORCE
