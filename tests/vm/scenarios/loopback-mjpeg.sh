#!/bin/bash
# v4l2loopback as an MJPEG webcam (JPEGs from GStreamer's jpegenc) at 1280x720 and 640x480: H.264 clips by default, MJPEG passthrough with codec = "mjpeg", the live snapshot is the camera's JPEG
# vm-limit: 360
. "$BENCH/guest/lib.sh"

lb="$(load_loopback)" || exit 1
log "loopback node $lb"
# 12 frames at 720p (the ball moves through them; ~7 s to make under TCG), 20 at 480p. Copies go to
# the results: the snapshot check compares the live JPEG with the bytes the camera sent.
make_jpegs /tmp/jpeg720 1280 720 12 || exit 1
make_jpegs /tmp/jpeg480 640 480 20 || exit 1
mkdir -p "$RESULTS/sent720" "$RESULTS/sent480"
cp /tmp/jpeg720/*.jpg "$RESULTS/sent720/"
cp /tmp/jpeg480/*.jpg "$RESULTS/sent480/"

# phase TAG DIR WIDTH HEIGHT FPS SECONDS [RECORDING_LINE]: the loopback camera sends DIR's JPEGs
# at FPS; benchcam records SECONDS as MJPEG ("auto" unless RECORDING_LINE says otherwise).
phase() {
    local tag="$1" dir="$2" w="$3" h="$4" fps="$5" secs="$6" rec="${7:-}"
    feed_files "$lb" "$w" "$h" "$fps" "$dir" "$RESULTS/$tag-feed.jsonl" || return 1
    v4l2_info "$lb" "$tag"
    local args=(--data "$DATA/$tag" --camera "devices = [\"$lb\"]" --camera "width = $w"
        --camera "height = $h" --camera "fps = $fps" --camera 'formats = ["mjpeg"]')
    [ -n "$rec" ] && args+=(--recording "$rec")
    write_config "/tmp/$tag.toml" "${args[@]}"
    start_benchcam "/tmp/$tag.toml" "$tag" || { stop_feed; return 1; }
    wait_capturing cam0 30 >"$RESULTS/$tag-first-frames-ms.txt" || log "$tag: no frames in 30 s"
    sleep 2
    cpu_per_frame cam0 $((secs - 4)) "$tag-recording"
    get /api/v1/cameras/cam0/snapshot.jpg >"$RESULTS/$tag-snapshot.jpg" || log "$tag: no snapshot"
    sleep 2
    save "$tag-running-health.json" /api/v1/health
    stop_recording_all
    snapshot "$tag"
    [ "$fps" = 30 ] && cpu_per_frame cam0 5 "$tag-capture-only"
    stop_benchcam
    stop_feed
}

# H.264 from MJPEG costs a JPEG decode and an encode per frame (~140 ms at 720p under TCG while
# the host is busy), so the judged H.264 phases run at 4 fps (720p) and 10 fps (480p);
# passthrough keeps up at 30. mjpeg720-30 runs at 30 fps for the CPU figures (recorder drops
# expected, only counted).
rc=0
phase mjpeg720 /tmp/jpeg720 1280 720 4 13 || rc=1
phase mjpeg480 /tmp/jpeg480 640 480 10 10 || rc=1
phase passthrough720 /tmp/jpeg720 1280 720 30 10 'codec = "mjpeg"' || rc=1
phase mjpeg720-30 /tmp/jpeg720 1280 720 30 9 || rc=1
log "done"
exit $rc
