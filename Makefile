# socks5d — see README.md.
#   make run    build and run socks5d on 127.0.0.1:1080 with a generated user,
#               managed over target/socks5d.sock (and SCTP where the kernel has it)
#   make test   install what the tests need, run every test, print a summary
#   make lint   cargo fmt --check and clippy with warnings as errors

SHELL      := /bin/bash
CARGO      ?= cargo
PORT       ?= 1080
SOCKS_USER ?= demo
TEST_LOG   := target/test.log

# What the tests run, as command-or-path:debian-package. SCTP tests run in
# User-Mode Linux (scripts/uml-run.sh): these machines' kernels lack SCTP.
# python3 runs the independent client of tests/mgmt_unix_client.py.
# UDP ASSOCIATE and BIND with third-party clients (tests/udp_bind_clients.rs):
# PySocks and pyftpdlib under Debian's /usr/bin/python3, Dante's socksify
# around drill and curl. PyYAML reads contrib/prometheus.yml (tests/monitoring.rs).
# The metrics endpoint (tests/prometheus.rs): Debian's prometheus package, for
# promtool and a real server scraping socks5d.
# Several instances (tests/fleet.rs, tests/users_redis.rs): HAProxy in front
# with the PROXY protocol, users shared through a Redis server on loopback.
TEST_DEPS  := curl:curl gcc:gcc xxd:xxd linux.uml:user-mode-linux modprobe:kmod \
              ip:iproute2 checksctp:lksctp-tools /usr/include/netinet/sctp.h:libsctp-dev \
              ncat:ncat socat:socat mandoc:mandoc systemd-analyze:systemd python3:python3 \
              /usr/bin/python3:python3 /usr/lib/python3/dist-packages/socks.py:python3-socks \
              /usr/lib/python3/dist-packages/pyftpdlib:python3-pyftpdlib \
              socksify:dante-client drill:ldnsutils \
              /usr/lib/python3/dist-packages/yaml:python3-yaml \
              promtool:prometheus prometheus:prometheus \
              haproxy:haproxy redis-server:redis-server redis-cli:redis-tools

.PHONY: all build build-small run test lint clean cargo deps c-tests install

all: build

cargo:
	@scripts/need-cargo.sh

build: cargo
	$(CARGO) build --release --bins

# For small hosts: size-optimised, whole-program LTO, stripped, a panic
# aborts (Cargo.toml, [profile.small]); the binaries go to target/small/.
build-small: cargo
	$(CARGO) build --profile small --bins
	@ls -l target/small/socks5d target/small/socks5dctl

# make install [PREFIX=/usr/local] [DESTDIR=]: binaries, man pages, the
# systemd unit (ExecStart follows PREFIX), and /etc/socks5d/socks5d.conf
# unless one is there already.
PREFIX  ?= /usr/local
DESTDIR ?=
install: build
	install -D -m 0755 target/release/socks5d $(DESTDIR)$(PREFIX)/sbin/socks5d
	install -D -m 0755 target/release/socks5dctl $(DESTDIR)$(PREFIX)/bin/socks5dctl
	install -D -m 0644 man/socks5d.8 $(DESTDIR)$(PREFIX)/share/man/man8/socks5d.8
	install -D -m 0644 man/socks5dctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/socks5dctl.8
	install -d $(DESTDIR)/etc/socks5d
	[ -e $(DESTDIR)/etc/socks5d/socks5d.conf ] || \
	    install -m 0644 contrib/socks5d.conf $(DESTDIR)/etc/socks5d/socks5d.conf
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's#/usr/sbin/socks5d#$(PREFIX)/sbin/socks5d#' contrib/socks5d.service \
	    > $(DESTDIR)$(PREFIX)/lib/systemd/system/socks5d.service

# make deb: the Debian package (target/debian/socks5d_*.deb) built with
# cargo-deb, which is installed from crates.io when missing. The package
# holds the binaries, the man pages, /etc/socks5d/socks5d.conf and the unit;
# its maintainer scripts create the system user socks5d.
.PHONY: deb deb-test
deb: cargo
	@$(CARGO) deb --version >/dev/null 2>&1 || $(CARGO) install cargo-deb --locked
	$(CARGO) deb --strip

# Installs the package on this machine, relays a curl through the packaged
# socks5d, and removes it again (as root).
deb-test: deb deps
	scripts/deb-test.sh

# The management socket of `make run`: a Unix one works on every kernel,
# SCTP only where the kernel has it (loaded, or loadable).
MGMT_SOCK  ?= target/socks5d.sock

run: build
	@pass=$${SOCKS_PASS:-$$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 16)}; \
	echo "socks5d on 127.0.0.1:$(PORT), user '$(SOCKS_USER)', password '$$pass'"; \
	echo "  and administrator 'admin' with the same password (management: $(MGMT_SOCK))"; \
	echo "try: curl --socks5-hostname 127.0.0.1:$(PORT) -U '$(SOCKS_USER):$$pass' http://example.com/"; \
	echo " and: SOCKS5DCTL_PASSWORD='$$pass' ./target/release/socks5dctl --unix $(MGMT_SOCK) -U admin metrics"; \
	if [ -d /proc/net/sctp ] || modprobe -n -q sctp 2>/dev/null; then \
	    echo " or over SCTP: SOCKS5DCTL_PASSWORD='$$pass' ./target/release/socks5dctl -U admin metrics"; \
	else \
	    echo " (this kernel has no SCTP: management is served on $(MGMT_SOCK) only)"; \
	fi; \
	SOCKS5D_USER="$(SOCKS_USER):$$pass" SOCKS5D_ADMIN="admin:$$pass" \
	exec ./target/release/socks5d -l 127.0.0.1 -p $(PORT) \
	    --user-env SOCKS5D_USER --admin-env SOCKS5D_ADMIN --mgmt-unix $(MGMT_SOCK)

deps:
	@scripts/ensure-packages.sh $(TEST_DEPS)

# Every test: unit, integration (curl, the binary), the SCTP suite (which
# boots UML by itself), the C tests over libsctp (run inside UML), a smoke
# run of every benchmark scenario against socks5d and one of the scale
# benchmark in UML (2,000 tunnels; no timing judged).
# --no-fail-fast: every target runs, so every one is counted.
# scripts/test-summary.sh adds it all up, and fails naming any part that
# ended without its closing line (a crashed target, a UML that did not boot).
test: cargo deps
	@mkdir -p target
	@set -o pipefail; status=0; \
	$(CARGO) test --all-targets --no-fail-fast 2>&1 | tee $(TEST_LOG) || status=1; \
	$(MAKE) --no-print-directory c-tests 2>&1 | tee -a $(TEST_LOG) || status=1; \
	$(MAKE) --no-print-directory bench-smoke 2>&1 | tee -a $(TEST_LOG) || status=1; \
	$(MAKE) --no-print-directory bench-scale-smoke 2>&1 | tee -a $(TEST_LOG) || status=1; \
	$(MAKE) --no-print-directory deb-test 2>&1 | tee -a $(TEST_LOG) || status=1; \
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

# Benchmarks (benches/loadgen/): socks5d against a direct connection,
# microsocks and Dante, all on loopback; the report goes to bench-results/.
#   make bench         the full comparison (under 15 minutes)
#   make bench-quick   every scenario, briefly (under 2 minutes)
# BENCH_PEERS picks the peers; BENCH_FLAGS adds options of `loadgen compare`
# (e.g. BENCH_FLAGS='--rounds 5', or '--cases udp' for the UDP cases alone;
# see target/release/examples/loadgen --help).
# socks5d-proxyproto is socks5d behind a balancer (--proxy-protocol-from
# 127.0.0.1/32, a PROXY v2 header before each handshake), in the handshake
# case only:
#   make bench BENCH_PEERS=socks5d,socks5d-proxyproto BENCH_FLAGS='--cases handshake'
# socks5d-redis is socks5d with its users in Redis (--users-redis, a
# redis-server of the run's own on loopback, the user added with `socks5d
# user add`), in the handshake case only: a log in must cost what it costs
# with -u, the table being in memory:
#   make bench BENCH_PEERS=socks5d,socks5d-redis BENCH_FLAGS='--cases handshake'
# socks5d-rules1000 is socks5d judging every request against 1,000 access
# rules, in the handshake case only (about 4 s a round: the full run keeps
# its rounds within the budget); the cost of judging alone:
#   make bench BENCH_PEERS=socks5d,socks5d-rules1000 BENCH_FLAGS='--cases handshake'
# The rate cases (socks5d only: a user's rate limit, and its cost to a user
# without one) alone: make bench BENCH_PEERS=socks5d BENCH_FLAGS='--cases rate'
BENCH_PEERS ?= direct,socks5d,socks5d-rules1000,socks5d-proxyproto,socks5d-redis,microsocks,dante,dante-noauth
BENCH_FLAGS ?=
LOADGEN     := target/release/examples/loadgen

.PHONY: bench bench-quick bench-smoke bench-build bench-peers

bench-build: cargo
	$(CARGO) build --release --bins --example loadgen

# microsocks, Dante and redis-server (for socks5d-redis) come from apt when
# wanted and missing (as root); without them the comparison runs with what
# there is and says what it left out (--strict, as bench-smoke, fails).
bench-peers:
	@want=; \
	[[ ,$(BENCH_PEERS), == *,microsocks,* ]] && want+=" microsocks:microsocks"; \
	[[ ,$(BENCH_PEERS), == *,dante* ]] && want+=" /usr/sbin/danted:dante-server"; \
	[[ ,$(BENCH_PEERS), == *,socks5d-redis,* ]] && want+=" redis-server:redis-server"; \
	[[ -z $$want ]] || scripts/ensure-packages.sh $$want || echo "bench: going on without them"

bench: bench-build bench-peers
	$(LOADGEN) compare --mode full --peers $(BENCH_PEERS) $(BENCH_FLAGS)

bench-quick: bench-build bench-peers
	$(LOADGEN) compare --mode quick --peers $(BENCH_PEERS) $(BENCH_FLAGS)

# The smoke test run by `make test`: every scenario against socks5d alone
# must report its number, the rate cases' included, and so must the
# handshake behind a balancer and with the users in Redis (no timing is
# judged).
bench-smoke:
	@$(MAKE) --no-print-directory bench-quick BENCH_PEERS=socks5d,socks5d-proxyproto,socks5d-redis \
	    BENCH_FLAGS='--strict --out bench-results/smoke'

# ----------------------------------------------------------------- fuzzing
# One cargo-fuzz target per parser: fuzz/fuzz_targets/, checks in fuzz/checks.rs.
#   make fuzz          run every target for FUZZ_SECONDS (default 60) seconds
#   make fuzz-corpus   run every file of fuzz/corpus/<target>/ through its target once
# (`cargo test --test fuzz_corpus` runs the same corpus on stable, without cargo-fuzz.)
#
# Only stable Rust is installed here, and cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address, -Cllvm-args=-sanitizer-coverage-*): RUSTC_BOOTSTRAP=1 lets
# stable accept them. AddressSanitizer links and runs with it, so the default
# sanitizer stays. `make fuzz` writes new inputs to fuzz/target/corpus/<target>
# (seeded from fuzz/corpus/<target>, ignored by git) and crashes to
# fuzz/artifacts/<target>/. Keep every crash as fuzz/corpus/<target>/<what-it-is>
# so that it stays a regression test. Fold new inputs into fuzz/corpus/ only
# through a merge, keeping each target under 200 files: copy fuzz/corpus/<t> to
# a scratch DIR, run fuzz/target/<triple>/release/<t> -set_cover_merge=1 DIR
# fuzz/target/corpus/<t>, and copy DIR back.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := socks5_greeting socks5_auth socks5_request socks5_handshake \
                socks5_udp proxy_header mgmt_login mgmt_request mgmt_response \
                mgmt_session rules_parse
FUZZ         := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz

.PHONY: fuzz fuzz-corpus fuzz-tool

fuzz-tool: cargo
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

fuzz: fuzz-tool
	@for t in $(FUZZ_TARGETS); do \
	    echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	    mkdir -p fuzz/target/corpus/$$t; \
	    $(FUZZ) run $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
	        -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

# Files, not a directory: libFuzzer then runs each input once and exits.
fuzz-corpus: fuzz-tool
	@for t in $(FUZZ_TARGETS); do \
	    echo "== corpus $$t: $$(ls fuzz/corpus/$$t | wc -l) files"; \
	    $(FUZZ) run $$t fuzz/corpus/$$t/* 2>&1 | grep -v -e '^Executed ' -e '^\*\*\*'; \
	    [ $${PIPESTATUS[0]} -eq 0 ] || exit 1; \
	done

# Soak (not part of `make test`): mixed traffic against a release socks5d for
# SOAK_MINUTES minutes (default 30); RSS and open descriptors sampled every
# 10 s into bench-results/soak-*.csv and an SVG plot beside it. Fails if
# either grows after warm-up (scripts/soak.sh, examples/soak/).
SOAK_MINUTES ?= 30

.PHONY: soak

soak: cargo
	SOAK_MINUTES=$(SOAK_MINUTES) CARGO=$(CARGO) scripts/soak.sh

# 100,000 concurrent tunnels through socks5d, inside User-Mode Linux (the
# host allows 20,000 open files a process; the guest's limits are raised):
# opened in steps of 10,000, 25,000, 50,000 and 100,000, each to an echo
# target; at each step socks5d's memory per tunnel, new clients' handshake
# rate and p50/p99, the 64-byte echo of a few active tunnels and the time
# to open it; then every tunnel closed and the memory read again. Report
# and chart in bench-results/scale/ (benches/loadgen/scale/; about 10
# minutes on a busy two-CPU machine, the build included). SCALE_FLAGS adds options of `loadgen
# scale` (e.g. SCALE_FLAGS='--steps 10000,50000 --mem 3G').
# bench-scale-smoke, run by `make test`: the same with 500, 1,000 and
# 2,000 tunnels, which must all open, relay and close; no figure judged.
SCALE_FLAGS ?=

.PHONY: bench-scale bench-scale-smoke
bench-scale: bench-build deps
	$(LOADGEN) scale --out bench-results/scale $(SCALE_FLAGS)

bench-scale-smoke: bench-build deps
	@$(LOADGEN) scale --steps 500,1000,2000 --mem 1G --uml-timeout 600 --hs-rounds 1 \
	    --hs-secs 0.5 --echo-rounds 200 --sample 200 --out bench-results/scale-smoke

# METRICS latency over SCTP, unloaded and under full handshake load, inside
# UML (no SCTP in these kernels): benches/mgmt/run.sh prints both and the ratio.
.PHONY: bench-mgmt
bench-mgmt: bench-build deps
	scripts/uml-run.sh benches/mgmt/run.sh
