#!/bin/bash
# What the drivers offer: vivid's and v4l2loopback's nodes, formats and controls, and benchcam probe
# vm-limit: 90
# Not part of CI: a record of the kernel's side for the README and for writing scenarios.
. "$BENCH/guest/lib.sh"

log "vivid: modprobe vivid n_devs=1 node_types=0x1 multiplanar=1 num_inputs=1 input_types=0x0"
modprobe vivid n_devs=1 node_types=0x1 multiplanar=1 num_inputs=1 input_types=0x0
sleep 1
list_nodes | tee "$RESULTS/nodes-vivid.txt"
node="$(node_named vivid)"
v4l2_info "$node" vivid
for p in /sys/module/vivid/parameters/*; do echo "${p##*/}=$(cat "$p")"; done >"$RESULTS/vivid-parameters.txt"
ls -la /sys/bus/platform/drivers/vivid/ >"$RESULTS/vivid-sysfs.txt" 2>&1
probe vivid

log "v4l2loopback: modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=\"Loopback MJPEG\""
modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="Loopback MJPEG"
sleep 1
list_nodes | tee "$RESULTS/nodes-both.txt"
lb="$(node_named 'Loopback MJPEG')"
v4l2_info "$lb" loopback-idle
bg gst-launch-1.0 -q videotestsrc is-live=true pattern=ball ! \
    video/x-raw,width=1280,height=720,framerate=30/1 ! jpegenc ! v4l2sink device="$lb"
sleep 5
v4l2_info "$lb" loopback-fed
probe both
log "done"
