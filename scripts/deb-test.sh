#!/usr/bin/env bash
# deb-test.sh: the Debian package as a user gets it. Installs
# target/debian/socks5d_*.deb with dpkg, checks what it put where, runs the
# packaged /usr/sbin/socks5d with the packaged config (loopback only, its
# users file), relays a curl through it to a local HTTP server, then purges
# the package and checks it is gone. Ends with "deb: N passed, N failed".
# Needs root, dpkg, curl and socat; traffic stays on loopback.
set -uo pipefail
cd "$(dirname "$0")/.."
deb=$(ls -t target/debian/socks5d_*.deb 2>/dev/null | head -n 1)
passed=0 failed=0
step() { # step NAME COMMAND...
    local name=$1; shift
    if "$@"; then echo "PASS deb: $name"; passed=$((passed + 1))
    else echo "FAIL deb: $name"; failed=$((failed + 1)); fi
}
finish() { echo "deb: $passed passed, $failed failed"; [[ $failed -eq 0 ]]; exit $?; }

[[ -n $deb ]] || { echo "FAIL deb: no package in target/debian (run make deb)"; failed=1; finish; }
[[ $(id -u) -eq 0 ]] || { echo "FAIL deb: dpkg -i needs root"; failed=1; finish; }

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    dpkg --purge socks5d >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

step "dpkg -i $(basename "$deb")" dpkg -i "$deb"
step "files in place" test -x /usr/sbin/socks5d -a -x /usr/bin/socks5dctl \
    -a -f /usr/share/man/man8/socks5d.8.gz -a -f /etc/socks5d/socks5d.conf \
    -a -f /lib/systemd/system/socks5d.service
step "docs and examples in place" test \
    -f /usr/share/doc/socks5d/fleet.md -a -f /usr/share/doc/socks5d/rules.md \
    -a -f /usr/share/doc/socks5d/management-protocol.md \
    -a -f /usr/share/doc/socks5d/examples/haproxy.cfg \
    -a -f /usr/share/doc/socks5d/examples/prometheus-fleet.rules.yml
step "system user socks5d" getent passwd socks5d
step "state folder 0700" test "$(stat -c %a:%U /var/lib/socks5d)" = 700:socks5d

# A local HTTP server, then the packaged socks5d on an ephemeral port.
http_port=$((20000 + RANDOM % 20000))
printf 'HTTP/1.0 200 OK\r\nContent-Length: 14\r\n\r\nfrom the deb\r\n' >"$work/response"
socat TCP-LISTEN:$http_port,bind=127.0.0.1,reuseaddr,fork SYSTEM:"cat $work/response" &
pids+=($!)
# First set-up as the README says: users added with the packaged tool, no
# password on any command line; the management socket in our own folder
# (systemd makes /run/socks5d for the service).
printf 'admin-pw-D7\n' | /usr/sbin/socks5d user add root --admin \
    --users-file /var/lib/socks5d/users --password-stdin >/dev/null 2>&1
printf 'alice-pw-D7\n' | /usr/sbin/socks5d user add alice \
    --users-file /var/lib/socks5d/users --password-stdin >/dev/null 2>&1
step "socks5d user add, twice" test "$(/usr/sbin/socks5d user list \
    --config /etc/socks5d/socks5d.conf 2>/dev/null | wc -l)" = 2
step "the users file is the service user's" \
    test "$(stat -c %U:%a /var/lib/socks5d/users)" = socks5d:600
# start_packaged LOG [OPTION]...: the packaged socks5d on an ephemeral
# port; sets port (empty if it did not listen within 30 s).
start_packaged() {
    local log=$1
    shift
    /usr/sbin/socks5d --config /etc/socks5d/socks5d.conf -p 0 -P 0 "$@" \
        >"$work/access.log" 2>"$log" &
    pids+=($!)
    port=
    for _ in $(seq 300); do
        port=$(sed -n 's/.*socks5 listening: addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n 1)
        [[ -n $port ]] && break
        sleep 0.1
    done
}
fetch() {
    env -u ALL_PROXY -u all_proxy -u HTTP_PROXY -u http_proxy -u NO_PROXY -u no_proxy \
        curl -s --max-time 10 --socks5 127.0.0.1:"$port" -U alice:alice-pw-D7 \
        "http://127.0.0.1:$http_port/" 2>&1
}
# The packaged defaults: the safe default rules deny a loopback target.
start_packaged "$work/stderr.default" --mgmt-unix "$work/mgmt0.sock"
step "packaged socks5d listens on loopback" test -n "$port"
fetch >/dev/null
# The line is written when the refused connection closes: wait for it.
for _ in $(seq 100); do
    grep -q 'reply=02 rule=default:loopback' "$work/access.log" && break
    sleep 0.1
done
step "the default rules refuse a loopback target (X'02', logged)" \
    grep -q 'reply=02 rule=default:loopback' "$work/access.log"
kill "${pids[-1]}" 2>/dev/null; wait "${pids[-1]}" 2>/dev/null
# With a rules file that allows it, the same request goes through.
printf 'allow to 127.0.0.1 port %s\n' "$http_port" >"$work/allow.rules"
start_packaged "$work/stderr" --rules "$work/allow.rules" --mgmt-unix "$work/mgmt.sock"
got=$(fetch)
step "curl through the packaged socks5d" test "$got" = $'from the deb\r'
metrics=$(SOCKS5DCTL_PASSWORD=admin-pw-D7 /usr/bin/socks5dctl --unix "$work/mgmt.sock" \
    -U root historic 2>&1)
step "packaged socks5dctl over the Unix socket" test "$metrics" = "historic connections: 1"
kill "${pids[-1]}" 2>/dev/null; wait "${pids[-1]}" 2>/dev/null

step "dpkg --purge" dpkg --purge socks5d
step "nothing left" test ! -e /usr/sbin/socks5d -a ! -e /etc/socks5d/socks5d.conf -a ! -e /var/lib/socks5d
finish
