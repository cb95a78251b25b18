#!/bin/bash
# v4l2loopback as an MJPEG webcam fed by GStreamer (jpegenc) at 1280x720 and 640x480: H.264 clips by default, MJPEG passthrough with codec = "mjpeg", the live snapshot is the camera's JPEG
# vm-limit: 300
. "$BENCH/guest/lib.sh"

lb="$(load_loopback)" || exit 1
log "loopback node $lb"

# phase TAG WIDTH HEIGHT FPS SECONDS [RECORDING_LINE]: GStreamer feeds WIDTHxHEIGHT JPEGs at FPS
# (keeping copies in /tmp/ref-TAG), benchcam records SECONDS from the node as MJPEG, then
# recording stops and capture alone runs on for the CPU figure.
phase() {
    local tag="$1" w="$2" h="$3" fps="$4" secs="$5" rec="${6:-}"
    local src=(videotestsrc is-live=true pattern=ball ! "video/x-raw,width=$w,height=$h,framerate=$fps/1"
        ! jpegenc ! capssetter 'caps=image/jpeg,parsed=(boolean)true')
    mkdir -p "/tmp/ref-$tag"
    bg gst-launch-1.0 -q "${src[@]}" ! tee name=t ! queue ! v4l2sink device="$lb" \
        t. ! queue ! multifilesink location="/tmp/ref-$tag/ref%05d.jpg" max-files=60
    GST_PID=$BG_PID
    wait_capture_caps "$lb" || { log "$tag: the loopback node did not turn into a capture device"; return 1; }
    v4l2_info "$lb" "$tag"
    local args=(--data "$DATA/$tag" --camera "devices = [\"$lb\"]" --camera "width = $w"
        --camera "height = $h" --camera "fps = $fps" --camera 'formats = ["mjpeg"]')
    [ -n "$rec" ] && args+=(--recording "$rec")
    write_config "/tmp/$tag.toml" "${args[@]}"
    probe "$tag" "/tmp/$tag.toml"
    start_benchcam "/tmp/$tag.toml" "$tag" || { stop_feed; return 1; }
    wait_capturing cam0 30 >"$RESULTS/$tag-first-frames-ms.txt" || log "$tag: no frames in 30 s"
    sleep 2
    cpu_per_frame cam0 $((secs - 4)) "$tag-recording"
    # The live snapshot, and right after it the JPEGs GStreamer sent last.
    get /api/v1/cameras/cam0/snapshot.jpg >"$RESULTS/$tag-snapshot.jpg" || log "$tag: no snapshot"
    mkdir -p "$RESULTS/$tag-refs" && cp /tmp/ref-"$tag"/*.jpg "$RESULTS/$tag-refs/"
    sleep 2
    snapshot "$tag-running"
    stop_recording_all
    snapshot "$tag"
    cpu_per_frame cam0 5 "$tag-capture-only"
    stop_benchcam
    stop_feed
    rm -rf "/tmp/ref-$tag"
}

# H.264 from MJPEG costs a JPEG decode and an encode per frame: at 720p the TCG guest manages
# ~5 fps, so the judged phases run at 5 fps (720p) and 10 fps (480p); passthrough keeps up at 30.
# mjpeg720-30 runs at 30 fps for the CPU figures (recorder drops expected and only counted).
rc=0
phase mjpeg720 1280 720 5 15 || rc=1
phase mjpeg480 640 480 10 12 || rc=1
phase passthrough720 1280 720 30 12 'codec = "mjpeg"' || rc=1
phase mjpeg720-30 1280 720 30 10 || rc=1
log "done"
exit $rc
