#!/bin/bash
# What the drivers offer: vivid's and v4l2loopback's nodes, formats and controls, and benchcam probe
# vm-limit: 90
# Not part of CI: a record of the kernel's side for the README and for writing scenarios.
. "$BENCH/guest/lib.sh"

node="$(load_vivid)"
list_nodes | tee "$RESULTS/nodes-vivid.txt"
v4l2_info "$node" vivid
for p in /sys/module/vivid/parameters/*; do echo "${p##*/}=$(cat "$p")"; done >"$RESULTS/vivid-parameters.txt"
ls -la /sys/bus/platform/drivers/vivid/ >"$RESULTS/vivid-sysfs.txt" 2>&1
probe vivid

lb="$(load_loopback)"
list_nodes | tee "$RESULTS/nodes-both.txt"
v4l2_info "$lb" loopback-idle
make_jpegs /tmp/jpeg 640 480 10
feed_files "$lb" 640 480 10 /tmp/jpeg
sleep 2
v4l2_info "$lb" loopback-fed
probe both
log "done"
