# socks5d — see README.md.
#   make run    build and run socks5d on 127.0.0.1:1080 with a generated user
#   make test   install what the tests need, run every test, print a summary
#   make lint   cargo fmt --check and clippy with warnings as errors

SHELL      := /bin/bash
CARGO      ?= cargo
PORT       ?= 1080
SOCKS_USER ?= demo
TEST_LOG   := target/test.log

# What the tests run, as command-or-path:debian-package. SCTP tests run in
# User-Mode Linux (scripts/uml-run.sh): these machines' kernels lack SCTP.
TEST_DEPS  := curl:curl gcc:gcc xxd:xxd linux.uml:user-mode-linux modprobe:kmod \
              ip:iproute2 checksctp:lksctp-tools /usr/include/netinet/sctp.h:libsctp-dev \
              ncat:ncat socat:socat

.PHONY: all build run test lint clean cargo deps c-tests

all: build

cargo:
	@scripts/need-cargo.sh

build: cargo
	$(CARGO) build --release --bins

run: build
	@pass=$${SOCKS_PASS:-$$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 16)}; \
	echo "socks5d on 127.0.0.1:$(PORT), user '$(SOCKS_USER)', password '$$pass'"; \
	echo "  and administrator 'admin' with the same password (management: SCTP port 8080)"; \
	echo "try: curl --socks5-hostname 127.0.0.1:$(PORT) -U '$(SOCKS_USER):$$pass' http://example.com/"; \
	echo " and: SOCKS5DCTL_PASSWORD='$$pass' ./target/release/socks5dctl -U admin metrics"; \
	exec ./target/release/socks5d -l 127.0.0.1 -p $(PORT) -u "$(SOCKS_USER):$$pass" --admin "admin:$$pass"

deps:
	@scripts/ensure-packages.sh $(TEST_DEPS)

# Every test: unit, integration (curl, the binary), the SCTP suite (which
# boots UML by itself) and the C tests over libsctp (run inside UML).
test: cargo deps
	@mkdir -p target
	@set -o pipefail; status=0; \
	$(CARGO) test --all-targets 2>&1 | tee $(TEST_LOG) || status=1; \
	$(MAKE) --no-print-directory c-tests 2>&1 | tee -a $(TEST_LOG) || status=1; \
	scripts/test-summary.sh $(TEST_LOG) && exit $$status

# The C tests: built on the host, run inside UML against a debug socks5d.
c-tests: cargo deps
	$(CARGO) build --bins
	$(MAKE) --no-print-directory -C c-tests
	scripts/uml-run.sh c-tests/run.sh

lint: cargo
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf c-tests/build
