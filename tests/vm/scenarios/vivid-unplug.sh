#!/bin/bash
# vivid unbound from its driver while benchcam records (a USB unplug: the node disappears while held open), then bound again (the replug); vivid's own Disconnect control
# vm-limit: 240
. "$BENCH/guest/lib.sh"

node="$(load_vivid)" || exit 1
unbind=/sys/bus/platform/drivers/vivid/unbind bind=/sys/bus/platform/drivers/vivid/bind
ls -la /sys/bus/platform/drivers/vivid/ >"$RESULTS/vivid-driver-before.txt" 2>&1
# No devices list: benchcam finds the camera, and must find it again after the replug whatever
# its node is then.
write_config /tmp/unplug.toml --data "$DATA/unplug" --camera "width = 1280" --camera "height = 720" \
    --camera "fps = 4" --camera 'formats = ["yuyv"]'
start_benchcam /tmp/unplug.toml unplug || exit 1
wait_camera cam0 '.state == "capturing" and .frames_recorded > 3' 30 >/dev/null || log "not recording after 30 s"

W="python3 $BENCH/guest/watch.py"
bg $W health "$RESULTS/health.jsonl" 100
bg $W mjpeg "$RESULTS/mjpeg.jsonl" "$API/api/v1/cameras/cam0/stream.mjpg?quality=low"
bg $W ws "$RESULTS/ws.jsonl" "ws://127.0.0.1:8080/api/v1/cameras/cam0/ws"
post /api/v1/experiments '{"experiment_id": "unplug1", "method": "vm"}' >"$RESULTS/experiment-start.json"
cpu_per_frame cam0 6 unplug-recording
snapshot before

# The node watchers start before the write: starting Python under TCG takes up to seconds.
log "unplug: echo vivid.0 > $unbind"
READY=/tmp/gone.ready wait_gone "$node" 20 >/tmp/gone.txt &
watcher=$!
wait_ready /tmp/gone.ready
read -r t_unplug t_unplug_done < <(timed_write "$unbind" vivid.0)
wait "$watcher"
t_gone="$(cat /tmp/gone.txt)"
log "unbound at $t_unplug ms; $node gone at ${t_gone:-never}"
sleep 5
snapshot gap

log "replug: echo vivid.0 > $bind"
READY=/tmp/node.ready wait_node_timed "$VIVID_NODE" 25 >/tmp/node.txt &
watcher=$!
wait_ready /tmp/node.ready
read -r t_bind t_bind_done < <(timed_write "$bind" vivid.0)
wait "$watcher"
read -r node2 t_node </tmp/node.txt
log "bound at $t_bind ms; node $node2 at $t_node ms"
v4l2-ctl -d "$node2" -c horizontal_movement=5 >/dev/null 2>&1
back_ms="$(wait_camera cam0 '.state == "capturing"' 10)" || log "cam0 not capturing 10 s after the replug"
cpu_per_frame cam0 6 unplug-recording-2
snapshot replugged
post /api/v1/experiments/unplug1/stop >"$RESULTS/experiment-stop.json"
save manifest.json /api/v1/experiments/unplug1

# vivid's Disconnect control: the node goes and comes back as soon as every handle is closed.
r0="$(cam_field cam0 .reconnects)"
log "vivid Disconnect control on $node2 (reconnects before: $r0)"
t_disc="$(python3 -c 'import time; print(f"{time.monotonic() * 1000:.1f}")')"
v4l2-ctl -d "$node2" -c disconnect=1 || log "v4l2-ctl disconnect failed"
disc_ms="$(wait_camera cam0 ".reconnects > ${r0:-0} and .state == \"capturing\"" 15)" ||
    log "no counted reconnect 15 s after the Disconnect control"
list_nodes >"$RESULTS/nodes-after-disconnect.txt"
sleep 3
snapshot after-disconnect
stop_recording_all
snapshot final
stop_benchcam
ls -la /sys/bus/platform/drivers/vivid/ >"$RESULTS/vivid-driver-after.txt" 2>&1

cat >"$RESULTS/unplug.json" <<JSON
{"node_before": "$node", "node_after": "${node2:-}", "t_unplug_ms": $t_unplug, "t_unplug_done_ms": $t_unplug_done,
 "t_node_gone_ms": ${t_gone:-null}, "t_bind_ms": $t_bind, "t_bind_done_ms": $t_bind_done, "t_node_ms": ${t_node:-null},
 "back_poll_ms": ${back_ms:-null}, "t_disconnect_ms": $t_disc, "disconnect_back_poll_ms": ${disc_ms:-null},
 "reconnects_before_disconnect": ${r0:-null}}
JSON
cat "$RESULTS/unplug.json" >&2
log "done"
