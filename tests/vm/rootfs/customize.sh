#!/bin/sh
# mmdebstrap customize hook of the VM bench's root filesystem (tests/vm/build.sh): $1 is the
# root directory, with /dev, /proc and /sys mounted by mmdebstrap.
#
# 1. installs trixie's v4l2loopback-dkms with its source patched to upstream 0.15.3 (0.15.0 does
#    not build for 7.3) and makes sure DKMS built it for the backports kernel (not for the host's
#    running kernel, which is all `uname -r` in the chroot knows), building it explicitly if not;
# 2. keeps the module and removes DKMS, the headers and the compiler again (~250 MB the guest
#    never uses);
# 3. installs PID 1 (benchcam-vm-init), regenerates the initramfs for the final tree and makes
#    GStreamer's plugin registry.
# Writes /etc/benchcam-vm-release: kernel and v4l2loopback versions (build.sh prints them).
set -eu
R="$1"
here="$(cd "$(dirname "$0")" && pwd)"

kver="$(ls -1 "$R/lib/modules" | sort -V | tail -1)"
[ -n "$kver" ] && [ -f "$R/boot/vmlinuz-$kver" ] || { echo "customize: no kernel in $R/boot" >&2; exit 1; }
echo "customize: kernel $kver; dkms: $(chroot "$R" dkms status 2>&1 | tr '\n' ' ')"

find_ko() { find "$R/lib/modules/$kver" -name 'v4l2loopback.ko*' 2>/dev/null | head -1; }
# trixie's v4l2loopback-dkms 0.15.0 does not build for 6.16+ kernels: unpack it, bring its source
# to upstream 0.15.3 (v4l2loopback-0.15.3.patch), then let its postinst run DKMS.
chroot "$R" sh -c 'cd /tmp && apt-get download -qq v4l2loopback-dkms'
deb="$(ls "$R"/tmp/v4l2loopback-dkms_*.deb)"
chroot "$R" dpkg --unpack "/tmp/${deb##*/}" >/dev/null
rm -f "$deb"
src="$(ls -d "$R"/usr/src/v4l2loopback-* | head -1)"
patched=""
if patch -s --dry-run -d "$src" -p1 <"$here/v4l2loopback-0.15.3.patch" >/dev/null 2>&1; then
    patch -s -d "$src" -p1 <"$here/v4l2loopback-0.15.3.patch"
    patched=" (source patched to upstream 0.15.3)"
    echo "customize: ${src#"$R"}$patched"
else
    echo "customize: v4l2loopback-0.15.3.patch does not apply to ${src#"$R"}: building it as shipped"
fi
chroot "$R" dpkg --configure v4l2loopback-dkms || echo "customize: v4l2loopback-dkms postinst failed"
ko="$(find_ko)"
if [ -z "$ko" ]; then
    echo "customize: no v4l2loopback module for $kver after the install: dkms autoinstall -k $kver"
    chroot "$R" dkms autoinstall -k "$kver" || true
    ko="$(find_ko)"
fi
if [ -z "$ko" ]; then
    echo "customize: DKMS did not build v4l2loopback for $kver" >&2
    chroot "$R" dkms status >&2 || true
    find "$R/var/lib/dkms" -name make.log -exec tail -40 {} \; >&2 || true
    exit 1
fi
lbver="$(chroot "$R" dpkg-query -W -f='${Version}' v4l2loopback-dkms)$patched"
echo "customize: v4l2loopback $lbver built by DKMS: ${ko#"$R"}"
ko_name="${ko##*/}"
cp "$ko" "$R/tmp/$ko_name"

# The build tools go again (the purge removes DKMS's copy of the module); the module is put back
# where depmod finds it.
hdr="$(chroot "$R" dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 'linux-headers-*' |
    awk '$1 == "ii" { print $2 }' | tr '\n' ' ')"
# shellcheck disable=SC2086  # $hdr is a list of package names
DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get purge -y -qq --autoremove \
    v4l2loopback-dkms dkms $hdr >/dev/null
install -D -m0644 "$R/tmp/$ko_name" "$R/lib/modules/$kver/extra/$ko_name"
rm -f "$R/tmp/$ko_name"
chroot "$R" depmod -a "$kver"
chroot "$R" modinfo -k "$kver" -F version v4l2loopback >/dev/null ||
    { echo "customize: v4l2loopback is gone after removing DKMS" >&2; exit 1; }
for m in vivid 9p 9pnet_virtio virtio_blk; do
    chroot "$R" modinfo -k "$kver" -F filename "$m" >/dev/null ||
        { echo "customize: kernel $kver has no module $m" >&2; exit 1; }
done

install -D -m0755 "$here/benchcam-vm-init" "$R/usr/local/sbin/benchcam-vm-init"
echo benchcam-vm >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost benchcam-vm\n::1\tlocalhost\n' >"$R/etc/hosts"
: >"$R/etc/machine-id"
chroot "$R" update-initramfs -u -k "$kver" >/dev/null
# GStreamer's plugin registry, made now: otherwise the first gst-launch of every boot scans the
# plugins (~6 s under TCG). PID 1 runs without HOME; GLib then takes root's home from passwd.
chroot "$R" env HOME=/root gst-inspect-1.0 >/dev/null 2>&1 || true
ls "$R"/root/.cache/gstreamer-1.0/registry.* >/dev/null 2>&1 ||
    echo "customize: warning: no GStreamer registry made"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/var/log/*.log

printf 'kernel=%s\nv4l2loopback=%s\n' "$kver" "$lbver" >"$R/etc/benchcam-vm-release"
