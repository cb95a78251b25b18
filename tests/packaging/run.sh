#!/bin/bash
# Install test of benchcam's Debian packages (packaging/build-debs.sh), as root.
#
#   sudo tests/packaging/run.sh [--no-build] [--no-install]
#
#   --no-build    test the .debs already in target/debian
#   --no-install  install nothing on this host (mmdebstrap, arch-test, ffmpeg, curl,
#                 dpkg-dev and libstdc++6:arm64 for the bookworm build's dpkg-shlibdeps)
#
# 1. builds the three packages (cached trixie build roots of tests/libcamera; the bookworm
#    cross build of tests/run.sh's aarch64 step), prints their sizes and checks their contents;
# 2. in a clean trixie arm64 root (tests/packaging/rootfs.sh: minbase + systemd, trixie and
#    trixie-backports, run under qemu-user through binfmt_misc), `apt-get install
#    ./benchcam_*_arm64.deb` must pull libcamera0.7 from backports; then: --version, the
#    conffile is registered, user and directories exist with their modes, the unit is
#    enabled and passes `systemd-analyze verify`, the shipped config passes check-config,
#    `benchcam probe` lists libcamera's virtual camera (tests/libcamera/virtual.yaml installed
#    as the pipeline's camera list), and `benchcam run` as user benchcam records 3 s clips of
#    the virtual camera into /var/lib/benchcam for ~15 s; from the host, every clip decodes
#    fully;
# 3. benchcam-nolibcamera replaces benchcam there (Conflicts/Replaces: config and user kept);
#    purging the replaced benchcam keeps them; removing keeps config and user; purging
#    removes both and the enablement, and leaves the clips in /var/lib/benchcam;
# 4. in a clean trixie amd64 root: apt installs the amd64 package; --version, probe.
# Ends with "N passed, M failed"; exit status 1 if anything failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
build=1 install=1
for a in "$@"; do
    case $a in
        --no-build) build=0 ;;
        --no-install) install=0 ;;
        *) echo "usage: $0 [--no-build] [--no-install]" >&2; exit 2 ;;
    esac
done
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
has() { grep -q -- "$1" <<<"$2"; }   # has PATTERN TEXT
finish() { echo "total $(elapsed)"; echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0)) s"; }

missing=()
for tool in ffmpeg:ffmpeg ffprobe:ffmpeg curl:curl mmdebstrap:mmdebstrap arch-test:arch-test \
    python3:python3 dpkg-shlibdeps:dpkg-dev aarch64-linux-gnu-objdump:binutils-aarch64-linux-gnu; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
dpkg-query -W -f='${db:Status-Abbrev}' libstdc++6:arm64 2>/dev/null | grep -q '^ii' || missing+=(libstdc++6:arm64)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$install" = 1 ]; then
        echo "installing: ${missing[*]}"
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
            { fail "apt-get install ${missing[*]}"; finish; }
    else
        fail "missing: ${missing[*]} (run without --no-install)"; finish
    fi
fi
# binfmt: arm64 programs in the clean root run under qemu-aarch64 (F flag: no qemu inside it).
binfmt=/proc/sys/fs/binfmt_misc
[ -e $binfmt/register ] || mount -t binfmt_misc binfmt_misc $binfmt
[ -e $binfmt/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 ||
    { fail "qemu-aarch64 is not registered with binfmt_misc (bash tests/lib/install-deps.sh --cross)"; finish; }

# ---- 1. build -------------------------------------------------------------------------------
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)-1
debs=$repo/target/debian
deb_arm64=$debs/benchcam_${version}_arm64.deb
deb_amd64=$debs/benchcam_${version}_amd64.deb
deb_nolc=$debs/benchcam-nolibcamera_${version}_arm64.deb
if [ "$build" = 1 ]; then
    mkdir -p "$debs"
    if "$repo/packaging/build-debs.sh" >"$debs/build.log" 2>&1; then
        pass "packaging/build-debs.sh ($(elapsed))"
    else
        tail -30 "$debs/build.log"
        fail "packaging/build-debs.sh"
    fi
fi
for deb in "$deb_arm64" "$deb_amd64" "$deb_nolc"; do
    [ -f "$deb" ] || { fail "no $deb"; continue; }
    printf '    %-44s %6s KiB, installed %6s KiB; Depends: %s\n' "$(basename "$deb")" \
        $(($(stat -c %s "$deb") / 1024)) "$(dpkg-deb -f "$deb" Installed-Size)" "$(dpkg-deb -f "$deb" Depends)"
    listing=$(dpkg-deb -c "$deb" | awk '{print $6}')
    ok=1
    for f in ./usr/bin/benchcam ./usr/lib/systemd/system/benchcam.service ./usr/lib/sysusers.d/benchcam.conf \
        ./usr/lib/tmpfiles.d/benchcam.conf ./usr/lib/udev/rules.d/60-benchcam-devices.rules \
        ./usr/lib/modules-load.d/benchcam.conf ./etc/benchcam/benchcam.toml; do
        grep -qx "$f" <<<"$listing" || { echo "    missing $f"; ok=0; }
    done
    pkg=$(dpkg-deb -f "$deb" Package)
    grep -qx "./usr/share/doc/$pkg/copyright" <<<"$listing" &&
        grep -qx "./usr/share/doc/$pkg/changelog.Debian.gz" <<<"$listing" || { echo "    no copyright/changelog"; ok=0; }
    [ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/benchcam/benchcam.toml ] ||
        { echo "    conffiles is not /etc/benchcam/benchcam.toml"; ok=0; }
    check "$(basename "$deb"): files, conffile, copyright, changelog" test $ok = 1
done
if [ -f "$deb_nolc" ]; then
    x=$(mktemp -d)
    dpkg-deb -x "$deb_nolc" "$x"
    # Raspberry Pi OS bookworm has glibc 2.36: no newer symbol version may be needed.
    glibc=$(aarch64-linux-gnu-objdump -T "$x/usr/bin/benchcam" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
    needed=$(aarch64-linux-gnu-readelf -d "$x/usr/bin/benchcam" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    rm -rf "$x"
    check "benchcam-nolibcamera runs on bookworm's glibc 2.36 (needs $glibc; libraries: $needed)" \
        python3 -c "import sys; v=tuple(map(int, sys.argv[1].split('_')[1].split('.'))); sys.exit(v > (2, 36))" "$glibc"
    check "benchcam-nolibcamera does not link libcamera" test "${needed/libcamera/}" = "$needed"
    check "benchcam-nolibcamera Provides/Conflicts/Replaces benchcam" bash -c \
        "dpkg-deb -f '$deb_nolc' Conflicts Replaces Provides | grep -c '^[A-Za-z]*: benchcam' | grep -qx 3"
fi
[ -f "$deb_arm64" ] && check "benchcam (arm64) depends on libcamera0.7" \
    bash -c "dpkg-deb -f '$deb_arm64' Depends | grep -q 'libcamera0.7 (>= 0.7'"

# ---- clean roots ----------------------------------------------------------------------------
work=$(mktemp -d /var/tmp/benchcam-packaging.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# in_root ROOT COMMAND...: COMMAND inside ROOT, with /proc, /sys and /dev mounted in a private
# mount namespace (they vanish with it) and nothing of the host's besides the network.
# IN_ROOT_EXEC=1 in_root ... & : the background job becomes the command itself (exec all the
# way down), so $! is the process that a signal must reach.
in_root() {
    ${IN_ROOT_EXEC:+exec} unshare -m --propagation private bash -euo pipefail -c '
        r=$1; shift
        mount -t proc proc "$r/proc"; mount --rbind /sys "$r/sys"; mount --rbind /dev "$r/dev"
        exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
            LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive LIBCAMERA_LOG_LEVELS="*:WARN" "$@"
    ' bash "$@"
}
# clean_root ARCH: unpacks the cached clean trixie root into $work/ARCH; prints its path.
clean_root() {
    local tar r=$work/$1
    tar=$("$here/rootfs.sh" "$1") || return 1
    mkdir -p "$r"
    tar -C "$r" --numeric-owner -xpf "$tar" || return 1
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    install -D -m 644 "$repo/tests/libcamera/virtual.yaml" "$r/usr/share/libcamera/pipeline/virtual/virtual.yaml"
    echo "$r"
}
# apt_install ROOT DEB...: apt-get install ./DEB, with one `apt-get update` and retry when the
# cached root's package lists are older than the mirror.
apt_install() {
    local r=$1; shift
    local args=()
    for deb in "$@"; do cp "$deb" "$r/tmp/"; args+=("/tmp/$(basename "$deb")"); done
    in_root "$r" apt-get install -y -q "${args[@]}" >>"$work/apt.log" 2>&1 ||
        { in_root "$r" apt-get update -q >>"$work/apt.log" 2>&1 &&
            in_root "$r" apt-get install -y -q "${args[@]}" >>"$work/apt.log" 2>&1; }
}

# ---- 2. arm64: install, probe, record -------------------------------------------------------
if [ -f "$deb_arm64" ] && A=$(clean_root arm64); then
    echo "clean trixie arm64 root ready ($(elapsed))"
    check "apt-get install ./$(basename "$deb_arm64") into a clean trixie arm64 root ($(elapsed))" \
        apt_install "$A" "$deb_arm64"
    setup=$(awk '/^Setting up/ { sub(/:.*/, "", $3); print $3 }' "$work/apt.log")
    echo "    apt set up $(grep -c . <<<"$setup") packages: $(echo $setup | fold -s -w 90 | sed '2,$s/^/      /')"
    lcver=$(in_root "$A" dpkg-query -W -f='${Version}' libcamera0.7 2>/dev/null)
    check "apt pulled libcamera0.7 from trixie-backports ($lcver)" has bpo "$lcver"
    out=$(in_root "$A" benchcam --version 2>&1)
    check "benchcam --version ($out)" has "${version%-1}" "$out"
    conff=$(in_root "$A" dpkg-query -W -f='${Conffiles}' benchcam)
    check "conffile registered:$conff" has '/etc/benchcam/benchcam.toml [0-9a-f]\{32\}' "$conff"
    ids=$(in_root "$A" id benchcam 2>&1)
    check "user benchcam exists, in video and gpio ($ids)" has '(video).*(gpio)\|(gpio).*(video)' "$ids"
    modes=$(in_root "$A" stat -c '%n %a %U:%G' /var/lib/benchcam /etc/benchcam /etc/benchcam/benchcam.toml | tr '\n' ';')
    check "directories and config modes ($modes)" test "$modes" = \
        "/var/lib/benchcam 750 benchcam:benchcam;/etc/benchcam 750 root:benchcam;/etc/benchcam/benchcam.toml 640 root:benchcam;"
    check "benchcam.service enabled (multi-user.target.wants)" \
        test -L "$A/etc/systemd/system/multi-user.target.wants/benchcam.service"
    check "systemd-analyze verify benchcam.service (trixie's systemd)" \
        in_root "$A" systemd-analyze verify --man=no /usr/lib/systemd/system/benchcam.service
    cc=$(in_root "$A" benchcam check-config --config /etc/benchcam/benchcam.toml 2>&1)
    check "the shipped config passes check-config, data_dir /var/lib/benchcam" has /var/lib/benchcam "$cc"
    in_root "$A" benchcam probe >"$work/probe.log" 2>&1
    grep -v 'dma_buf\|IPAManager' "$work/probe.log" | sed 's/^/    /'
    check "benchcam probe lists the libcamera virtual camera" grep -q 'Virtual0, libcamera' "$work/probe.log"

    # Record as the service would: user benchcam (HOME its home, as systemd sets it), data in
    # /var/lib/benchcam. 640x480 keeps openh264 under qemu-user near real time (~15 fps here
    # of the virtual camera's 30: frames the ring cannot take are dropped and counted).
    port=$((19000 + RANDOM % 1000))
    cat >"$A/tmp/record.toml" <<EOF
[service]
data_dir = "/var/lib/benchcam"
listen = "127.0.0.1:$port"
[camera]
source = "libcamera"
width = 640
height = 480
fps = 30
[recording]
clip_length = "3s"
EOF
    chmod 644 "$A/tmp/record.toml"
    IN_ROOT_EXEC=1 in_root "$A" setpriv --reuid=benchcam --regid=benchcam --init-groups \
        env HOME=/var/lib/benchcam benchcam run --config /tmp/record.toml >"$work/run.log" 2>&1 &
    pid=$!
    up=0
    for _ in $(seq 300); do
        curl -fsS "http://127.0.0.1:$port/api/v1/health" >/dev/null 2>&1 && { up=1; break; }
        sleep 0.2
    done
    check "benchcam run (user benchcam) answers on the web port" test $up = 1
    sleep 15
    health=$(curl -fsS "http://127.0.0.1:$port/api/v1/health" 2>/dev/null)
    echo "    health: $(python3 -c 'import json,sys; d=json.load(sys.stdin); print([(c["state"], c["fps"], c["frames_captured"], c["frames_dropped"]) for c in d["cameras"]])' <<<"$health" 2>&1)"
    kill -TERM "$pid"; wait "$pid"; pid=
    check "SIGTERM: clips finalised" grep -q 'clips finalised' "$work/run.log"
    grep -i 'warn\|error' "$work/run.log" | grep -v 'dma_buf\|IPAManager\|OpenH264' | head -5 | sed 's/^/    /'
    clips=$(ls "$A"/var/lib/benchcam/rolling/cam0/*.mp4 2>/dev/null)
    n=$(grep -c mp4 <<<"$clips")
    check "clips recorded in /var/lib/benchcam ($n)" test "$n" -ge 2
    for clip in $clips; do
        err=$(ffmpeg -v error -i "$clip" -fps_mode passthrough -enc_time_base -1 -f null - 2>&1)
        frames=$(ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets -of csv=p=0 "$clip")
        check "$(basename "$clip") ($frames frames, $(stat -c %s "$clip") bytes) decodes fully" test -z "$err"
        [ -n "$err" ] && head -3 <<<"$err"
    done
    echo "    arm64 install and recording done ($(elapsed))"

    # ---- 3. the variant swap, remove, purge ----
    if [ -f "$deb_nolc" ]; then
        check "apt-get install ./$(basename "$deb_nolc") replaces benchcam" apt_install "$A" "$deb_nolc"
        st=$(in_root "$A" dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' benchcam benchcam-nolibcamera 2>&1 | tr '\n' ';')
        check "benchcam removed, benchcam-nolibcamera installed ($st)" \
            has 'benchcam rc.*benchcam-nolibcamera ii' "$st"
        out=$(in_root "$A" benchcam --version 2>&1)
        check "benchcam-nolibcamera's binary runs ($out)" test -n "$out"
        in_root "$A" dpkg --purge benchcam >"$work/purge0.log" 2>&1
        check "purging the replaced benchcam keeps the config and the user" bash -c \
            "test -f '$A/etc/benchcam/benchcam.toml' && grep -q '^benchcam:' '$A/etc/passwd'"
        pkg=benchcam-nolibcamera
    else
        pkg=benchcam
    fi
    in_root "$A" apt-get remove -y -q "$pkg" >"$work/remove.log" 2>&1
    check "apt-get remove $pkg: binary gone, config and user kept" bash -c \
        "! test -e '$A/usr/bin/benchcam' && test -f '$A/etc/benchcam/benchcam.toml' && grep -q '^benchcam:' '$A/etc/passwd'"
    in_root "$A" dpkg --purge "$pkg" >"$work/purge.log" 2>&1
    sed 's/^/    /' "$work/purge.log"
    check "dpkg --purge $pkg: /etc/benchcam gone" test ! -e "$A/etc/benchcam"
    check "dpkg --purge $pkg: user and group benchcam gone" \
        bash -c "! grep -q '^benchcam:' '$A/etc/passwd' && ! grep -q '^benchcam:' '$A/etc/group'"
    check "dpkg --purge $pkg: unit no longer enabled" \
        test ! -e "$A/etc/systemd/system/multi-user.target.wants/benchcam.service"
    left=$(ls "$A"/var/lib/benchcam/rolling/cam0/*.mp4 2>/dev/null | grep -c mp4)
    check "dpkg --purge $pkg: the clips in /var/lib/benchcam stay ($left of $n)" test "$left" -eq "$n" -a "$n" -gt 0
    check "purge says the recordings were kept" grep -q 'recordings in /var/lib/benchcam were kept' "$work/purge.log"
    echo "    arm64 done ($(elapsed))"
else
    fail "clean trixie arm64 root (or no $deb_arm64)"
fi

# ---- 4. amd64 -------------------------------------------------------------------------------
if [ -f "$deb_amd64" ] && M=$(clean_root amd64); then
    check "apt-get install ./$(basename "$deb_amd64") into a clean trixie amd64 root ($(elapsed))" \
        apt_install "$M" "$deb_amd64"
    out=$(in_root "$M" benchcam --version 2>&1)
    check "amd64: benchcam --version ($out)" test -n "$out"
    in_root "$M" benchcam probe >"$work/probe-amd64.log" 2>&1
    check "amd64: benchcam probe lists the libcamera virtual camera" grep -q 'Virtual0, libcamera' "$work/probe-amd64.log"
    check "amd64: user benchcam and the conffile" bash -c \
        "grep -q '^benchcam:' '$M/etc/passwd' && test -f '$M/etc/benchcam/benchcam.toml'"
else
    fail "clean trixie amd64 root (or no $deb_amd64)"
fi

finish
