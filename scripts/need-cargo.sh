#!/usr/bin/env bash
# Fails with instructions when no Rust toolchain new enough is on PATH.
set -euo pipefail
[[ -f $HOME/.cargo/env ]] && . "$HOME/.cargo/env"
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: socks5d needs Rust 1.88 or newer (edition 2024)." >&2
    echo "Install it with rustup: https://rustup.rs (Debian's own 'cargo' package is too old)." >&2
    exit 1
fi
