#!/usr/bin/env bash
# Browser test of the web page: starts the real benchcam binary on a free loopback port with
# a temporary data dir and 4 s clips, then drives the page in Debian's Chromium
# (tests/browser/page.test.mjs). Screenshots, the service log and the page's console
# errors go to ${TEST_OUTPUT:-target/test-output}/browser/.
#
#   BENCHCAM_BIN   the service binary (default target/release/benchcam, relative to the repo)
#   TEST_OUTPUT    where test artefacts go (default target/test-output)
#   CHROMIUM       the browser (default /usr/bin/chromium; installed with apt-get when missing
#                  and running as root)
#   BENCHCAM_ASSETS_DIR  development only: the page from this directory (src/web/assets),
#                  not from the binary, to try page changes without a rebuild
#
#   BROWSER_SCRIPT the script to run against the service (default page.test.mjs; latency.mjs
#                  is the live H.264 latency benchmark, LATENCY_SECONDS long)
#
# Prints the test's "N passed, M failed" line last; exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

bin="${BENCHCAM_BIN:-target/release/benchcam}"
out="${TEST_OUTPUT:-target/test-output}/browser"
chromium="${CHROMIUM:-/usr/bin/chromium}"

fail() {
  echo "browser test: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

[ -x "$bin" ] || fail "$bin is not an executable; build it first (cargo build --release) or set BENCHCAM_BIN"
command -v node >/dev/null || fail "node is not installed"

if [ ! -x "$chromium" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "browser test: installing Debian's chromium" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ||
    fail "apt-get install chromium failed"
fi
[ -x "$chromium" ] || fail "$chromium not found (apt-get install chromium, or set CHROMIUM)"

# tests/lib/install-deps.sh installs them in CI; here only when one is missing.
if [ ! -d "$here/node_modules/playwright-core" ] || [ ! -d "$here/node_modules/fflate" ] ||
  [ ! -d "$here/node_modules/axe-core" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci failed"
fi

mkdir -p "$out"
rm -f "$out"/*.png "$out"/console.log "$out"/service.log "$out"/axe.json

tmp="$(mktemp -d "${TMPDIR:-/tmp}/benchcam-browser.XXXXXX")"
service_pid=""
cleanup() {
  if [ -n "$service_pid" ] && kill -0 "$service_pid" 2>/dev/null; then
    kill -TERM "$service_pid" 2>/dev/null || true
    # Give it 5 s to finalise its clip and exit, then stop it hard.
    for _ in $(seq 1 50); do kill -0 "$service_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# A free loopback port: bind port 0, read it, release it.
port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
url="http://127.0.0.1:$port"

cat >"$tmp/benchcam.toml" <<EOF
# Written by tests/browser/run.sh for one test run.
[service]
data_dir = "$tmp/data"
listen = "127.0.0.1:$port"

[camera]
source = "pattern"
# Like a USB webcam: MJPEG frames with driver-like timestamp jitter. Live view passes the
# camera's JPEGs through; clips are H.264 transcoded from them (Chromium's <video> plays
# no MJPEG-in-MP4, so a clip that plays here is the H.264 a phone gets).
pattern_format = "mjpeg"
pattern_jitter = "10ms"

[recording]
clip_length = "4s"
# The span check allows the file to start up to one fragment before the asked start.
fragment_duration = "500ms"
# 4 s clips: keep 8 minutes, so the 2-minute span is still there when it is asked for.
rolling_clips_count = 120
EOF

"$bin" --config "$tmp/benchcam.toml" >"$out/service.log" 2>&1 &
service_pid=$!

# Up when /api/v1/health answers at all (a degraded service still serves the page); 30 s.
up=""
for _ in $(seq 1 150); do
  if ! kill -0 "$service_pid" 2>/dev/null; then
    tail -n 20 "$out/service.log" >&2 || true
    fail "the service exited before it answered (log: $out/service.log)"
  fi
  if node -e 'fetch(process.argv[1]).then(()=>process.exit(0),()=>process.exit(1))' "$url/api/v1/health" 2>/dev/null; then
    up=1
    break
  fi
  sleep 0.2
done
[ -n "$up" ] || fail "no answer from $url/api/v1/health within 30 s (log: $out/service.log)"

status=0
BENCHCAM_URL="$url" SCREENSHOT_DIR="$out" CHROMIUM="$chromium" \
  node "tests/browser/${BROWSER_SCRIPT:-page.test.mjs}" || status=$?
echo "browser test: screenshots and logs in $out" >&2
exit "$status"
