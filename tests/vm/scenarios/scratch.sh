#!/bin/bash
# scratch (not committed)
# vm-limit: 120
. "$BENCH/guest/lib.sh"
modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="Loopback MJPEG"
sleep 0.5
lb="$(node_named 'Loopback MJPEG')"
try() {
    log "TRY: $*"
    timeout 8 gst-launch-1.0 "$@" > "$RESULTS/gst.txt" 2>&1 &
    sleep 5
    v4l2-ctl -d "$lb" --all | grep -A3 -E 'Device Caps|Format Video' | head -12
    v4l2-ctl -d "$lb" --list-formats-ext | head
    v4l2-ctl -d "$lb" --stream-mmap --stream-count=10 --stream-to=/tmp/x.bin 2>&1 | tail -2; ls -la /tmp/x.bin
    wait
    tail -5 "$RESULTS/gst.txt"
}
try -q videotestsrc is-live=true pattern=ball ! video/x-raw,width=1280,height=720,framerate=30/1 ! jpegenc ! capssetter caps="image/jpeg,parsed=(boolean)true" ! v4l2sink device="$lb"
mkdir -p /tmp/f; gst-launch-1.0 -q videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=640,height=480,framerate=30/1 ! jpegenc ! multifilesink location=/tmp/f/frame%03d.jpg; ls -la /tmp/f | head -5
try -q multifilesrc location=/tmp/f/frame%03d.jpg loop=true ! image/jpeg,width=640,height=480,framerate=30/1,parsed=true ! v4l2sink device="$lb"
