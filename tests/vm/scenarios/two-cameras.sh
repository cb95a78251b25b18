#!/bin/bash
# two cameras record at once: vivid 1280x720 YUYV and a v4l2loopback MJPEG camera at 640x480, each into its own H.264 clips
# vm-limit: 180
. "$BENCH/guest/lib.sh"

vivid="$(load_vivid)" || exit 1
lb="$(load_loopback)" || exit 1
# 4 fps each: the TCG guest encodes both (720p ~100-180 ms a frame, 480p transcode ~65 ms) in
# real time with room to spare, so neither recorder may drop a frame.
make_jpegs /tmp/jpeg480 640 480 20 || exit 1
feed_files "$lb" 640 480 4 /tmp/jpeg480 || exit 1
list_nodes >"$RESULTS/nodes.txt"
# One [camera] mode for both: each device gets its closest (vivid 1280x720 YUYV, the loopback
# 640x480 MJPEG, the only mode it has).
write_config /tmp/two.toml --data "$DATA/two" --camera "devices = [\"$vivid\", \"$lb\"]" \
    --camera "width = 1280" --camera "height = 720" --camera "fps = 4" --camera 'formats = ["yuyv", "mjpeg"]'
probe two /tmp/two.toml
start_benchcam /tmp/two.toml two || exit 1
wait_capturing cam0 30 >/dev/null || log "cam0 not capturing"
wait_capturing cam1 30 >/dev/null || log "cam1 not capturing"
cpu_per_frame cam0 13 two-recording
save two-running-health.json /api/v1/health
stop_recording_all
snapshot two
stop_benchcam
stop_feed
log "done"
