#!/usr/bin/env bash
# Every figure of DESIGN §9 in one run, each beside its peer measured on the same input in
# the same run, printed at the end as one table (figure | benchcam | peer | ratio | target |
# pass?) with the machine it came from. The benches behind it:
#
#   cargo bench --bench recording   allocations per frame; recording CPU vs ffmpeg libx264
#                                   ultrafast and libopenh264 (+ veryfast, same-settings)
#   cargo bench --bench jpeg        JPEG 720p encode vs libjpeg-turbo
#   cargo bench --bench live        CPU 10 viewers / 1 (JPEG, H.264); recording + 4 H.264
#                                   viewers / recording; latency (WebSocket JPEG, MJPEG,
#                                   WebSocket H.264); bytes per viewer; RSS
#
# The capture → picture latency in Chromium via MSE is measured by tests/browser/latency.mjs
# (`BROWSER_SCRIPT=latency.mjs tests/browser/run.sh`); with --browser this script runs it
# and takes its figures, otherwise the row says where they come from.
#
#   tests/bench.sh [--browser] [--no-install]
#
#   --browser      also run tests/browser/latency.mjs (about a minute) for the MSE figures
#   --no-install   do not apt-get the peers that are missing (ffmpeg, libopenh264-dev,
#                  libturbojpeg0, nasm); their rows then say NOT MEASURED
#   BENCH_LOG_DIR  where each bench's full output goes (default target/bench)
#
# Builds under `flock /tmp/benchcam-cargo.lock` (a shared machine's builds wait for each
# other), then runs the bench binaries outside the lock. Exits non-zero only when a bench
# itself fails; figures that miss their targets are listed at the end, after the table.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

browser=0
install=1
for arg in "$@"; do
  case "$arg" in
    --browser) browser=1 ;;
    --no-install) install=0 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

logs="${BENCH_LOG_DIR:-target/bench}"
mkdir -p "$logs"
lock=/tmp/benchcam-cargo.lock

say() { echo "bench.sh: $*" >&2; }

# --- the peers ---------------------------------------------------------------------------
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
pkg-config --exists openh264 2>/dev/null || missing+=(libopenh264-dev)
ldconfig -p 2>/dev/null | grep -q 'libturbojpeg\.so\.0' || missing+=(libturbojpeg0)
if [ "$(uname -m)" = x86_64 ]; then command -v nasm >/dev/null || missing+=(nasm); fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$install" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing the peers that are missing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 ||
      { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; } ||
      say "apt-get failed: the rows that need ${missing[*]} will say NOT MEASURED"
  else
    say "missing: ${missing[*]} (their rows will say NOT MEASURED)"
  fi
fi

# --- build -------------------------------------------------------------------------------
# openh264 picks its assembly at build time: built before nasm was installed, it stays at
# its C fallback (about 3x slower) until rebuilt, and every H.264 figure would say so.
no_asm=$(grep -l "Failed to compile NASM" target/release/build/openh264-sys2-*/output 2>/dev/null || true)
if [ -n "$no_asm" ] && command -v nasm >/dev/null; then
  say "openh264 was built without nasm (its C fallback); rebuilding it with nasm"
  flock "$lock" cargo clean --release -p openh264-sys2 >&2
fi
say "building the benches (waiting for $lock)"
build_log="$logs/build.log"
flock "$lock" cargo bench --no-run --bench recording --bench jpeg --bench live 2>&1 | tee "$build_log" >&2
exe() { sed -n "s|.*Executable benches/$1.rs (\(.*\))|\1|p" "$build_log" | tail -1; }
recording=$(exe recording) jpeg=$(exe jpeg) live=$(exe live)
for b in "$recording" "$jpeg" "$live"; do
  [ -x "$b" ] || { say "no bench binary in the build's output: $build_log"; exit 1; }
done
if grep -qs "Failed to compile NASM" target/release/build/openh264-sys2-*/output; then
  say "WARNING: openh264 is built without its assembly: the H.264 figures are its C fallback's"
fi

# --- the machine, and its load while the benches run ---------------------------------------
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
[ -n "$cpu_model" ] || cpu_model=$(uname -m)
loads="$logs/loadavg.txt"
: > "$loads"
(while sleep 10; do cut -d' ' -f1 /proc/loadavg >> "$loads"; done) &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT
started=$(date -u +%Y-%m-%dT%H:%MZ)

run() { # name binary: its output to $logs/name.log and to stderr
  say "running $1 (log: $logs/$1.log)"
  "$2" --bench 2>&1 | tee "$logs/$1.log" | { grep --line-buffered -v '^\[OpenH264\]' >&2 || true; }
}
run recording "$recording"
run jpeg "$jpeg"
run live "$live"

# --- rows --------------------------------------------------------------------------------
rows="$logs/rows.txt"
grep -h '^FIGURE|' "$logs/recording.log" "$logs/live.log" | cut -d'|' -f2- > "$rows" || true

# JPEG: the bench's own range line per picture kind, with quality 80's times beside it.
jpeg_row() { # kind
  local range ms_ours ms_peer lo hi pass
  range=$(sed -n "s|^benchcam / libjpeg-turbo, 720p I420, $1, quality 75-85: \([0-9.]*-[0-9.]*\).*|\1|p" "$logs/jpeg.log")
  if [ -z "$range" ]; then
    echo "JPEG 720p encode / libjpeg-turbo, $1 pattern|—|libjpeg-turbo not loaded (libturbojpeg0)|—|≤ 1.5|NOT MEASURED"
    return
  fi
  ms_ours=$(awk -v k="-- $1, quality 80" '$0==k{s=1;next} /^--/{s=0} s&&/^benchcam encode_raw/{print $3}' "$logs/jpeg.log")
  ms_peer=$(awk -v k="-- $1, quality 80" '$0==k{s=1;next} /^--/{s=0} s&&/^libjpeg-turbo /&&!/FASTDCT/{print $2}' "$logs/jpeg.log")
  lo=${range%-*} hi=${range#*-}
  pass=$(awk -v h="$hi" 'BEGIN{print (h <= 1.5) ? "pass" : "FAIL"}')
  echo "JPEG 720p encode / libjpeg-turbo, $1 pattern, quality 75–85 (times: quality 80)|$ms_ours ms|$ms_peer ms|$lo–$hi|≤ 1.5|$pass"
}
jpeg_row grain >> "$rows"
jpeg_row smooth >> "$rows"

if [ "$browser" = 1 ]; then
  say "building the service and running tests/browser/latency.mjs (30 s of live H.264 in Chromium) for the MSE figures"
  flock "$lock" cargo build --release >&2
  BROWSER_SCRIPT=latency.mjs LATENCY_SECONDS=30 bash tests/browser/run.sh > "$logs/browser.log" 2>&1 ||
    say "tests/browser/latency.mjs failed (see $logs/browser.log)"
  if grep -q '^FIGURE|' "$logs/browser.log"; then
    grep -h '^FIGURE|' "$logs/browser.log" | cut -d'|' -f2- >> "$rows"
  else
    echo "capture → picture in Chromium via MSE, p95; first picture for a new viewer|—|no figure in $logs/browser.log|—|≤ 250 ms; ≤ 500 ms|NOT MEASURED" >> "$rows"
  fi
else
  echo "capture → picture in Chromium via MSE, p95; first picture for a new viewer|measured by tests/bench.sh --browser (BROWSER_SCRIPT=latency.mjs tests/browser/run.sh)|—|—|≤ 250 ms; ≤ 500 ms|NOT MEASURED here" >> "$rows"
fi

# --- the table -----------------------------------------------------------------------------
load_range=$(sort -n "$loads" | sed -n '1p;$p' | paste -sd- -)
[ -n "$load_range" ] || load_range=$(cut -d' ' -f1 /proc/loadavg)
echo
echo "## DESIGN §9 figures — $started"
echo
echo "Machine: $(nproc) CPUs, $cpu_model; 1-minute load average $load_range during the run."
echo
echo "| figure | benchcam | peer | ratio | target | pass? |"
echo "|---|---|---|---|---|---|"
awk -F'|' '{ printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; print "" }' "$rows"
echo
failed=$(awk -F'|' '$6 ~ /FAIL/ {print "  - " $1 ": " $2 " (ratio " $4 ", target " $5 ")"}' "$rows")
unmeasured=$(awk -F'|' '$6 ~ /NOT MEASURED/ {print "  - " $1 ": " ($3 == "—" ? $2 : $3)}' "$rows")
if [ -n "$failed" ]; then
  echo "MISSED TARGETS ($(grep -c . <<<"$failed")):"
  echo "$failed"
else
  echo "Every measured figure meets its target."
fi
if [ -n "$unmeasured" ]; then
  echo "NOT MEASURED in this run:"
  echo "$unmeasured"
fi
echo "Full output of each bench: $logs/"
