#!/bin/bash
# the data drive (USB, ext4 BENCHUSB) pulled out while recording and plugged back: qemu device_del/device_add; a SCSI delete + rescan; benchcam started with the drive absent
# vm-limit: 420
# vm-usb-disk: 256
#
# Phases (each writes PHASE.json with its times, CLOCK_MONOTONIC ms like the watchers):
#   usb     data_device = "LABEL=BENCHUSB": recording, then the host's QMP device_del of the
#           usb-storage device (a USB drive pulled out), 6 s away, device_add (plugged back):
#           udevlite.py links and mounts it again by label, benchcam must resume by itself
#   scsi    benchcam restarted with data_device = "UUID=<the drive's>": echo 1 >
#           /sys/block/sdX/device/delete (the disk vanishes without a USB disconnect), 5 s, a
#           rescan of its SCSI host brings it back
#   absent  benchcam stopped, the drive pulled out, benchcam started without it (nothing may be
#           created under the empty mount point), then plugged in
# Watchers for the whole scenario: health + GPIO every 100 ms, a WebSocket and an MJPEG viewer,
# the root filesystem's view of the mount point (/rootview/mnt/usb), udevlite's events.
. "$BENCH/guest/lib.sh"

usb_setup || exit 1
# The data dir is the mount point itself, as /var/lib/benchcam on the image: unmounted, it is an
# empty directory of the root filesystem.
DIR="$USB_MNT"
config() { pattern_config "$1" "$DIR" --device "$2"; }  # config FILE DEVICE_SPEC
mono() { local up _; read -r up _ </proc/uptime; echo $((10#${up/./} * 10)); }
# wait_storage STATE TIMEOUT_S: until health's storage.state is STATE; prints the ms it took.
wait_storage() {
    local t0 t
    t0=$(mono)
    while :; do
        [ "$(get /api/v1/health | jq -r .storage.state 2>/dev/null)" = "$1" ] && { echo $(($(mono) - t0)); return 0; }
        t=$(mono)
        [ $((t - t0)) -lt $(($2 * 1000)) ] || return 1
        sleep 0.1
    done
}
# wait_new_clip OLD TIMEOUT_S: until cam0 records into a clip other than OLD.
wait_new_clip() {
    wait_camera cam0 ".recording and .current_clip != null and .current_clip != \"$1\" and .frames_recorded > 0" "$2"
}
phase_json() {  # phase_json NAME KEY=VALUE...: NAME.json with numbers / null / quoted strings
    local name="$1" kv out="{" sep=""
    shift
    for kv in "$@"; do
        local v="${kv#*=}"
        [[ "$v" =~ ^-?[0-9]+(\.[0-9]+)?$ || "$v" = null || "$v" = true || "$v" = false ]] || v="\"$v\""
        out+="$sep\"${kv%%=*}\": $v"
        sep=", "
    done
    echo "$out}" >"$RESULTS/$name.json"
}

W="python3 $BENCH/guest/watch.py"
bg $W dir "$RESULTS/rootview.jsonl" "/rootview$USB_MNT"

# ---- usb: device_del / device_add -----------------------------------------------------------
config /tmp/label.toml "LABEL=$USB_LABEL"
# viewers: a WebSocket and an MJPEG viewer of this benchcam (they end with it; the health watcher
# reconnects by itself).
viewers() {
    bg $W ws "$RESULTS/ws.jsonl" "ws://127.0.0.1:8080/api/v1/cameras/cam0/ws"
    bg $W mjpeg "$RESULTS/mjpeg.jsonl" "$API/api/v1/cameras/cam0/stream.mjpg?quality=low"
}
start_benchcam /tmp/label.toml label || exit 1
bg $W health "$RESULTS/health.jsonl" 100
viewers
wait_camera cam0 '.recording and .frames_recorded > 20' 60 >/dev/null || log "cam0 not recording after 60 s"
sleep 4
snapshot usb-before
clip_before="$(cam_field cam0 .current_clip)"
dev="$(usb_dev)"
log "usb: device_del (the drive is $dev, recording into $clip_before)"
t_req=$(mono)
hotplug del >"$RESULTS/hotplug-del.json"
t_answer=$(mono)
removed_ms="$(wait_storage removed 20)" || log "usb: storage not 'removed' 20 s after device_del"
snapshot usb-removed
sleep 6
snapshot usb-gap
log "usb: device_add"
t_add=$(mono)
hotplug add >"$RESULTS/hotplug-add.json"
ok_ms="$(wait_storage ok 40)" || log "usb: storage not 'ok' 40 s after device_add"
rec_ms="$(wait_new_clip "$clip_before" 30)" || log "usb: no new clip 30 s after storage came back"
sleep 5
snapshot usb-after
phase_json usb dev="$dev" clip_before="$clip_before" t_req_ms="$t_req" t_answer_ms="$t_answer" \
    t_add_ms="$t_add" removed_poll_ms="${removed_ms:-null}" ok_poll_ms="${ok_ms:-null}" rec_poll_ms="${rec_ms:-null}"
stop_benchcam

# ---- scsi: delete + rescan, data_device by UUID ---------------------------------------------
dev="$(usb_dev)"
uuid="$(blkid -s UUID -o value "/dev/$dev")"
host="$(readlink -f "/sys/block/$dev/device" | grep -o 'host[0-9]*' | head -1)"
log "scsi: the drive is $dev (UUID $uuid, SCSI $host)"
config /tmp/uuid.toml "UUID=$uuid"
start_benchcam /tmp/uuid.toml uuid || exit 1
viewers
wait_camera cam0 '.recording and .frames_recorded > 20' 60 >/dev/null || log "cam0 not recording after 60 s"
sleep 3
snapshot scsi-before
clip_before="$(cam_field cam0 .current_clip)"
read -r t_del _ < <(timed_write "/sys/block/$dev/device/delete" 1)
removed_ms="$(wait_storage removed 20)" || log "scsi: storage not 'removed' 20 s after the delete"
snapshot scsi-removed
sleep 5
snapshot scsi-gap
t_scan=$(mono)
echo "- - -" >"/sys/class/scsi_host/$host/scan"
ok_ms="$(wait_storage ok 40)" || log "scsi: storage not 'ok' 40 s after the rescan"
rec_ms="$(wait_new_clip "$clip_before" 30)" || log "scsi: no new clip 30 s after storage came back"
sleep 4
snapshot scsi-after
phase_json scsi dev="$dev" uuid="$uuid" host="$host" clip_before="$clip_before" t_delete_ms="$t_del" \
    t_scan_ms="$t_scan" removed_poll_ms="${removed_ms:-null}" ok_poll_ms="${ok_ms:-null}" rec_poll_ms="${rec_ms:-null}"
stop_benchcam

# ---- absent: benchcam starts without the drive --------------------------------------------------
log "absent: device_del with benchcam stopped"
t_req=$(mono)
hotplug del >"$RESULTS/hotplug-del-absent.json"
for _ in $(seq 1 100); do mountpoint -q "$USB_MNT" || break; sleep 0.1; done
mountpoint -q "$USB_MNT" && log "absent: $USB_MNT still mounted"
start_benchcam /tmp/label.toml absent || exit 1
viewers
t_started=$(mono)
sleep 4
snapshot absent-start
ls -la "/rootview$USB_MNT" >"$RESULTS/rootview-absent.txt" 2>&1
t_add=$(mono)
hotplug add >"$RESULTS/hotplug-add-absent.json"
ok_ms="$(wait_storage ok 40)" || log "absent: storage not 'ok' 40 s after device_add"
rec_ms="$(wait_new_clip none 30)" || log "absent: not recording 30 s after storage came"
sleep 4
snapshot absent-after
phase_json absent t_req_ms="$t_req" t_started_ms="$t_started" t_add_ms="$t_add" ok_poll_ms="${ok_ms:-null}" \
    rec_poll_ms="${rec_ms:-null}"
stop_recording_all
snapshot final
stop_benchcam
ls -laR "/rootview$USB_MNT" >"$RESULTS/rootview-end.txt" 2>&1
mkdir -p "$RESULTS/data"
mountpoint -q "$USB_MNT" || log "$USB_MNT is not mounted at the end"
cp -a "$DIR/rolling" "$DIR/index" "$RESULTS/data/" 2>>"$RESULTS/copy-errors.txt"
log "done"
