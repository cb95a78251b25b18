#!/bin/bash
#   tests/libcamera/rootfs.sh run     amd64: libcamera 0.7.1 + dev files from trixie-backports
#                                     (the `virtual` pipeline handler is built in), clang and
#                                     libclang for libcamera-rs' bindgen, nasm for openh264
#   tests/libcamera/rootfs.sh arm64   amd64 with arm64 foreign: libcamera-dev:arm64, the
#                                     aarch64 cross compilers, rustc-web + libstd-rust-web-dev:arm64
# (two roots: libcamera-dev is not co-installable for two architectures.)
# Prints the path of the root filesystem. Built once with mmdebstrap and cached under
#   ${BENCHCAM_LIBCAMERA_CACHE:-$HOME/.cache/benchcam-libcamera}/<flavour>-<hash>
# keyed by the package list, so changing the list builds a new one.
set -euo pipefail
flavour=${1:-run}
cache=${BENCHCAM_LIBCAMERA_CACHE:-$HOME/.cache/benchcam-libcamera}
mirror=${BENCHCAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
case $flavour in
run)
    archs=amd64
    packages="pkg-config,clang,libclang-dev,ca-certificates,nasm,procps,\
libcamera-dev/trixie-backports,libcamera-tools/trixie-backports,libcamera-v4l2/trixie-backports" ;;
arm64)
    archs=amd64,arm64
    packages="pkg-config,clang,libclang-dev,ca-certificates,\
gcc-aarch64-linux-gnu,g++-aarch64-linux-gnu,rustc-web,libstd-rust-web-dev:arm64,\
libcamera-dev:arm64/trixie-backports" ;;
*) echo "usage: $0 run|arm64" >&2; exit 2 ;;
esac
key=$(printf '%s\n%s\n' "$packages" "trixie trixie-backports $archs" | sha256sum | cut -c1-12)
root=$cache/$flavour-$key
if [ ! -e "$root/.complete" ]; then
    mkdir -p "$cache"
    rm -rf "$root.tmp"
    echo "libcamera: building trixie rootfs $root (one time, about a minute)" >&2
    mmdebstrap --variant=buildd --architectures=$archs --include="$packages" \
        trixie "$root.tmp" "deb $mirror trixie main" "deb $mirror trixie-backports main" >&2
    touch "$root.tmp/.complete"
    rm -rf "$root"
    mv "$root.tmp" "$root"
fi
echo "$root"
