#!/usr/bin/env bash
# METRICS latency over SCTP with and without full SOCKS handshake load.
# Runs inside UML (scripts/uml-run.sh benches/mgmt/run.sh): these machines'
# kernels have no SCTP. Prints both lines and their ratio; judges nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=$top/target/release/socks5d
loadgen=$top/target/release/examples/loadgen
rounds=${ROUNDS:-3000}
log=$(mktemp)
"$bin" -l 127.0.0.1 -p 19280 -P 19281 -u u:p --admin root:rootpw --access-log off 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "SOCKS5 listening" "$log" && break; sleep 0.05; done
grep -q "management (SCTP) listening" "$log" || { cat "$log"; exit 1; }

idle=$(python3 "$here/metrics_latency.py" 19281 "$rounds" root rootpw)
echo "unloaded: $idle"
"$loadgen" handshake --proxy 127.0.0.1:19280 --auth u:p --threads 8 --secs 30 >/tmp/hs.txt 2>&1 &
gen=$!
sleep 1   # let the load ramp up; what is measured is the loaded steady state
busy=$(python3 "$here/metrics_latency.py" 19281 "$rounds" root rootpw)
kill $gen 2>/dev/null; wait $gen 2>/dev/null || true
echo "loaded:   $busy"
p99() { sed -n 's/.*p99_us=\([0-9.]*\).*/\1/p' <<<"$1"; }
python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('loaded p99 / unloaded p99 = %.2f; loaded p99 = %.1f us (goal: under 1000 us)' % (b/a, b))" "$(p99 "$idle")" "$(p99 "$busy")"
