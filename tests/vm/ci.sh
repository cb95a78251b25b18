#!/usr/bin/env bash
# The VM bench as CI runs it (tests/run.sh's `vm` step): builds the guest (cached: seconds;
# uncached ~4 min), then boots it once and runs every CI scenario in that boot, judging each on
# the host (tests/vm/run.sh). 14 min with the guest cached while the host was busy (TCG, 2
# shared cores; README, "The VM bench"). Power cuts only with BENCHCAM_VM_POWER_CUTS=N
# (tests/vm/power-cut.sh --cycles N: N+1 more boots on one data disk, ~1.1 min a cycle).
#
#   bash tests/vm/ci.sh [--no-install] [run.sh options, e.g. --kvm or --keep]
#
#   --no-install   the guest build installs no missing host tool (it names them and fails)
#
# Needs root (the guest build) and the release binary target/release/benchcam (cargo build
# --release; BENCHCAM_BIN or --binary PATH for another). Ends with `N passed, M failed`: the checks
# of both parts added up.
set -uo pipefail
# The body is one { } block, so bash reads all of it before running it: editing this file
# while it runs (a boot takes minutes) cannot break the run.
{

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Every scenario but `drivers` (a survey of the drivers, not a test) and throwaway scratch ones.
# drive-unplug and drive-readonly are not in CI yet: their last run (13:21) found real faults
# that are not fixed (the first clip recorded after the drive returns often fails to decode:
# stale encoded bytes at the front of its first mdat; a disk returning EIO leaves
# storage.state 'ok'). Run them with
# `bash tests/vm/run.sh drive-unplug drive-readonly` (README, "The VM bench").
scenarios=(vivid-raw vivid-drops loopback-mjpeg loopback-corrupt vivid-unplug two-cameras clock-step)

build_args=() run_args=()
for a in "$@"; do
    case "$a" in
        --no-install) build_args+=(--no-install) ;;
        *) run_args+=("$a") ;;
    esac
done

t0=$SECONDS
if bash "$here/build.sh" --check-cache >/dev/null; then cached=cached; else cached="not cached"; fi
bash "$here/build.sh" "${build_args[@]}" || { echo "ci.sh: guest build failed"; echo "0 passed, 1 failed"; exit 1; }
build_s=$((SECONDS - t0))
echo "ci.sh: guest ready in ${build_s} s ($cached)"

t1=$SECONDS
bash "$here/run.sh" "${scenarios[@]}" "${run_args[@]}"
rc=$?
run_s=$((SECONDS - t1))

# Power cuts (tests/vm/power-cut.sh) on one data disk, with BENCHCAM_VM_POWER_CUTS=N cycles.
pc_args=() prev=""
for a in "${run_args[@]}"; do
    case "$a" in --kvm | --keep) pc_args+=("$a") ;; esac
    case "$prev" in --binary | --boot-timeout) pc_args+=("$prev" "$a") ;; esac
    prev="$a"
done
t2=$SECONDS
# Not in CI yet: the 50-cycle run (3311 s) found a fault that is not fixed (a cut between a
# fragment's video and its .frames.csv rows leaves samples without rows: 3 of 50 cuts, so 5
# cycles would fail about one CI run in four; the "7.9 s lost with the writer behind" of its
# first judging was a checker error, judged again: 0-4 frames).
# `BENCHCAM_VM_POWER_CUTS=5 bash tests/vm/ci.sh` runs them.
pc_rc=0
if [ "${BENCHCAM_VM_POWER_CUTS:-0}" -gt 0 ]; then
    bash "$here/power-cut.sh" --cycles "$BENCHCAM_VM_POWER_CUTS" --max-delay 5 "${pc_args[@]}"
    pc_rc=$?
fi
pc_s=$((SECONDS - t2))
echo "ci.sh: guest build ${build_s} s ($cached), boot + scenarios + checks ${run_s} s, power cuts ${pc_s} s," \
    "total $((SECONDS - t0)) s"
# The last line: both parts' `N passed, M failed` added up.
results="$here/../../target/vm"
read -r p1 _ f1 _ < <(tail -n 1 "$results/results/summary.txt" 2>/dev/null || echo "0 passed, 1 failed")
p2=0 f2=0
if [ "${BENCHCAM_VM_POWER_CUTS:-0}" -gt 0 ]; then
    read -r p2 _ f2 _ < <(tail -n 1 "$results/power-cut/results/summary.txt" 2>/dev/null || echo "0 passed, 1 failed")
fi
echo "$((p1 + p2)) passed, $((f1 + f2)) failed"
[ "$rc" = 0 ] && [ "$pc_rc" = 0 ]
exit
}
