#!/usr/bin/env bash
# ncat.sh [PORT] - a third-party SCTP client speaks the management protocol.
#
# Inside a kernel with SCTP (scripts/uml-run.sh), `ncat --sctp` logs in as
# root and asks HISTORIC_CONNECTIONS, sending the raw bytes of docs/management-protocol.md
# with printf, and the reply bytes (xxd -p) are compared with the expected
# ones. The server (port from $1 or SOCKS5D_MGMT_PORT) must have root:rootpw
# as an administrator and must not have accepted any SOCKS connection yet
# (run.sh starts a fresh one), so that the counter is 0.
#
# ncat sends each read of its stdin as one SCTP message and may merge writes
# that come close together, and SCTP has no half-close (docs/sctp.md). So
# stdin is a FIFO kept open by this script: it writes the log-in, waits until
# the reply has arrived, writes the request, waits for its reply, and only
# then closes stdin, which makes ncat shut the association down.
#
# Prints a PASS or FAIL line per step and "N passed, N failed" last; exits
# non-zero if any step failed.
set -uo pipefail
trap '' PIPE  # a write to a FIFO whose ncat died must fail, not kill us

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
finish() {
    echo "$passed passed, $failed failed"
    [[ $failed -eq 0 && $passed -gt 0 ]]
    exit
}
die() { fail "$* (ncat.sh stops here)"; finish; }

port=${1:-${SOCKS5D_MGMT_PORT:-}}
[[ $port =~ ^[0-9]+$ ]] || die "no management port: give it as \$1 or in SOCKS5D_MGMT_PORT"
command -v ncat >/dev/null || die "ncat not found: apt-get install ncat"
command -v xxd >/dev/null || die "xxd not found: apt-get install xxd"
if ! out=$(checksctp 2>&1); then
    die "checksctp: ${out:-no output}: this kernel has no SCTP; run it under scripts/uml-run.sh"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/ncat-sh.XXXXXX") || die "mktemp"
ncat_pid=
cleanup() {
    exec 3>&- 2>/dev/null
    [[ -n $ncat_pid ]] && kill "$ncat_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
mkfifo "$dir/in" || die "mkfifo"
: >"$dir/out"

# Bounded wait until the output file has at least $1 bytes (5 s).
wait_bytes() {
    local i
    for ((i = 0; i < 100; i++)); do
        (($(stat -c %s "$dir/out") >= $1)) && return 0
        kill -0 "$ncat_pid" 2>/dev/null || break
        sleep 0.05
    done
    (($(stat -c %s "$dir/out") >= $1))
}
received() { xxd -p "$dir/out" | tr -d '\n'; }

timeout 30 ncat --sctp 127.0.0.1 "$port" <"$dir/in" >"$dir/out" 2>"$dir/err" &
ncat_pid=$!
exec 3>"$dir/in"   # opens once ncat has opened the other end

# VER 01, ULEN 04 "root", PLEN 06 "rootpw"
printf '\x01\x04root\x06rootpw' 2>/dev/null >&3 || die "write the log-in to ncat: $(cat "$dir/err")"
wait_bytes 2
got=$(received)
if [[ $got == 0100 ]]; then
    pass "ncat --sctp: log in as root: reply 0100"
else
    fail "ncat --sctp: log in as root: expected 0100, received '${got}' $(cat "$dir/err")"
fi

# VER 01, CMD 01 (HISTORIC_CONNECTIONS)
printf '\x01\x01' 2>/dev/null >&3 || die "write HISTORIC_CONNECTIONS to ncat: $(cat "$dir/err")"
wait_bytes 13  # 2 + 11
want=010001$(printf '%016x' 0)
got=$(received)
got=${got:4}
if [[ $got == "$want" ]]; then
    pass "ncat --sctp: HISTORIC_CONNECTIONS: reply $want"
else
    fail "ncat --sctp: HISTORIC_CONNECTIONS: expected $want, received '${got}'"
fi

# Close stdin: ncat shuts the association down and exits.
exec 3>&-
status=
for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$ncat_pid" 2>/dev/null; then
        wait "$ncat_pid"
        status=$?
        break
    fi
    sleep 0.05
done
ncat_pid_was=$ncat_pid
ncat_pid=
if [[ $status == 0 ]]; then
    pass "ncat exits 0 once its stdin is closed"
else
    kill "$ncat_pid_was" 2>/dev/null
    fail "ncat exits 0 once its stdin is closed (status '${status:-still running}'; $(cat "$dir/err"))"
fi
got=$(received)
if [[ ${#got} -eq 26 ]]; then
    pass "no other bytes arrived (13 in all)"
else
    fail "no other bytes arrived: received $((${#got} / 2)) bytes: $got"
fi
finish
