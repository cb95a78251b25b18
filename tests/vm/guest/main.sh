#!/bin/bash
# The VM bench's guest runner (PID 1, tests/vm/rootfs/benchcam-vm-init, runs it from the share).
# Runs the scenarios of /bench/plan ("NAME LIMIT_SECONDS" a line) one after another, each in a
# clean state: its own data dir /data/NAME on the data disk, no V4L2 test module loaded, nothing
# left running from the one before. After each, copies benchcam's data dir to
# /bench/results/NAME/data/ and writes /bench/results/NAME/scenario.json (exit status, seconds,
# timed out). Progress goes to the serial console as "BENCHCAM-VM: ..." lines, which run.sh
# shows; everything a scenario prints goes to results/NAME/scenario.log.
set -u
B=/bench
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mark() { echo "BENCHCAM-VM: $*"; }
# Seconds since boot (/proc/uptime: not moved by the clock-step scenario's wall-clock steps).
now() { local up _; read -r up _ </proc/uptime; echo "$up"; }

G="$B/results/_guest"
mkdir -p "$G"
ip link set lo up
# tests/vm/power-cut.sh's boots: one cycle of power cuts (guest/power-cut.sh mounts the data disk
# itself, after checking it).
if [ -f "$B/power-cut.json" ]; then
    /bin/bash "$B/guest/power-cut.sh"
    exit
fi
mkdir -p /data
if ! mount -t ext4 /dev/vdb /data; then
    mark "cannot mount the data disk /dev/vdb"
    exit 1
fi
install -m0755 "$B/benchcam" /usr/local/bin/benchcam
{
    echo "kernel: $(uname -r)"
    echo "cpus: $(nproc)"
    echo "memory: $(awk '/MemTotal/ { print $2 " kB" }' /proc/meminfo)"
    echo "benchcam: $(benchcam --version 2>&1)"
    echo "v4l2loopback: $(modinfo -F version v4l2loopback 2>&1)"
    echo "v4l-utils: $(v4l2-ctl --version 2>&1 | head -1)"
    echo "gstreamer: $(gst-launch-1.0 --version 2>&1 | sed -n 2p)"
    echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
    echo "boot_to_main_s: $(cut -d' ' -f1 /proc/uptime)"
    # How fast this guest is (host load varies): a fixed piece of Python work, in seconds.
    echo "python_loop_1e6_s: $(python3 -c 'import time; t = time.monotonic(); sum(i * i for i in range(10**6)); print(round(time.monotonic() - t, 2))')"
} >"$G/guest.txt"
mark "main: $(tr '\n' ';' <"$G/guest.txt")"
dmesg >"$G/dmesg-boot.txt"

# Everything a scenario started in the background (lib.sh's bg records the pids), and the test
# modules, go between scenarios.
reset_state() {
    local pids p
    pids="$(cat /run/bench.pids 2>/dev/null)"
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 1 50); do
        local alive=0
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.2
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null; done
    : >/run/bench.pids
    # The USB drive's mounts (lib.sh's usb_setup), lazily: a dead one may be busy.
    for m in /mnt/usb /rootview; do
        mountpoint -q "$m" && umount -l "$m" 2>/dev/null
    done
    # A vivid instance unbound by a scenario must be bound again before the module can go.
    if [ -d /sys/bus/platform/drivers/vivid ]; then
        for d in /sys/bus/platform/devices/vivid.*; do
            [ -e "$d/driver" ] || echo "${d##*/}" >/sys/bus/platform/drivers/vivid/bind 2>/dev/null
        done
    fi
    for m in vivid v4l2loopback; do
        if [ -d "/sys/module/$m" ]; then
            modprobe -r "$m" 2>/dev/null || { sleep 1; modprobe -r "$m" 2>/dev/null; } ||
                mark "warning: cannot unload $m"
        fi
    done
}

while read -r name limit; do
    [ -n "$name" ] || continue
    R="$B/results/$name"
    rm -rf "$R"
    mkdir -p "$R"
    mark "scenario $name start (limit ${limit} s)"
    dmesg -C
    t0="$(now)"
    (
        cd /tmp || exit 1
        export RESULTS="$R" DATA="/data/$name" SCENARIO="$name" BENCH="$B"
        exec timeout -k 10 "$limit" bash "$B/scenarios/$name.sh"
    ) >"$R/scenario.log" 2>&1
    rc=$?
    t1="$(now)"
    reset_state
    dmesg >"$R/dmesg.txt"
    if [ -d "/data/$name" ]; then
        mkdir -p "$R/data"
        cp -a "/data/$name/." "$R/data/"
    fi
    timed_out=false
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && timed_out=true
    secs="$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')"
    printf '{"name": "%s", "rc": %d, "seconds": %s, "timed_out": %s, "limit_s": %d}\n' \
        "$name" "$rc" "$secs" "$timed_out" "$limit" >"$R/scenario.json"
    sync
    mark "scenario $name done: rc $rc in $secs s$([ "$timed_out" = true ] && echo ' (TIMED OUT)')"
done <"$B/plan"

umount /data
sync
mark "main: all scenarios run"
