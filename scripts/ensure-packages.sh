#!/usr/bin/env bash
# ensure-packages.sh CMD:PACKAGE ...
# Makes sure each command exists; installs the Debian package that provides
# it when it is missing and we are root, else says exactly what to install.
set -euo pipefail

missing_pkgs=()
for spec in "$@"; do
    cmd=${spec%%:*}
    pkg=${spec#*:}
    if [[ $cmd == /* ]]; then
        [[ -e $cmd ]] && continue
    elif command -v "$cmd" >/dev/null 2>&1; then
        continue
    fi
    missing_pkgs+=("$pkg")
done
[[ ${#missing_pkgs[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing with apt-get: ${missing_pkgs[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # The tests start the programs they need themselves: no package may start
    # a service of its own (prometheus's would listen on every address).
    # policy-rc.d's 101 ("action forbidden") is what invoke-rc.d and
    # deb-systemd-invoke ask; one already in place is left alone.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq </dev/null >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" </dev/null >/dev/null
    exit 0
fi
echo "missing packages: ${missing_pkgs[*]}" >&2
echo "install them with: sudo apt-get install ${missing_pkgs[*]}" >&2
exit 1
