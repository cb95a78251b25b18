#!/bin/bash
# Builds benchcam's Debian packages into target/debian/ (as root: chroots, mounts).
#
#   sudo packaging/build-debs.sh [nolibcamera] [arm64] [amd64]      (no argument: all three)
#
#   nolibcamera  benchcam-nolibcamera_<v>_arm64.deb: Raspberry Pi OS bookworm (USB cameras only),
#                cross-built on this bookworm host with Debian's rustc-web as tests/run.sh's
#                aarch64 step does, in its target dir target/aarch64-cross
#   arm64        benchcam_<v>_arm64.deb: Raspberry Pi OS trixie / Debian trixie, --features
#                libcamera, cross-built in the cached amd64+arm64 trixie root of the libcamera
#                test (tests/libcamera/rootfs.sh arm64: rustc-web 1.96, libcamera-dev:arm64 0.7.1)
#                in the same target dir, so only what the feature adds is compiled
#   amd64        benchcam_<v>_amd64.deb: lab PCs on Debian trixie, --features libcamera, built in
#                the libcamera test's amd64 trixie root (nasm, libcamera-dev 0.7.1) with the
#                host's rustup toolchain, in the host's target dir (target/release), as
#                tests/libcamera/run.sh does
# They are built in that order: a build in a trixie root reuses what the bookworm host
# compiled, never the other way round (C code compiled against trixie's glibc headers can
# need symbols bookworm's glibc lacks). The trixie builds' binaries are copied out of
# target/ (the next host build puts the host's own back).
#
# Packages are assembled with dpkg-deb from packaging/: control.in, the maintainer scripts,
# copyright, changelog. Depends come from dpkg-shlibdeps run where the binary was linked (the
# trixie root for the libcamera builds, this host for the bookworm one), plus the tools the
# maintainer scripts call. Files and paths are those image-build/build.sh installs.
# Environment: BENCHCAM_DEB_CROSS_TARGET_DIR overrides target/aarch64-cross.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
out=$repo/target/debian
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
[ -d "$cargo_bin" ] && export PATH="$cargo_bin:$PATH"
export CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0
cross=aarch64-unknown-linux-gnu

variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(nolibcamera arm64 amd64)
for v in "${variants[@]}"; do
    case $v in arm64 | amd64 | nolibcamera) ;; *) echo "usage: $0 [nolibcamera] [arm64] [amd64]" >&2; exit 2 ;; esac
done

# Debian version = Cargo version + revision 1; packaging/changelog's top entry must say the same.
upstream=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
version=$upstream-1
changelog_version=$(sed -n '1s/^benchcam (\([^)]*\)).*/\1/p' "$here/changelog")
[ "$changelog_version" = "$version" ] || {
    echo "packaging/changelog's top entry is $changelog_version, Cargo.toml says $version: add an entry" >&2
    exit 1
}
# File dates from the last commit, so two builds of one commit give the same trees.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p "$out"
log() { echo "build-debs: $*" >&2; }

# Tools the maintainer scripts call, beyond what dpkg-shlibdeps finds: systemd-sysusers and
# systemd-tmpfiles (systemd), deb-systemd-helper/-invoke (init-system-helpers), userdel (passwd).
script_depends="systemd, init-system-helpers, passwd"

# shlibdeps ROOT_OR_EMPTY ARCH BINARY: the shlibs:Depends line for BINARY, computed in ROOT
# (a chroot made by tests/libcamera/rootfs.sh) or on this host when ROOT is empty.
shlibdeps() {
    local root=$1 arch=$2 bin=$3 dir
    dir=$(mktemp -d "$repo/target/debian/.shlibdeps.XXXXXX")
    mkdir -p "$dir/debian"
    printf 'Source: benchcam\n\nPackage: benchcam\nArchitecture: any\n' >"$dir/debian/control"
    cp "$bin" "$dir/benchcam"
    local cmd="cd '$dir' && DEB_HOST_ARCH=$arch dpkg-shlibdeps -O -e benchcam"
    local line
    if [ -n "$root" ]; then
        line=$("$repo/tests/libcamera/chroot.sh" "$root" bash -c "$cmd")
    else
        line=$(bash -c "$cmd")
    fi
    rm -rf "$dir"
    line=${line#shlibs:Depends=}
    [ -n "$line" ] || { log "dpkg-shlibdeps found no dependencies for $bin"; return 1; }
    echo "$line"
}

# assemble PACKAGE ARCH BINARY STRIP DEPENDS RELATIONS VARIANT_TEXT: stages the tree and
# builds target/debian/PACKAGE_VERSION_ARCH.deb.
assemble() {
    local pkg=$1 arch=$2 bin=$3 strip=$4 depends=$5 relations=$6 variant=$7
    local stage=$out/stage-$pkg-$arch
    rm -rf "$stage"
    mkdir -p "$stage/DEBIAN" "$stage/usr/bin"
    "$strip" --remove-section=.comment --remove-section=.note -o "$stage/usr/bin/benchcam" "$bin"
    chmod 0755 "$stage/usr/bin/benchcam"
    local doc=usr/share/doc/$pkg
    install -D -m0644 systemd/benchcam.service "$stage/usr/lib/systemd/system/benchcam.service"
    sed -i "s|^Documentation=.*|Documentation=file:///$doc/README.md|" \
        "$stage/usr/lib/systemd/system/benchcam.service"
    install -D -m0644 systemd/sysusers.d/benchcam.conf "$stage/usr/lib/sysusers.d/benchcam.conf"
    install -D -m0644 systemd/tmpfiles.d/benchcam.conf "$stage/usr/lib/tmpfiles.d/benchcam.conf"
    install -D -m0644 systemd/udev/60-benchcam-devices.rules \
        "$stage/usr/lib/udev/rules.d/60-benchcam-devices.rules"
    install -D -m0644 systemd/modules-load.d/benchcam.conf "$stage/usr/lib/modules-load.d/benchcam.conf"
    # The documented defaults with the data directory the unit gives the service
    # (StateDirectory=benchcam, ReadWritePaths=/var/lib/benchcam; the rest of the file system is
    # read-only to it). The image's port-80 drop-in is not shipped: the package serves 8080.
    install -d "$stage/etc/benchcam"
    sed -e 's|^data_dir = .*|data_dir = "/var/lib/benchcam"|' config/benchcam.toml \
        >"$stage/etc/benchcam/benchcam.toml"
    chmod 0644 "$stage/etc/benchcam/benchcam.toml"
    grep -qx 'data_dir = "/var/lib/benchcam"' "$stage/etc/benchcam/benchcam.toml" ||
        { log "config/benchcam.toml has no data_dir line to set"; return 1; }
    grep -qx 'ReadWritePaths=/var/lib/benchcam' systemd/benchcam.service &&
        grep -qx 'StateDirectory=benchcam' systemd/benchcam.service ||
        { log "systemd/benchcam.service no longer gives the service /var/lib/benchcam"; return 1; }
    install -D -m0644 README.md "$stage/$doc/README.md"
    # A lab's Prometheus config, alerts and the fleet-targets timer (README "The fleet").
    for f in packaging/prometheus/*; do
        install -D -m0644 "$f" "$stage/$doc/prometheus/${f##*/}"
    done
    install -D -m0644 "$here/copyright" "$stage/$doc/copyright"
    gzip -9n <"$here/changelog" >"$stage/$doc/changelog.Debian.gz"
    chmod 0644 "$stage/$doc/changelog.Debian.gz"

    echo /etc/benchcam/benchcam.toml >"$stage/DEBIAN/conffiles"
    install -m0755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"
    local size
    size=$(du -k -s --exclude=DEBIAN "$stage" | cut -f1)
    # The variant's sentence, wrapped as a Description continuation line.
    variant=$(echo "$variant" | fold -s -w 76 | sed 's/ *$//; s/^/ /')
    awk -v pkg="$pkg" -v ver="$version" -v arch="$arch" -v size="$size" -v deps="$depends" \
        -v rel="$relations" -v variant="$variant" '
        { sub(/@PACKAGE@/, pkg); sub(/@VERSION@/, ver); sub(/@ARCH@/, arch)
          sub(/@INSTALLED_SIZE@/, size); sub(/@DEPENDS@/, deps) }
        /^@RELATIONS@/ { printf "%s", rel; sub(/^@RELATIONS@/, "") }
        /^ @VARIANT@$/ { print variant; next }
        { print }' "$here/control.in" \
        >"$stage/DEBIAN/control"
    (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
        xargs -0 md5sum >DEBIAN/md5sums)
    chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
    find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    local deb=$out/${pkg}_${version}_$arch.deb
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
    rm -rf "$stage"
    log "$(basename "$deb"): $(stat -c %s "$deb") bytes; Depends: $depends"
}

in_root() { local root=$1; shift; "$repo/tests/libcamera/chroot.sh" "$root" bash -c "cd '$repo' && $*"; }

build_arm64() {
    local root
    root=$("$repo/tests/libcamera/rootfs.sh" arm64)
    log "arm64 (libcamera): cross build in $root"
    local target_dir=${BENCHCAM_DEB_CROSS_TARGET_DIR:-$repo/target/aarch64-cross}
    in_root "$root" "RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR=$target_dir \
        PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH= \
        PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
        BINDGEN_EXTRA_CLANG_ARGS='--target=aarch64-linux-gnu' \
        cargo build --release --features libcamera --target $cross --bin benchcam &&
        cp $target_dir/$cross/release/benchcam $out/.benchcam-libcamera-arm64"
    local bin=$out/.benchcam-libcamera-arm64 deps
    deps=$(shlibdeps "$root" arm64 "$bin")
    assemble benchcam arm64 "$bin" aarch64-linux-gnu-strip "$deps, $script_depends" \
        "Conflicts: benchcam-nolibcamera
Replaces: benchcam-nolibcamera
" "This build has the libcamera backend (CSI camera modules on Raspberry Pi OS trixie) besides V4L2 (USB cameras)."
}

build_amd64() {
    local root
    root=$("$repo/tests/libcamera/rootfs.sh" run)
    log "amd64 (libcamera): build in $root"
    in_root "$root" "cargo build --release --features libcamera --bin benchcam &&
        cp target/release/benchcam $out/.benchcam-libcamera-amd64"
    local bin=$out/.benchcam-libcamera-amd64 deps
    deps=$(shlibdeps "$root" amd64 "$bin")
    assemble benchcam amd64 "$bin" strip "$deps, $script_depends" \
        "Conflicts: benchcam-nolibcamera
Replaces: benchcam-nolibcamera
" "This build has the libcamera backend besides V4L2 (USB cameras); for Debian trixie PCs."
}

build_nolibcamera() {
    local target_dir=${BENCHCAM_DEB_CROSS_TARGET_DIR:-$repo/target/aarch64-cross}
    local missing=()
    [ -x /usr/bin/rustc ] || missing+=(rustc-web)
    [ -d /usr/lib/rustlib/$cross/lib ] || missing+=(libstd-rust-web-dev:arm64)
    command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
    command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
    command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
    # dpkg-shlibdeps finds the arm64 runtime libraries' packages through multiarch.
    for p in libc6:arm64 libgcc-s1:arm64 libstdc++6:arm64; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "missing for the bookworm arm64 build: ${missing[*]}" \
            "(bash tests/lib/install-deps.sh --cross; apt-get install libstdc++6:arm64 dpkg-dev)"
        return 1
    fi
    log "arm64 (no libcamera): cross build on this host ($(/usr/bin/rustc --version)), $target_dir"
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR=$target_dir \
        cargo build --release --target $cross --bin benchcam
    local bin=$target_dir/$cross/release/benchcam deps
    deps=$(shlibdeps "" arm64 "$bin")
    assemble benchcam-nolibcamera arm64 "$bin" aarch64-linux-gnu-strip "$deps, $script_depends" \
        "Conflicts: benchcam
Replaces: benchcam
Provides: benchcam (= $version)
" "This build has no libcamera backend: USB (V4L2) cameras only, for Raspberry Pi OS bookworm and other systems without libcamera 0.7."
}

for v in "${variants[@]}"; do "build_$v"; done
ls -l "$out"/*.deb >&2
