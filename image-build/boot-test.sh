#!/usr/bin/env bash
# Boots the built image under emulation and checks the appliance end to end:
#
#   bash image-build/boot-test.sh [--image PATH] [--timeout MINUTES] [--port N] [--smp N] [--keep]
#                                 [--no-install]
#
#   --image PATH     the image to test (default target/image/benchcam.img; build it first with
#                    image-build/build.sh --no-xz). It is copied; the original stays untouched.
#   --timeout MIN    how long one boot may take to answer on the health endpoint (default 12)
#   --port N         host port forwarded to the box's port 80 (default 18080)
#   --smp N          emulated CPUs (default 2)
#   --keep           keep the work directory (serial logs, the booted image copy)
#   --no-install     do not apt-get install missing tools (qemu-system-arm, ...): name them and fail
#
# What it does, on a copy of the image grown by 512 MiB (a card bigger than the image):
# 1. writes a settings file with a bad Wi-Fi passphrase and an unknown key next to good values
#    (hostname, access token, time zone, ssh key) onto the FAT partition (mtools);
# 2. takes the kernel and initrd out of the image's ROOT partition (debugfs) and boots it with
#    qemu-system-aarch64 -M virt -cpu cortex-a72 -m 1024, with the command line of the image's
#    cmdline.txt (root=LABEL=ROOT; the console moved to the emulator's serial port) on a virtio disk, user
#    networking with only a host forward of 127.0.0.1:PORT to port 80 (restrict=on: the guest
#    reaches nothing else), and benchcam.test=1, which starts the image's test report unit:
#    it prints `systemctl is-active benchcam`, the clips on the data partition and more to the
#    serial console, which this script reads;
#    The first boot also has benchcam.test.vivid=1: the image's benchcam-test-vivid generator
#    and unit load the kernel's `vivid` driver (a real V4L2 capture device) and point benchcam at
#    it, 640x480 YUYV at 10 fps, through a config in /run; boots 2 and 3 run as shipped (no
#    camera under qemu: the test-pattern camera) and must not have vivid loaded;
# 3. checks: GET /api/v1/health answers JSON with a status and lists cam0 capturing, and
#    GET /api/v1/cameras gives its backend (boot 1: v4l2, the vivid node, 640x480; boots 2 and 3:
#    pattern), GET / is the page, benchcam
#    is active (it sent READY=1), a clip grows on the BENCHDATA partition, the partition grew to
#    the disk's end, the good settings applied and the bad ones reported in the journal and
#    setup-problems.txt, the secrets redacted;
# 4. powers off cleanly through the emulated power button (QMP system_powerdown) and checks the
#    clips on the data partition from outside (debugfs): it was unmounted cleanly (its journal
#    is empty), boot 1's clips, recorded from vivid, are 640x480 and decode fully;
# 5. boots again and checks the clips of the first boot are still there and the settings file
#    is not applied twice; then cuts the power (kills the emulator) while it records;
# 6. boots a third time: the root filesystem is checked, the service comes back, and every clip
#    on the data partition, the one torn by the power cut included, decodes fully.
# Ends with `N passed, M failed` and exits non-zero on any failure. Prints boot-to-health times.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
image="$repo/target/image/benchcam.img" timeout_min=12 port="${BENCHCAM_BOOT_TEST_PORT:-18080}"
smp=2 keep=0 install=1
while [ $# -gt 0 ]; do
    case "$1" in
        --image) image="$2"; shift ;;
        --timeout) timeout_min="$2"; shift ;;
        --port) port="$2"; shift ;;
        --smp) smp="$2"; shift ;;
        --keep) keep=1 ;;
        --no-install) install=0 ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "boot-test.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "boot-test.sh: $*" >&2; exit 1; }
[ -f "$image" ] || die "no image at $image: build it first (bash image-build/build.sh --no-xz)"

missing=()
command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm)
command -v debugfs >/dev/null || missing+=(e2fsprogs)
command -v mcopy >/dev/null || missing+=(mtools)
command -v sfdisk >/dev/null || missing+=(fdisk)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$install" = 1 ] && [ "$(id -u)" -eq 0 ] || die "missing: ${missing[*]}"
    echo "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" || die "could not install ${missing[*]}"
fi
python3 - "$port" <<'EOF' || die "port $port is in use (pass --port)"
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()
EOF

work="$repo/target/image/boot-test"
rm -rf "$work"
mkdir -p "$work"
qemu_pid=""
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then kill "$qemu_pid"; fi
    [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "  ok: $1"; }
bad() { failed=$((failed + 1)); echo "  FAILED: $1"; }
check() {  # check DESCRIPTION COMMAND...
    local d="$1"; shift
    if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi
}
t_all=$SECONDS

# ---- the disk: a copy, grown like a bigger card, with a settings file -----------------------
disk="$work/disk.img"
cp --sparse=always "$image" "$disk"
truncate -s +512M "$disk"
# offset_of N: byte offset of partition N
# The byte offset of partition N. The multiplication is bash's: mawk prints a product past
# 2^31 as 7.53507e+09, which debugfs cannot open (every read of the data partition then
# found nothing once a large root partition put it past 2 GiB).
offset_of() {
    local start
    start="$(sfdisk --dump "$disk" | awk -v p="$disk$1" '$1 == p { gsub(",", "", $4); print $4 }')"
    [[ "$start" =~ ^[0-9]+$ ]] && echo $((start * 512))
}
boot_off="$(offset_of 1)" root_off="$(offset_of 2)" data_off="$(offset_of 3)"
[ -n "$boot_off" ] && [ -n "$root_off" ] && [ -n "$data_off" ] || die "cannot read the partition table of $image"

ssh-keygen -q -t ed25519 -N '' -C boot-test -f "$work/id_ed25519" 2>/dev/null ||
    echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHbUXkHOhz1DZmvGeJPyQ2dqFvwDUFkhW2XyQmMGa0eo boot-test" >"$work/id_ed25519.pub"
cat >"$work/benchcam-setup.txt" <<EOF
# boot test: good values, a Wi-Fi passphrase that is too short, and an unknown key
hostname=benchtest
wifi_ssid=LabNet
wifi_psk=short
wifi_country=DE
colour=blue
access_token=boot-test-token
timezone=Europe/Berlin
ssh_authorized_key=$(cat "$work/id_ed25519.pub")
EOF
mcopy -o -i "$disk@@$boot_off" "$work/benchcam-setup.txt" ::benchcam-setup.txt

kver="$(debugfs -R 'ls -p /boot' "$disk?offset=$root_off" 2>/dev/null |
    awk -F/ '$6 ~ /^vmlinuz-/ { sub("vmlinuz-", "", $6); print $6 }' | sort -V | tail -1)"
[ -n "$kver" ] || die "no /boot/vmlinuz-* on the image's ROOT partition"
debugfs -R "dump /boot/vmlinuz-$kver $work/vmlinuz" "$disk?offset=$root_off" 2>/dev/null
debugfs -R "dump /boot/initrd.img-$kver $work/initrd.img" "$disk?offset=$root_off" 2>/dev/null
[ -s "$work/vmlinuz" ] && [ -s "$work/initrd.img" ] || die "could not extract the kernel $kver"
# The Pi's own command line from the BOOT partition, with the emulator's serial console.
append="$(mtype -i "$disk@@$boot_off" ::cmdline.txt | tr -d '\r\n' | sed 's/console=[^ ]*//g; s/  */ /g')"
case "$append" in *root=LABEL=ROOT*) ;; *) die "cmdline.txt has no root=LABEL=ROOT: $append" ;; esac
append="$append console=ttyAMA0 benchcam.test=1"
echo "kernel $kver; disk $(( $(stat -c %s "$disk") / 1048576 )) MiB; command line: $append"

# ---- one boot ---------------------------------------------------------------------------
health_url="http://127.0.0.1:$port/api/v1/health"
declare -a boot_to_health=()

qmp() {  # qmp COMMAND: one QMP command to the running emulator
    python3 - "$work/qmp.sock" "$1" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", sys.argv[2]):
    f.write(json.dumps({"execute": cmd}) + "\n"); f.flush()
    while "return" not in (reply := json.loads(f.readline())):
        if "error" in reply: sys.exit(reply["error"]["desc"])
EOF
}

# boot N [vivid]: starts the emulator, waits for health and the test report, checks the common
# part; with "vivid", benchcam records from the vivid driver (benchcam.test.vivid=1).
boot() {
    local n="$1" serial="$work/serial-$1.log" camera="${2:-pattern}" cmdline="$append"
    [ "$camera" = vivid ] && cmdline="$cmdline benchcam.test.vivid=1"
    echo
    echo "== boot $n (camera: $camera)"
    local t0=$SECONDS
    qemu-system-aarch64 -M virt -cpu cortex-a72 -smp "$smp" -m 1024 \
        -kernel "$work/vmlinuz" -initrd "$work/initrd.img" \
        -append "$cmdline" \
        -drive if=virtio,format=raw,file="$disk" \
        -netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:"$port"-:80 \
        -device virtio-net-pci,netdev=net0,romfile= -device virtio-rng-pci \
        -display none -monitor none -serial file:"$serial" \
        -qmp unix:"$work/qmp.sock",server=on,wait=off -no-reboot &
    qemu_pid=$!

    local health="" deadline=$((SECONDS + timeout_min * 60))
    while [ $SECONDS -lt $deadline ] && kill -0 "$qemu_pid" 2>/dev/null; do
        if health="$(curl -fsS --max-time 5 "$health_url" 2>/dev/null)"; then break; fi
        health=""
        sleep 2
    done
    if [ -n "$health" ]; then
        boot_to_health+=("boot $n: $((SECONDS - t0)) s")
        ok "boot $n: health answers after $((SECONDS - t0)) s"
    else
        bad "boot $n: no health answer within $timeout_min min"
        tail -30 "$serial"
        return 1
    fi
    echo "$health" >"$work/health-$n.json"
    check "boot $n: health is JSON with a status" python3 -c '
import json, sys
h = json.load(open(sys.argv[1])); assert h["status"] in ("ok", "degraded", "error"), h' "$work/health-$n.json"
    echo "  health: $(python3 -c 'import json,sys; h=json.load(open(sys.argv[1])); print(h["status"], h.get("problems"))' "$work/health-$n.json")"
    check "boot $n: health lists the settings file's problems (setup-problems.txt)" python3 -c '
import json, sys
h = json.load(open(sys.argv[1]))
assert any("wifi_psk" in p for p in h["problems"]) and any("colour" in p for p in h["problems"]), h' "$work/health-$n.json"
    # Health lists each camera's state; GET /api/v1/cameras its backend, device and mode.
    curl -fsS --max-time 10 "http://127.0.0.1:$port/api/v1/cameras" >"$work/cameras-$n.json" 2>/dev/null
    echo "  cameras: $(python3 -c 'import json,sys; print([(c.get("id"), c.get("backend"), c.get("device"), c.get("name"), c.get("mode"), c.get("state")) for c in json.load(open(sys.argv[1]))])' "$work/cameras-$n.json" 2>&1)"
    # The camera may still be `starting` when health first answers (the first 720p pattern
    # frame under TCG on a busy host): asked again for up to 60 s.
    local cam_deadline=$((SECONDS + 60))
    until python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["cameras"]
sys.exit(0 if len(c) == 1 and c[0]["state"] != "starting" else 1)' "$work/health-$n.json" 2>/dev/null ||
        [ $SECONDS -ge $cam_deadline ]; do
        sleep 2
        curl -fsS --max-time 5 "$health_url" >"$work/health-$n.json" 2>/dev/null
    done
    check "boot $n: health lists camera cam0, capturing" python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["cameras"]
assert len(c) == 1 and c[0]["id"] == "cam0" and c[0]["state"] == "capturing", c' "$work/health-$n.json"
    if [ "$camera" = vivid ]; then
        check "boot $n: cam0 is the vivid camera: backend v4l2, 640x480 (/api/v1/cameras)" python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
assert len(c) == 1 and c[0]["backend"] == "v4l2" and "video" in str(c[0]["device"]), c
assert c[0]["mode"]["width"] == 640 and c[0]["mode"]["height"] == 480, c' "$work/cameras-$n.json"
    else
        check "boot $n: cam0 is the test-pattern camera (no camera under qemu)" python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
assert len(c) == 1 and c[0]["backend"] == "pattern", c' "$work/cameras-$n.json"
    fi
    check "boot $n: the page at / is HTML" bash -c "curl -fsS --max-time 10 http://127.0.0.1:$port/ | grep -qi '<html'"

    while [ $SECONDS -lt $deadline ] && ! grep -q 'BENCHCAM-TEST done' "$serial"; do sleep 2; done
    grep -a 'BENCHCAM-TEST' "$serial" | tr -d '\r' | sed 's/^.*BENCHCAM-TEST /BENCHCAM-TEST /' >"$work/report-$n.txt"
    check "boot $n: test report complete" grep -q '^BENCHCAM-TEST done' "$work/report-$n.txt"
    grep -v -e '^BENCHCAM-TEST clip ' -e '^BENCHCAM-TEST setup-file' "$work/report-$n.txt" | sed 's/^BENCHCAM-TEST /  | /'
    r() { sed -n "s/^BENCHCAM-TEST $1 //p" "$work/report-$n.txt" | head -1; }
    check "boot $n: systemctl is-active benchcam = active (READY=1 sent)" [ "$(r is-active)" = active ]
    check "boot $n: a clip is growing on the data partition" [ "$(r clip-growing)" = yes ]
    if [ "$camera" = vivid ]; then
        check "boot $n: vivid loaded, benchcam on the test config" bash -c "[ '$(r vivid)' = loaded ] && [ '$(r test-vivid)' = active ] && [ '$(r camera-config)' = /run/benchcam-test/benchcam.toml ]"
    else
        check "boot $n: vivid not loaded, benchcam on /etc/benchcam/benchcam.toml (as shipped)" bash -c "[ '$(r vivid)' = absent ] && [ '$(r test-vivid)' = inactive ] && [ '$(r camera-config)' = /etc/benchcam/benchcam.toml ]"
    fi
    check "boot $n: data partition mounted at /var/lib/benchcam" bash -c "[[ '$(r data-mount)' == /dev/vda3,ext4,*noatime*commit=60* ]]"
    # The data partition unmounted under the running service and mounted again.
    # (A lazy unmount inside the sandbox's mount namespace is not a removal: reported only.)
    echo "  data unmounted: benchcam saw storage removed after: $(r drive-removed-after-s) s"
    check "boot $n: data unmounted: nothing written under the empty mount point" bash -c "[ '$(r drive-before)' = ok ] && [ '$(r drive-removed-files)' = 0 ]"
    check "boot $n: data mounted again: benchcam-data-return restarted benchcam ($(r drive-back-restart-after-s) s), storage ok ($(r drive-back-after-s) s), recording again" bash -c "[ '$(r drive-back-restarted)' = yes ] && [ '$(r drive-back-after-s)' != never ] && [ '$(r drive-back-recording)' = yes ]"
    check "boot $n: data partition grew to the disk's end (> 700 MiB)" [ "$(r data-size-mib)" -gt 700 ]
    check "boot $n: mDNS runs in the unit's sandbox (interfaces listed: AF_NETLINK; announcing and browsing)" bash -c "grep -q '^BENCHCAM-TEST fleet-log .*fleet: mDNS as ' '$work/report-$n.txt' && ! grep -q -e 'cannot list network interfaces' -e 'cannot start mDNS' '$work/report-$n.txt' && [ '$(r fleet-api)' = 'announcing=true browsing=true' ]"
    check "boot $n: /tmp is a tmpfs" [ "$(r tmp)" = tmpfs ]
    check "boot $n: no failed units" [ -z "$(r failed-units | tr -d ' ')" ]
    check "boot $n: hostname from the settings file" [ "$(r hostname)" = benchtest ]
    check "boot $n: access token applied" [ "$(r config-token)" = 1 ]
    check "boot $n: config stays root:benchcam 0640" [ "$(r config-mode)" = root:benchcam:640 ]
    check "boot $n: ssh on (key given)" [ "$(r ssh)" = active ]
    check "boot $n: setup problem: short passphrase" grep -q '^BENCHCAM-TEST setup-problem .*wifi_psk: must be 8-63' "$work/report-$n.txt"
    check "boot $n: setup problem: unknown key" grep -q '^BENCHCAM-TEST setup-problem .*unknown key `colour`' "$work/report-$n.txt"
    check "boot $n: settings file redacted" bash -c "grep -q '^BENCHCAM-TEST setup-file # wifi_psk=<redacted>' '$work/report-$n.txt' && grep -q '^BENCHCAM-TEST setup-file access_token=<redacted>' '$work/report-$n.txt' && ! grep -q -e 'psk=short' -e boot-test-token '$work/report-$n.txt'"
    check "boot $n: the initramfs checked the root filesystem (fsck)" bash -c "grep -aq 'fsck.ext4' '$serial' && ! grep -aq 'fsck not present' '$serial'"
    grep '^BENCHCAM-TEST clip ' "$work/report-$n.txt" | awk '{print $3, $4}' >"$work/clips-$n.txt"
    echo "  clips: $(wc -l <"$work/clips-$n.txt") on the data partition"
    return 0
}

# poweroff N: the emulated power button; the guest must shut down by itself, cleanly.
poweroff() {
    local n="$1" serial="$work/serial-$1.log" t0=$SECONDS
    qmp system_powerdown || bad "boot $n: QMP system_powerdown failed"
    local deadline=$((SECONDS + 180))
    while [ $SECONDS -lt $deadline ] && kill -0 "$qemu_pid" 2>/dev/null; do sleep 1; done
    if kill -0 "$qemu_pid" 2>/dev/null; then
        bad "boot $n: still running 180 s after the power button"
        kill "$qemu_pid"; wait "$qemu_pid" 2>/dev/null; qemu_pid=""
        return 1
    fi
    wait "$qemu_pid" 2>/dev/null; qemu_pid=""
    ok "boot $n: powered off by the power button in $((SECONDS - t0)) s"
    # How benchcam stopped, from the journal on the ROOT partition (the console shows only
    # "Stopped", also after a stop timeout and SIGKILL).
    rm -rf "$work/journal"
    mkdir -p "$work/journal"
    debugfs -R "rdump /var/log/journal $work/journal" "$disk?offset=$root_off" 2>/dev/null
    journalctl --directory="$work/journal/journal" -b 0 -u benchcam.service -o cat --no-pager \
        >"$work/benchcam-journal-$n.txt" 2>&1
    check "boot $n: benchcam exited by itself on SIGTERM (no stop timeout, no SIGKILL)" bash -c "
        grep -q 'Stopped benchcam.service' '$work/benchcam-journal-$n.txt' &&
        ! grep -q -e 'timed out' -e 'status=9/KILL' '$work/benchcam-journal-$n.txt'"
    grep -E 'signal 15|clips finalised|closed:|timed out|KILL' "$work/benchcam-journal-$n.txt" | sed 's/^/  | /'
    check "boot $n: kernel reached power down" grep -aq 'reboot: Power down' "$serial"
}

# decodes CLIP [WxH]: a full decode of a clip read from the data partition (ffmpeg -f null, with
# the clips' own variable frame times: DESIGN.md §11), the way the service's own tests judge
# clips; with WxH, the clip's video must also have that size.
decodes() {
    rm -f "$work/clip.mp4"
    debugfs -R "dump /rolling/cam0/$1 $work/clip.mp4" "$data_fs" 2>/dev/null
    [ -s "$work/clip.mp4" ] || return 1
    [ -z "$(ffmpeg -nostdin -v error -i "$work/clip.mp4" -fps_mode passthrough -enc_time_base -1 -f null - 2>&1)" ] || return 1
    [ -z "${2:-}" ] || [ "$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=s=x:p=0 "$work/clip.mp4")" = "$2" ]
}

# data_fs: where to read the data partition from outside. A filesystem that was not unmounted
# cleanly has part of its metadata only in its journal, which debugfs does not replay: then a
# copy of the partition, with its journal replayed by e2fsck (as the next mount would), so the
# checks read what the guest wrote; the disk itself stays as the guest left it.
data_fs() {
    local n="$1"
    debugfs -R stats "$disk?offset=$data_off" 2>/dev/null >"$work/data-stats-$n.txt"
    if grep -q '^Filesystem features:.*needs_recovery' "$work/data-stats-$n.txt"; then
        dd if="$disk" of="$work/data-$n.img" bs=4M iflag=skip_bytes skip="$data_off" conv=sparse status=none
        e2fsck -fy "$work/data-$n.img" >"$work/data-fsck-$n.txt" 2>&1
        echo "$work/data-$n.img"
    else
        echo "$disk?offset=$data_off"
    fi
}

data_clips() {  # data_clips FS: the clips on the data partition, read from outside: "name size" lines
    debugfs -R 'ls -l /rolling/cam0' "$1" 2>/dev/null |
        awk '$NF ~ /\.mp4$/ { print $NF, $(NF-3) }' | sort
}

summary() {
    echo
    echo "== summary ($((SECONDS - t_all)) s)"
    printf '  boot to health: %s\n' "${boot_to_health[@]}"
    [ -f "$work/report-1.txt" ] && sed -n 's/^BENCHCAM-TEST security /  exposure (running unit): /p' "$work/report-1.txt"
    echo "boot-test: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# clean_data N: the power button unmounted the data partition cleanly (nothing left in its journal).
clean_data() {
    check "after boot $1: BENCHDATA read from outside (debugfs stats)" \
        grep -q '^Filesystem volume name: *BENCHDATA' "$work/data-stats-$1.txt"
    check "after boot $1: BENCHDATA was unmounted cleanly at power-off (journal empty)" \
        bash -c "grep -q '^Filesystem volume name: *BENCHDATA' '$work/data-stats-$1.txt' && ! grep -q '^Filesystem features:.*needs_recovery' '$work/data-stats-$1.txt'"
    grep -E '^(Filesystem state|Last mount time|Last write time):' "$work/data-stats-$1.txt" | sed 's/^/  | /'
}

if ! boot 1 vivid || ! poweroff 1; then summary; exit 1; fi
data_fs="$(data_fs 1)"
clean_data 1
data_clips "$data_fs" >"$work/disk-clips-1.txt"
check "after boot 1: clips on BENCHDATA, read from outside" [ -s "$work/disk-clips-1.txt" ]
echo "  $(wc -l <"$work/disk-clips-1.txt") clip(s): $(tr '\n' ' ' <"$work/disk-clips-1.txt")"
if command -v ffmpeg >/dev/null; then
    while read -r name _; do
        check "after boot 1: $name (from vivid) is 640x480 and decodes fully (finalised at power-off)" decodes "$name" 640x480
    done <"$work/disk-clips-1.txt"
else
    echo "  note: no ffmpeg here: clips not decoded"
fi
mtype -i "$disk@@$boot_off" ::benchcam-setup.txt >"$work/setup-after-1.txt" 2>/dev/null
check "after boot 1: no secret left on the FAT partition" bash -c "! grep -q -e 'psk=short' -e boot-test-token '$work/setup-after-1.txt'"

if ! boot 2; then summary; exit 1; fi
kept=0
while read -r name _; do
    grep -q "^$name " "$work/clips-2.txt" && kept=$((kept + 1))
done <"$work/disk-clips-1.txt"
total="$(wc -l <"$work/disk-clips-1.txt")"
check "boot 2: all $total clip(s) of boot 1 still there ($kept found)" [ "$kept" -gt 0 -a "$kept" = "$total" ]
check "boot 2: the settings file was not applied again" bash -c "! grep -q '^BENCHCAM-TEST setup-journal' '$work/report-2.txt'"

# A power cut while recording: the emulator is killed, so whatever the guest had not written
# to its disk is lost, as when the plug is pulled.
kill -KILL "$qemu_pid"; wait "$qemu_pid" 2>/dev/null; qemu_pid=""
ok "boot 2: power cut while recording (emulator killed)"
if ! boot 3; then summary; exit 1; fi
check "boot 3: the clip torn by the power cut was repaired at start (service log)" \
    grep -Eq '^BENCHCAM-TEST benchcam-log .*[1-9][0-9]* repaired' "$work/report-3.txt"
if ! poweroff 3; then summary; exit 1; fi
data_fs="$(data_fs 3)"
clean_data 3
data_clips "$data_fs" >"$work/disk-clips-3.txt"
check "after boot 3: at least the clips of boot 2, and a new one" \
    [ "$(wc -l <"$work/disk-clips-3.txt")" -gt "$(wc -l <"$work/clips-2.txt")" ]
if command -v ffmpeg >/dev/null; then
    # The clip torn by the power cut was recovered at the start of boot 3 (cut back to its last
    # complete fragment); every clip on the partition must decode fully.
    while read -r name _; do
        check "after boot 3: $name decodes fully" decodes "$name"
    done <"$work/disk-clips-3.txt"
fi

summary
