#!/usr/bin/env bash
# Builds the cargo-fuzz targets and runs each for a bounded time, two at a time.
#
#   bash fuzz/run.sh [--seconds N] [--jobs J] [--sanitizer none|address] [--no-install]
#                    [--build-only] [TARGET...]
#
#   --seconds N    time per target (default 30: what CI runs; `--seconds 600` for a long run)
#   --jobs J       targets run at once (default 2: the machine's cores)
#   --sanitizer S  none (default: the parsers are safe Rust, ~2x more executions) or address
#   --no-install   do not `cargo install cargo-fuzz` when it is missing
#   --build-only   install cargo-fuzz and build the targets, run nothing (tests/run.sh builds
#                  them in the background, at low priority, while other steps run)
#   TARGET...      only these (default: every target in fuzz/Cargo.toml)
#
# Fuzzing needs nightly-only rustc flags (-Zsanitizer, sancov passes): RUSTC_BOOTSTRAP=1 lets
# the stable toolchain take them, so no nightly is installed. Targets are built once with
# debug assertions and overflow checks on (an overflow on outside input is a finding), 16
# codegen units (cargo-fuzz's default of 1 makes the build several minutes longer).
#
# Corpus: the committed seeds (fuzz/seeds/TARGET, real files: clips, a journal, the config,
# request heads, the page's WebSocket frames) are read; new inputs go to fuzz/corpus/TARGET
# (not committed), so a later run starts from what earlier runs found. A crash leaves its
# input in fuzz/artifacts/TARGET/ and fails the run; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a TARGET fuzz/artifacts/TARGET/crash-...
# Each target's libFuzzer log is in fuzz/artifacts/logs/TARGET.log. The last lines are a table
# of executions per target and `N passed, M failed`.
set -uo pipefail

seconds=30 jobs=2 sanitizer=none install=1 build_only=0 targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --sanitizer) sanitizer="$2"; shift 2 ;;
        --no-install) install=0; shift ;;
        --build-only) build_only=1; shift ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "fuzz/run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")" || exit 2
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
[ -d "$cargo_bin" ] && export PATH="$cargo_bin:$PATH"
unset RUSTC RUSTDOC
export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0 CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

cargo_fuzz_version=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
    if [ "$install" = 0 ]; then
        echo "fuzz/run.sh: cargo-fuzz is missing (cargo install cargo-fuzz --locked --version $cargo_fuzz_version)" >&2
        exit 1
    fi
    t0=$SECONDS
    cargo install cargo-fuzz --locked --version "$cargo_fuzz_version" || exit 1
    echo "fuzz/run.sh: cargo-fuzz installed in $((SECONDS - t0)) s"
fi
echo "fuzz/run.sh: $(cargo fuzz --version), $(rustc --version)"

if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
# BENCHCAM_FUZZ_TARGET_DIR: where the build goes (default fuzz/target). tests/run.sh keeps it in
# ~/.cache/benchcam-fuzz, which outlives CI's fresh clones: an unchanged tree rebuilds nothing.
target_dir="${BENCHCAM_FUZZ_TARGET_DIR:-$PWD/target}"
flags=(--release --debug-assertions --sanitizer "$sanitizer" --codegen-units 16 --target-dir "$target_dir")
t0=$SECONDS
cargo fuzz build "${flags[@]}" || exit 1
echo "fuzz/run.sh: build took $((SECONDS - t0)) s"
[ "$build_only" = 0 ] || exit 0

triple="$(rustc -vV | awk '/^host:/ { print $2 }')"
bin_dir="$target_dir/$triple/release"
mkdir -p artifacts/logs

run_one() {  # run_one TARGET: libFuzzer for $seconds, stats in its log
    local t="$1"
    mkdir -p "corpus/$t" "artifacts/$t"
    # first_boot runs bash (and the tools it calls per line) once per input: 4-20 inputs a
    # second, so on a loaded machine a long input can pass libFuzzer's 10 s. It gets 60 s and
    # inputs up to 2 KiB (the shipped template is 1.4 KiB).
    local extra=(-timeout=10)
    [ "$t" = first_boot ] && extra=(-timeout=60 -max_len=2048)
    "$bin_dir/$t" "corpus/$t" "seeds/$t" \
        -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" >"artifacts/logs/$t.log" 2>&1
    echo $? >"artifacts/logs/$t.rc"
}

# The targets' temp files (one per input for some) go to a scratch dir in /dev/shm, removed at
# the end: statics (a target's one service, its one file) are never dropped, nor is anything a
# crashing input leaves.
scratch="$(mktemp -d /dev/shm/benchcam-fuzz.XXXXXX 2>/dev/null || mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"

t0=$SECONDS
running=0
for t in "${targets[@]}"; do
    rm -f "artifacts/logs/$t.rc"
    echo "fuzz/run.sh: $t for $seconds s"
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait
echo "fuzz/run.sh: fuzzing took $((SECONDS - t0)) s"

passed=0 failed=0
printf '\n%-18s %12s %10s %8s  %s\n' target executions "exec/s" corpus result
for t in "${targets[@]}"; do
    log="artifacts/logs/$t.log"
    rc="$(cat "artifacts/logs/$t.rc" 2>/dev/null || echo '?')"
    execs="$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log" | tail -1)"
    rate="$(awk '/stat::average_exec_per_sec:/ { print $2 }' "$log" | tail -1)"
    corpus="$(find "corpus/$t" -type f | wc -l)"
    if [ "$rc" = 0 ]; then
        result=ok; passed=$((passed + 1))
    else
        artifact="$(grep -o 'artifacts/[^ ]*' "$log" | tail -1)"
        result="FAILED (exit $rc) ${artifact:-see $log}"; failed=$((failed + 1))
        grep -m1 -B2 -A12 -E 'panicked at|ERROR: libFuzzer|==ERROR' "$log" | sed 's/^/    /'
    fi
    printf '%-18s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
done
echo
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
