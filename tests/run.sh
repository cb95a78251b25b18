#!/usr/bin/env bash
# benchcam's test command (the README's; .ci/run calls it).
#
#   bash tests/run.sh [--quick] [--no-install]
#
# Steps, in order, each with a banner and its time (the ~ times: a clean run on 2 cores):
#   deps     tests/lib/install-deps.sh: nasm, ffmpeg; with the full run also the aarch64 cross
#            toolchain + qemu-user-static + binfmt, chromium, tests/browser's npm packages, the
#            VM bench's qemu-system-x86, qemu-utils and mmdebstrap, rclone for replication, and the
#            fleet step's prometheus (promtool) and avahi-daemon
#   garage-build, fuzz-build  (background, nice 19, from here): Garage 2.5.0 for
#            the replication step (`cargo install` into ~/.cache/benchcam-garage, ~13 min of a
#            core) and the cargo-fuzz targets (~7 min); they take the CPU the steps in front
#            leave idle, and get the normal priority when their step waits for them
#   image-base (background, normal priority, from here; when the image step runs): the image's
#            Debian trixie arm64 root filesystem (image-build/build.sh --base-only: mmdebstrap
#            under qemu-user, cached in ~/.cache/benchcam-image, ~18 min of one core uncached)
#   fmt      cargo fmt --all --check
#   clippy   cargo clippy --release --all-targets -- -D warnings
#   build    cargo build --release --bins: the binary the vm, schemathesis, fleet, browser and
#            replication steps run
#   vm       (background, from here until before aarch64) tests/vm/ci.sh: the release binary
#            against real kernel V4L2 drivers (vivid, v4l2loopback), a USB data disk pulled and
#            a disk returning EIO, a clock step, then 5 power cuts, in a Debian VM under
#            qemu-system-x86_64 (TCG); ~27 min beside the other steps, 3 of them to build the
#            guest into ~/.cache/benchcam-vm (x86_64 hosts, as root)
#   host     cargo test --release --no-fail-fast  (unit, integration and doc tests on x86_64)
#   soak     cargo bench --bench soak -- --seconds 120: 64 viewers (some stalled, some
#            reconnecting) for 2 min at 720p30 while recording; fails on memory growth, recorder
#            drops or sessions/connections left open
#   schemathesis tests/schemathesis/run.sh: schemathesis (pinned, in a venv under ~/.cache)
#            against the release binary, from its own /api/v1/openapi.json, ~100 s
#   fleet    tests/fleet/run.sh (as root, ~15 s): two benches (release binary) in two network
#            namespaces joined by a veth pair, avahi-daemon beside one as on the image: each lists
#            the other in GET /api/v1/fleet (prints the time for a new box to appear), sees a
#            change, drops the other when it stops; `benchcam fleet-targets`; promtool check
#            metrics on a live /metrics, check config/rules and test rules on packaging/prometheus
#   appliance image-build/test-setup.sh: the image's first-boot settings script (1 s)
#   fuzz     fuzz/run.sh: every cargo-fuzz target for BENCHCAM_FUZZ_SECONDS (default 30: issue
#            10 asks at least 30 s) each, two at a time (built by fuzz-build; stable rustc with
#            RUSTC_BOOTSTRAP=1)
#   replication tests/replication/run.sh: the release binary replicating experiments to a real
#            single-node Garage 2.5.0 (built by garage-build), checked with rclone: upload and
#            verify, SIGKILL mid-upload, the store down mid-upload, a wrong key, a secret readable
#            by others, delete_after_upload; ~2.5 min
#   aarch64  the same tests cross-built with Debian's rustc-web and run under qemu-aarch64-static
#            (with BENCHCAM_EMULATED=1 set, for tests that need to relax time limits)
#   browser  tests/browser/run.sh, when tests/browser exists
#   libcamera tests/libcamera/run.sh: --features libcamera built in a trixie chroot (x86_64;
#            aarch64 is built by the packages step), clippy with it, and run against libcamera
#            0.7.1's virtual camera: clips decode, sample times from SensorTimestamp
#   packages tests/packaging/run.sh: builds the .debs (packaging/build-debs.sh) and installs them
#            into clean Debian trixie roots (arm64 under qemu-user: probe, record, purge keeps the
#            clips); roots cached in ~/.cache/benchcam-packaging and ~/.cache/benchcam-libcamera
#   image    (background, beside the packages step, joined last) the flashable image
#            (image-build/build.sh --no-xz, on image-base's root filesystem, with the aarch64
#            binary of the packages step's recipe), then image-build/boot-test.sh: three boots
#            of it under qemu-system-aarch64 (TCG) on Debian's 7.3 kernel: vivid recorded on the
#            first, a clean power-off, a power cut, every clip decodes (~8 min: ~2 min to build,
#            6-8 min of TCG); BENCHCAM_IMAGE_TEST=0 skips it
# The background steps' logs are printed when the run waits for them (fuzz-build before fuzz,
# garage-build before replication, vm before aarch64, image-base before image, image last).
# Every step runs even after an earlier one failed; the last line is `N passed, M failed`
# (steps), and the exit status is non-zero if any step failed.
#
#   --quick       skip the background builds and the soak, fuzz, schemathesis, replication,
#                 fleet, vm, aarch64, browser, libcamera, packages and image steps (and their
#                 installs): for local iteration
#   --no-install  do not install anything; steps whose tools are missing fail and say what's missing
#
# Environment knobs:
#   CARGO_BUILD_JOBS         cargo's job count (default: all cores)
#   BENCHCAM_CROSS_TEST_ARGS extra arguments for the aarch64 `cargo test`, e.g.
#                            '-- --skip some_test' for a test that cannot run under qemu
#
# Everything is built with --release: the tests encode video, and one build serves clippy's build
# scripts, the tests and the benches. The aarch64 build has its own target dir
# (target/aarch64-cross) because it uses another rustc; sharing target/ would rebuild the host's
# build scripts and proc macros on every switch.
set -uo pipefail

quick=0 install=1
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --no-install) install=0 ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "tests/run.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
# What every step that can install tools is passed.
no_install=()
[ "$install" = 1 ] || no_install=(--no-install)
root="$PWD"

# Cargo's target dirs of a fresh clone (CI's) live in ~/.cache/benchcam-target, linked from
# target/, so each run rebuilds benchcam and not its ~300 dependencies: release (the host's,
# and the libcamera amd64 builds in their trixie root), aarch64-cross (the aarch64 tests and
# both arm64 .debs) and libcamera-aarch64 (tests/libcamera/aarch64-check.sh); the chroots mount
# the links' targets too.
# A tree that already has its own target dirs keeps them; BENCHCAM_TARGET_CACHE=off: no links.
# Only cargo's output is shared: results (target/vm, target/schemathesis, ...) stay per clone.
target_cache="${BENCHCAM_TARGET_CACHE:-$HOME/.cache/benchcam-target}"
if [ "$target_cache" != off ]; then
    mkdir -p target
    for d in release aarch64-cross libcamera-aarch64; do
        if [ ! -e "target/$d" ] && [ ! -L "target/$d" ]; then
            mkdir -p "$target_cache/$d" && ln -s "$target_cache/$d" "target/$d"
        fi
    done
fi

# rustup's toolchain first: Debian's rustc-web also installs /usr/bin/rustc (1.96), which only the
# aarch64 step uses, through RUSTC=.
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if [ -d "$cargo_bin" ]; then export PATH="$cargo_bin:$PATH"; fi
unset RUSTC RUSTDOC QEMU_LD_PREFIX
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_INCREMENTAL=0
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

cross_target=aarch64-unknown-linux-gnu
host_arch="$(uname -m)"

names=() results=() times=()
passed=0 failed=0
t_start=$SECONDS

banner() {
    echo
    echo "================================================================================"
    echo "== $*"
    echo "================================================================================"
}

# step NAME COMMAND... : runs one step, records pass/fail and its time.
step() {
    local name="$1"; shift
    banner "$name: $*"
    local t0=$SECONDS rc log="$step_logs/$name.log"
    ( "$@" ) 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    local dt=$((SECONDS - t0))
    names+=("$name") times+=("$dt")
    if [ "$rc" -eq 0 ]; then
        results+=(ok); passed=$((passed + 1))
        echo "== $name: ok (${dt}s)"
    else
        # The summary row names the first failed check, so that even a log cut short in the
        # middle says what failed.
        local first
        first="$(grep -m 1 -E '^ *(FAILED: |FAIL: )|panicked at|^test .* FAILED$' "$log" | sed 's/^ *//' | cut -c 1-160)"
        results+=("FAILED (exit $rc)${first:+: $first}"); failed=$((failed + 1))
        echo "== $name: FAILED with exit $rc (${dt}s)"
        # Repeated after the summary: a long run's log is often read from its end only.
        failures+="
-- $name (exit $rc): its lines that name a failure, then its last lines --
$(grep -E 'FAIL|panicked|error(\[|:)|ERROR' "$log" | grep -v '^test .* ok$' | tail -n 12)
...
$(tail -n 8 "$log")
"
    fi
}
step_logs="$(mktemp -d)"
failures=""

skip() {  # skip NAME REASON
    names+=("$1") results+=("skipped: $2") times+=(0)
    banner "$1: skipped ($2)"
}

# step_bg NAME COMMAND... : starts a step in the background (its output goes to its log);
# step_join NAME waits for it, prints its log and records it like `step` does.
declare -A bg_pid bg_t0
step_bg() {
    local name="$1"; shift
    banner "$name (in the background; its log follows when it ends): $*"
    bg_t0[$name]=$SECONDS
    ( "$@" ) >"$step_logs/$name.bg.log" 2>&1 &
    bg_pid[$name]=$!
}
# descendants PID: PID and every process under it.
descendants() {
    local p="$1" c
    echo "$p"
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do descendants "$c"; done
}
step_join() {
    local name="$1"
    [ -n "${bg_pid[$name]:-}" ] || return 0
    # A job started at nice 19 that the run now waits for gets the normal priority (processes
    # it starts from now on inherit it); without root this fails quietly and it stays niced.
    # shellcheck disable=SC2046  # one PID a word
    renice -n 0 -p $(descendants "${bg_pid[$name]}") >/dev/null 2>&1 || true
    wait "${bg_pid[$name]}"
    local rc=$?
    # Recorded through `step`, which prints the log and the outcome; the time is the
    # background run's.
    local t_bg=$((SECONDS - bg_t0[$name]))
    step "$name" bash -c "cat '$step_logs/$name.bg.log'; exit $rc"
    times[${#times[@]}-1]=$t_bg
    echo "== $name: ran ${t_bg}s in the background"
    unset "bg_pid[$name]"
}

have_browser=0
if [ -d tests/browser ] && [ -f tests/browser/run.sh ]; then have_browser=1; fi

# ---- deps -----------------------------------------------------------------------------------
if [ "$install" = 1 ]; then
    deps_args=(--host)
    if [ "$quick" = 0 ]; then
        if [ "$host_arch" = x86_64 ]; then deps_args+=(--cross --vm); fi
        if [ "$have_browser" = 1 ]; then deps_args+=(--browser); fi
        deps_args+=(--replication)
        deps_args+=(--fleet)
    fi
    step deps bash tests/lib/install-deps.sh "${deps_args[@]}"
fi

# ---- builds that nothing needs for a while: in the background, at the lowest priority -------
# Garage (the replication step's store, ~13 min of one core) and the fuzz targets (~7 min) only
# take the CPU the steps in front leave idle; their steps wait for them.
# The fuzz build lives outside the clone (~/.cache/benchcam-fuzz): fuzz-build makes it, fuzz
# runs it.
export BENCHCAM_FUZZ_TARGET_DIR="${BENCHCAM_FUZZ_TARGET_DIR:-$HOME/.cache/benchcam-fuzz/target}"
fuzz_build() { nice -n 19 bash fuzz/run.sh --build-only "${no_install[@]}"; }
garage_build() { nice -n 19 bash tests/replication/run.sh --build-garage "${no_install[@]}"; }
# The image's root filesystem needs root (mmdebstrap's chroot mode) and an x86_64 host's
# qemu-user; the image step below needs the same. Uncached it is ~18 min of one core under
# qemu-user (1073 s on an idle 2-core machine, 2026-12-03), and the image step at the end waits
# for it: at nice 19 it got too little of the CPU the steps in front keep busy and ran alone at
# the end (a run with nothing cached went past 90 min), so it runs at the normal priority and
# takes its third of the CPU from the start. BENCHCAM_IMAGE_TEST=0 skips both.
image_ok=0
if [ "$quick" = 0 ] && [ "$host_arch" = x86_64 ] && [ "$(id -u)" = 0 ]; then image_ok=1; fi
if [ "$image_ok" = 1 ] && [ "${BENCHCAM_IMAGE_TEST:-1}" = 0 ]; then
    image_ok=2
fi
image_base() { BENCHCAM_IMAGE_NICE=0 bash image-build/build.sh --base-only "${no_install[@]}"; }
if [ "$quick" = 0 ]; then
    step_bg garage-build garage_build
    step_bg fuzz-build fuzz_build
fi
if [ "$image_ok" = 1 ]; then step_bg image-base image_base; fi

# ---- fmt, clippy, the release binary, host tests --------------------------------------------
step fmt cargo fmt --all --check
step clippy cargo clippy --release --all-targets -- -D warnings
step build cargo build --release --bins

# ---- VM bench: real V4L2 drivers in a qemu guest, in the background -------------------------
# The guest (TCG) starts as soon as the release binary exists and runs beside every step after
# it; the run waits for it at the end.
vm_test() {
    # The guest runs the release binary (built by `build`), copied so nothing replaces it;
    # a cargo build here would wait for the host tests' build to let go of target/.
    [ -x "$root/target/release/benchcam" ] || cargo build --release --bin benchcam || return 1
    cp "$root/target/release/benchcam" "$step_logs/benchcam-vm" || return 1
    BENCHCAM_BIN="$step_logs/benchcam-vm" bash tests/vm/ci.sh "${no_install[@]}"
}

if [ "$quick" = 1 ]; then
    skip vm "--quick"
elif [ "$host_arch" != x86_64 ]; then
    skip vm "host is $host_arch, not x86_64"
else
    step_bg vm vm_test
fi

step host cargo test --release --no-fail-fast

# 32 WebSocket + 32 MJPEG viewers for 2 minutes while recording 720p30 (benches/soak.rs; the
# 10-minute run is `cargo bench --bench soak`): memory, recorder drops, nothing left open.
if [ "$quick" = 1 ]; then
    skip soak "--quick"
else
    step soak cargo bench --bench soak -- --seconds 120
fi

# ---- fuzz targets (fuzz/, own target dir) and schemathesis against the release binary -------
fuzz_test() {
    # Built by fuzz-build (~7 min clean), so the build in fuzz/run.sh is a no-op.
    bash fuzz/run.sh --seconds "${BENCHCAM_FUZZ_SECONDS:-30}" "${no_install[@]}"
}
schemathesis_test() {
    cargo build --release --bin benchcam || return 1
    bash tests/schemathesis/run.sh "${no_install[@]}"
}
if [ "$quick" = 1 ]; then
    skip schemathesis "--quick"
else
    step schemathesis schemathesis_test
fi

# ---- the fleet: two benches over mDNS in two network namespaces, promtool ---------------------
fleet_test() {
    cargo build --release --bin benchcam || return 1
    BENCHCAM_REQUIRE_PROMTOOL=1 BENCHCAM_BIN="$root/target/release/benchcam" bash tests/fleet/run.sh
}
if [ "$quick" = 1 ]; then
    skip fleet "--quick"
elif [ "$(id -u)" != 0 ]; then
    skip fleet "needs root (network namespaces)"
else
    step fleet fleet_test
fi

# The image's first-boot settings script, against a scratch tree (1 s); the image itself is
# built and booted by the last step.
step appliance bash image-build/test-setup.sh

# ---- fuzz targets and replication, beside the VM: their builds ran in the background -----------
if [ "$quick" = 1 ]; then
    skip fuzz "--quick"
else
    step_join fuzz-build
    step fuzz fuzz_test
fi

# ---- replication to a real S3 store (Garage), checked with rclone ---------------------------
replication_test() {
    cargo build --release --bin benchcam || return 1
    bash tests/replication/run.sh "${no_install[@]}"
}
if [ "$quick" = 1 ]; then
    skip replication "--quick"
else
    step_join garage-build
    step replication replication_test
fi

# The steps after this one are heavy (qemu-user, cross builds, chroots): run beside the TCG guest,
# they slowed it and it them (a clean run: the aarch64 build took 15 min instead of 6, and a
# download test under qemu-aarch64 got no byte within its 3-minute read timeout), so the run
# waits for the guest here.
step_join vm

# ---- aarch64 cross build + tests under qemu -------------------------------------------------
cross_test() {
    local missing=()
    [ -x /usr/bin/rustc ] && [ -x /usr/bin/rustdoc ] || missing+=("/usr/bin/rustc (rustc-web)")
    [ -d /usr/lib/rustlib/$cross_target/lib ] || missing+=("libstd-rust-web-dev:arm64")
    command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
    command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "missing for the aarch64 step: ${missing[*]} (run without --no-install, or" \
            "bash tests/lib/install-deps.sh --cross)" >&2
        return 1
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        echo "warning: qemu-aarch64 is not registered with binfmt_misc: tests that exec an" \
            "aarch64 binary (the service) will fail" >&2
    fi
    echo "cross rustc: $(/usr/bin/rustc --version); $(qemu-aarch64-static --version | head -1)"
    # RUSTDOC too: cargo runs cross doctests under the runner, and rustup's rustdoc cannot read
    # rlibs made by Debian's rustc (nor find an aarch64 std).
    # shellcheck disable=SC2086  # BENCHCAM_CROSS_TEST_ARGS is split on purpose
    # BENCHCAM_EMULATED=1 lets a test that measures time scale its limits (qemu is ~5-20x slower).
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR="$root/target/aarch64-cross" \
        BENCHCAM_EMULATED=1 \
        cargo test --release --no-fail-fast --target "$cross_target" ${BENCHCAM_CROSS_TEST_ARGS:-}
}

if [ "$quick" = 1 ]; then
    skip aarch64 "--quick"
elif [ "$host_arch" != x86_64 ]; then
    skip aarch64 "host is $host_arch, not x86_64"
else
    step aarch64 cross_test
fi

# ---- browser --------------------------------------------------------------------------------
browser_test() {
    # The page test drives the real service: hand it a fresh release binary (cached by `host`).
    cargo build --release --bin benchcam || return 1
    export BENCHCAM_BIN="$root/target/release/benchcam"
    export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
    if [ -x tests/browser/run.sh ]; then
        tests/browser/run.sh
    else
        echo "note: tests/browser/run.sh is not executable; running it with bash"
        bash tests/browser/run.sh
    fi
}

if [ "$quick" = 1 ]; then
    skip browser "--quick"
elif [ "$have_browser" = 0 ]; then
    skip browser "no tests/browser/run.sh"
else
    step browser browser_test
fi

# ---- libcamera: the feature built in a trixie chroot and run against libcamera's virtual camera
libcamera_test() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "the libcamera test needs root (mmdebstrap, chroot)" >&2
        return 1
    fi
    # The aarch64 side of the feature is built for real by the packages step (the arm64
    # .deb, cross-built with --features libcamera): a separate `cargo check` here would
    # compile the same crates once more (~10 min on 2 cores).
    BENCHCAM_LIBCAMERA_ARM64=0 bash tests/libcamera/run.sh
}

if [ "$quick" = 1 ]; then
    skip libcamera "--quick"
elif [ "$host_arch" != x86_64 ]; then
    skip libcamera "host is $host_arch, not x86_64"
else
    step libcamera libcamera_test
fi

# ---- the appliance image: built on image-base's root filesystem, booted three times -------
# In the background beside the packages step, joined at the end: its boots under TCG leave
# CPU that the packages' builds take, instead of running alone for ~10 min at the end.
image_test() {
    # The binary is build.sh's own cross build, the recipe and target dir of the packages
    # step's benchcam-nolibcamera (whichever of the two builds first, the other finds it done;
    # cargo's lock on the target dir keeps them apart).
    bash image-build/build.sh --no-xz "${no_install[@]}" || return 1
    bash image-build/boot-test.sh "${no_install[@]}"
}
if [ "$image_ok" = 1 ]; then
    step_join image-base
    step_bg image image_test
fi

# ---- Debian packages: built, then installed into clean trixie roots -------------------------
packages_test() {
    bash tests/packaging/run.sh "${no_install[@]}"
}

if [ "$quick" = 1 ]; then
    skip packages "--quick"
elif [ "$host_arch" != x86_64 ]; then
    skip packages "host is $host_arch, not x86_64"
else
    step packages packages_test
fi

if [ "$quick" = 1 ]; then
    skip image "--quick"
elif [ "$image_ok" = 0 ]; then
    skip image "needs root on an x86_64 host (mmdebstrap, qemu-user)"
elif [ "$image_ok" = 2 ]; then
    skip image "BENCHCAM_IMAGE_TEST=0"
else
    step_join image
fi

# ---- summary --------------------------------------------------------------------------------
banner "summary (total $((SECONDS - t_start))s)"
for i in "${!names[@]}"; do
    printf '  %-12s %5ss  %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"
done
echo
[ -z "$failures" ] || printf 'what failed:%s\n' "$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
