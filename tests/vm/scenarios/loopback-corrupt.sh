#!/bin/bash
# v4l2loopback sends JPEGs of which 1 in 10 is truncated or has garbage inside, unchecked: benchcam counts and skips them and keeps recording
# vm-limit: 180
. "$BENCH/guest/lib.sh"

lb="$(load_loopback)" || exit 1
# 30 frames of GStreamer's ball at 640x480; every 10th (4, 14, 24) is damaged: cut to 55 % of its
# length (4, 24) or with 512 bytes of garbage in its middle (14). loopfeed.py sends them as they
# are, as a UVC camera sends what it has.
make_jpegs /tmp/frames 640 480 30 || exit 1
python3 - /tmp/frames "$RESULTS/damaged.json" <<'PY'
import json, os, random, sys
d, out = sys.argv[1], sys.argv[2]
random.seed(8)
damaged = {}
for i in range(4, 30, 10):
    p = os.path.join(d, f"frame{i:03d}.jpg")
    data = open(p, "rb").read()
    if (i // 10) % 2 == 0:
        data = data[: len(data) * 55 // 100]
        damaged[os.path.basename(p)] = f"truncated to {len(data)} bytes"
    else:
        mid = len(data) // 2
        data = data[:mid] + bytes(random.randrange(256) for _ in range(512)) + data[mid + 512:]
        damaged[os.path.basename(p)] = f"512 bytes of garbage at {mid}"
    open(p, "wb").write(data)
json.dump({"frames": 30, "damaged": damaged}, open(out, "w"), indent=1)
PY
feed_files "$lb" 640 480 10 /tmp/frames || exit 1

# phase TAG SECONDS [RECORDING_LINE]: benchcam records the damaged feed; health every 2 s.
phase() {
    local tag="$1" secs="$2" rec="${3:-}"
    local args=(--data "$DATA/$tag" --camera "devices = [\"$lb\"]" --camera "width = 640"
        --camera "height = 480" --camera "fps = 10" --camera 'formats = ["mjpeg"]')
    [ -n "$rec" ] && args+=(--recording "$rec")
    write_config "/tmp/$tag.toml" "${args[@]}"
    start_benchcam "/tmp/$tag.toml" "$tag" || return 1
    wait_capturing cam0 30 >/dev/null || log "$tag: no frames in 30 s"
    local i
    for i in $(seq 1 $((secs / 2))); do
        get /api/v1/health | jq -c --arg t "$(wall_ms)" '{t_ms: ($t | tonumber), status, cameras}' \
            >>"$RESULTS/$tag-health-series.jsonl"
        sleep 2
    done
    save "$tag-running-health.json" /api/v1/health
    echo "$(kill -0 "$BC_PID" 2>/dev/null && echo alive || echo dead)" >"$RESULTS/$tag-process.txt"
    stop_recording_all
    snapshot "$tag"
    stop_benchcam
}
rc=0
phase corrupt-h264 16 || rc=1
phase corrupt-mjpeg 10 'codec = "mjpeg"' || rc=1
stop_feed
log "done"
exit $rc
