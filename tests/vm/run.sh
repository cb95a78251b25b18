#!/usr/bin/env bash
# Boots the VM bench's guest once and runs scenarios in it against real kernel V4L2 drivers
# (vivid, v4l2loopback), then judges their results on the host.
#
#   bash tests/vm/run.sh SCENARIO... [--kvm] [--keep] [--smp N] [--mem MIB] [--binary PATH]
#                        [--boot-timeout S] [--no-check] [--list]
#
#   SCENARIO       names of tests/vm/scenarios/NAME.sh, run in the given order in one boot
#                  (`all`: every scenario)
#   --kvm          -accel kvm -cpu host instead of TCG (nested KVM dies in the 7.3 kernel's
#                  early boot on the development machines, DESIGN.md §12: TCG is the default)
#   --keep         keep the work directory target/vm/work (root overlay, data disk, share)
#   --smp N        virtual CPUs (default 2)
#   --cpu MODEL    qemu's -cpu under TCG (default max)
#   --mem MIB      guest memory (default 2048)
#   --binary PATH  the x86_64 benchcam to test (default: $BENCHCAM_BIN or target/release/benchcam,
#                  built by `cargo build --release`); copied into the guest at run time
#   --boot-timeout S  how long a boot may take to reach the test (default 240)
#   --no-check     only run the scenarios and bring their results back
#   --list         print the scenarios and their time limits
#
# The guest (tests/vm/build.sh, cached) boots with qemu's -kernel/-initrd on a qcow2 overlay of
# the cached root disk, a fresh ext4 data disk (/dev/vdb, /data in the guest), a QMP socket
# (target/vm/work/qmp.sock), for scenarios with a `# vm-usb-disk: MIB` line a USB drive they can
# have pulled out and plugged back (qemu-xhci + usb-storage, ext4 "BENCHUSB", device_del and
# device_add on the guest's request: the hotplug/ files of the share), and a 9p share of
# target/vm/work/share (/bench in the guest: the binary, tests/vm/guest, tests/vm/scenarios, and
# results/). No network (-nic none). Its PID 1 (tests/vm/rootfs/benchcam-vm-init) runs
# guest/main.sh, which runs each scenario with its time limit (a `# vm-limit: SECONDS` line in the
# script), copies benchcam's data dir and the JSON the scenario captured to results/NAME/, and
# powers off. A boot that does not print the init marker on the serial console within the boot
# timeout, or that panics before it (one TCG boot in ~8 does, DESIGN.md §12), is retried up to
# 2 times; the retries are reported.
#
# Results: target/vm/results/NAME/ (replaced per scenario), the serial log in
# target/vm/results/serial.log. Then tests/vm/check/NAME.py judges each scenario, one line per
# check. The last line is `N passed, M failed` (checks); the exit status is non-zero on any
# failure.
set -uo pipefail
# The body is one { } block, so bash reads all of it before running it: editing this file
# while it runs (a boot takes minutes) cannot break the run.
{

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

accel=tcg cpu=max keep=0 smp=2 mem=2048 binary="${BENCHCAM_BIN:-$repo/target/release/benchcam}"
boot_timeout=240 check=1 list=0
scenarios=()
while [ $# -gt 0 ]; do
    case "$1" in
        --kvm) accel=kvm ;;
        --keep) keep=1 ;;
        --smp) smp="$2"; shift ;;
        --cpu) cpu="$2"; shift ;;
        --mem) mem="$2"; shift ;;
        --binary) binary="$2"; shift ;;
        --boot-timeout) boot_timeout="$2"; shift ;;
        --no-check) check=0 ;;
        --list) list=1 ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run.sh: unknown option: $1 (try --help)" >&2; exit 2 ;;
        all) for f in "$here"/scenarios/*.sh; do scenarios+=("$(basename "$f" .sh)"); done ;;
        *) scenarios+=("$1") ;;
    esac
    shift
done

die() { echo "run.sh: $*" >&2; exit 2; }
limit_of() {  # the `# vm-limit: S` of a scenario (default 120)
    local l
    l="$(sed -n 's/^# vm-limit: *\([0-9][0-9]*\).*/\1/p' "$here/scenarios/$1.sh" | head -1)"
    echo "${l:-120}"
}
usb_of() {  # the `# vm-usb-disk: MIB` of a scenario (0: it needs none)
    local m
    m="$(sed -n 's/^# vm-usb-disk: *\([0-9][0-9]*\).*/\1/p' "$here/scenarios/$1.sh" | head -1)"
    echo "${m:-0}"
}
if [ "$list" = 1 ]; then
    for f in "$here"/scenarios/*.sh; do
        n="$(basename "$f" .sh)"
        printf '%-18s %4s s  %s\n' "$n" "$(limit_of "$n")" "$(sed -n '2s/^# //p' "$f")"
    done
    exit 0
fi
[ ${#scenarios[@]} -gt 0 ] || die "name at least one scenario (--list shows them)"
for s in "${scenarios[@]}"; do
    [ -f "$here/scenarios/$s.sh" ] || die "no scenario $s (tests/vm/scenarios/$s.sh)"
done
[ -x "$binary" ] || die "no benchcam binary at $binary (cargo build --release, or --binary PATH)"
[ "$(od -An -tx1 -j18 -N2 "$binary" | tr -d ' \n')" = 3e00 ] || die "$binary is not an x86_64 ELF"
for t in qemu-system-x86_64 qemu-img mkfs.ext4 python3; do
    command -v "$t" >/dev/null || die "missing $t (bash tests/lib/install-deps.sh --vm)"
done
if [ "$accel" = kvm ] && [ ! -w /dev/kvm ]; then die "--kvm: /dev/kvm is not usable here"; fi

# ---- the guest (cached) ------------------------------------------------------------------------
bash "$here/build.sh" || die "tests/vm/build.sh failed"
guest="$(bash "$here/build.sh" --print-dir)"
echo "run.sh: guest $guest: $(tr '\n' ' ' <"$guest/release.txt" | sed 's/timing.*//')"

# ---- work directory: overlay, data disk, share --------------------------------------------------
work="$repo/target/vm/work"
results="$repo/target/vm/results"
rm -rf "$work"
mkdir -p "$work/share/results" "$results"
rm -f "$results/summary.txt"
share="$work/share"
cp "$binary" "$share/benchcam"
cp -r "$here/guest" "$share/guest"
cp -r "$here/scenarios" "$share/scenarios"
total_limit=0
: >"$share/plan"
for s in "${scenarios[@]}"; do
    l="$(limit_of "$s")"
    echo "$s $l" >>"$share/plan"
    total_limit=$((total_limit + l + 20))
done
qemu-img create -q -f qcow2 -F raw -b "$guest/root.ext4" "$work/root.qcow2"
truncate -s 4G "$work/data.img"
mkfs.ext4 -q -F -L BENCHDATA -m 0 "$work/data.img"
# A USB drive (qemu-xhci + usb-storage, ext4 "BENCHUSB") for the scenarios that pull one out
# (`# vm-usb-disk: MIB`): the guest asks for device_del / device_add through the share
# (hotplug/req-N: "del" or "add"); the host does it over QMP (tests/vm/qmp.py) and answers in
# hotplug/done-N.
usb_mib=0
for s in "${scenarios[@]}"; do
    m="$(usb_of "$s")"
    [ "$m" -le "$usb_mib" ] || usb_mib=$m
done
usb_opts=()
if [ "$usb_mib" -gt 0 ]; then
    truncate -s "${usb_mib}M" "$work/usb.img"
    mkfs.ext4 -q -F -L BENCHUSB -m 0 "$work/usb.img"
    mkdir -p "$share/hotplug"
    usb_opts=(-device qemu-xhci,id=xhci
        -blockdev "driver=file,filename=$work/usb.img,node-name=usbfile"
        -blockdev driver=raw,file=usbfile,node-name=usbdisk
        -device usb-storage,bus=xhci.0,drive=usbdisk,id=usbstick)
fi
# hotplug: answers the guest's device_del / device_add requests (one file each).
hotplug() {
    local req n
    for req in "$share/hotplug"/req-*; do
        [ -f "$req" ] || continue
        n="${req##*/req-}"
        [ "${n%.tmp}" = "$n" ] || continue
        [ -e "$share/hotplug/done-$n" ] && continue
        case "$(cat "$req")" in
            del) python3 "$here/qmp.py" "$work/qmp.sock" del usbstick ;;
            add) python3 "$here/qmp.py" "$work/qmp.sock" add usbstick usb-storage xhci.0 usbdisk ;;
            *) echo '{"ok": false, "error": "unknown request"}' ;;
        esac >"$share/hotplug/done-$n.tmp" 2>&1
        mv "$share/hotplug/done-$n.tmp" "$share/hotplug/done-$n"
        echo "run.sh:   hotplug $(cat "$req"): $(head -c 200 "$share/hotplug/done-$n")"
    done
}

qemu_pid=""
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then kill "$qemu_pid" 2>/dev/null; fi
    if [ "$keep" = 0 ]; then rm -rf "$work"; else echo "run.sh: kept $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$accel" = kvm ]; then accel_opts=(-accel kvm -cpu host); else accel_opts=(-accel tcg -cpu "$cpu"); fi
append="root=/dev/vda rw rootfstype=ext4 init=/usr/local/sbin/benchcam-vm-init console=ttyS0"
append+=" panic=-1 oops=panic loglevel=4 quiet"

# boot N: one emulator run. Returns 0 when the guest finished (marker seen, "guest done" or a
# clean exit after it), 3 when the boot never reached the test (retry), 1 otherwise.
boot() {
    local n="$1" serial="$work/serial-$1.log" t0=$SECONDS
    : >"$serial"
    rm -rf "${share:?}/results"/* "$share/hotplug"/*
    qemu-system-x86_64 -machine q35 "${accel_opts[@]}" -smp "$smp" -m "$mem" \
        -nographic -monitor none -serial "file:$serial" -no-reboot -nic none \
        -qmp "unix:$work/qmp.sock,server=on,wait=off" "${usb_opts[@]}" \
        -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" -append "$append" \
        -drive "file=$work/root.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap" \
        -drive "file=$work/data.img,if=virtio,format=raw,cache=unsafe" \
        -virtfs "local,path=$share,mount_tag=bench,security_model=none,id=bench" \
        -device virtio-rng-pci </dev/null >"$work/qemu-$n.out" 2>&1 &
    qemu_pid=$!
    local reached=0 shown=0 deadline=$((SECONDS + boot_timeout))
    while kill -0 "$qemu_pid" 2>/dev/null; do
        if [ "$reached" = 0 ]; then
            if grep -q 'BENCHCAM-VM: init up' "$serial"; then
                reached=1
                deadline=$((SECONDS + total_limit + 60))
                echo "run.sh: boot $n reached the test after $((SECONDS - t0)) s"
            elif grep -qE 'Kernel panic|Oops:|BUG: ' "$serial" || [ "$SECONDS" -ge "$deadline" ]; then
                echo "run.sh: boot $n did not reach the test ($(grep -m1 -oE 'Kernel panic.*|Oops:.*|BUG: .*' "$serial" || echo "no marker in ${boot_timeout} s"))"
                kill "$qemu_pid" 2>/dev/null; wait "$qemu_pid" 2>/dev/null; qemu_pid=""
                return 3
            fi
        else
            # Progress: the scenario lines of the serial console not shown yet.
            local lines
            lines="$(grep -a -o 'BENCHCAM-VM: scenario .*' "$serial" | tr -d '\r')"
            local count; count="$(printf '%s' "$lines" | grep -c .)"
            if [ "$count" -gt "$shown" ]; then
                printf '%s\n' "$lines" | tail -n +"$((shown + 1))" | sed 's/^BENCHCAM-VM: /run.sh:   /'
                shown=$count
            fi
            [ "$usb_mib" = 0 ] || hotplug
            if [ "$SECONDS" -ge "$deadline" ]; then
                echo "run.sh: boot $n: the guest ran past its time limit; killing the emulator"
                kill "$qemu_pid" 2>/dev/null; wait "$qemu_pid" 2>/dev/null; qemu_pid=""
                return 1
            fi
        fi
        if [ "$usb_mib" = 0 ]; then sleep 1; else sleep 0.2; fi
    done
    wait "$qemu_pid" 2>/dev/null
    qemu_pid=""
    if [ "$reached" = 0 ] && ! grep -q 'BENCHCAM-VM: init up' "$serial"; then
        echo "run.sh: boot $n: the emulator exited before the test ($(tail -c 300 "$work/qemu-$n.out" | tr '\n' ' '))"
        grep -m1 -oE 'Kernel panic.*|Oops:.*' "$serial" || true
        return 3
    fi
    echo "run.sh: boot $n: guest finished after $((SECONDS - t0)) s"
    grep -q 'BENCHCAM-VM: guest done' "$serial" || return 1
    return 0
}

t_run=$SECONDS
retries=0 rc=3
for attempt in 1 2 3; do
    boot "$attempt"
    rc=$?
    [ "$rc" = 3 ] || break
    [ "$attempt" -lt 3 ] && retries=$((retries + 1))
done
run_s=$((SECONDS - t_run))
last_serial="$work/serial-$attempt.log"
cp "$last_serial" "$results/serial.log" 2>/dev/null
for a in $(seq 1 $((attempt - 1))); do cp "$work/serial-$a.log" "$results/serial-failed-boot-$a.log"; done
echo "run.sh: boots: $attempt (retries: $retries), emulator time ${run_s} s, accel $accel, smp $smp"
if [ "$rc" = 3 ]; then
    echo "run.sh: no boot reached the test in 3 tries (serial logs in $results)"
    echo "0 passed, 1 failed" | tee "$results/summary.txt"
    exit 1
fi

# ---- results back, judged ---------------------------------------------------------------------
passed=0 failed=0 unjudged=0
ok() { passed=$((passed + 1)); echo "  ok: $1"; }
bad() { failed=$((failed + 1)); echo "  FAILED: $1"; }
[ "$rc" = 0 ] || bad "the guest finished its scenarios (rc $rc; see $results/serial.log)"
{
    echo "boot_attempts=$attempt retries=$retries emulator_s=$run_s accel=$accel smp=$smp"
    grep -o 'BENCHCAM-VM: .*' "$last_serial" | tr -d '\r'
} >"$results/run.txt"
if [ -d "$share/results/_guest" ]; then rm -rf "$results/_guest"; mv "$share/results/_guest" "$results/_guest"; fi
for s in "${scenarios[@]}"; do
    rm -rf "${results:?}/$s"
    if [ -d "$share/results/$s" ]; then mv "$share/results/$s" "$results/$s"; fi
done
for s in "${scenarios[@]}"; do
    echo
    echo "== $s ($(sed -n 's/.*"seconds": *\([0-9.]*\).*/\1/p' "$results/$s/scenario.json" 2>/dev/null || echo '?') s in the guest)"
    if [ ! -f "$results/$s/scenario.json" ]; then
        bad "$s: the scenario left no results (see $results/serial.log)"
        continue
    fi
    [ "$check" = 1 ] || continue
    checker="$here/check/$s.py"
    if [ ! -f "$checker" ]; then bad "$s: no checker tests/vm/check/$s.py"; continue; fi
    out="$(PYTHONPATH="$here/check" PYTHONDONTWRITEBYTECODE=1 python3 "$checker" "$results/$s" 2>&1)"
    crc=$?
    echo "$out"
    p="$(grep -c '^  ok: ' <<<"$out")" f="$(grep -c '^  FAILED: ' <<<"$out")"
    passed=$((passed + p)) failed=$((failed + f))
    unjudged=$((unjudged + $(grep -c '^  note: .*the guest is too slow' <<<"$out")))
    if [ "$crc" -ne 0 ] && [ "$f" = 0 ]; then bad "$s: checker exited $crc"; fi
done
echo
if [ "$unjudged" -gt 0 ]; then
    echo "run.sh: $unjudged recording phase(s) had recorder drops counted, not judged: benchcam needed more" \
        "CPU than the guest had to spare (the host was busy; see the notes above)"
fi
echo "run.sh: ${#scenarios[@]} scenario(s) in one boot: ${run_s} s of emulator time, $retries boot retr$([ "$retries" = 1 ] && echo y || echo ies)"
echo "$passed passed, $failed failed" | tee "$results/summary.txt"
[ "$failed" -eq 0 ]
exit
}
