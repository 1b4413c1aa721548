#!/usr/bin/env bash
# Install what `cargo xtask test --aarch64` needs (see shared/design/AARCH64.md): Debian's
# Rust with an aarch64 standard library, the aarch64 cross linker and qemu-user.
# Run as root; idempotent: does nothing when every package is already installed.
set -euo pipefail

PKGS=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu qemu-user)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-aarch64: all packages present"
    exit 0
fi

echo "install-aarch64: installing ${missing[*]}"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${PKGS[@]}"
