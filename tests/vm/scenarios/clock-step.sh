#!/bin/bash
# the wall clock stepped with a real `date -s` (back 3 h, then forward 1 day) during an experiment
# recording from vivid (10 s clips, 11 s between steps: a clip opens after each); the window,
# clip order and names must follow the monotonic clock
# vm-limit: 240
. "$BENCH/guest/lib.sh"

node="$(load_vivid)" || exit 1
write_config /tmp/clock.toml --data "$DATA/clock" --camera "devices = [\"$node\"]" \
    --camera "width = 640" --camera "height = 480" --camera "fps = 10" --camera 'formats = ["yuyv"]' \
    --extra $'[auto_recording]\npre_roll = "1s"\npost_roll = "1s"'
start_benchcam /tmp/clock.toml clock || exit 1
wait_capturing cam0 30 >/dev/null || log "no frames in 30 s"
sleep 3 # pre-roll material

post /api/v1/experiments '{"experiment_id": "stepped", "method": "clock steps"}' >"$RESULTS/start.json"
sleep 11
before=$(wall_ms)
date -s "@$(( $(date +%s) - 3 * 3600 ))" >/dev/null
echo "{\"step\": 1, \"wall_before_ms\": $before, \"wall_after_ms\": $(wall_ms)}" >>"$RESULTS/steps.jsonl"
log "clock stepped back 3 h"
sleep 11
post /api/v1/experiments/stepped/marker '{}' >/dev/null
before=$(wall_ms)
date -s "@$(( $(date +%s) + 24 * 3600 ))" >/dev/null
echo "{\"step\": 2, \"wall_before_ms\": $before, \"wall_after_ms\": $(wall_ms)}" >>"$RESULTS/steps.jsonl"
log "clock stepped forward 1 day"
sleep 11
post /api/v1/experiments/stepped/stop '{}' >"$RESULTS/stop.json"
sleep 2
save experiment.json /api/v1/experiments/stepped
stop_recording_all
snapshot clock
stop_benchcam
log "done"
