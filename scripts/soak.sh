#!/usr/bin/env bash
# soak.sh: `make soak`. Mixed traffic (bulk tunnels, short ones, failed log
# ins, abandoned handshakes, idle tunnels) against a release socks5d for
# SOAK_MINUTES minutes (default 30), its RSS and open descriptors sampled
# every SOAK_SAMPLE_SECS (default 10) into bench-results/soak-*.csv and an
# SVG plot beside it. Fails if either grows after warm-up beyond a tolerance,
# or if the descriptors do not come back once the traffic stops.
# The driver is examples/soak/ (cargo example "soak").
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${SOAK_MINUTES:-30}
sample=${SOAK_SAMPLE_SECS:-10}
cargo=${CARGO:-cargo}

"$cargo" build --release --bins --example soak
exec target/release/examples/soak \
    --socks5d target/release/socks5d \
    --minutes "$minutes" \
    --sample-secs "$sample" \
    --out bench-results
