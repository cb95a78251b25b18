#!/bin/bash
# Runs a command inside the cached trixie chroot that has libcamera 0.7.1 (trixie-backports),
# with the host's rustup toolchain, cargo registry and CA bundle bind-mounted, and the
# repository mounted at its host path (with the cache dirs its target/ links point to).
#   tests/libcamera/chroot.sh ROOTFS COMMAND...
# Mounts are made in a private mount namespace (unshare -m), so they vanish with the command.
set -euo pipefail
root=$1; shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
exec unshare -m --propagation private bash -euo pipefail -c '
root=$1 repo=$2; shift 2
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/tmp"
mkdir -p "$root$repo" "$root/root/.cargo" "$root/root/.rustup"
mount --bind "$repo" "$root$repo"
# target/ dirs that tests/run.sh links to a cache outside the repository: their targets too.
for link in "$repo"/target/*; do
    [ -L "$link" ] || continue
    real=$(readlink -f "$link")
    [ -d "$real" ] || continue
    mkdir -p "$root$real"
    mount --bind "$real" "$root$real"
done
mount --bind "$HOME/.cargo" "$root/root/.cargo"
mount --bind "$HOME/.rustup" "$root/root/.rustup"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
cp /etc/ssl/certs/ca-certificates.crt "$root/tmp/host-ca.crt"
mkdir -p "$root/tmp/extra"
for extra in ${BENCHCAM_CHROOT_BIND:-}; do mkdir -p "$root$extra"; mount --bind "$extra" "$root$extra"; done
exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/root/.cargo/bin:/usr/local/bin:/usr/bin:/bin \
    CARGO_HTTP_CAINFO=/tmp/host-ca.crt SSL_CERT_FILE=/tmp/host-ca.crt TERM=dumb \
    LIBCAMERA_LOG_LEVELS="${LIBCAMERA_LOG_LEVELS:-*:WARN}" RUST_LOG="${RUST_LOG:-}" \
    "$@"
' bash "$root" "$repo" "$@"
