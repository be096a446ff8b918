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
for _ in $(seq 100); do grep -q "socks5 listening: " "$log" && break; sleep 0.05; done
grep -q "management listening: transport=sctp " "$log" || { cat "$log"; exit 1; }

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

# Controls: the same queries while 8 processes and no SOCKS traffic share
# the guest's one CPU: CPU-bound ones, then ones that live in system calls
# (dd, a socketpair ping-pong). What these cost is the guest kernel's
# (PREEMPT_NONE, HZ=100: a task inside a system call is not preempted),
# not socks5d's.
control() {
    local name=$1 hogs=() out
    shift
    for _ in 1 2 3 4 5 6 7 8; do
        "$@" &
        hogs+=($!)
    done
    out=$(python3 "$here/metrics_latency.py" 19281 "$rounds" root rootpw "$pace")
    kill "${hogs[@]}" 2>/dev/null; wait "${hogs[@]}" 2>/dev/null || true
    echo "control ($name, no SOCKS load): $out"
}
control "8 CPU-bound processes" sh -c 'while :; do :; done'
control "8 dd processes" dd if=/dev/zero of=/dev/null bs=64k status=none
control "8 socketpair ping-pong processes" python3 -c '
import socket
a, b = socket.socketpair()
while True:
    a.send(b"x")
    b.recv(1)'

python3 - "${idle_p99[*]}" "${busy_p99[*]}" <<'PY'
import statistics, sys
a = statistics.median(map(float, sys.argv[1].split()))
b = statistics.median(map(float, sys.argv[2].split()))
print("median p99: unloaded %.1f us, loaded %.1f us; loaded / unloaded = %.2f (goal: loaded under 1000 us)" % (a, b, b / a))
PY
