#!/bin/bash
# cargo check --features libcamera for aarch64 against Debian trixie-backports'
# libcamera-dev:arm64 0.7.1, in the cached amd64+arm64 trixie root (rootfs.sh arm64), with
# Debian's rustc-web (1.96) and libstd-rust-web-dev:arm64; the host's cargo is bind-mounted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=$("$here/rootfs.sh" arm64)
exec "$here/chroot.sh" "$root" bash -c "cd '$repo' && \
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR=target/libcamera-aarch64 \
    PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
    BINDGEN_EXTRA_CLANG_ARGS='--target=aarch64-linux-gnu' \
    cargo check --features libcamera --target aarch64-unknown-linux-gnu && \
    echo \"aarch64: libcamera \$(PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig pkg-config --modversion libcamera), \$(/usr/bin/rustc --version)\""
