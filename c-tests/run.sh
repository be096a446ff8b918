#!/usr/bin/env bash
# run.sh - runs the management protocol C tests and ncat.sh against socks5d.
#
# Must run in a kernel with SCTP: `scripts/uml-run.sh c-tests/run.sh` from
# the top of the tree (or `make -C c-tests check`). Where checksctp says SCTP
# is unsupported it fails; it never skips.
#
# Every scenario gets a fresh server (management port chosen by the kernel,
# read back from the server's readiness line), so no scenario depends on
# another's state. The server is $SOCKS5D, by default ../target/debug/socks5d
# next to this script (cargo build --bins). The scenario programs are built
# with make first (a no-op when build/ is up to date).
#
# Prints every scenario's PASS/FAIL lines, then one line per scenario with its
# counts, and ends with "c-tests: N passed, N failed" for the whole suite; exits
# non-zero if any step failed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
server=${SOCKS5D:-$here/../target/debug/socks5d}
scenarios=(test_login_ok test_login_bad test_metrics test_users test_malformed)
start_ns=$(date +%s%N)

total_passed=0
total_failed=0
summary_re='^([0-9]+) passed, ([0-9]+) failed$'

fail() { echo "FAIL: $*"; total_failed=$((total_failed + 1)); }
finish() {
    local ms=$((($(date +%s%N) - start_ns) / 1000000))
    echo "c-tests: ran in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s"
    echo "c-tests: $total_passed passed, $total_failed failed"
    [[ $total_failed -eq 0 && $total_passed -gt 0 ]]
    exit
}
die() { fail "$* (run.sh stops here)"; finish; }

# --- preconditions: fail loudly, never skip --------------------------------
command -v checksctp >/dev/null || die "checksctp not found: apt-get install lksctp-tools"
if ! out=$(checksctp 2>&1); then
    die "checksctp: ${out:-no output}: this kernel has no SCTP; run scripts/uml-run.sh c-tests/run.sh"
fi
[[ -x $server ]] || die "no server at $server: run cargo build --bins (or set SOCKS5D)"
make -s -C "$here" >/dev/null || die "make -C $here failed"

work=$(mktemp -d "${TMPDIR:-/tmp}/c-tests.XXXXXX") || die "mktemp"
server_pid=
stop_server() {
    local i
    [[ -n $server_pid ]] || return 0
    kill -TERM "$server_pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "run.sh: socks5d (pid $server_pid) ignored SIGTERM for 5 s: killing it" >&2
        kill -KILL "$server_pid" 2>/dev/null
    fi
    wait "$server_pid" 2>/dev/null
    server_pid=
}
trap 'stop_server; rm -rf "$work"' EXIT

# start_server NAME: starts socks5d, sets server_pid and port; bounded wait
# (10 s) for the line "management listening: transport=sctp addrs=... port=N".
start_server() {
    local log=$work/$1.server.log i
    port=
    "$server" -l 127.0.0.1 -p 0 -P 0 --admin root:rootpw -u bob:bobpw \
        --access-log off >/dev/null 2>"$log" &
    server_pid=$!
    for ((i = 0; i < 200; i++)); do
        port=$(sed -n 's/.*management listening: transport=sctp .* port=\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
        [[ -n $port ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        fail "$1: socks5d did not report 'management listening: transport=sctp' within 10 s; its log:"
    else
        fail "$1: socks5d exited before reporting 'management listening: transport=sctp'; its log:"
    fi
    sed 's/^/      /' "$log"
    stop_server
    return 1
}

# run_one NAME COMMAND...: fresh server, run the scenario with its port,
# add up its counts.
run_one() {
    local name=$1 out=$work/$1.out status p f
    shift
    echo "== $name"
    start_server "$name" || return
    timeout 120 "$@" "$port" 2>&1 | tee "$out" | grep --line-buffered -v -E "$summary_re"
    status=${PIPESTATUS[0]}
    if [[ $(tail -n 1 "$out") =~ $summary_re ]]; then
        p=${BASH_REMATCH[1]}
        f=${BASH_REMATCH[2]}
    else
        p=0
        f=0
        fail "$name: ended without its 'N passed, N failed' line (exit status $status)"
    fi
    total_passed=$((total_passed + p))
    total_failed=$((total_failed + f))
    if [[ $status -ne 0 && $f -eq 0 ]]; then
        fail "$name: exit status $status although no step failed"
    fi
    # Not a step of its own: a server that died fails the scenario.
    if ! kill -0 "$server_pid" 2>/dev/null; then
        fail "$name: socks5d died during the scenario; its log:"
        sed 's/^/      /' "$work/$name.server.log"
    fi
    stop_server
    echo "== $name: $p passed, $f failed"
}

for t in "${scenarios[@]}"; do
    run_one "$t" "$here/build/$t"
done
run_one ncat.sh "$here/ncat.sh"
finish
