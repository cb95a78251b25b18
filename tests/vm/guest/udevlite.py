#!/usr/bin/env python3
"""What udev and systemd do for a data drive, for a guest that has neither (stdlib only).

    udevlite.py LOG.jsonl LABEL MOUNTPOINT [MOUNT_OPTIONS]

Every 20 ms it lists /sys/class/block. A block device that appears is probed with blkid (again
every 20 ms for up to 5 s while blkid finds nothing on it: a replugged disk can appear before its
medium answers, where udev would probe again on the "change" event) and gets udev's links /dev/disk/by-label/<LABEL> and /dev/disk/by-uuid/<UUID> (-> ../../sdX); if its label
is LABEL it is mounted at MOUNTPOINT (ext4, MOUNT_OPTIONS, default noatime: the image's fstab
line with x-systemd.wanted-by= mounts BENCHDATA whenever its device appears). A device that
vanishes loses its links, and its filesystem is unmounted (systemd stops a mount unit whose device
went away); when that fails because the filesystem is busy, it is tried again every 0.5 s for 15 s,
then detached lazily (umount -l) — each attempt is logged, so a checker can tell whether the
service let go of the dead filesystem. Writing "pause" / "resume" to MOUNTPOINT's control file
(LOG + ".ctl") stops and restarts the automatic mounting (a scenario that unmounts by hand).

Each event is one JSON line in LOG, stamped with "t_ms" (CLOCK_MONOTONIC, as the watchers).
"""
import json
import os
import subprocess
import sys
import time


# How long a new block device without a filesystem signature is probed again before it is
# taken as it is (no label, no UUID).
PROBE_FOR_MS = 5000


def now_ms():
    return round(time.monotonic() * 1000, 1)


def main():
    log_path, label, mountpoint = sys.argv[1], sys.argv[2], sys.argv[3]
    options = sys.argv[4] if len(sys.argv) > 4 else "noatime"
    out = open(log_path, "a")

    def emit(**kv):
        out.write(json.dumps({"t_ms": now_ms(), **kv}) + "\n")
        out.flush()

    def run(*cmd):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return p.returncode, p.stdout.strip()

    for d in ("/dev/disk/by-label", "/dev/disk/by-uuid"):
        os.makedirs(d, exist_ok=True)
    known = {}          # name -> {"label", "uuid"}
    first_seen = {}     # name -> when it appeared, while blkid finds nothing on it yet
    mounted_from = None  # the device we mounted at mountpoint
    unmounting = None    # (device, first attempt t, next attempt t)
    paused = False
    ctl = log_path + ".ctl"
    emit(event="start", label=label, mountpoint=mountpoint)
    while True:
        if os.path.exists(ctl):
            try:
                cmd = open(ctl).read().strip()
                os.unlink(ctl)
            except OSError:
                cmd = ""
            paused = cmd == "pause" if cmd in ("pause", "resume") else paused
            emit(event="control", command=cmd)
        names = set()
        try:
            for n in os.listdir("/sys/class/block"):
                if not n.startswith(("loop", "ram", "zram")):
                    names.add(n)
        except OSError:
            pass
        for n in sorted(names - set(known)):
            t_seen = first_seen.setdefault(n, now_ms())
            rc, text = run("blkid", "-o", "export", f"/dev/{n}")
            info = dict(line.split("=", 1) for line in text.splitlines() if "=" in line) if rc == 0 else {}
            if not info and now_ms() - t_seen < PROBE_FOR_MS:
                # Not readable yet (a disk that has just appeared can answer blkid before its
                # medium is ready): udev would probe again on the "change" event; probe again.
                continue
            first_seen.pop(n, None)
            known[n] = {"label": info.get("LABEL"), "uuid": info.get("UUID")}
            for kind, value in (("by-label", info.get("LABEL")), ("by-uuid", info.get("UUID"))):
                if value:
                    link = f"/dev/disk/{kind}/{value}"
                    try:
                        os.unlink(link)
                    except OSError:
                        pass
                    os.symlink(f"../../{n}", link)
            emit(event="add", dev=n, t_seen_ms=t_seen, **known[n])
            if info.get("LABEL") == label and not paused:
                if unmounting:
                    # The old filesystem is still busy at the mount point: detach it first (a
                    # later `umount` there would take the new one).
                    rc, text = run("umount", "-l", mountpoint)
                    emit(event="umount_lazy", dev=unmounting[0], rc=rc, output=text[:200], reason="replugged")
                    unmounting = None
                rc, text = run("mount", "-t", "ext4", "-o", options, f"/dev/{n}", mountpoint)
                emit(event="mount", dev=n, rc=rc, output=text[:300])
                if rc == 0:
                    mounted_from = n
        for n in set(first_seen) - names:
            first_seen.pop(n)
        for n in sorted(set(known) - names):
            info = known.pop(n)
            for kind, value in (("by-label", info.get("label")), ("by-uuid", info.get("uuid"))):
                link = f"/dev/disk/{kind}/{value}"
                if value and os.path.islink(link) and os.readlink(link) == f"../../{n}":
                    os.unlink(link)
            emit(event="remove", dev=n, **info)
            if n == mounted_from:
                mounted_from = None
                unmounting = (n, now_ms(), 0.0)
        if unmounting:
            n, t_first, t_next = unmounting
            if now_ms() >= t_next:
                rc, text = run("umount", mountpoint)
                emit(event="umount", dev=n, rc=rc, output=text[:200], after_ms=round(now_ms() - t_first, 1))
                if rc == 0:
                    unmounting = None
                elif now_ms() - t_first > 15000:
                    rc, text = run("umount", "-l", mountpoint)
                    emit(event="umount_lazy", dev=n, rc=rc, output=text[:200])
                    unmounting = None
                else:
                    unmounting = (n, t_first, now_ms() + 500)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
