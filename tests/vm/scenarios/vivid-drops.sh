#!/bin/bash
# vivid drops 20 % of its buffers (percentage_of_dropped_buffers) while benchcam records at 640x480
# vm-limit: 120
. "$BENCH/guest/lib.sh"

node="$(load_vivid)" || exit 1
write_config /tmp/drops.toml --data "$DATA/drops" --camera "devices = [\"$node\"]" \
    --camera "width = 640" --camera "height = 480" --camera "fps = 10" --camera 'formats = ["yuyv"]'
start_benchcam /tmp/drops.toml drops || exit 1
wait_camera cam0 '.state == "capturing" and .frames_recorded > 5' 30 >/dev/null || log "not recording after 30 s"
snapshot before
log "vivid: percentage_of_dropped_buffers=20"
v4l2-ctl -d "$node" -c percentage_of_dropped_buffers=20 || exit 1
cpu_per_frame cam0 15 drops-recording
v4l2-ctl -d "$node" -c percentage_of_dropped_buffers=0
sleep 1.5
save drops-running-health.json /api/v1/health
stop_recording_all
snapshot drops
stop_benchcam
log "done"
