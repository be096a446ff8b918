# socks5d — see README.md.
#   make run    build and run socks5d on 127.0.0.1:1080 with a generated user
#   make test   install what the tests need, run every test, print a summary
#   make lint   cargo fmt --check and clippy with warnings as errors

SHELL      := /bin/bash
CARGO      ?= cargo
PORT       ?= 1080
SOCKS_USER ?= demo
TEST_LOG   := target/test.log

# Commands the tests run, as command:debian-package.
TEST_DEPS  := curl:curl

.PHONY: all build run test lint clean cargo deps

all: build

cargo:
	@scripts/need-cargo.sh

build: cargo
	$(CARGO) build --release --bins

run: build
	@pass=$${SOCKS_PASS:-$$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 16)}; \
	echo "socks5d on 127.0.0.1:$(PORT), user '$(SOCKS_USER)', password '$$pass'"; \
	echo "try: curl --socks5-hostname 127.0.0.1:$(PORT) -U '$(SOCKS_USER):$$pass' http://example.com/"; \
	exec ./target/release/socks5d -l 127.0.0.1 -p $(PORT) -u "$(SOCKS_USER):$$pass"

deps:
	@scripts/ensure-packages.sh $(TEST_DEPS)

test: cargo deps
	@mkdir -p target
	@set -o pipefail; $(CARGO) test --all-targets 2>&1 | tee $(TEST_LOG); \
	status=$$?; scripts/test-summary.sh $(TEST_LOG) && exit $$status

lint: cargo
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
