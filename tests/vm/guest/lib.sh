# shellcheck shell=bash
# Helpers for the VM bench's scenarios (sourced by tests/vm/scenarios/*.sh in the guest).
# The scenario runs with: RESULTS (its results directory on the share), DATA (benchcam's data
# dir for it, on the data disk), SCENARIO, BENCH (the share). Scenarios collect facts (JSON,
# logs, timings) into $RESULTS; the host's tests/vm/check/NAME.py judges them.

API=http://127.0.0.1:8080
BC_PID=""
mkdir -p "$RESULTS" "$DATA"

# stderr: $(...) captures only results. No fork: under TCG every exec costs tens of ms.
log() { local us=${EPOCHREALTIME#*.}; printf '[%(%T)T.%s] %s\n' -1 "${us:0:3}" "$*" >&2; }
# Monotonic milliseconds (CLOCK_MONOTONIC, the clock of benchcam's capture_monotonic_us and of
# V4L2 buffer timestamps).
mono_ms() { python3 -c 'import time; print(int(time.monotonic() * 1000))'; }
wall_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# bg COMMAND...: runs it in the background, recorded so main.sh ends it after the scenario.
bg() {
    "$@" &
    echo $! >>/run/bench.pids
    BG_PID=$!
}

# ---- V4L2 devices ---------------------------------------------------------------------------
# node_named PATTERN: /dev/videoN whose sysfs name (the card) matches the grep -E PATTERN.
node_named() {
    local d
    for d in /sys/class/video4linux/video*; do
        [ -e "$d/name" ] || continue
        if grep -qE "$1" "$d/name"; then echo "/dev/${d##*/}"; return 0; fi
    done
    return 1
}
# wait_node PATTERN [TIMEOUT_S]: waits for node_named to find it; prints the node.
wait_node() {
    local end=$(($(date +%s) + ${2:-10}))
    while [ "$(date +%s)" -lt "$end" ]; do
        node_named "$1" && return 0
        sleep 0.1
    done
    return 1
}
list_nodes() {
    local d
    for d in /sys/class/video4linux/video*; do
        [ -e "$d/name" ] && echo "/dev/${d##*/}: $(cat "$d/name")"
    done
}

# ---- benchcam -------------------------------------------------------------------------------
# write_config FILE [--data DIR] [--camera LINE]... [--recording LINE]... [--streaming LINE]...
#              [--extra TEXT]
# The scenario's config: data_dir DIR (default $DATA; a phase of a scenario takes $DATA/PHASE),
# listen 127.0.0.1:8080, simulated GPIO, 10 s clips in 500 ms fragments, ring_slots = 16 (unless
# a --camera line sets it); LINEs are added to their sections, TEXT (more sections) at the end.
# ring_slots: the default 6 leaves the recorder a queue of 3 frames, and under TCG openh264's
# first frames of a clip take longer than that (~1 s at 720p while the host is busy), so the
# recorder would drop frames at every recording start; 16 slots absorb it.
write_config() {
    local file="$1"; shift
    local cam=() rec=() str=() extra="" data="$DATA"
    while [ $# -gt 0 ]; do
        case "$1" in
            --data) data="$2"; shift ;;
            --camera) cam+=("$2"); shift ;;
            --recording) rec+=("$2"); shift ;;
            --streaming) str+=("$2"); shift ;;
            --extra) extra+="$2"$'\n'; shift ;;
            *) echo "write_config: unknown $1" >&2; return 2 ;;
        esac
        shift
    done
    {
        echo "[service]"
        echo "data_dir = \"$data\""
        echo 'listen = "127.0.0.1:8080"'
        echo 'log_level = "info"'
        echo
        echo "[camera]"
        echo 'source = "v4l2"'
        printf '%s\n' "${cam[@]}" | grep -q '^ring_slots' || echo 'ring_slots = 16'
        printf '%s\n' "${cam[@]}"
        echo
        echo "[recording]"
        echo 'clip_length = "10s"'
        echo 'fragment_duration = "500ms"'
        echo 'min_free_space = "64MB"'
        printf '%s\n' "${rec[@]}"
        echo
        echo "[streaming]"
        printf '%s\n' "${str[@]}"
        echo
        echo "[gpio]"
        echo 'backend = "sim"'
        echo
        printf '%s' "$extra"
    } >"$file"
    mkdir -p "$data"
    log "config $file:"; sed 's/^/    /' "$file"
}

# pattern_config FILE DATA_DIR [--device SPEC] [--min-free SIZE] [--recording LINE]... [--extra TEXT]
# The storage scenarios' config (drive-unplug, drive-readonly, guest/power-cut.sh): the test-pattern
# camera at 320x240, 10 fps, ring_slots = 16; 4 s clips in 500 ms fragments at 300 kbit/s; a
# 320x240 low stream; simulated GPIO. data_dir DATA_DIR, data_device SPEC when given ("LABEL=..."
# or "UUID=..."), min_free_space SIZE (default 16MB); LINEs are added to [recording], TEXT (more
# sections) at the end. No fork (power-cut.sh's boots count them).
pattern_config() {
    local file="$1" data="$2" device="" min_free=16MB rec=() extra=""
    shift 2
    while [ $# -gt 0 ]; do
        case "$1" in
            --device) device="$2"; shift ;;
            --min-free) min_free="$2"; shift ;;
            --recording) rec+=("$2"); shift ;;
            --extra) extra+=$'\n'"$2"; shift ;;
            *) echo "pattern_config: unknown $1" >&2; return 2 ;;
        esac
        shift
    done
    {
        echo "[service]"
        echo "data_dir = \"$data\""
        [ -z "$device" ] || echo "data_device = \"$device\""
        echo 'listen = "127.0.0.1:8080"'
        echo 'log_level = "info"'
        echo
        echo "[camera]"
        echo 'source = "pattern"'
        echo 'width = 320'
        echo 'height = 240'
        echo 'fps = 10'
        echo 'ring_slots = 16'
        echo
        echo "[recording]"
        echo 'clip_length = "4s"'
        echo 'fragment_duration = "500ms"'
        echo "min_free_space = \"$min_free\""
        [ ${#rec[@]} = 0 ] || printf '%s\n' "${rec[@]}"
        echo 'bitrate_kbps = 300'
        echo
        echo "[streaming.quality.low]"
        echo 'width = 320'
        echo 'height = 240'
        echo 'fps = 10'
        echo 'jpeg_quality = 50'
        [ -z "$extra" ] || printf '%s\n' "$extra"
        echo
        echo "[gpio]"
        echo 'backend = "sim"'
    } >"$file"
}

# start_benchcam CONFIG TAG: starts benchcam (log: $RESULTS/benchcam-TAG.log) and waits until
# /api/v1/health answers (30 s at most). Sets BC_PID.
start_benchcam() {
    local config="$1" tag="$2"
    cp "$config" "$RESULTS/config-$tag.toml"
    benchcam check-config --config "$config" >"$RESULTS/check-config-$tag.txt" 2>&1 ||
        log "check-config failed: $(tail -3 "$RESULTS/check-config-$tag.txt")"
    bg benchcam run --config "$config" >"$RESULTS/benchcam-$tag.log" 2>&1
    BC_PID=$BG_PID
    local i
    for i in $(seq 1 300); do
        if curl -sf --max-time 2 "$API/api/v1/health" >/dev/null 2>&1; then
            log "benchcam $tag up (pid $BC_PID) after $((i / 10)).$((i % 10)) s"
            return 0
        fi
        kill -0 "$BC_PID" 2>/dev/null || { log "benchcam $tag exited: $(tail -5 "$RESULTS/benchcam-$tag.log")"; return 1; }
        sleep 0.1
    done
    log "benchcam $tag did not answer in 30 s"
    return 1
}
# stop_benchcam: SIGTERM, waits up to 30 s (the open clip is finalised), then SIGKILL.
stop_benchcam() {
    [ -n "$BC_PID" ] || return 0
    kill -TERM "$BC_PID" 2>/dev/null
    local i
    for i in $(seq 1 300); do
        kill -0 "$BC_PID" 2>/dev/null || { log "benchcam stopped after $((i / 10)).$((i % 10)) s"; BC_PID=""; return 0; }
        sleep 0.1
    done
    log "benchcam did not stop in 30 s: SIGKILL"
    kill -KILL "$BC_PID" 2>/dev/null
    BC_PID=""
    return 1
}

get() { curl -sf --max-time 5 "$API$1"; }
# 90 s: an experiment's stop answers after its post-roll, the last clip's cut and the archive,
# which took more than 10 s in a guest slowed by other jobs on the host.
post() { curl -s --max-time 90 -X POST -H 'Content-Type: application/json' -d "${2:-{\}}" "$API$1"; }
# save NAME PATH: GET PATH into $RESULTS/NAME (JSON or text as served).
save() { get "$2" >"$RESULTS/$1" || log "GET $2 failed"; }
# snapshot TAG: health, cameras, clips, gpio, metrics into $RESULTS/TAG-*.
snapshot() {
    save "$1-health.json" /api/v1/health
    save "$1-cameras.json" /api/v1/cameras
    save "$1-clips.json" /api/v1/clips
    save "$1-gpio.json" /api/v1/gpio
    save "$1-metrics.txt" /metrics
}
# cam_field CAM JQ: a field of a camera in health, e.g. cam_field cam0 .state
cam_field() { get /api/v1/health | jq -r --arg c "$1" ".cameras[] | select(.id == \$c) | $2"; }

# wait_camera CAM JQ_CONDITION TIMEOUT_S: polls health every 100 ms until the camera's entry
# satisfies the condition (e.g. '.state == "capturing" and .frames_captured > 10'); prints
# the milliseconds it took. Returns 1 on timeout.
wait_camera() {
    local cam="$1" cond="$2" t0 now
    t0=${EPOCHREALTIME/./}
    while :; do
        if get /api/v1/health | jq -e --arg c "$cam" ".cameras[] | select(.id == \$c) | $cond" >/dev/null 2>&1; then
            now=${EPOCHREALTIME/./}
            echo $(((now - t0) / 1000))
            return 0
        fi
        now=${EPOCHREALTIME/./}
        [ $((now - t0)) -lt $((${3:-10} * 1000000)) ] || return 1
        sleep 0.1
    done
}
wait_capturing() { wait_camera "$1" ".state == \"capturing\" and .frames_captured > ${3:-5}" "${2:-20}"; }

# stop_recording_all: stops every camera's recording, so the open clips are finalised and the
# index is complete before it is read (clips.json).
stop_recording_all() {
    local c
    for c in $(get /api/v1/health | jq -r '.cameras[] | select(.recording) | .id'); do
        post "/api/v1/cameras/$c/recording/stop" >/dev/null
    done
    # The recorder finalises at its next frame.
    sleep 1
}

# record_for SECONDS TAG: lets benchcam record, then stops recording and snapshots TAG.
# (The scenario starts benchcam first: recording starts on boot.)
record_for() {
    sleep "$1"
    snapshot "$2-running"
    stop_recording_all
    snapshot "$2"
}

# cpu_ticks PID: utime + stime of a process, in clock ticks (getconf CLK_TCK, 100 here).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# cpu_per_frame CAM SECONDS TAG: benchcam's CPU per captured frame over SECONDS; appends a JSON
# line to $RESULTS/cpu.jsonl.
cpu_per_frame() {
    local cam="$1" secs="$2" tag="$3" c0 c1 f0 f1 t0 t1
    c0="$(cpu_ticks "$BC_PID")"; f0="$(cam_field "$cam" .frames_captured)"; t0="$(wall_ms)"
    sleep "$secs"
    c1="$(cpu_ticks "$BC_PID")"; f1="$(cam_field "$cam" .frames_captured)"; t1="$(wall_ms)"
    local hz; hz="$(getconf CLK_TCK)"
    python3 - "$tag" "$cam" "$c0" "$c1" "$f0" "$f1" "$t0" "$t1" "$hz" >>"$RESULTS/cpu.jsonl" <<'EOF'
import json, sys
tag, cam, c0, c1, f0, f1, t0, t1, hz = sys.argv[1:]
cpu_ms = (int(c1) - int(c0)) * 1000 / int(hz)
frames = int(f1) - int(f0)
wall_ms = int(t1) - int(t0)
print(json.dumps({"tag": tag, "camera": cam, "cpu_ms": cpu_ms, "frames": frames, "wall_ms": wall_ms,
                  "cpu_ms_per_frame": round(cpu_ms / frames, 3) if frames else None,
                  "fps": round(frames * 1000 / wall_ms, 2) if wall_ms else None}))
EOF
    log "cpu $tag: $(tail -1 "$RESULTS/cpu.jsonl")"
}

# probe TAG: `benchcam probe` (with the scenario's config when given) into $RESULTS/probe-TAG.txt
probe() {
    benchcam probe ${2:+--config "$2"} >"$RESULTS/probe-$1.txt" 2>&1
    log "probe $1:"; sed 's/^/    /' "$RESULTS/probe-$1.txt"
}
# v4l2_info NODE TAG: the driver's view of a node (caps, formats, controls) into $RESULTS.
v4l2_info() {
    {
        v4l2-ctl -d "$1" --all
        echo "---- formats"
        v4l2-ctl -d "$1" --list-formats-ext
        echo "---- controls"
        v4l2-ctl -d "$1" -L
    } >"$RESULTS/v4l2-$2.txt" 2>&1
}

# ---- drivers --------------------------------------------------------------------------------
# vivid as one webcam-like device: only a video capture node (node_types=0x1), the single-planar
# API (multiplanar=1: YUYV, NV12, YU12 and the rest as one-plane formats), one webcam input
# (input_types=0x0: discrete sizes 320x180 ... 3840x2160 at 1-120 fps). Its capture node is named
# "vivid-000-vid-cap".
VIVID_OPTS=(n_devs=1 node_types=0x1 multiplanar=1 num_inputs=1 input_types=0x0)
VIVID_NODE='^vivid-000-vid-cap$'
load_vivid() {
    log "modprobe vivid ${VIVID_OPTS[*]} $*"
    modprobe vivid "${VIVID_OPTS[@]}" "$@" || return 1
    local node
    node="$(wait_node "$VIVID_NODE" 10)" || { log "no vivid capture node"; return 1; }
    # A moving picture, so the encoder has real work (vivid's default pattern stands still).
    v4l2-ctl -d "$node" -c horizontal_movement=5 >/dev/null 2>&1
    echo "$node"
}

# v4l2loopback as an MJPEG webcam. exclusive_caps=1: the node is an output device until a
# producer writes, then a capture device only (what browsers and benchcam want). max_buffers=8:
# with the default 2 the writer refills a buffer while the reader may still be copying it out of
# its mapping (v4l2loopback does not hold a dequeued buffer back from the writer), which tears
# JPEGs at 30 fps under TCG.
LOOPBACK_LABEL="Loopback MJPEG"
load_loopback() {
    log "modprobe v4l2loopback devices=1 exclusive_caps=1 max_buffers=8 card_label=\"$LOOPBACK_LABEL\""
    modprobe v4l2loopback devices=1 exclusive_caps=1 max_buffers=8 card_label="$LOOPBACK_LABEL" || return 1
    wait_node "^$LOOPBACK_LABEL\$" 10
}
# wait_capture_caps NODE: until the loopback node offers video capture (a producer streams).
wait_capture_caps() {
    local i
    for i in $(seq 1 100); do
        v4l2-ctl -d "$1" --info 2>/dev/null | grep -A3 'Device Caps' | grep -q 'Video Capture' && return 0
        sleep 0.1
    done
    return 1
}
# make_jpegs DIR W H N: N JPEGs of GStreamer's moving ball (videotestsrc ! jpegenc) in
# DIR/frame000.jpg ... (under TCG ~0.2 s a frame at 640x480, ~0.6 s at 1280x720: made once, then
# played by feed_files).
make_jpegs() {
    local dir="$1" w="$2" h="$3" n="$4"
    mkdir -p "$dir"
    gst-launch-1.0 -q videotestsrc num-buffers="$n" pattern=ball ! "video/x-raw,width=$w,height=$h,framerate=30/1" \
        ! jpegenc ! multifilesink location="$dir/frame%03d.jpg" || return 1
    log "made $n ${w}x${h} JPEGs with jpegenc in $dir"
}
# feed_files NODE W H FPS DIR [LOG]: the loopback node becomes an MJPEG camera sending DIR's
# JPEGs round and round at FPS (guest/loopfeed.py, in the background: FEED_PID); each frame sent
# is logged to LOG (default $RESULTS/feed.jsonl).
feed_files() {
    local node="$1" w="$2" h="$3" fps="$4" dir="$5" flog="${6:-$RESULTS/feed.jsonl}"
    bg python3 "$BENCH/guest/loopfeed.py" "$node" "$w" "$h" "$fps" "$flog" "$dir"/*.jpg
    FEED_PID=$BG_PID
    wait_capture_caps "$node" || { log "the loopback node did not turn into a capture device"; return 1; }
    log "feeding $node with ${w}x${h} MJPEG at $fps fps from $dir (pid $FEED_PID)"
}
stop_feed() {
    [ -n "${FEED_PID:-}" ] || return 0
    kill -INT "$FEED_PID" 2>/dev/null
    local i
    for i in $(seq 1 30); do kill -0 "$FEED_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$FEED_PID" 2>/dev/null
    FEED_PID=""
}

# wait_ready FILE: until FILE exists (10 s at most).
wait_ready() {
    local i
    for i in $(seq 1 100); do [ -e "$1" ] && return 0; sleep 0.1; done
    return 1
}
# timed_write FILE VALUE: writes VALUE into a sysfs FILE and prints "T_BEFORE_MS T_AFTER_MS"
# (CLOCK_MONOTONIC), taken in the same process as the write.
timed_write() {
    python3 - "$1" "$2" <<'PY'
import sys, time
t0 = time.monotonic()
with open(sys.argv[1], "w") as f:
    f.write(sys.argv[2])
t1 = time.monotonic()
print(f"{t0 * 1000:.1f} {t1 * 1000:.1f}")
PY
}
# wait_gone NODE TIMEOUT_S: until the device node no longer exists; prints CLOCK_MONOTONIC ms then.
# With READY=FILE it creates FILE once it is watching (Python takes a while to start under TCG).
wait_gone() {
    python3 - "$1" "${2:-5}" <<'PY'
import os, sys, time
end = time.monotonic() + float(sys.argv[2])
if os.environ.get("READY"):
    open(os.environ["READY"], "w").close()
while os.path.exists(sys.argv[1]) and time.monotonic() < end:
    time.sleep(0.01)
print(f"{time.monotonic() * 1000:.1f}" if not os.path.exists(sys.argv[1]) else "")
PY
}
# wait_node_timed PATTERN TIMEOUT_S: like wait_node; prints "NODE T_MS" (when it was seen).
# READY=FILE as for wait_gone.
wait_node_timed() {
    python3 - "$1" "${2:-10}" <<'PY'
import glob, os, re, sys, time
end = time.monotonic() + float(sys.argv[2])
if os.environ.get("READY"):
    open(os.environ["READY"], "w").close()
while time.monotonic() < end:
    for d in sorted(glob.glob("/sys/class/video4linux/video*")):
        try:
            name = open(os.path.join(d, "name")).read().strip()
        except OSError:
            continue
        node = "/dev/" + os.path.basename(d)
        if re.search(sys.argv[1], name) and os.path.exists(node):
            print(node, f"{time.monotonic() * 1000:.1f}")
            sys.exit(0)
    time.sleep(0.01)
sys.exit(1)
PY
}

# ---- the USB drive (run.sh gives one to scenarios with a `# vm-usb-disk: MIB` line) ----------
# ext4 "BENCHUSB" on qemu's usb-storage (qemu-xhci). The guest has no udev: guest/udevlite.py
# makes the /dev/disk/by-label and by-uuid links when a disk appears and removes them when it goes,
# mounts BENCHUSB at $USB_MNT when it appears (as the image's fstab line does) and unmounts it when
# it goes (as systemd does); its events are in $RESULTS/udev.jsonl. / is bind-mounted (alone) at
# /rootview, where the empty mount point $USB_MNT shows what was written onto the root filesystem.
# usb_setup empties the drive (all but lost+found) for the scenario.
USB_LABEL=BENCHUSB USB_MNT=/mnt/usb
usb_setup() {
    modprobe xhci_pci && modprobe usb_storage && modprobe sd_mod || { log "cannot load the USB modules"; return 1; }
    mkdir -p "$USB_MNT" /rootview
    mountpoint -q /rootview || mount --bind / /rootview
    bg python3 "$BENCH/guest/udevlite.py" "$RESULTS/udev.jsonl" "$USB_LABEL" "$USB_MNT"
    UDEV_PID=$BG_PID
    local i
    for i in $(seq 1 300); do
        if mountpoint -q "$USB_MNT"; then
            log "USB drive mounted at $USB_MNT after $((i / 10)).$((i % 10)) s"
            # A clean drive for each scenario (the data dir is the mount point, as on the image).
            find "$USB_MNT" -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} +
            return 0
        fi
        sleep 0.1
    done
    log "no USB drive mounted at $USB_MNT after 30 s"
    return 1
}
# hotplug del|add: asks the host to pull the USB drive out (device_del) or plug it back
# (device_add); prints the host's answer (JSON, tests/vm/qmp.py). 30 s at most.
hotplug() {
    local id="${SCENARIO}-${EPOCHREALTIME/./}" i
    echo "$1" >"$BENCH/hotplug/req-$id.tmp" && mv "$BENCH/hotplug/req-$id.tmp" "$BENCH/hotplug/req-$id"
    for i in $(seq 1 300); do
        if [ -f "$BENCH/hotplug/done-$id" ]; then cat "$BENCH/hotplug/done-$id"; return 0; fi
        sleep 0.1
    done
    log "hotplug $1: no answer from the host in 30 s"
    return 1
}
# usb_dev: the block device (sdX) the drive is now, from its by-label link.
usb_dev() { local l; l="$(readlink "/dev/disk/by-label/$USB_LABEL")" && echo "${l##*/}"; }
