#!/usr/bin/env bash
# METRICS latency over SCTP with and without full SOCKS handshake load.
# Runs inside UML (scripts/uml-run.sh benches/mgmt/run.sh): these machines'
# kernels have no SCTP. Prints every line, the medians and their ratio;
# judges nothing.
#
# Queries go 5 ms apart, as a monitoring poller sends them. Sent back to
# back, the Python client is itself CPU-bound, and in the guest's one CPU
# what is measured is then mostly its own wait behind the load generator's
# threads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=$top/target/release/socks5d
loadgen=$top/target/release/examples/loadgen
rounds=${ROUNDS:-1000}
pace=${PACE_MS:-5}
log=$(mktemp)
"$bin" -l 127.0.0.1 -p 19280 -P 19281 -u u:p --admin root:rootpw --access-log off 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "SOCKS5 listening" "$log" && break; sleep 0.05; done
grep -q "management (SCTP) listening" "$log" || { cat "$log"; exit 1; }

# Three rounds of each, alternating, so that one unlucky minute of the
# guest's scheduler does not make the figure; the medians are judged.
runs=${RUNS:-3}
idle_p99=() busy_p99=()
p99() { sed -n 's/.*p99_us=\([0-9.]*\).*/\1/p' <<<"$1"; }
for r in $(seq "$runs"); do
    idle=$(python3 "$here/metrics_latency.py" 19281 "$rounds" root rootpw "$pace")
    echo "unloaded: $idle"
    "$loadgen" handshake --proxy 127.0.0.1:19280 --auth u:p --threads 8 --secs 60 >/dev/null 2>&1 &
    gen=$!
    sleep 1   # let the load ramp up; what is measured is the loaded steady state
    busy=$(python3 "$here/metrics_latency.py" 19281 "$rounds" root rootpw "$pace")
    kill $gen 2>/dev/null; wait $gen 2>/dev/null || true
    echo "loaded:   $busy"
    idle_p99+=("$(p99 "$idle")") busy_p99+=("$(p99 "$busy")")
done

# Control: the same queries while 8 CPU-bound processes and no SOCKS
# traffic share the guest's one CPU. What this costs is the guest
# scheduler's (HZ=100), not socks5d's.
hogs=()
for _ in 1 2 3 4 5 6 7 8; do
    (while :; do :; done) &
    hogs+=($!)
done
ctl=$(python3 "$here/metrics_latency.py" 19281 "$rounds" root rootpw "$pace")
kill "${hogs[@]}" 2>/dev/null; wait "${hogs[@]}" 2>/dev/null || true
echo "control (8 CPU-bound processes, no SOCKS load): $ctl"

python3 - "${idle_p99[*]}" "${busy_p99[*]}" <<'PY'
import statistics, sys
a = statistics.median(map(float, sys.argv[1].split()))
b = statistics.median(map(float, sys.argv[2].split()))
print("median p99: unloaded %.1f us, loaded %.1f us; loaded / unloaded = %.2f (goal: loaded under 1000 us)" % (a, b, b / a))
PY
