#!/usr/bin/env bash
# Power cuts, for real: benchcam records onto an ext4 data disk in the VM bench's guest, the power
# is cut at a random moment, the guest boots again on the SAME data disk, and the host checks what
# survived. N cycles (default 50); CI runs 5 (tests/vm/ci.sh).
#
#   bash tests/vm/power-cut.sh [--cycles N] [--seed S] [--max-delay S] [--kvm] [--keep]
#                              [--binary PATH] [--boot-timeout S]
#
#   --cycles N      power cuts (default 50); N + 1 boots, the last one checks the last cut and
#                   shuts down cleanly
#   --seed S        seeds the cut plan (default: random; printed, so a run can be repeated)
#   --max-delay S   a cut comes 0.3 .. S seconds after the cut window opens (default 8)
#   --kvm, --boot-timeout S, --binary PATH   as for tests/vm/run.sh
#   --keep          keep target/vm/power-cut/work (the data disk, serial logs)
#   --judge-only    boot nothing: judge the results of the last run again (after a checker change)
#
# Each boot (guest/power-cut.sh in the guest): the kernel's journal recovery (mount, umount), then
# `e2fsck -fn` of the data filesystem; benchcam (test-pattern camera, 320x240 at 10 fps, 4 s clips
# in 500 ms fragments) starts on it, repairs and reconciles; the guest copies the clips, the index
# and the archived experiments to the share; it stops the experiment the cut interrupted (it must
# have resumed) and starts a new one; then the cut: `echo b > /proc/sysrq-trigger` in the guest
# (reboot without sync) or SIGKILL to qemu from the host, chosen per cycle by the seeded plan (both
# kinds in every run of 2+ cycles). The data disk is a raw image (qemu keeps no metadata of its
# own that a kill could tear); the root disk is a fresh overlay every boot.
#
# After every boot the host judges the cut before it (tests/vm/check/power-cut.py): fsck clean,
# every clip decodes fully (ffmpeg), the index agrees with the files, the interrupted clip lost at
# most fragment_duration, the experiment resumed and its archive's manifest checksums match.
# Results: target/vm/power-cut/results/cycle-N/; figures at the end (and in figures.txt); the last
# line is `N passed, M failed` (checks).
set -uo pipefail
# The body is one { } block, so bash reads all of it before running it.
{

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

cycles=50 seed="" max_delay=8 accel=tcg keep=0 boot_timeout=240 judge_only=0
binary="${BENCHCAM_BIN:-$repo/target/release/benchcam}"
while [ $# -gt 0 ]; do
    case "$1" in
        --cycles) cycles="$2"; shift ;;
        --seed) seed="$2"; shift ;;
        --max-delay) max_delay="$2"; shift ;;
        --kvm) accel=kvm ;;
        --keep) keep=1 ;;
        --binary) binary="$2"; shift ;;
        --boot-timeout) boot_timeout="$2"; shift ;;
        --judge-only) judge_only=1 ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "power-cut.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
die() { echo "power-cut.sh: $*" >&2; exit 2; }
if [ "$judge_only" = 1 ]; then
    results="$repo/target/vm/power-cut/results"
    [ -s "$results/plan.txt" ] || die "no results of a run in $results"
    rm -f "$results/figures.jsonl" "$results/reported.json"
    passed=0 failed=0
    last="$(tail -1 "$results/plan.txt" | cut -d' ' -f1)"
    for c in $(seq 2 "$last"); do
        out="$(PYTHONPATH="$here/check" PYTHONDONTWRITEBYTECODE=1 python3 "$here/check/power-cut.py" \
            "$results/cycle-$((c - 1))" "$results/cycle-$c" "$results/figures.jsonl" 2>&1)"
        echo "$out"
        passed=$((passed + $(grep -c '^  ok: ' <<<"$out"))) failed=$((failed + $(grep -c '^  FAILED: ' <<<"$out")))
    done
    echo
    PYTHONPATH="$here/check" PYTHONDONTWRITEBYTECODE=1 python3 "$here/check/power-cut.py" --summary \
        "$results/figures.jsonl" "$((last - 1))" "$(cat "$results/seed.txt" 2>/dev/null || echo '?')" \
        "$(cat "$results/seconds.txt" 2>/dev/null || echo '?')" "$(cat "$results/retries.txt" 2>/dev/null || echo '?')" \
        | tee "$results/figures.txt"
    echo "$passed passed, $failed failed" | tee "$results/summary.txt"
    [ "$failed" -eq 0 ]
    exit
fi
[[ "$cycles" =~ ^[1-9][0-9]*$ ]] || die "--cycles wants a positive number"
[ -x "$binary" ] || die "no benchcam binary at $binary (cargo build --release, or --binary PATH)"
for t in qemu-system-x86_64 qemu-img mkfs.ext4 python3 ffmpeg ffprobe; do
    command -v "$t" >/dev/null || die "missing $t (bash tests/lib/install-deps.sh --vm)"
done
[ -n "$seed" ] || seed="$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"

bash "$here/build.sh" || die "tests/vm/build.sh failed"
guest="$(bash "$here/build.sh" --print-dir)"

base="$repo/target/vm/power-cut"
work="$base/work" results="$base/results"
rm -rf "$work" "$results"
mkdir -p "$work/share/results" "$results"
share="$work/share"
# Without its debug info (37 -> 7 MB; symbols stay for backtraces): every boot reads it over 9p.
objcopy --strip-debug "$binary" "$share/benchcam" 2>/dev/null || cp "$binary" "$share/benchcam"
cp -r "$here/guest" "$share/guest"
: >"$share/verified-experiments.txt"
: >"$share/known.md5"
truncate -s 1G "$work/data.img"
mkfs.ext4 -q -F -L BENCHDATA -m 0 "$work/data.img"

# The plan: per cycle the kind of cut and its delay (seeded). The first two cycles take one
# kind each, so every run of 2+ cycles has both.
python3 - "$seed" "$cycles" "$max_delay" >"$results/plan.txt" <<'PY'
import random, sys
seed, n, max_delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(seed)
for c in range(1, n + 1):
    kind = "sysrq" if c == 1 else "kill" if c == 2 else rng.choice(["sysrq", "kill"])
    # One cycle in five (from the third on) cuts while the last cut's experiment is archived.
    if c >= 3 and rng.random() < 0.2:
        print(c, kind, round(rng.uniform(0.1, 3.0), 2), "archive")
    else:
        print(c, kind, round(rng.uniform(0.3, max_delay), 2), "recording")
print(n + 1, "none", 3, "recording")
PY
echo "power-cut.sh: $cycles cycles, seed $seed (repeat with --seed $seed), cut 0.3-${max_delay} s into the window"
echo "power-cut.sh: guest $guest; binary $binary"

qemu_pid=""
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then kill -KILL "$qemu_pid" 2>/dev/null; fi
    if [ "$keep" = 0 ]; then rm -rf "$work"; else echo "power-cut.sh: kept $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$accel" = kvm ]; then accel_opts=(-accel kvm -cpu host); else accel_opts=(-accel tcg -cpu max); fi
append="root=/dev/vda rw rootfstype=ext4 init=/usr/local/sbin/benchcam-vm-init console=ttyS0"
append+=" panic=-1 oops=panic loglevel=4 quiet"

# boot CYCLE KIND DELAY ATTEMPT: one emulator run. 0: the cycle ran (cut or finished), 3: the
# boot never reached the test (retry), 1: the guest failed.
boot() {
    local c="$1" kind="$2" delay="$3" phase="$4" attempt="$5"
    local serial="$work/serial-$c-$attempt.log" t0=$SECONDS
    : >"$serial"
    rm -rf "${share:?}/results"/*
    printf '{"cycle": %d, "cut": "%s", "delay_s": %s, "phase": "%s"}\n' "$c" "$kind" "$delay" "$phase" \
        >"$share/power-cut.json"
    rm -f "$work/root.qcow2"
    qemu-img create -q -f qcow2 -F raw -b "$guest/root.ext4" "$work/root.qcow2"
    qemu-system-x86_64 -machine q35 "${accel_opts[@]}" -smp 2 -m 1024 \
        -nographic -monitor none -serial "file:$serial" -no-reboot -nic none \
        -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" -append "$append" \
        -drive "file=$work/root.qcow2,if=virtio,format=qcow2,cache=unsafe" \
        -drive "file=$work/data.img,if=virtio,format=raw,cache=unsafe" \
        -virtfs "local,path=$share,mount_tag=bench,security_model=none,id=bench" \
        -device virtio-rng-pci </dev/null >"$work/qemu-$c-$attempt.out" 2>&1 &
    qemu_pid=$!
    local state=boot deadline=$((SECONDS + boot_timeout)) t_window=""
    while kill -0 "$qemu_pid" 2>/dev/null; do
        case "$state" in
            boot)
                if grep -q 'BENCHCAM-VM: init up' "$serial"; then
                    state=test deadline=$((SECONDS + 240))
                    boot_s=$((SECONDS - t0))
                elif grep -qE 'Kernel panic|Oops:|BUG: ' "$serial" || [ "$SECONDS" -ge "$deadline" ]; then
                    echo "power-cut.sh: cycle $c: boot $attempt did not reach the test ($(grep -a -m1 -oE 'Kernel panic.*|Oops:.*|BUG: .*' "$serial" || echo "no marker in ${boot_timeout} s"))"
                    kill -KILL "$qemu_pid" 2>/dev/null; wait "$qemu_pid" 2>/dev/null; qemu_pid=""
                    return 3
                fi
                ;;
            test)
                if grep -q "BENCHCAM-PC: window cycle $c" "$serial"; then
                    t_window=$SECONDS state=window deadline=$((SECONDS + 120))
                    if [ "$kind" = kill ]; then
                        sleep "$delay"
                        kill -KILL "$qemu_pid"
                        wait "$qemu_pid" 2>/dev/null; qemu_pid=""
                        echo "{\"killed_after_s\": $delay}" >"$share/results/cycle-$c/host-kill.json"
                        break
                    fi
                elif grep -q 'BENCHCAM-PC: error' "$serial"; then
                    state=error
                fi
                ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "power-cut.sh: cycle $c: the guest ran past its time limit in state $state; killing the emulator"
            kill -KILL "$qemu_pid" 2>/dev/null; wait "$qemu_pid" 2>/dev/null; qemu_pid=""
            return 1
        fi
        sleep 0.1
    done
    [ -z "$qemu_pid" ] || { wait "$qemu_pid" 2>/dev/null; qemu_pid=""; }
    if [ "$state" = boot ]; then
        echo "power-cut.sh: cycle $c: the emulator exited before the test ($(tail -c 300 "$work/qemu-$c-$attempt.out" | tr '\n' ' '))"
        return 3
    fi
    cycle_s=$((SECONDS - t0))
    grep -a -o 'BENCHCAM-PC: error.*' "$serial" | tr -d '\r' && return 1
    [ -n "$t_window" ] || return 1
    if [ "$kind" = none ]; then grep -q "BENCHCAM-PC: cycle $c: done" "$serial" || return 1; fi
    return 0
}

passed=0 failed=0 retries=0
ok() { passed=$((passed + 1)); echo "  ok: $1"; }
bad() { failed=$((failed + 1)); echo "  FAILED: $1"; }
t_all=$SECONDS
while read -r c kind delay phase; do
    rc=3
    for attempt in 1 2 3; do
        boot "$c" "$kind" "$delay" "$phase" "$attempt"
        rc=$?
        [ "$rc" = 3 ] || break
        [ "$attempt" -lt 3 ] && retries=$((retries + 1))
    done
    cp "$work/serial-$c-$attempt.log" "$share/results/cycle-$c/serial.log" 2>/dev/null
    rm -rf "${results:?}/cycle-$c"
    if [ -d "$share/results/cycle-$c" ]; then mv "$share/results/cycle-$c" "$results/cycle-$c"; fi
    # The clips and archive files it sent, kept by MD5 (the guest sends each content once).
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$here/check" python3 "$here/check/power-cut.py" --store \
        "$results/cycle-$c" "$results/store" "$share/known.md5"
    what="$kind ${delay} s into the window, phase $phase"; [ "$kind" = none ] && what="clean shutdown"
    echo "power-cut.sh: cycle $c ($what): boot ${boot_s:-?} s, cycle ${cycle_s:-?} s, attempts $attempt," \
        "host load $(cut -d' ' -f1 /proc/loadavg)"
    if [ "$rc" = 3 ]; then
        bad "cycle $c: no boot reached the test in 3 tries"
        break
    fi
    [ "$rc" = 0 ] || bad "cycle $c: the guest ran its part ($(cat "$results/cycle-$c/errors.txt" 2>/dev/null | tr '\n' ' '))"
    if [ "$c" -gt 1 ]; then
        out="$(PYTHONPATH="$here/check" PYTHONDONTWRITEBYTECODE=1 python3 "$here/check/power-cut.py" \
            "$results/cycle-$((c - 1))" "$results/cycle-$c" "$results/figures.jsonl" 2>&1)"
        crc=$?
        echo "$out"
        p="$(grep -c '^  ok: ' <<<"$out")" f="$(grep -c '^  FAILED: ' <<<"$out")"
        passed=$((passed + p)) failed=$((failed + f))
        if [ "$crc" -ne 0 ] && [ "$f" = 0 ]; then bad "cycle $((c - 1)): checker exited $crc"; fi
        # Archives checked once are not copied again.
        ls "$results/cycle-$c/experiments" 2>/dev/null >>"$share/verified-experiments.txt"
    fi
done <"$results/plan.txt"
total_s=$((SECONDS - t_all))
echo "$seed" >"$results/seed.txt"; echo "$total_s" >"$results/seconds.txt"; echo "$retries" >"$results/retries.txt"

echo
PYTHONPATH="$here/check" PYTHONDONTWRITEBYTECODE=1 python3 "$here/check/power-cut.py" --summary \
    "$results/figures.jsonl" "$cycles" "$seed" "$total_s" "$retries" | tee "$results/figures.txt"
echo "$passed passed, $failed failed" | tee "$results/summary.txt"
[ "$failed" -eq 0 ]
exit
}
