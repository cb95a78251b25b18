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
#   --check-cache  build nothing: exit 0 when the base rootfs for the current packages.txt is
#                  cached (an image build then takes ~20 s), 1 when it is not (~20 min)
#
# Must run as root (mmdebstrap's chroot mode, file ownership in the filesystems). Nothing is
# mounted: the host kernel here has no loop partition scanning, no VFAT and no device-mapper,
# so every filesystem is made from a directory (mkfs.ext4 -d, mkfs.vfat -C + mcopy) and put
# into the image file with dd at its partition's offset (DESIGN.md §11).
#
# Image layout (MBR, so the Pi 3 boot ROM reads it; partitions are found by label, so the
# same image boots as mmcblk0p* on a Pi and as vda* under qemu):
#   1  BOOT       FAT32, 256 MiB: Pi firmware, config.txt, cmdline.txt, kernel, initrd, DTBs,
#                 benchcam-setup.txt (the first-boot settings file, README.md)
#   2  ROOT       ext4: Debian trixie + benchcam, mounted at /
#   3  BENCHDATA  ext4, 256 MiB in the image, grown to fill the card on first boot
#                 (benchcam-grow-data + x-systemd.growfs): /var/lib/benchcam, the data_dir
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

binary="" out="$repo/target/image" cache="${BENCHCAM_IMAGE_CACHE:-$HOME/.cache/benchcam-image}"
use_cache=1 want_xz=1 install=1 base_only=0 check_cache=0
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$(realpath "$2")"; shift ;;
        --out) out="$2"; shift ;;
        --cache) cache="$2"; shift ;;
        --no-cache) use_cache=0 ;;
        --no-xz) want_xz=0 ;;
        --no-install) install=0 ;;
        --base-only) base_only=1 ;;
        --check-cache) check_cache=1 ;;
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
    # The kernel only (overlay/etc/apt/preferences.d/benchcam-kernel): 7.3 has the Pi 5's RP1.
    "deb http://deb.debian.org/debian $suite-backports main non-free-firmware"
)
# Files that go into the base rootfs before its packages (the kernel's initramfs and apt's choice
# of kernel depend on them): uploaded by mmdebstrap hooks, part of the cache key.
base_files=(
    etc/initramfs-tools/conf.d/benchcam
    etc/initramfs-tools/hooks/benchcam
    etc/apt/preferences.d/benchcam-kernel
)
mapfile -t packages < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$here/packages.txt")
# shellcheck disable=SC2054  # the commas are mmdebstrap's (--components=a,b)
base_opts=(
    --mode=root --arch=arm64 --variant=apt --components=main,non-free-firmware
    # No manuals, docs or translations on a box nobody logs into (copyrights stay).
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --aptopt='Acquire::Languages "none"'
    # dpkg without fsync (the tarball is written once at the end): saves minutes under qemu-user
    --hook-directory=/usr/share/mmdebstrap/hooks/eatmydata
    # One initramfs, made at the end: the kernel's postinst and the triggers of the packages
    # after it (udev, kmod, firmware-*) would each make one under qemu-user (~6 min apiece).
    # update-initramfs is diverted to a no-op while the packages go in, then put back and run
    # once for the installed kernel (its post-update hook fills /boot/firmware as before).
    --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --divert /usr/sbin/update-initramfs.benchcam --add /usr/sbin/update-initramfs && printf "#!/bin/sh\nexit 0\n" >"$1/usr/sbin/update-initramfs" && chmod 0755 "$1/usr/sbin/update-initramfs"'
    --customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs && for v in $(ls "$1/lib/modules"); do chroot "$1" update-initramfs -c -k "$v" || exit 1; done'
)
# Partition sizes, MiB.
boot_mib=256 data_mib=256 first_sector=8192

# The cache key: everything that goes into the base rootfs, nothing that depends on where the
# checkout is (CI builds from a fresh clone elsewhere and must find the same tarball).
key="$(
    { printf '%s\n' "$suite" "${sources[@]}" "${packages[@]}" "${base_opts[@]}"; (cd "$here/overlay" && cat "${base_files[@]}"); } |
        sha256sum | cut -c1-16
)"
base_tar="$cache/rootfs-$suite-arm64-$key.tar"
if [ "$check_cache" = 1 ]; then
    if [ -s "$base_tar" ]; then echo "cached: $base_tar"; exit 0; fi
    echo "not cached: $base_tar"; exit 1
fi

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
    [mmdebstrap]=mmdebstrap [arch-test]=arch-test [qemu-aarch64-static]=qemu-user-static [update-binfmts]=binfmt-support
    [mkfs.vfat]=dosfstools [mcopy]=mtools [mkfs.ext4]=e2fsprogs [sfdisk]=fdisk [xz]=xz-utils
    [systemd-sysusers]=systemd [readelf]=binutils [aarch64-linux-gnu-strip]=binutils-aarch64-linux-gnu
    [zstd]=zstd [cpio]=cpio
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

# ---- base rootfs (cached) --------------------------------------------------------------------
stage "base rootfs"
mkdir -p "$cache"
# One base build at a time per cache (CI's background warm-up and a build by hand): the second
# waits for the first and then finds its tarball.
exec 8>"$cache/rootfs.lock"
flock 8
if [ "$use_cache" = 1 ] && [ -s "$base_tar" ]; then
    echo "cached: $base_tar"
    base_state=cached
else
    echo "building $base_tar with mmdebstrap (${#packages[@]} packages; ~20 min, mostly one core)"
    include="$(IFS=,; echo "${packages[*]}")"
    rm -f "$base_tar.part"
    # nice: CPU is shared with cargo builds; the work happens in qemu-user, one core at a time.
    # BENCHCAM_IMAGE_NICE sets it (tests/run.sh: 0, the run waits for this build at its end).
    # The base files go in before the kernel: apt's pin picks the backports kernel, FSTYPE=ext4
    # makes its initramfs carry e2fsck for the root filesystem (initramfs-tools would probe a
    # root device that the chroot does not have), the hook adds every board's SD/USB/Ethernet
    # drivers. The pin is needed at the first `apt-get install`, so it goes in at setup.
    hooks=(--setup-hook='mkdir -p "$1/etc/apt/preferences.d" "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"')
    for f in "${base_files[@]}"; do hooks+=(--setup-hook="upload $here/overlay/$f /$f"); done
    hooks+=(--setup-hook='chmod 0755 "$1/etc/initramfs-tools/hooks/benchcam"')
    nice -n "${BENCHCAM_IMAGE_NICE:-15}" mmdebstrap "${base_opts[@]}" --format=tar --include="$include" "${hooks[@]}" \
        "$suite" "$base_tar.part" "${sources[@]}"
    mv "$base_tar.part" "$base_tar"
    # Keep only the newest other base next to this one (a rollback of packages.txt is cheap).
    ls -1t "$cache"/rootfs-*.tar 2>/dev/null | tail -n +3 | xargs -r rm -f
    base_state=built
fi
flock -u 8
echo "base rootfs: $(du -h "$base_tar" | cut -f1)"
stage_done "base rootfs ($base_state)"
[ "$base_only" = 0 ] || { printf '%s\n' "${timing[@]}"; exit 0; }

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

# ---- root tree: base + benchcam + appliance settings ------------------------------------------
stage "root tree"
work="$out/work"
rm -rf "$work"
mkdir -p "$work/boot" "$out"
R="$work/root"
mkdir -p "$R"
tar -C "$R" --numeric-owner --xattrs --xattrs-include='*' -xpf "$base_tar"
kver="$(ls -1 "$R/lib/modules" | sort -V | tail -1)"
[ -n "$kver" ] && [ -f "$R/boot/vmlinuz-$kver" ] && [ -f "$R/boot/initrd.img-$kver" ] ||
    die "no kernel/initrd in the base rootfs"
echo "kernel: $kver"

# The service, stripped (the line tables are for backtraces on the build machine).
aarch64-linux-gnu-strip -o "$R/usr/bin/benchcam" "$binary"
chmod 0755 "$R/usr/bin/benchcam"
for lib in $(readelf -d "$R/usr/bin/benchcam" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -e "$R/usr/lib/aarch64-linux-gnu/$lib" ] || [ -e "$R/usr/lib/$lib" ] ||
        die "benchcam needs $lib, which the image lacks (add its package to packages.txt)"
done
install -D -m0644 "$repo/systemd/benchcam.service" "$R/usr/lib/systemd/system/benchcam.service"
install -D -m0644 "$repo/systemd/benchcam-data-return.service" \
    "$R/usr/lib/systemd/system/benchcam-data-return.service"
install -D -m0644 "$repo/systemd/benchcam.service.d/listen-port-80.conf" \
    "$R/usr/lib/systemd/system/benchcam.service.d/listen-port-80.conf"
install -D -m0644 "$repo/systemd/sysusers.d/benchcam.conf" "$R/usr/lib/sysusers.d/benchcam.conf"
install -D -m0644 "$repo/systemd/tmpfiles.d/benchcam.conf" "$R/usr/lib/tmpfiles.d/benchcam.conf"
install -D -m0644 "$repo/systemd/udev/60-benchcam-devices.rules" "$R/usr/lib/udev/rules.d/60-benchcam-devices.rules"
install -D -m0644 "$repo/systemd/modules-load.d/benchcam.conf" "$R/usr/lib/modules-load.d/benchcam.conf"
for doc in README.md config/benchcam.toml; do
    [ -f "$repo/$doc" ] && install -D -m0644 "$repo/$doc" "$R/usr/share/doc/benchcam/${doc##*/}"
done
cp -rT --preserve=mode "$here/overlay" "$R"

# The service user and its groups now, so the data partition's owner is known (sysusers runs
# again at boot and finds them there). Trixie's sysusers (under qemu-user): bookworm's does not
# read trixie's sysusers.d syntax.
chroot "$R" systemd-sysusers
uid="$(awk -F: '$1 == "benchcam" { print $3 }' "$R/etc/passwd")"
gid="$(awk -F: '$1 == "benchcam" { print $3 }' "$R/etc/group")"
[ -n "$uid" ] && [ -n "$gid" ] || die "sysusers did not create benchcam"
echo "benchcam: uid $uid gid $gid, groups: $(grep -E '^(video|gpio):' "$R/etc/group" | tr '\n' ' ')"

# The appliance's config: the documented defaults with the data partition and port 80.
install -d -m0750 -o 0 -g "$gid" "$R/etc/benchcam"
sed -e 's|^data_dir = .*|data_dir = "/var/lib/benchcam"|' \
    -e 's|^data_device = .*|data_device = "LABEL=BENCHDATA"|' \
    -e 's|^listen = .*|listen = "0.0.0.0:80"|' "$repo/config/benchcam.toml" >"$R/etc/benchcam/benchcam.toml"
grep -qx 'data_dir = "/var/lib/benchcam"' "$R/etc/benchcam/benchcam.toml" &&
    grep -qx 'data_device = "LABEL=BENCHDATA"' "$R/etc/benchcam/benchcam.toml" &&
    grep -qx 'listen = "0.0.0.0:80"' "$R/etc/benchcam/benchcam.toml" ||
    die "config/benchcam.toml has no data_dir/data_device/listen line to set"
chown "0:$gid" "$R/etc/benchcam/benchcam.toml"
chmod 0640 "$R/etc/benchcam/benchcam.toml"
qemu-aarch64-static "$R/usr/bin/benchcam" check-config --config "$R/etc/benchcam/benchcam.toml" >/dev/null ||
    die "the image's benchcam.toml does not pass check-config"

# /etc/fstab comes from overlay/etc/fstab.
grep -q '^LABEL=BENCHDATA' "$R/etc/fstab" || die "overlay/etc/fstab did not land"
# /boot/firmware holds what Debian's raspi-firmware hook put there in the chroot (firmware,
# kernel, initrd, DTBs, config.txt); it moves to the FAT partition below, and the directory
# stays as its mount point. The hook runs again on the box at every kernel upgrade, reading
# these settings, so it then writes the same cmdline.txt as this script:
# root by label (SD card or USB), consoles on the screen and the GPIO 14/15 serial port (the
# mini UART, ttyS1 on Pi 3/4/Zero 2 W with the upstream kernel), and no cma= (the Pi 4 device
# tree sizes CMA itself, and the hook's build-time guess cannot know which Pi boots the card).
cat >>"$R/etc/default/raspi-firmware" <<'RASPI'

# benchcam image (image-build/build.sh):
ROOTPART="LABEL=ROOT rootfstype=ext4"
CONSOLES="tty0 ttyS1,115200"
CMA=0
RASPI
mv "$R/boot/firmware" "$work/boot-from-hook"
rm -rf "$R/var/lib/benchcam"
mkdir -p "$R/boot/firmware" "$R/var/lib/benchcam"

echo benchcam >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tbenchcam\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"
# Every box makes its own identity on first boot: machine id (and with it its DHCP client id)
# and ssh host keys (ssh.service.d/benchcam.conf). An empty machine-id makes systemd generate one
# without entering "first boot" mode ("uninitialized" would: systemd-firstboot would then wait
# for answers on the console, and presets would enable every installed unit).
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id" "$R"/etc/ssh/ssh_host_*
# The clock before network time: Pi boards have no RTC; timesyncd starts from its last saved
# time, and from the image's build time on first boot.
mkdir -p "$R/var/lib/systemd/timesync" && touch "$R/var/lib/systemd/timesync/clock"

# Which units run. The preset file states the same policy for systemd's first-boot preset pass.
systemctl --root="$R" --quiet enable benchcam.service benchcam-setup.service \
    benchcam-data-return.service benchcam-grow-data.service benchcam-test-report.service systemd-networkd.service \
    systemd-resolved.service systemd-timesyncd.service avahi-daemon.service
systemctl --root="$R" --quiet disable ssh.service ssh.socket 2>/dev/null || true
systemctl --root="$R" --quiet disable wpa_supplicant.service apt-daily.timer apt-daily-upgrade.timer
# Nothing waits for "online": the service listens on 0.0.0.0 and works without a network.
systemctl --root="$R" --quiet mask systemd-networkd-wait-online.service
# No sshd on AF_UNIX/AF_VSOCK sockets made by systemd's ssh generator: ssh is off unless a key
# is configured, and then it is the normal ssh.service on port 22.
mkdir -p "$R/etc/systemd/system-generators"
ln -sfn /dev/null "$R/etc/systemd/system-generators/systemd-ssh-generator"
mkdir -p "$R/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants"
ln -sfn /usr/lib/systemd/system/wpa_supplicant@.service \
    "$R/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants/wpa_supplicant@wlan0.service"
mkdir -p "$R/etc/systemd/system-preset"
cat >"$R/etc/systemd/system-preset/10-benchcam.preset" <<'PRESET'
enable benchcam.service
enable benchcam-setup.service
enable benchcam-data-return.service
enable benchcam-grow-data.service
enable benchcam-test-report.service
enable systemd-networkd.service
enable systemd-resolved.service
enable systemd-timesyncd.service
enable avahi-daemon.service
disable ssh.service
disable ssh.socket
disable wpa_supplicant.service
disable apt-daily.timer
disable apt-daily-upgrade.timer
PRESET

# Checks with the systemd that will run the unit (trixie's, under qemu-user).
chroot "$R" systemd-analyze verify --man=no /usr/lib/systemd/system/benchcam.service ||
    die "systemd-analyze verify failed on benchcam.service"
chroot "$R" systemd-analyze security --offline=yes --no-pager \
    /usr/lib/systemd/system/benchcam.service >"$out/security.txt" 2>&1 || true
echo "security (unit + image drop-in, offline): $(tail -1 "$out/security.txt")"
echo "root tree: $(du -sm "$R" | cut -f1) MiB"
stage_done "root tree"

# ---- boot partition content ----------------------------------------------------------------
stage "boot files"
# What raspi-firmware's hook installed in the chroot: the Pi's boot firmware, the kernel and
# initrd (by version: the firmware starts them through config.txt's kernel= and initramfs lines),
# the Pi DTBs of the kernel and config.txt (arm_64bit=1, upstream_kernel=1, kernel=, initramfs).
# cmdline.txt is rewritten, as the hook writes it with the settings above (it guessed
# /dev/mmcblk0p2 and cma=64M in the chroot); config.txt gets the per-board device trees of
# overlay/etc/default/raspi-firmware-custom appended the way the hook appends that file (it did
# not exist yet when the hook ran), so the hook writes the same config.txt at kernel upgrades.
B="$work/boot"
rm -rf "$B"
mv "$work/boot-from-hook" "$B"
for f in bootcode.bin start4.elf fixup4.dat config.txt "vmlinuz-$kver" "initrd.img-$kver"; do
    [ -e "$B/$f" ] || die "raspi-firmware left no $f in /boot/firmware"
done
grep -qx 'arm_64bit=1' "$B/config.txt" && grep -qx "kernel=vmlinuz-$kver" "$B/config.txt" &&
    grep -qx "initramfs initrd.img-$kver" "$B/config.txt" ||
    die "unexpected config.txt from raspi-firmware: $(cat "$B/config.txt")"
grep -q '^# Inserted by /etc/default/raspi-firmware-custom' "$B/config.txt" && die "config.txt already has the custom part"
printf '\n# Inserted by /etc/default/raspi-firmware-custom\n%s\n' \
    "$(cat "$R/etc/default/raspi-firmware-custom")" >>"$B/config.txt"
# Every device tree config.txt names, and the Pi 5's two steppings, must be there.
for dtb in $(sed -n 's/^device_tree=//p' "$B/config.txt") bcm2712-rpi-5-b.dtb bcm2712-d-rpi-5-b.dtb; do
    [ -e "$B/$dtb" ] || die "config.txt names $dtb, which linux-image-$kver does not ship"
done
# The Pi 5 D0 tree under Raspberry Pi's name too (overlay/etc/kernel/postinst.d/z51-*, which
# does the same at kernel upgrades on the box).
cp "$B/bcm2712-d-rpi-5-b.dtb" "$B/bcm2712d0-rpi-5-b.dtb"
echo "console=tty0 console=ttyS1,115200 root=LABEL=ROOT rootfstype=ext4 rw fsck.repair=yes net.ifnames=0 rootwait" >"$B/cmdline.txt"
cp "$here/boot/benchcam-setup.txt" "$B/benchcam-setup.txt"
dtbs=("$B"/*.dtb)
echo "boot files: $(du -sm "$B" | cut -f1) MiB: ${#dtbs[@]} device trees, cmdline: $(cat "$B/cmdline.txt")"
echo "config.txt:"; grep -v -e '^#' -e '^$' "$B/config.txt" | sed 's/^/  /'
# The initramfs must carry every board's SD, USB and Ethernet drivers
# (overlay/etc/initramfs-tools/hooks/benchcam).
# With the kernel's modules already xz-compressed, initramfs-tools puts them into a first,
# uncompressed cpio segment (the rest follows zstd-compressed): cpio lists that segment.
initrd_list="$(cpio -it --quiet <"$B/initrd.img-$kver" 2>/dev/null)"
grep -q '\.ko' <<<"$initrd_list" ||
    initrd_list="$(zstd -dc "$B/initrd.img-$kver" 2>/dev/null | cpio -it --quiet 2>/dev/null)" ||
    die "cannot list initrd.img-$kver (cpio, zstd + cpio)"
for m in rp1_pci clk-rp1 pinctrl-rp1 sdhci-brcmstb sdhci-iproc bcm2835 dwc3 dwc2 xhci-plat-hcd xhci-pci macb genet lan78xx smsc95xx usb-storage; do
    grep -q "/$m\.ko" <<<"$initrd_list" || die "initrd.img-$kver lacks $m"
done
echo "initrd: $(du -m "$B/initrd.img-$kver" | cut -f1) MiB, $(grep -c '\.ko' <<<"$initrd_list") modules"
stage_done "boot files"

# ---- filesystems and the image ------------------------------------------------------------
stage "filesystems"
# The size field only: the path after it can hold digits too (a clone in /tmp/ci-clone2 made
# this 5452 instead of 545, and the data partition then started past 2 GiB).
root_used_mib="$(du -s -BM "$R" | cut -f1 | tr -dc 0-9)"
# Room for updates and logs: a fifth more plus 384 MiB, in whole MiB.
root_mib=$((root_used_mib + root_used_mib / 5 + 384))
rm -f "$work/boot.vfat" "$work/root.ext4" "$work/data.ext4"
mkfs.vfat -C -F 32 -n BOOT "$work/boot.vfat" $((boot_mib * 1024)) >/dev/null
mcopy -s -m -Q -i "$work/boot.vfat" "$B"/* ::
truncate -s "${root_mib}M" "$work/root.ext4"
mkfs.ext4 -q -F -L ROOT -b 4096 -m 1 -d "$R" "$work/root.ext4"
truncate -s "${data_mib}M" "$work/data.ext4"
# 4 KiB blocks although it starts small (mke2fs would pick 1 KiB), one inode per 64 KiB: the
# partition grows to the card's size on first boot, and holds big clips.
mkfs.ext4 -q -F -L BENCHDATA -b 4096 -i 65536 -m 0 -J size=16 -E root_owner="$uid:$gid" "$work/data.ext4"
stage_done "filesystems"

stage "image"
img="$out/benchcam.img"
boot_start=$first_sector
root_start=$((boot_start + boot_mib * 2048))
data_start=$((root_start + root_mib * 2048))
end=$((data_start + data_mib * 2048))
rm -f "$img" "$img.xz"
truncate -s $((end * 512)) "$img"
sfdisk --quiet "$img" <<SFDISK
label: dos
unit: sectors
start=$boot_start, size=$((boot_mib * 2048)), type=c, bootable
start=$root_start, size=$((root_mib * 2048)), type=83
start=$data_start, size=$((data_mib * 2048)), type=83
SFDISK
dd if="$work/boot.vfat" of="$img" bs=1M seek=$((boot_start / 2048)) conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$img" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
dd if="$work/data.ext4" of="$img" bs=1M seek=$((data_start / 2048)) conv=notrunc,sparse status=none
sfdisk --dump "$img"
stage_done "image"

if [ "$want_xz" = 1 ]; then
    stage "xz"
    nice -n 10 xz -T2 -6 -k -f "$img"
    stage_done "xz"
fi

# ---- report ---------------------------------------------------------------------------------
rm -rf "$work"
mib() { echo $(( ($1 + 1048575) / 1048576 )); }
{
    echo "benchcam image, built $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "kernel $kver; base rootfs $base_state ($(basename "$base_tar"))"
    echo "image: $img: $(mib "$(stat -c %s "$img")") MiB raw, $(du -m "$img" | cut -f1) MiB allocated"
    [ -f "$img.xz" ] && echo "compressed: $img.xz: $(mib "$(stat -c %s "$img.xz")") MiB"
    echo "partitions: BOOT ${boot_mib} MiB, ROOT ${root_mib} MiB (${root_used_mib} MiB used), BENCHDATA ${data_mib} MiB (grows on first boot)"
    echo "security: $(tail -1 "$out/security.txt")"
    echo "timings:"
    printf '  %s\n' "${timing[@]}"
    echo "  total                        $((SECONDS - t_all)) s"
} | tee "$out/build-report.txt"
