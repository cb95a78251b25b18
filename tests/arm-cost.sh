#!/usr/bin/env bash
# ARM cost without a Pi (issue 11 part 5): the encoders' guest instructions per 1280x720
# frame on aarch64, counted under qemu-aarch64 by a TCG plugin (benches/arm/insn_count.c),
# with the share of them that are NEON (Advanced SIMD). A count, not a time: it does not
# move with the machine's load, so NEON and scalar paths can be compared run to run.
#
#   tests/arm-cost.sh [--no-install]
#
# What it runs: the recording bench cross-built for aarch64-unknown-linux-gnu, in its
# `--encode-loop WHAT COUNT` mode (draw 40 pattern frames, encode COUNT of them, nothing
# else), at COUNT 10 and 40; (instructions(40) - instructions(10)) / 30 is one frame's,
# with start-up and pattern drawing cancelled out. WHAT: benchcam's JPEG encoder (quality
# 80), jpeg-encoder 0.7 (no NEON code: its scalar path), benchcam's H.264 encoder
# (openh264 with its NEON assembly, an IDR every 30 frames as the recorder's fragments).
#
# Needs: the aarch64 cross toolchain (tests/lib/install-deps.sh --cross), a qemu-aarch64
# built with plugin support (Debian's dynamic qemu-user 7.2 has it, qemu-user-static does
# not; installed with apt-get --no-install-recommends when missing and root), cc.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

install=1
[ "${1:-}" = --no-install ] && install=0
lock=/tmp/benchcam-cargo.lock
out="${BENCH_LOG_DIR:-target/bench}/arm"
mkdir -p "$out"
say() { echo "arm-cost.sh: $*" >&2; }

qemu=/usr/bin/qemu-aarch64
if ! "$qemu" -h 2>/dev/null | grep -q -- '^-plugin'; then
  if [ "$install" = 1 ] && [ "$(id -u)" = 0 ]; then
    say "installing qemu-user (qemu-aarch64 with plugin support)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >&2
  fi
  "$qemu" -h 2>/dev/null | grep -q -- '^-plugin' || { say "no qemu-aarch64 with -plugin ($qemu)"; exit 1; }
fi

plugin="$out/libinsn_count.so"
cc -O2 -shared -fPIC -o "$plugin" benches/arm/insn_count.c

say "cross-building the recording bench for aarch64 (waiting for $lock)"
build_log="$out/build.log"
RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR="$root/target/aarch64-cross" \
  flock "$lock" cargo bench --no-run --target aarch64-unknown-linux-gnu --bench recording 2>&1 |
  tee "$build_log" >&2
bench=$(sed -n 's|.*Executable benches/recording.rs (\(.*\))|\1|p' "$build_log" | tail -1)
[ -x "$bench" ] || { say "no aarch64 bench binary in $build_log"; exit 1; }

count() { # what frames -> "instructions simd"
  "$qemu" -L /usr/aarch64-linux-gnu -plugin "$plugin" -d plugin -D "$out/$1-$2.txt" \
    "$bench" --encode-loop "$1" "$2" > "$out/$1-$2.out"
  sed -n 's/^insn_count: instructions \([0-9]*\) simd \([0-9]*\)$/\1 \2/p' "$out/$1-$2.txt"
}

echo "| encoder, 1280x720 I420 pattern frame, aarch64 | instructions per frame | NEON share | bytes per frame |"
echo "|---|---|---|---|"
declare -A per_frame
for what in jpeg jpeg-encoder h264; do
  say "counting $what (10 and 40 frames under qemu)"
  read -r i10 s10 < <(count "$what" 10)
  read -r i40 s40 < <(count "$what" 40)
  b10=$(sed -n 's/.* \([0-9]*\) bytes$/\1/p' "$out/$what-10.out")
  b40=$(sed -n 's/.* \([0-9]*\) bytes$/\1/p' "$out/$what-40.out")
  per=$(( (i40 - i10) / 30 ))
  per_frame[$what]=$per
  awk -v w="$what" -v i="$per" -v s=$(( (s40 - s10) / 30 )) -v b=$(( (b40 - b10) / 30 )) \
    'BEGIN { printf "| %s | %.1f M | %.0f %% | %.1f kB |\n", w, i / 1e6, 100 * s / i, b / 1000 }'
done
awk -v a="${per_frame[jpeg]}" -v b="${per_frame[jpeg-encoder]}" -v h="${per_frame[h264]}" 'BEGIN {
  printf "\nbenchcam JPEG / jpeg-encoder (scalar on ARM): %.2f of the instructions\n", a / b
  printf "benchcam H.264 / benchcam JPEG: %.2f\n", h / a
}'
