#!/usr/bin/env bash
# Builds the flashable benchcam image for Raspberry Pi (arm64) from Debian trixie packages.
#
#   bash image-build/build.sh [--binary PATH] [--out DIR] [--cache DIR] [--no-cache]
#                             [--no-xz] [--no-install] [--base-only]
#
#   --binary PATH  the aarch64 benchcam to install; default: cross-built here with the recipe of
#                  DESIGN.md §11 (Debian's rustc-web, target/aarch64-cross)
#   --out DIR      where benchcam.img, benchcam.img.xz and build-report.txt go (default:
#                  target/image)
#   --cache DIR    where the base rootfs tarball is kept, keyed by packages.txt, the apt sources
#                  and the base options below (default: $BENCHCAM_IMAGE_CACHE or
#                  ~/.cache/benchcam-image). Everything else is redone on every build (~1 min).
#   --no-cache     rebuild the base rootfs even when a cached one matches (and replace it)
#   --no-xz        skip the compressed copy (the boot test needs only the .img)
#   --no-install   do not apt-get install missing host tools; fail and name them
#   --base-only    stop after the base rootfs tarball (to warm the cache)
#
# Must run as root (mmdebstrap's chroot mode, file ownership in the filesystems). Nothing is
# mounted: the host kernel here has no loop partition scanning, no VFAT and no device-mapper,
# so every filesystem is made from a directory (mkfs.ext4 -d, mkfs.vfat -C + mcopy) and put
# into the image file with dd at its partition's offset (DESIGN.md §11).
#
# Image layout (MBR, so the Pi 3 boot ROM reads it; partitions are found by label, so the
# same image boots as mmcblk0p* on a Pi and as vda* under qemu):
#   1  BOOT       FAT32, 256 MiB: Pi firmware, config.txt, cmdline.txt, kernel, initrd, DTBs,
#                 benchcam-setup.txt (the first-boot settings file, docs/appliance.md)
#   2  ROOT       ext4: Debian trixie + benchcam, mounted at /
#   3  BENCHDATA  ext4, 256 MiB in the image, grown to fill the card on first boot
#                 (benchcam-grow-data + x-systemd.growfs): /var/lib/benchcam, the data_dir
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

binary="" out="$repo/target/image" cache="${BENCHCAM_IMAGE_CACHE:-$HOME/.cache/benchcam-image}"
use_cache=1 want_xz=1 install=1 base_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$(realpath "$2")"; shift ;;
        --out) out="$2"; shift ;;
        --cache) cache="$2"; shift ;;
        --no-cache) use_cache=0 ;;
        --no-xz) want_xz=0 ;;
        --no-install) install=0 ;;
        --base-only) base_only=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

# ---- what goes into the base rootfs (all of it is part of the cache key) ----------------------
suite=trixie
sources=(
    "deb http://deb.debian.org/debian $suite main non-free-firmware"
    "deb http://deb.debian.org/debian $suite-updates main non-free-firmware"
    "deb http://deb.debian.org/debian-security $suite-security main non-free-firmware"
)
mapfile -t packages < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$here/packages.txt")
base_opts=(
    --mode=root --arch=arm64 --variant=apt --components=main,non-free-firmware
    # No manuals, docs or translations on a box nobody logs into (copyrights stay).
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --aptopt='Acquire::Languages "none"'
)
# Partition sizes, MiB.
boot_mib=256 data_mib=256 first_sector=8192

t_all=$SECONDS
declare -a timing=()
stage_t0=0
stage() { stage_t0=$SECONDS; echo; echo "== build.sh: $*"; }
stage_done() {
    local dt=$((SECONDS - stage_t0))
    timing+=("$(printf '%-28s %5d s' "$1" "$dt")")
    echo "== build.sh: $1 took ${dt} s"
}
die() { echo "build.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap chroot mode, file ownership)"

# ---- host tools ----------------------------------------------------------------------------
stage "host tools"
declare -A tool_pkg=(
    [mmdebstrap]=mmdebstrap [qemu-aarch64-static]=qemu-user-static [update-binfmts]=binfmt-support
    [mkfs.vfat]=dosfstools [mcopy]=mtools [mkfs.ext4]=e2fsprogs [sfdisk]=fdisk [xz]=xz-utils
    [systemd-sysusers]=systemd [readelf]=binutils [aarch64-linux-gnu-strip]=binutils-aarch64-linux-gnu
)
missing=()
for t in "${!tool_pkg[@]}"; do command -v "$t" >/dev/null || missing+=("${tool_pkg[$t]}"); done
[ -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ] ||
    [ -e /etc/apt/trusted.gpg.d/debian-archive-trixie-stable.asc ] || missing+=(debian-archive-keyring)
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    [ "$install" = 1 ] || die "missing host packages: ${missing[*]} (run without --no-install)"
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" ||
        { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
            apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"; }
fi
# mmdebstrap runs arm64 maintainer scripts in a chroot: the kernel must hand aarch64 ELF files
# to qemu, and with the F flag it opens the interpreter now, so it needs no path in the chroot.
binfmt=/proc/sys/fs/binfmt_misc
[ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt" ||
    die "cannot mount binfmt_misc"
[ -e "$binfmt/qemu-aarch64" ] || update-binfmts --enable qemu-aarch64 ||
    die "cannot register qemu-aarch64 with binfmt_misc"
grep -qx enabled "$binfmt/qemu-aarch64" || echo 1 >"$binfmt/qemu-aarch64"
grep -q '^flags:.*F' "$binfmt/qemu-aarch64" ||
    die "qemu-aarch64 is registered without the F (fix-binary) flag: $(grep flags "$binfmt/qemu-aarch64");" \
        "re-register it with update-binfmts (qemu-user-static's registration has it)"
stage_done "host tools"

# ---- the benchcam binary ---------------------------------------------------------------------
stage "benchcam binary"
if [ -z "$binary" ]; then
    cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    [ -d "$cargo_bin" ] && export PATH="$cargo_bin:$PATH"
    [ -x /usr/bin/rustc ] || die "no /usr/bin/rustc: run tests/lib/install-deps.sh --cross, or pass --binary"
    (cd "$repo" && RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR=target/aarch64-cross \
        nice -n 10 cargo build --release --target aarch64-unknown-linux-gnu --bin benchcam)
    binary="$repo/target/aarch64-cross/aarch64-unknown-linux-gnu/release/benchcam"
fi
[ -f "$binary" ] || die "no binary at $binary"
# e_machine (offset 18, little endian) 0xb7 = EM_AARCH64
[ "$(od -An -tx1 -j18 -N2 "$binary" | tr -d ' \n')" = b700 ] ||
    die "$binary is not an aarch64 ELF executable"
echo "binary: $binary ($(stat -c %s "$binary") bytes)"
stage_done "benchcam binary"

# ---- base rootfs (cached) --------------------------------------------------------------------
stage "base rootfs"
key="$(
    printf '%s\n' "$suite" "${sources[@]}" "${packages[@]}" "${base_opts[@]}" | sha256sum | cut -c1-16
)"
mkdir -p "$cache"
base_tar="$cache/rootfs-$suite-arm64-$key.tar"
if [ "$use_cache" = 1 ] && [ -s "$base_tar" ]; then
    echo "cached: $base_tar"
    base_state=cached
else
    echo "building $base_tar with mmdebstrap (${#packages[@]} packages; ~8 min on 2 cores)"
    include="$(IFS=,; echo "${packages[*]}")"
    rm -f "$base_tar.part"
    # nice: CPU is shared with cargo builds; the work happens in qemu-user, one core at a time.
    nice -n 15 mmdebstrap "${base_opts[@]}" --include="$include" \
        "$suite" "$base_tar.part" "${sources[@]}"
    mv "$base_tar.part" "$base_tar"
    # Keep only the newest other base next to this one (a rollback of packages.txt is cheap).
    ls -1t "$cache"/rootfs-*.tar 2>/dev/null | tail -n +3 | xargs -r rm -f
    base_state=built
fi
echo "base rootfs: $(du -h "$base_tar" | cut -f1)"
stage_done "base rootfs ($base_state)"
[ "$base_only" = 0 ] || { printf '%s\n' "${timing[@]}"; exit 0; }
