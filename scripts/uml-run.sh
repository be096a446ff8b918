#!/usr/bin/env bash
# uml-run.sh [-t SECONDS] [-m MEM] [-k PARAM]... COMMAND [ARG]...
#
# Runs COMMAND inside a User-Mode Linux kernel that has SCTP, with the host's
# whole file system as its root (so host-built binaries run unchanged), in the
# current directory and with the current environment, and exits with
# COMMAND's exit status. Recipe and measured facts: docs/sctp.md.
# -m is the guest's memory (768M), -t the limit on the whole run (1200 s),
# -k adds a parameter to the guest kernel's command line (thash_entries=N).
#
# The host's /tmp is hidden inside (a fresh tmpfs is mounted there); use
# /var/tmp or the work tree for files both sides must see. A work tree that
# is itself under /tmp (a clone in /tmp) stays visible at the same path.
set -euo pipefail

timeout_s=1200
mem=768M
kparams=()
usage="usage: $0 [-t SECONDS] [-m MEM] [-k PARAM]... COMMAND [ARG]..."
while getopts "t:m:k:" o; do
    case $o in
        t) timeout_s=$OPTARG ;;
        m) mem=$OPTARG ;;
        k) kparams+=("$OPTARG") ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -gt 0 ]] || { echo "$usage" >&2; exit 2; }

uml=$(command -v linux.uml || true)
if [[ -z $uml ]]; then
    echo "uml-run: linux.uml not found: install user-mode-linux (apt-get install user-mode-linux kmod)" >&2
    exit 1
fi
kver=$(ls /usr/lib/uml/modules 2>/dev/null | head -n 1)
if [[ -z $kver ]]; then
    echo "uml-run: no modules under /usr/lib/uml/modules: reinstall user-mode-linux" >&2
    exit 1
fi
command -v modprobe >/dev/null || { echo "uml-run: modprobe not found: apt-get install kmod" >&2; exit 1; }

# UML 6.1 cannot save the FPU state of hosts with AVX-512 or AMX by itself:
# a small ptrace() wrapper does it (see scripts/uml/xstate-shim.c).
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
shim_dir=${UML_SHIM_DIR:-/var/tmp/socks5d-uml-shim}
shim=$shim_dir/xstate-shim-$(sha1sum "$here/uml/xstate-shim.c" | cut -c1-12).so
if [[ ! -f $shim ]]; then
    command -v gcc >/dev/null || { echo "uml-run: gcc not found: apt-get install gcc" >&2; exit 1; }
    mkdir -p "$shim_dir"
    gcc -O2 -shared -fPIC -o "$shim.tmp" "$here/uml/xstate-shim.c" -ldl
    mv "$shim.tmp" "$shim"
fi

work=$(mktemp -d /var/tmp/socks5d-uml.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/modroot/lib"
ln -s /usr/lib/uml/modules "$work/modroot/lib/modules"

# The command and its environment, quoted for the guest shell.
{
    printf 'cd %q\n' "$PWD"
    export -p | grep -v -E '^declare -x (BASH_|SHLVL|OLDPWD|_=)' || true
    printf 'exec'
    printf ' %q' "$@"
    printf '\n'
} > "$work/cmd"

cat > "$work/init" <<INIT
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
stty -F /dev/console -onlcr 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys
case "$top/" in
/tmp/*)
    mkdir -p "$work/tree"
    mount --bind "$top" "$work/tree"
    mount -t tmpfs tmpfs /tmp
    mkdir -p "$top"
    mount --bind "$work/tree" "$top"
    ;;
*)
    mount -t tmpfs tmpfs /tmp
    ;;
esac
mount -t tmpfs tmpfs /dev/shm 2>/dev/null
mount -t devpts devpts /dev/pts 2>/dev/null
ip link set lo up
if ! modprobe -d "$work/modroot" -a sctp hmac veth sch_netem; then
    echo "uml-run: cannot load the kernel modules sctp, hmac, veth and sch_netem" >&2
    echo 125 > "$work/status"
    halt -f
fi
ulimit -n 20000 2>/dev/null
/bin/bash "$work/cmd" </dev/null
echo \$? > "$work/status"
sync
halt -f >/dev/null 2>&1 || poweroff -f >/dev/null 2>&1 || echo o > /proc/sysrq-trigger
INIT
chmod +x "$work/init"

set +e
LD_PRELOAD=$shim timeout --kill-after=10 "$timeout_s" "$uml" mem="$mem" root=/dev/root rootfstype=hostfs \
    rootflags=/ rw init="$work/init" con=null con0=null,fd:1 quiet loglevel=0 \
    ${kparams[@]+"${kparams[@]}"} </dev/null
uml_status=$?
set -e
if [[ ! -s $work/status ]]; then
    if [[ $uml_status -eq 124 || $uml_status -eq 137 ]]; then
        echo "uml-run: timed out after ${timeout_s}s" >&2
    else
        echo "uml-run: the UML kernel ended without a status (exit $uml_status)" >&2
    fi
    exit 1
fi
exit "$(cat "$work/status")"
