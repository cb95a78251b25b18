#!/usr/bin/env bash
# Builds the VM bench's guest: a Debian trixie amd64 root filesystem with the trixie-backports
# kernel (vivid), v4l2loopback built by DKMS for that kernel, v4l-utils and GStreamer, as an
# ext4 disk image plus the kernel and initrd for qemu's direct boot (tests/vm/run.sh boots it).
#
#   bash tests/vm/build.sh [--cache DIR] [--no-cache] [--no-install] [--check-cache] [--print-dir]
#
#   --cache DIR    where the built guest is kept (default: $BENCHCAM_VM_CACHE or
#                  ~/.cache/benchcam-vm), in rootfs-trixie-amd64-KEY/ with KEY a hash of
#                  tests/vm/packages.txt, this script and tests/vm/rootfs/ (nothing that depends
#                  on where the checkout is). A cached build returns at once.
#   --no-cache     rebuild even when a cached guest matches (and replace it)
#   --no-install   do not apt-get install missing host tools; fail and name them
#   --check-cache  build nothing: exit 0 when the guest for the current key is cached, 1 if not
#   --print-dir    build nothing: print the cache directory for the current key
#
# The cache directory holds root.ext4 (the root disk; run.sh boots a qcow2 overlay of it, so it
# stays clean), vmlinuz, initrd.img and release.txt (kernel and v4l2loopback versions, build
# timings). The benchcam binary is never in it: run.sh brings the host-built one in at run time.
#
# Must run as root (mmdebstrap's root mode, file ownership in the image). Nothing is mounted on
# the host (no loop devices here, DESIGN.md §11): the image is made with mkfs.ext4 -d.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

cache="${BENCHCAM_VM_CACHE:-$HOME/.cache/benchcam-vm}"
use_cache=1 install=1 check_cache=0 print_dir=0
while [ $# -gt 0 ]; do
    case "$1" in
        --cache) cache="$2"; shift ;;
        --no-cache) use_cache=0 ;;
        --no-install) install=0 ;;
        --check-cache) check_cache=1 ;;
        --print-dir) print_dir=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

suite=trixie
sources=(
    "deb http://deb.debian.org/debian $suite main"
    "deb http://deb.debian.org/debian $suite-updates main"
    "deb http://deb.debian.org/debian-security $suite-security main"
    "deb http://deb.debian.org/debian $suite-backports main"
)
mapfile -t packages < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$here/packages.txt")
# shellcheck disable=SC2054  # the commas are mmdebstrap's
mm_opts=(
    --mode=root --arch=amd64 --variant=apt --components=main
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --aptopt='Acquire::Languages "none"'
    --hook-directory=/usr/share/mmdebstrap/hooks/eatmydata
)

# The key: what goes into the guest; not where the checkout is (CI clones elsewhere).
key="$(
    cd "$here" && {
        printf '%s\n' "$suite" "${sources[@]}" "${mm_opts[@]}"
        cat packages.txt build.sh
        find rootfs -type f | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done
    } | sha256sum | cut -c1-16
)"
dir="$cache/rootfs-$suite-amd64-$key"
if [ "$print_dir" = 1 ]; then echo "$dir"; exit 0; fi
cached() { [ -s "$dir/root.ext4" ] && [ -s "$dir/vmlinuz" ] && [ -s "$dir/initrd.img" ] && [ -s "$dir/release.txt" ]; }
if [ "$check_cache" = 1 ]; then
    if cached; then echo "cached: $dir"; exit 0; fi
    echo "not cached: $dir"; exit 1
fi
if [ "$use_cache" = 1 ] && cached; then
    echo "build.sh: guest cached: $dir ($(sed -n 's/^kernel=//p' "$dir/release.txt"))"
    exit 0
fi

t_all=$SECONDS
declare -a timing=()
stage_t0=0
stage() { stage_t0=$SECONDS; echo; echo "== build.sh: $*"; }
stage_done() {
    local dt=$((SECONDS - stage_t0))
    timing+=("$(printf '%-24s %5d s' "$1" "$dt")")
    echo "== build.sh: $1 took ${dt} s"
}
die() { echo "build.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap root mode, file ownership)"

stage "host tools"
declare -A tool_pkg=([mmdebstrap]=mmdebstrap [mkfs.ext4]=e2fsprogs [eatmydata]=eatmydata)
missing=()
for t in "${!tool_pkg[@]}"; do command -v "$t" >/dev/null || missing+=("${tool_pkg[$t]}"); done
[ -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ] || missing+=(debian-archive-keyring)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$install" = 1 ] || die "missing host packages: ${missing[*]} (run without --no-install)"
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" ||
        { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
            apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"; }
fi
stage_done "host tools"

stage "rootfs (mmdebstrap, ${#packages[@]} packages)"
mkdir -p "$cache"
work="$cache/build-$key.tmp"
rm -rf "$work"
mkdir -p "$work"
R="$work/root"
include="$(IFS=,; echo "${packages[*]}")"
# The initramfs settings go in before the kernel, whose postinst builds the first initrd.
# nice: the two cores are shared with cargo builds.
nice -n 10 mmdebstrap "${mm_opts[@]}" --include="$include" \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"' \
    --essential-hook="upload $here/rootfs/initramfs.conf /etc/initramfs-tools/conf.d/benchcam-vm" \
    --essential-hook="upload $here/rootfs/initramfs.modules /usr/share/initramfs-tools/modules.d/benchcam-vm" \
    --customize-hook="sh $here/rootfs/customize.sh \"\$1\"" \
    "$suite" "$R" "${sources[@]}"
kver="$(sed -n 's/^kernel=//p' "$R/etc/benchcam-vm-release")"
lbver="$(sed -n 's/^v4l2loopback=//p' "$R/etc/benchcam-vm-release")"
[ -n "$kver" ] || die "customize.sh wrote no kernel version"
echo "kernel $kver, v4l2loopback $lbver; tree $(du -sm "$R" | cut -f1) MiB"
stage_done "rootfs"

stage "disk image"
cp "$R/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$R/boot/initrd.img-$kver" "$work/initrd.img"
used_mib="$(du -s -BM "$R" | cut -f1 | tr -dc 0-9)"
# Room for what the scenarios leave there (logs, GStreamer's registry): a quarter more + 256 MiB.
root_mib=$((used_mib + used_mib / 4 + 256))
truncate -s "${root_mib}M" "$work/root.ext4"
mkfs.ext4 -q -F -L VMROOT -b 4096 -m 0 -d "$R" "$work/root.ext4"
rm -rf "$R"
stage_done "disk image"

{
    echo "kernel=$kver"
    echo "v4l2loopback=$lbver"
    echo "built=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "root_mib=$root_mib used_mib=$used_mib initrd_kib=$(($(stat -c %s "$work/initrd.img") / 1024))"
    printf 'timing %s\n' "${timing[@]}"
    echo "timing total $((SECONDS - t_all)) s"
} >"$work/release.txt"
rm -rf "$dir"
mv "$work" "$dir"
# Keep only the newest other guest next to this one.
ls -1dt "$cache"/rootfs-*-amd64-* 2>/dev/null | tail -n +3 | xargs -r rm -rf
echo
echo "build.sh: guest built in $dir"
cat "$dir/release.txt"
