#!/bin/bash
# the data filesystem turns read-only or returns EIO while benchcam records (remount,ro; the disk's SCSI state "offline"), and comes back (remount,rw; fsck + mount)
# vm-limit: 360
# vm-usb-disk: 256
#
# Phases (each writes PHASE.json with its times, CLOCK_MONOTONIC ms like the watchers), with
# data_device = "LABEL=BENCHUSB" and the data dir at the mount point as on the image:
#   remount  `mount -o remount,ro` of the data filesystem while recording (the kernel refuses
#            while a file is open for writing: the attempt is retried every 0.2 s for 5 s, and
#            what happened is recorded), then `mount -o remount,rw`
#   eio      echo offline > /sys/block/sdX/device/state: every I/O of the disk fails with EIO
#            (ext4 then aborts its journal and turns read-only), 6 s, echo running; the
#            filesystem is unmounted (lazily if busy), checked (e2fsck -fy) and mounted again
. "$BENCH/guest/lib.sh"

usb_setup || exit 1
# udevlite must not mount or unmount behind the phases' backs: they do it by hand.
echo pause >"$RESULTS/udev.jsonl.ctl"
DIR="$USB_MNT"
pattern_config /tmp/ro.toml "$DIR" --device "LABEL=$USB_LABEL"
mono() { local up _; read -r up _ </proc/uptime; echo $((10#${up/./} * 10)); }
wait_storage_not() {  # wait_storage_not STATE TIMEOUT_S: until storage.state is not STATE
    local t0; t0=$(mono)
    while :; do
        local s; s="$(get /api/v1/health | jq -r .storage.state 2>/dev/null)"
        [ -n "$s" ] && [ "$s" != "$1" ] && { echo "$(($(mono) - t0)) $s"; return 0; }
        [ $(($(mono) - t0)) -lt $(($2 * 1000)) ] || return 1
        sleep 0.1
    done
}
wait_storage() {
    local t0; t0=$(mono)
    while :; do
        [ "$(get /api/v1/health | jq -r .storage.state 2>/dev/null)" = "$1" ] && { echo $(($(mono) - t0)); return 0; }
        [ $(($(mono) - t0)) -lt $(($2 * 1000)) ] || return 1
        sleep 0.1
    done
}
wait_new_clip() {
    wait_camera cam0 ".recording and .current_clip != null and .current_clip != \"$1\" and .frames_recorded > 0" "$2"
}
# event NAME [KEY=VALUE...]: a line of events.jsonl (CLOCK_MONOTONIC ms).
event() {
    local name="$1" kv out sep=", "
    shift
    out="{\"t_ms\": $(mono), \"event\": \"$name\""
    for kv in "$@"; do
        local v="${kv#*=}"
        v="${v//$'\n'/ }"
        [[ "$v" =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || v="\"${v//\"/\'}\""
        out+="$sep\"${kv%%=*}\": $v"
    done
    echo "$out}" >>"$RESULTS/events.jsonl"
}

W="python3 $BENCH/guest/watch.py"
bg $W dir "$RESULTS/rootview.jsonl" "/rootview$USB_MNT"
start_benchcam /tmp/ro.toml ro || exit 1
bg $W health "$RESULTS/health.jsonl" 100
bg $W ws "$RESULTS/ws.jsonl" "ws://127.0.0.1:8080/api/v1/cameras/cam0/ws"
wait_camera cam0 '.recording and .frames_recorded > 20' 60 >/dev/null || log "cam0 not recording after 60 s"
sleep 3
snapshot remount-before
dev="$(usb_dev)"

# ---- remount: mount -o remount,ro -------------------------------------------------------------
clip_before="$(cam_field cam0 .current_clip)"
event remount_ro_start clip="$clip_before"
ok=0 i=0 t0=$(mono)
while [ $(($(mono) - t0)) -lt 5000 ]; do
    i=$((i + 1))
    if out="$(mount -o remount,ro "$USB_MNT" 2>&1)"; then ok=1; break; fi
    sleep 0.2
done
event remount_ro rc=$((1 - ok)) attempts="$i" output="$out"
log "remount,ro: $([ $ok = 1 ] && echo "done after $i attempt(s)" || echo "refused $i times in 5 s: $out")"
if [ "$ok" = 1 ]; then
    wait_storage_not ok 20 >"$RESULTS/remount-state.txt" || log "remount: storage still 'ok' 20 s after remount,ro"
    sleep 5
    snapshot remount-gap
    event remount_rw_start
    mount -o remount,rw "$USB_MNT" 2>"$RESULTS/remount-rw.txt"
    event remount_rw rc=$?
    wait_storage ok 30 >/dev/null || log "remount: storage not 'ok' 30 s after remount,rw"
    wait_new_clip "$clip_before" 30 >/dev/null || log "remount: no new clip 30 s after remount,rw"
    sleep 4
    snapshot remount-after
fi

# ---- eio: the disk goes offline -----------------------------------------------------------------
clip_before="$(cam_field cam0 .current_clip)"
event offline dev="$dev" clip="$clip_before"
echo offline >"/sys/block/$dev/device/state"
wait_storage_not ok 30 >"$RESULTS/eio-state.txt" || log "eio: storage still 'ok' 30 s after the disk went offline"
sleep 6
snapshot eio-gap
grep -a 'EXT4-fs\|I/O error\|offline' <(dmesg) | tail -20 >"$RESULTS/dmesg-eio.txt"
event running
echo running >"/sys/block/$dev/device/state"
# The filesystem is unusable (journal aborted, or errors seen): unmount it, check it, mount it
# again, as a person (or a reboot) would.
for i in $(seq 1 25); do umount "$USB_MNT" 2>/dev/null && break; sleep 0.2; done
if mountpoint -q "$USB_MNT"; then
    umount -l "$USB_MNT"
    event umount how=lazy
else
    event umount how=plain attempts="$i"
fi
e2fsck -fy "/dev/$dev" >"$RESULTS/fsck-eio.txt" 2>&1
event fsck rc=$?
mount -t ext4 -o noatime "/dev/$dev" "$USB_MNT" 2>"$RESULTS/mount-eio.txt"
event mounted rc=$?
wait_storage ok 30 >/dev/null || log "eio: storage not 'ok' 30 s after the mount"
wait_new_clip "$clip_before" 30 >/dev/null || log "eio: no new clip 30 s after the mount"
sleep 4
snapshot eio-after
stop_recording_all
snapshot final
stop_benchcam
mkdir -p "$RESULTS/data"
cp -a "$DIR/rolling" "$DIR/index" "$RESULTS/data/" 2>>"$RESULTS/copy-errors.txt"
log "done"
