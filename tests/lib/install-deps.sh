#!/usr/bin/env bash
# Installs what tests/run.sh needs on a Debian bookworm machine (as root), idempotently:
# nothing is fetched, and `apt-get update` is not run, when everything is already there.
#
#   bash tests/lib/install-deps.sh [--host] [--cross] [--browser] [--vm] [--replication] [--fleet]
#
#   --host     nasm (openh264's x86 assembly; without it openh264 builds at 1/3 speed),
#              ffmpeg/ffprobe (tests judge clips by a full decode; the benches' peers) and
#              libturbojpeg0 (the JPEG bench's peer, loaded at run time; never linked)
#   --cross    the aarch64 cross toolchain and emulator (DESIGN.md §11): arm64 as a foreign
#              architecture, Debian's rustc-web (/usr/bin/rustc) with libstd-rust-web-dev:arm64
#              of the same version, gcc/g++-aarch64-linux-gnu, qemu-user-static, binfmt-support;
#              binfmt_misc mounted and qemu-aarch64 registered (so tests can exec the aarch64
#              binary)
#   --browser  Debian's chromium + chromium-driver, and tests/browser's npm packages
#              (playwright-core; never a browser download) when tests/browser/package.json exists
#   --vm       the VM bench (tests/vm): qemu-system-x86 and qemu-utils (qemu-img: the guest's
#              copy-on-write root disk), mmdebstrap + eatmydata + the Debian keyrings (the guest's
#              trixie root filesystem), e2fsprogs (mkfs.ext4 -d), patch (v4l2loopback's source),
#              python3 and ffmpeg/ffprobe (the host-side checkers)
#   --replication  tests/replication: rclone (the independent S3 client that checks what reached
#              Garage) and python3; Garage itself is built by that script into ~/.cache
#   --fleet    tests/fleet: prometheus (for promtool), avahi-daemon (run beside benchcam in a
#              network namespace, as on the image), iproute2, curl, python3. On a machine that
#              runs systemd, installing them also starts a Prometheus server (:9090) and avahi;
#              CI's machines run none, and the test keeps its avahi's pid file apart anyway.
# With no flag: all five.
#
# Debian's rustc-web puts rustc in /usr/bin only; rustup's ~/.cargo/bin stays first on PATH, so
# normal builds keep using rustup's toolchain. Only the cross step sets RUSTC=/usr/bin/rustc.
set -euo pipefail

want_host=0 want_cross=0 want_browser=0 want_vm=0 want_replication=0 want_fleet=0
for a in "$@"; do
    case "$a" in
        --host) want_host=1 ;;
        --cross) want_cross=1 ;;
        --browser) want_browser=1 ;;
        --vm) want_vm=1 ;;
        --replication) want_replication=1 ;;
        --fleet) want_fleet=1 ;;
        *) echo "install-deps: unknown argument $a" >&2; exit 2 ;;
    esac
done
if [ $((want_host + want_cross + want_browser + want_vm + want_replication + want_fleet)) -eq 0 ]; then
    want_host=1 want_cross=1 want_browser=1 want_vm=1 want_replication=1 want_fleet=1
fi

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

log() { echo "install-deps: $*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else SUDO=(false); fi
fi

# Installed version of a package ("" when not installed). Name may carry an :arch suffix.
pkg_version() {
    dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' "$1" 2>/dev/null |
        awk '$1 == "ii" { print $2; exit }' || true
}
pkg_ok() { [ -n "$(pkg_version "$1")" ]; }

missing=()
need_cmd_pkg() {  # need_cmd_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need_pkg() { pkg_ok "$1" || missing+=("$1"); }

need_update=0
if [ "$want_host" = 1 ]; then
    if [ "$(uname -m)" = x86_64 ]; then need_cmd_pkg nasm nasm; fi
    need_cmd_pkg ffmpeg ffmpeg
    need_cmd_pkg ffprobe ffmpeg
    need_pkg libturbojpeg0
fi

rust_web_ver=""
if [ "$want_cross" = 1 ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "dpkg --add-architecture arm64"
        "${SUDO[@]}" dpkg --add-architecture arm64
        need_update=1   # the arm64 package lists are not there yet
    fi
    need_cmd_pkg aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
    need_cmd_pkg aarch64-linux-gnu-g++ g++-aarch64-linux-gnu
    need_cmd_pkg qemu-aarch64-static qemu-user-static
    need_cmd_pkg update-binfmts binfmt-support
    # rustc-web and the arm64 std must be the same version, or rustc rejects the std rlibs
    # ("compiled by an incompatible version of rustc").
    host_ver="$(pkg_version rustc-web)"
    arm_ver="$(pkg_version libstd-rust-web-dev:arm64)"
    if [ -z "$host_ver" ] || [ -z "$arm_ver" ] || [ "$host_ver" != "$arm_ver" ]; then
        missing+=(rustc-web libstd-rust-web-dev:arm64)
    fi
fi

if [ "$want_browser" = 1 ]; then
    need_cmd_pkg chromium chromium
    need_cmd_pkg chromedriver chromium-driver
fi

if [ "$want_vm" = 1 ]; then
    need_cmd_pkg qemu-system-x86_64 qemu-system-x86
    need_cmd_pkg qemu-img qemu-utils
    need_cmd_pkg mmdebstrap mmdebstrap
    need_cmd_pkg eatmydata eatmydata
    need_cmd_pkg mkfs.ext4 e2fsprogs
    need_cmd_pkg patch patch
    need_cmd_pkg python3 python3
    need_cmd_pkg ffmpeg ffmpeg
    need_cmd_pkg ffprobe ffmpeg
    [ -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ] || missing+=(debian-archive-keyring)
fi

if [ "$want_replication" = 1 ]; then
    need_cmd_pkg rclone rclone
    need_cmd_pkg python3 python3
fi
if [ "$want_fleet" = 1 ]; then
    need_cmd_pkg promtool prometheus
    need_cmd_pkg avahi-daemon avahi-daemon
    need_cmd_pkg ip iproute2
    need_cmd_pkg curl curl
    need_cmd_pkg python3 python3
fi

# apt-get, waiting for a lock held by another apt/dpkg (another engineer's install) rather than
# failing on it.
apt_get() {
    local try
    for try in 1 2 3 4 5 6 7 8 9 10; do
        if "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 "$@"; then return 0; fi
        if ! fuser /var/lib/apt/lists/lock /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock \
            >/dev/null 2>&1 && ! pgrep -x apt-get >/dev/null && ! pgrep -x dpkg >/dev/null; then
            return 1   # not a lock: a real failure
        fi
        log "apt/dpkg busy elsewhere; retrying in 15 s ($try/10)"
        sleep 15
    done
    return 1
}

if [ ${#missing[@]} -gt 0 ] || [ "$need_update" = 1 ]; then
    # unique, order kept
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk 'NF && !seen[$0]++')
    t0=$SECONDS
    log "apt-get update (missing: ${missing[*]:-none})"
    apt_get update -qq
    log "apt-get update took $((SECONDS - t0)) s"
    if [ ${#missing[@]} -gt 0 ]; then
        pkgs=()
        for p in "${missing[@]}"; do
            case "$p" in
                rustc-web | libstd-rust-web-dev:arm64)
                    # Pin both to rustc-web's candidate (bookworm-security carries the newest;
                    # the arm64 std follows it exactly).
                    if [ -z "$rust_web_ver" ]; then
                        rust_web_ver="$(apt-cache policy rustc-web | awk '/Candidate:/ { print $2 }')"
                    fi
                    if [ -z "$rust_web_ver" ] || [ "$rust_web_ver" = "(none)" ]; then
                        log "no rustc-web candidate in apt"; exit 1
                    fi
                    pkgs+=("$p=$rust_web_ver")
                    ;;
                *) pkgs+=("$p") ;;
            esac
        done
        t0=$SECONDS
        log "apt-get install ${pkgs[*]}"
        apt_get install -y -qq --no-install-recommends "${pkgs[@]}"
        log "apt-get install took $((SECONDS - t0)) s"
        # qemu-system-x86 from bookworm removes a newer qemu-utils (e.g. one from
        # bookworm-backports on the base image) it cannot live with: qemu-img is then gone.
        # Installed again here, it comes in the version that fits.
        if [ "$want_vm" = 1 ] && ! command -v qemu-img >/dev/null 2>&1; then
            log "qemu-img went away with that install: apt-get install qemu-utils"
            apt_get install -y -qq --no-install-recommends qemu-utils
        fi
    fi
else
    log "system packages already present"
fi

if [ "$want_cross" = 1 ]; then
    # binfmt: cargo's runner starts test binaries through qemu-aarch64-static itself, but a test
    # that execs the aarch64 benchcam binary needs the kernel to hand it to qemu.
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        log "mounting binfmt_misc"
        "${SUDO[@]}" mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
            log "WARNING: could not mount binfmt_misc; tests that exec aarch64 binaries will fail"
    fi
    if [ -e /proc/sys/fs/binfmt_misc/register ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        log "registering qemu-aarch64 with binfmt_misc"
        "${SUDO[@]}" update-binfmts --enable qemu-aarch64 ||
            log "WARNING: could not register qemu-aarch64 with binfmt_misc"
    fi
    if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] &&
        ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64; then
        echo 1 | "${SUDO[@]}" tee /proc/sys/fs/binfmt_misc/qemu-aarch64 >/dev/null || true
    fi
fi

if [ "$want_browser" = 1 ] && [ -f "$root_dir/tests/browser/package.json" ]; then
    export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1
    cd "$root_dir/tests/browser"
    stamp=node_modules/.benchcam-installed
    lock=package-lock.json
    if [ -d node_modules ] && [ -f "$stamp" ] && [ ! package.json -nt "$stamp" ] &&
        { [ ! -f "$lock" ] || [ ! "$lock" -nt "$stamp" ]; }; then
        log "tests/browser node_modules up to date"
    else
        t0=$SECONDS
        if [ -f "$lock" ]; then
            log "npm ci in tests/browser"
            npm ci --no-audit --no-fund --loglevel=error
        else
            log "npm install in tests/browser"
            npm install --no-audit --no-fund --loglevel=error
        fi
        touch "$stamp"
        log "npm took $((SECONDS - t0)) s"
    fi
fi
