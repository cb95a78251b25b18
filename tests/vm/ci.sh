#!/usr/bin/env bash
# The VM bench as CI runs it (tests/run.sh's `vm` step): builds the guest (cached: seconds;
# uncached ~4 min), then boots it once and runs every CI scenario in that boot, judging each on
# the host (tests/vm/run.sh). 14 min with the guest cached while the host was busy (TCG, 2
# shared cores; README, "The VM bench").
#
#   bash tests/vm/ci.sh [--no-install] [run.sh options, e.g. --kvm or --keep]
#
#   --no-install   the guest build installs no missing host tool (it names them and fails)
#
# Needs root (the guest build) and the release binary target/release/benchcam (cargo build
# --release; BENCHCAM_BIN or --binary PATH for another). Ends with run.sh's `N passed, M failed`.
set -uo pipefail
# The body is one { } block, so bash reads all of it before running it: editing this file
# while it runs (a boot takes minutes) cannot break the run.
{

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Every scenario but `drivers` (a survey of the drivers, not a test) and throwaway scratch ones.
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
echo "ci.sh: guest build ${build_s} s ($cached), boot + scenarios + checks $((SECONDS - t1)) s, total $((SECONDS - t0)) s"
# run.sh's last line (`N passed, M failed`) stays the last line.
tail -n 1 "$here/../../target/vm/results/summary.txt" 2>/dev/null
exit $rc
}
