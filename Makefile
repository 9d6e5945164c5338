# ngx_mail_plus_module: build, demo and tests.
#
#   make deps    install every Debian package the build, demo and tests need
#   make         build the dynamic module against Debian's nginx-dev
#   make demo    set up everything and run the demo
#   make test    set up everything, build and run the test suite
#   make asan    build with AddressSanitizer/UBSan into build-asan/
#   make install-webmail  copy the web mail page (webmail/) to
#                $(DESTDIR)$(WEBMAIL_DIR) (docs/webmail.md)
#   make check-asan  run the test suite against the sanitizer build
#   make check-valgrind  run the test suite with nginx under valgrind's
#                memcheck (the normal build/; slow: 30-60 minutes)
#   make deb     build the Debian package libnginx-mod-mail-plus (debian/,
#                dh_nginx) from a copy of the tree in $(DEB_DIR)/src; the
#                .deb lands in $(DEB_DIR) (docs/debian.md)

NGX_SRC ?= /usr/share/nginx/src
BUILD   ?= build
EXTRA_CFLAGS ?=
EXTRA_LDFLAGS ?=
DESTDIR ?=
WEBMAIL_DIR ?= /usr/share/nginx-mail-plus/webmail
WEBMAIL_FILES := index.html webmail.css webmail.js

SRCS := $(wildcard ngx_mail_plus_module/*/*.c ngx_mail_plus_module/*/*.h) config
MODULE := $(BUILD)/ngx_mail_plus_module.so

DEB_PACKAGES := gcc make perl nginx-core nginx-dev libnginx-mod-mail \
	libpcre2-dev libssl-dev zlib1g-dev libcrypt-dev \
	dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd \
	dovecot-submissiond libauthen-sasl-perl \
	libmail-imapclient-perl libwww-perl libio-socket-ssl-perl \
	libnet-ssleay-perl swaks curl openssl util-linux \
	postfix python3 procps iproute2 strace valgrind \
	libpq-dev postgresql slapd ldap-utils libldap-dev \
	dovecot-pgsql dovecot-ldap libjansson-dev chromium fonts-dejavu-core \
	prometheus debhelper dpkg-dev lintian

.PHONY: all deps node-deps demo test asan check-asan check-valgrind clean \
	install-webmail deb

all: $(MODULE)

$(BUILD)/Makefile: config
	mkdir -p $(BUILD)
	. $(NGX_SRC)/conf_flags && cd $(NGX_SRC) && ./configure \
	    "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt="$$(dpkg-buildflags --get CFLAGS) -fPIC $(EXTRA_CFLAGS)" \
	    --with-ld-opt="$$(dpkg-buildflags --get LDFLAGS) -fPIC $(EXTRA_LDFLAGS)" \
	    --builddir=$(CURDIR)/$(BUILD) \
	    --add-dynamic-module=$(CURDIR) > $(CURDIR)/$(BUILD)/configure.log \
	    || { cat $(CURDIR)/$(BUILD)/configure.log; exit 1; }

$(MODULE): $(BUILD)/Makefile $(SRCS)
	$(MAKE) -f $(CURDIR)/$(BUILD)/Makefile -C $(NGX_SRC) modules

# SHELL must be bash for the conf_flags array.
SHELL := /bin/bash

deps:
	@if ! dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1; then \
	    apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	        --no-install-recommends $(DEB_PACKAGES); \
	fi

# the tests' node packages (t/node/package-lock.json): a JMAP client
# library and the driver of Debian's Chromium; node and npm from Debian
# where the machine has none

node-deps:
	@if ! command -v npm >/dev/null 2>&1; then \
	    apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	        --no-install-recommends nodejs npm; \
	fi
	cd t/node && npm ci --no-audit --no-fund --loglevel=error

demo: deps all
	perl demo/run.pl

test: deps node-deps all
	prove -I t/lib t/

asan:
	$(MAKE) BUILD=build-asan \
	    EXTRA_CFLAGS="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined" \
	    EXTRA_LDFLAGS="-fsanitize=address,undefined"

check-asan: deps asan
	MAIL_PLUS_MODULE=$(CURDIR)/build-asan/ngx_mail_plus_module.so \
	MAIL_PLUS_PRELOAD="$$(gcc -print-file-name=libasan.so)" \
	    prove -I t/lib t/

# every nginx of the suite under memcheck (t/lib/MailPlus/Test.pm): a test
# fails on any memory error or definite leak in its valgrind.PID.log;
# t/valgrind.supp holds the few reports of Debian's nginx and libraries.

check-valgrind: deps all
	MAIL_PLUS_VALGRIND=1 MAIL_PLUS_PRELOAD= \
	MAIL_PLUS_MODULE=$(CURDIR)/build/ngx_mail_plus_module.so \
	    prove -I t/lib t/

clean:
	rm -rf build build-asan build-fuzz

# the web mail page: static files, readable by nginx's workers

install-webmail:
	install -d -m 0755 $(DESTDIR)$(WEBMAIL_DIR)
	install -m 0644 $(addprefix webmail/,$(WEBMAIL_FILES)) \
	    $(DESTDIR)$(WEBMAIL_DIR)/

# the Debian package: built by dpkg-buildpackage from a copy of what it is
# made of (the tree itself is never written), so that the .deb, .changes
# and .buildinfo land in $(DEB_DIR); the copy's build is left in
# $(DEB_DIR)/src.  The queue command tools/nginx-mailq is part of it.

DEB_DIR ?= $(BUILD)/deb
DEB_SRC := config ngx_mail_plus_module debian docs tools webmail Makefile \
	README.md

deb:
	@test -f tools/nginx-mailq || { echo "make deb: tools/nginx-mailq" \
	    "(the queue command, part of the package) is missing" >&2; exit 1; }
	rm -rf $(DEB_DIR)/src
	mkdir -p $(DEB_DIR)/src
	cp -a $(DEB_SRC) $(DEB_DIR)/src/
	cd $(DEB_DIR)/src && dpkg-buildpackage -b --no-sign --jobs-try=auto
	@echo "package: $$(ls $(DEB_DIR)/libnginx-mod-mail-plus_$$(dpkg-parsechangelog -l debian/changelog -S Version)_*.deb)"

# libFuzzer targets (clang, libclang-rt-14-dev): every fuzz/NAME_fuzz.c is
# a target; the module sources it links are named on its " * sources:"
# line (as paths under ngx_mail_plus_module/), and fuzz/ngx_fuzz_shim.c stands in for the nginx core functions
# they call.  "make fuzz" runs each target for FUZZ_TIME seconds (or
# FUZZ_RUNS executions) on its corpus, seeded from fuzz/corpus/NAME/;
# FUZZ_TARGETS="a b" picks some.  Crashes, leaks and timeouts fail the run.

FUZZ_TIME ?= 600
FUZZ_RUNS ?= 0
FUZZ_CC ?= clang
FUZZ_TARGETS ?= $(patsubst fuzz/%_fuzz.c,%,$(wildcard fuzz/*_fuzz.c))
FUZZ_INCS := -I $(NGX_SRC)/src/core -I $(NGX_SRC)/src/event \
	-I $(NGX_SRC)/src/event/modules -I $(NGX_SRC)/src/os/unix \
	-I $(NGX_SRC)/src/mail -I $(NGX_SRC)/src/http \
	-I $(NGX_SRC)/src/http/modules -I $(BUILD) \
	$(patsubst %,-I %,$(wildcard ngx_mail_plus_module/*/)) -I fuzz

.PHONY: fuzz fuzz-build

fuzz-build: $(BUILD)/Makefile
	@command -v $(FUZZ_CC) >/dev/null \
	    && [ -n "$$(find /usr/lib/llvm-14 -name 'libclang_rt.fuzzer*' \
	            2>/dev/null)" ] || { apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	        --no-install-recommends clang libclang-rt-14-dev; }
	mkdir -p build-fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	    srcs=$$(sed -n 's/^ \* sources: //p' fuzz/$${t}_fuzz.c); \
	    echo "fuzz target $$t: $$srcs"; \
	    $(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined \
	        -fno-sanitize-recover=undefined $(FUZZ_INCS) \
	        -o build-fuzz/$$t fuzz/$${t}_fuzz.c fuzz/ngx_fuzz_shim.c \
	        $$(for f in $$srcs; do echo ngx_mail_plus_module/$$f; done) \
	        -lcrypt -lcrypto -ljansson; \
	done

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p build-fuzz/corpus/$$t; \
	    cp -rn fuzz/corpus/$$t/. build-fuzz/corpus/$$t/ 2>/dev/null || true; \
	    echo "fuzzing $$t"; \
	    build-fuzz/$$t -max_total_time=$(FUZZ_TIME) -runs=$(if \
	        $(filter 0,$(FUZZ_RUNS)),-1,$(FUZZ_RUNS)) -max_len=4096 \
	        -timeout=10 -print_final_stats=1 \
	        -artifact_prefix=build-fuzz/$$t- build-fuzz/corpus/$$t \
	        2>build-fuzz/$$t.log || { tail -40 build-fuzz/$$t.log; exit 1; }; \
	    grep -E '^stat::number_of_executed_units|^Done' build-fuzz/$$t.log; \
	done
