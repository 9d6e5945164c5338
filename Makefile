# ngx_mail_plus_module: build, demo and tests.
#
#   make deps    install every Debian package the build, demo and tests need
#   make         build the dynamic module against Debian's nginx-dev
#   make demo    set up everything and run the demo
#   make test    set up everything, build and run the test suite
#   make asan    build with AddressSanitizer/UBSan into build-asan/
#   make check-asan  run the test suite against the sanitizer build

NGX_SRC ?= /usr/share/nginx/src
BUILD   ?= build
EXTRA_CFLAGS ?=
EXTRA_LDFLAGS ?=

SRCS := $(wildcard ngx_mail_plus_module/*.c ngx_mail_plus_module/*.h) config
MODULE := $(BUILD)/ngx_mail_plus_module.so

DEB_PACKAGES := gcc make perl nginx-core nginx-dev libnginx-mod-mail \
	libpcre2-dev libssl-dev zlib1g-dev libcrypt-dev \
	dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd \
	libmail-imapclient-perl libwww-perl swaks curl openssl \
	postfix python3 procps iproute2

.PHONY: all deps demo test asan check-asan clean

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

demo: deps all
	perl demo/run.pl

test: deps all
	prove -I t/lib t/

asan:
	$(MAKE) BUILD=build-asan \
	    EXTRA_CFLAGS="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined" \
	    EXTRA_LDFLAGS="-fsanitize=address,undefined"

check-asan: deps asan
	MAIL_PLUS_MODULE=$(CURDIR)/build-asan/ngx_mail_plus_module.so \
	MAIL_PLUS_PRELOAD="$$(gcc -print-file-name=libasan.so)" \
	    prove -I t/lib t/

clean:
	rm -rf build build-asan

# libFuzzer target for the SMTP parser (clang, libclang-rt-14-dev); runs
# FUZZ_TIME seconds with the corpus in build-fuzz/corpus.

FUZZ_TIME ?= 600
FUZZ_CC ?= clang
FUZZ_INCS := -I $(NGX_SRC)/src/core -I $(NGX_SRC)/src/event \
	-I $(NGX_SRC)/src/event/modules -I $(NGX_SRC)/src/os/unix \
	-I $(NGX_SRC)/src/mail -I $(BUILD) -I ngx_mail_plus_module

.PHONY: fuzz fuzz-build

fuzz-build: $(BUILD)/Makefile
	@command -v $(FUZZ_CC) >/dev/null || { apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	        --no-install-recommends clang libclang-rt-14-dev; }
	mkdir -p build-fuzz/corpus
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined $(FUZZ_INCS) \
	    -o build-fuzz/smtp_parse_fuzz fuzz/smtp_parse_fuzz.c \
	    ngx_mail_plus_module/ngx_mail_plus_smtp_parse.c

fuzz: fuzz-build
	cp -n fuzz/corpus/* build-fuzz/corpus/ 2>/dev/null || true
	build-fuzz/smtp_parse_fuzz -max_total_time=$(FUZZ_TIME) \
	    -max_len=4096 build-fuzz/corpus
