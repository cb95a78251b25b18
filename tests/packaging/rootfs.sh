#!/bin/bash
# A clean Debian trixie root for the install test, as a tarball:
#   tests/packaging/rootfs.sh arm64|amd64
# mmdebstrap's minbase variant plus systemd (what every Raspberry Pi OS / Debian system has;
# benchcam's package needs systemd-sysusers and systemd-tmpfiles), with trixie and
# trixie-backports as apt sources and apt's package lists left in place, so that
# `apt-get install ./benchcam_*.deb` resolves libcamera0.7 from backports without an update.
# Nothing of benchcam's (libcamera, its dependencies) is preinstalled: apt must pull them.
# Prints the tarball's path; built once (arm64 under qemu-user through binfmt_misc) and cached
# under ${BENCHCAM_PACKAGING_CACHE:-$HOME/.cache/benchcam-packaging}/trixie-<arch>-<hash>.tar,
# keyed by the package list, so changing the list builds a new one.
set -euo pipefail
arch=${1:?usage: $0 arm64|amd64}
cache=${BENCHCAM_PACKAGING_CACHE:-$HOME/.cache/benchcam-packaging}
mirror=${BENCHCAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# No ca-certificates: the mirror is plain http (apt checks the signatures), and its postinst
# (update-ca-certificates under qemu-user) was most of the uncached arm64 build time.
packages="systemd"
key=$(printf '%s\n%s\n' "$packages" "minbase trixie trixie-backports $arch lists-kept" | sha256sum | cut -c1-12)
tar=$cache/trixie-$arch-$key.tar
if [ ! -s "$tar" ]; then
    mkdir -p "$cache"
    echo "packaging: building clean trixie $arch root $tar (one time; arm64 runs under qemu-user)" >&2
    # Keep apt's lists (mmdebstrap's default cleanup removes them): the test installs offline
    # from them except for the .debs themselves.
    nice -n 10 mmdebstrap --variant=minbase --architectures="$arch" --include="$packages" \
        --skip=cleanup/apt/lists --format=tar \
        trixie "$tar.part" "deb $mirror trixie main" "deb $mirror trixie-backports main" >&2
    mv "$tar.part" "$tar"
    # Keep only the newest two of this architecture.
    ls -1t "$cache"/trixie-"$arch"-*.tar 2>/dev/null | tail -n +3 | xargs -r rm -f
fi
echo "$tar"
