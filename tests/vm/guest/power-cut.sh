#!/bin/bash
# One boot of the VM bench's power-cut cycles (tests/vm/power-cut.sh), run by guest/main.sh when
# the share has power-cut.json ({"cycle": N, "cut": "sysrq" | "kill" | "none", "delay_s": S,
# "phase": "recording" | "archive"}).
#
# The data disk (/dev/vdb, ext4 "BENCHDATA", the same disk every cycle) was left by the previous
# cycle's power cut. This boot:
#   1. mounts it (the kernel replays the journal, as the box's boot would), unmounts it and runs
#      `e2fsck -fn` on it (results/cycle-N/fsck.txt, fsck.rc), then mounts it for good with the
#      image's options (noatime,commit=60) and lists what the cut left (disk-before.txt);
#   2. starts benchcam on it (test-pattern camera, 320x240 at 10 fps, 4 s clips in 500 ms
#      fragments), which reconciles its index with the files and repairs the torn clip;
#   3. captures what the checker judges: hard links to every clip, GET /api/v1/clips and the files
#      beside it, a copy of every complete clip, the experiments;
#   4. starts the health watcher (every 100 ms: frames captured and recorded, the open clip; no
#      live viewer, whose JPEGs would cost the TCG guest more than the recording) and benchcam's CPU
#      log; stops the experiment still running from the cut before (it must have resumed; its
#      archive is copied once done) and starts a new one (pc-N); then prints "BENCHCAM-PC: window"
#      on the console: the cut can come from then on. In phase "archive" the window opens before
#      the stop instead, so the cut may hit the archive;
#   5. cut "sysrq": `echo b > /proc/sysrq-trigger` (reboot without sync: unwritten page cache is
#      lost) delay_s after the window opened, the time written to cut.json first; "kill": the host
#      kills qemu delay_s after it saw the window marker; "none" (the last boot): records delay_s,
#      stops benchcam cleanly, unmounts and runs e2fsck -fn again (fsck-final.txt).
# Everything goes to /bench/results/cycle-N/ on the share (9p, cache=none: each write reaches the
# host at once, so the watchers' logs survive the cut).
set -u
B=/bench
export PATH=/tmp/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mark() { echo "BENCHCAM-PC: $*"; }
# CLOCK_BOOTTIME in ms from /proc/uptime (10 ms steps; == CLOCK_MONOTONIC here: a VM that never
# suspends), without a fork: under TCG every exec costs tens to hundreds of ms.
mono_ms() { local up _; read -r up _ </proc/uptime; echo $((10#${up/./} * 10)); }

cfg="$B/power-cut.json"
read -r cycle cut delay phase < <(jq -r '"\(.cycle) \(.cut) \(.delay_s) \(.phase // "recording")"' "$cfg")
R="$B/results/cycle-$cycle"
mkdir -p "$R"
exec 2>>"$R/guest.log"
fail() {
    mark "error: $*"
    echo "$*" >>"$R/errors.txt"
    sync
    echo o >/proc/sysrq-trigger
    sleep 30
}
mark "cycle $cycle: boot $(cut -d' ' -f1 /proc/uptime) s after the kernel started; cut $cut after $delay s"
{
    echo "kernel: $(uname -r)"
    echo "boot_to_main_s: $(cut -d' ' -f1 /proc/uptime)"
} >"$R/guest.txt"

# ---- 1. journal recovery, fsck, mount ------------------------------------------------------------
OPTS=noatime,commit=60
mkdir -p /data
t0=$(mono_ms)
mount -t ext4 -o "$OPTS" /dev/vdb /data 2>"$R/mount-recovery.txt" || fail "cannot mount /dev/vdb"
dmesg | grep -a 'EXT4-fs (vdb)' >"$R/dmesg-recovery.txt"
umount /data || fail "cannot unmount /dev/vdb after the recovery mount"
e2fsck -fn /dev/vdb >"$R/fsck.txt" 2>&1
echo $? >"$R/fsck.rc"
mount -t ext4 -o "$OPTS" /dev/vdb /data || fail "cannot mount /dev/vdb again"
t1=$(mono_ms)
echo "{\"recovery_mount_fsck_ms\": $((t1 - t0))}" >"$R/fsck-time.json"
(cd /data && find . -mindepth 1 -printf '%y %s %P\n' | sort -k3) >"$R/disk-before.txt"

# ---- 2. benchcam ----------------------------------------------------------------------------------
mkdir -p /tmp/bin
install -m0755 "$B/benchcam" /tmp/bin/benchcam
export RESULTS="$R" DATA=/data/pc SCENARIO=power-cut BENCH="$B"
. "$B/guest/lib.sh"
pattern_config /tmp/pc.toml /data/pc --min-free 64MB --recording 'rolling_clips_count = 12' \
    --extra $'[auto_recording]\npre_roll = "2s"\npost_roll = "1s"'
# benchcam, with the health watcher and a CPU log started at once (Python takes seconds to start
# under TCG). Few processes from here on: every fork costs the TCG guest 0.1-0.5 s.
wall_start=$(wall_ms) mono_start=$(mono_ms)
bg benchcam run --config /tmp/pc.toml >"$R/benchcam-pc.log" 2>&1
BC_PID=$BG_PID
bg env WATCH_GPIO=0 python3 "$B/guest/watch.py" health "$R/health.jsonl" 100
# benchcam's CPU (utime + stime ticks) once a second, up to the cut: "WALL_S UTIME STIME".
cpu_log() {
    local stat
    while read -r stat <"/proc/$1/stat"; do
        set -- "$1" $stat
        echo "${EPOCHREALTIME} ${15} ${16}" >>"$R/cpu.log"
        sleep 1
    done
}
bg cpu_log "$BC_PID"
up=0
for _ in $(seq 1 300); do
    curl -sf --max-time 2 -o "$R/health-start.json" "$API/api/v1/health" && { up=1; break; }
    kill -0 "$BC_PID" 2>/dev/null || break
    sleep 0.1
done
[ "$up" = 1 ] || fail "benchcam did not answer in 30 s: $(tail -3 "$R/benchcam-pc.log" | tr '\n' ' ')"
mono_up=$(mono_ms)
log "benchcam up after $((mono_up - mono_start)) ms"

# ---- 3. what the restart found ----------------------------------------------------------------------
# Hard links to every clip first (one ln, at once: retention deleting the oldest clip when this
# boot's first one closes cannot take a file from under the copies): they are the files on disk
# (files.txt, and their MD5 sums in files.md5); then the index (clips.json). Of the clips
# complete in it, only contents the host does not hold yet (known.md5: the host keeps every file
# it was sent by MD5, and decodes what it gets) cross the 9p share, which is slow under TCG.
declare -A known=()
while read -r m _; do known[$m]=1; done <"$B/known.md5"
rm -rf /data/snap
mkdir -p /data/snap "$R/rolling"
shopt -s nullglob
clipfiles=(/data/pc/rolling/cam0/*)
[ ${#clipfiles[@]} -eq 0 ] || ln -t /data/snap "${clipfiles[@]}" 2>>"$R/copy-errors.txt"
(cd /data/snap && find . -maxdepth 1 -type f -printf '%s %P\n' | sort -k2) >"$R/files.txt"
save clips.json /api/v1/clips
(cd /data/snap && md5sum -- *) >"$R/files.md5" 2>>"$R/copy-errors.txt"
declare -A complete=()
while read -r f; do complete[$f]=1; complete[${f%.mp4}.frames.csv]=1; done \
    < <(jq -r '.[] | select(.camera_id == "cam0" and .complete) | .filename' "$R/clips.json")
copies=()
while read -r m f; do
    [ -n "${complete[$f]:-}" ] && [ -z "${known[$m]:-}" ] && copies+=("/data/snap/$f")
done <"$R/files.md5"
[ ${#copies[@]} -eq 0 ] || cp -t "$R/rolling/" "${copies[@]}" 2>>"$R/copy-errors.txt"
rm -rf /data/snap
save experiments.json /api/v1/experiments
jq -r '.[] | "\(.experiment_id) \(.state)"' "$R/experiments.json" >"$R/experiments-seen.txt"
while read -r id state; do
    [ "$state" = archived ] || save "experiment-$id.json" "/api/v1/experiments/$id"
done <"$R/experiments-seen.txt"
log "restart state captured"

# ---- 4. watchers, the cut window, experiments --------------------------------------------------------
# ---- 4. watchers, the cut window, experiments --------------------------------------------------------
for _ in $(seq 1 200); do
    [ -s "$R/health.jsonl" ] && break
    sleep 0.1
done
[ -s "$R/health.jsonl" ] || log "the health watcher logged nothing in 20 s"
# open_window: from now on the cut may come (sysrq: the cutter counts the delay from here; kill:
# the host does, from the marker on the console).
open_window() {
    if [ "$cut" = sysrq ]; then
        # The cutter (started first: Python takes a while to start under TCG) waits for the go
        # file, then for the delay, writes the time to cut.json, and cuts.
        cat >/tmp/cutter.py <<'PY'
import json, os, sys, time
out, delay, go, ready = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
t_go = time.monotonic()
time.sleep(delay)
t = time.monotonic()
with open(out, "w") as f:
    json.dump({"t_go_ms": round(t_go * 1000, 1), "t_ms": round(t * 1000, 1),
               "wall_ms": round(time.time() * 1000)}, f)
with open("/proc/sysrq-trigger", "w") as f:
    f.write("b")
PY
        bg python3 /tmp/cutter.py "$R/cut.json" "$delay" /tmp/go /tmp/cutter.ready
        wait_ready /tmp/cutter.ready || fail "the cutter did not start"
    fi
    local t_window; t_window=$(mono_ms)
    touch /tmp/go
    mark "window cycle $cycle"
    cat >"$R/window.json" <<JSON
{"cycle": $cycle, "cut": "$cut", "delay_s": $delay, "phase": "$phase", "t_window_ms": $t_window,
 "wall_start_ms": $wall_start, "mono_start_ms": $mono_start, "mono_up_ms": $mono_up}
JSON
}

# phase "archive": the window opens before the experiment the last cut interrupted is stopped, so
# this cut may hit its archive; "recording" (most cycles): after the next experiment started.
[ "$phase" = archive ] && open_window
for id in $(jq -r '.[] | select(.state == "running") | .experiment_id' "$R/experiments.json"); do
    log "stopping experiment $id (resumed after the cut)"
    post "/api/v1/experiments/$id/stop" >"$R/stop-$id.json"
    echo "$(mono_ms) $id" >>"$R/stopped.txt"
done
# Every archived experiment: the MD5 sums of its folder's files (exp-ID.md5) and the files whose
# content the host does not hold (experiment.json, manifest.json and frames.csv always), copied
# under a dot name and renamed when whole (a cut during the copy leaves no half copy to judge). A
# folder already checked in an earlier cycle is named in verified-experiments.txt (the host writes
# it).
for id in $(get /api/v1/experiments | jq -r '.[] | select(.state == "archived") | .experiment_id'); do
    grep -qx "$id" "$B/verified-experiments.txt" 2>/dev/null && continue
    (cd "/data/pc/experiments/$id" && md5sum -- *) >"$R/exp-$id.md5"
    copies=()
    while read -r m f; do
        case "$f" in experiment.json | manifest.json | frames.csv) ;; *) [ -z "${known[$m]:-}" ] || continue ;; esac
        copies+=("/data/pc/experiments/$id/$f")
    done <"$R/exp-$id.md5"
    mkdir -p "$R/experiments/.$id"
    cp -t "$R/experiments/.$id/" "${copies[@]}" && mv "$R/experiments/.$id" "$R/experiments/$id"
done
touch "$R/archives-copied"
if [ "$cut" != none ]; then
    echo "{\"wall_ms\": $(wall_ms)}" >"$R/experiment-posting.json"
    code="$(curl -s -o "$R/experiment-start.json" -w '%{http_code}' --max-time 10 -X POST \
        -H 'Content-Type: application/json' \
        -d "{\"experiment_id\": \"pc-$cycle\", \"method\": \"power cut $cycle\"}" "$API/api/v1/experiments")"
    echo "{\"http\": $code, \"wall_ms\": $(wall_ms)}" >"$R/experiment-started.json"
fi
[ "$phase" = archive ] || open_window

# ---- 5. the cut ------------------------------------------------------------------------------------
case "$cut" in
    sysrq) sleep 600; fail "the sysrq cut did not happen" ;;
    kill) sleep 600; fail "the host did not kill the emulator" ;;
esac
sleep "$delay"
save clips-final.json /api/v1/clips
stop_benchcam
for p in $(cat /run/bench.pids); do kill "$p" 2>/dev/null; done
(cd /data && find . -mindepth 1 -printf '%y %s %P\n' | sort -k3) >"$R/disk-final.txt"
sync
umount /data || fail "cannot unmount /data at the end"
e2fsck -fn /dev/vdb >"$R/fsck-final.txt" 2>&1
echo $? >"$R/fsck-final.rc"
mark "cycle $cycle: done"
