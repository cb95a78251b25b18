#!/usr/bin/env python3
"""drive-unplug: the data drive pulled out while benchcam records, and plugged back.

Phases (scenarios/drive-unplug.sh): `usb` (qemu device_del / device_add of the usb-storage device,
data_device by LABEL), `scsi` (echo 1 > /sys/block/sdX/device/delete and a SCSI rescan, by UUID),
`absent` (benchcam started with the drive out, then it is plugged in).

Per removal: within 5 s of the disk vanishing (udevlite.py's `remove` event) health says
storage.state "removed", status "error", a problem with "storage removed", the error LED on;
recording pauses (frames_recorded stands still); the WebSocket and MJPEG viewers keep getting
frames; nothing appears on the root filesystem under the empty mount point (/rootview/mnt/usb);
within 5 s of the filesystem being mounted again storage.state is "ok" and within 10 s cam0 records
into a new clip. At the end every clip (before and after the removals) decodes fully and the index
lists exactly the files. Figures: seconds from the disk vanishing to "removed", and from the mount
to recording again.
"""
import os
import sys

import drive
import vmcheck

REMOVED_LIMIT_MS = 5000
OK_LIMIT_MS = 5000
RECORDING_LIMIT_MS = 10000

c = vmcheck.Checks(sys.argv[1])
c.scenario_ran()
polls = [h for h in c.json("health.jsonl") or [] if "storage" in h]
udev = c.json("udev.jsonl") or []
ws = [m for m in c.json("ws.jsonl") or [] if m.get("event") == "binary"]
mj = [m for m in c.json("mjpeg.jsonl") or [] if m.get("event") == "part"]
rootview = c.json("rootview.jsonl") or []
cam, led = drive.cam, drive.led


def after(t, pred, until=None):
    return drive.after(polls, t, pred, until)


figures = {}


def removal(phase, t_cause, t_back, device_spec, label):
    """Checks one removal: the disk went at or after t_cause, came back at or after t_back."""
    p = c.json(f"{phase}.json") or {}
    gone = next((e for e in udev if e.get("event") == "remove" and e["t_ms"] >= t_cause - 50
                 and str(e.get("dev", "")).startswith("sd")), None)
    if not c.check(gone, f"{label}: the disk vanished (udev remove event after the {phase} removal)"):
        return
    t_gone = gone["t_ms"]
    removed = after(t_gone, lambda h: h["storage"].get("state") == "removed")
    if not c.check(removed and removed["t_ms"] - t_gone <= REMOVED_LIMIT_MS,
                   f"{label}: health storage.state 'removed' within {REMOVED_LIMIT_MS / 1000:.0f} s of the disk vanishing"
                   + (f" ({(removed['t_ms'] - t_gone) / 1000:.2f} s)" if removed else ""),
                   "never" if not removed else ""):
        return
    t_removed = removed["t_ms"]
    figures.setdefault("removed_s", []).append(round((t_removed - t_gone) / 1000, 2))
    c.check(removed.get("status") == "error" and any("storage removed" in x for x in removed.get("problems") or []),
            f"{label}: health status 'error' with a problem naming it",
            f"status {removed.get('status')!r}, problems {removed.get('problems')}")
    c.note(f"{label}: problem: {next((x for x in removed.get('problems') or [] if 'storage' in x), None)!r}")
    c.check(removed["storage"].get("device") == device_spec, f"{label}: health storage.device == {device_spec!r}",
            f"it is {removed['storage'].get('device')!r}")
    lit = after(t_removed, lambda h: led(h, "error") is True, t_removed + 2000)
    c.check(lit, f"{label}: the error LED on within 2 s of 'removed'")
    mount = next((e for e in udev if e.get("event") == "mount" and e.get("rc") == 0 and e["t_ms"] >= t_back), None)
    t_end = mount["t_ms"] if mount else (polls[-1]["t_ms"] if polls else t_removed)
    drive.check_away(c, label, polls, ws, mj, t_removed, t_end)
    dead = [e for e in udev if e.get("event") in ("umount", "umount_lazy") and t_gone <= e["t_ms"] <= t_end + 100]
    done = next((e for e in dead if e.get("rc") == 0), None)
    c.note(f"{label}: the dead filesystem at the mount point: "
           + (f"{done['event']} succeeded {done['t_ms'] - t_gone:.0f} ms after the disk vanished"
              f" ({sum(1 for e in dead if e.get('rc') != 0)} busy attempts before)" if done else
              f"not unmounted ({len(dead)} attempts: {dead[-1].get('output') if dead else 'none'})"))
    if not c.check(mount, f"{label}: the filesystem was mounted again"):
        return
    t_mount = mount["t_ms"]
    ok = after(t_mount, lambda h: h["storage"].get("state") == "ok")
    c.check(ok and ok["t_ms"] - t_mount <= OK_LIMIT_MS, f"{label}: storage.state 'ok' within "
            f"{OK_LIMIT_MS / 1000:.0f} s of the mount" + (f" ({(ok['t_ms'] - t_mount) / 1000:.2f} s)" if ok else ""),
            "never" if not ok else "")
    base = next((cam(h).get("frames_recorded") for h in reversed(polls) if h["t_ms"] <= t_mount), None) or 0
    old = p.get("clip_before")
    rec = after(t_mount, lambda h: (cam(h).get("frames_recorded") or 0) > base and cam(h).get("current_clip")
                not in (None, old))
    if c.check(rec and rec["t_ms"] - t_mount <= RECORDING_LIMIT_MS, f"{label}: recording again into a new clip within "
               f"{RECORDING_LIMIT_MS / 1000:.0f} s of the mount"
               + (f" ({(rec['t_ms'] - t_mount) / 1000:.2f} s: {cam(rec).get('current_clip')})" if rec else ""),
               "never" if not rec else ""):
        figures.setdefault("resume_s", []).append(round((rec["t_ms"] - t_mount) / 1000, 2))
        resumed_clips.append(cam(rec).get("current_clip"))


resumed_clips = []
usb = c.json("usb.json") or {}
scsi = c.json("scsi.json") or {}
absent = c.json("absent.json") or {}
removal("usb", usb.get("t_req_ms", 0), usb.get("t_add_ms", 0), "LABEL=BENCHUSB", "usb (device_del/device_add)")
removal("scsi", scsi.get("t_delete_ms", 0), scsi.get("t_scan_ms", 0), f"UUID={scsi.get('uuid')}",
        "scsi (delete/rescan)")

# ---- absent: started without the drive -----------------------------------------------------------
label = "absent (started without the drive)"
h = c.json("absent-start-health.json") or {}
st = h.get("storage") or {}
c.check(st.get("state") == "removed" and h.get("status") == "error"
        and any("storage removed" in x for x in h.get("problems") or []),
        f"{label}: health storage.state 'removed', status 'error', a 'storage removed' problem",
        f"state {st.get('state')!r}, status {h.get('status')!r}, problems {h.get('problems')}")
mount = next((e for e in udev if e.get("event") == "mount" and e.get("rc") == 0
              and e["t_ms"] >= absent.get("t_add_ms", 1e18)), None)
if c.check(mount, f"{label}: the filesystem was mounted when the drive came"):
    ok = after(mount["t_ms"], lambda h: h["storage"].get("state") == "ok")
    rec = after(mount["t_ms"], lambda h: cam(h).get("recording") and (cam(h).get("frames_recorded") or 0) > 0
                and cam(h).get("current_clip"))
    c.check(ok and rec and rec["t_ms"] - mount["t_ms"] <= RECORDING_LIMIT_MS,
            f"{label}: storage 'ok' and recording within {RECORDING_LIMIT_MS / 1000:.0f} s of the mount"
            + (f" ({(ok['t_ms'] - mount['t_ms']) / 1000:.2f} s / {(rec['t_ms'] - mount['t_ms']) / 1000:.2f} s)"
               if ok and rec else ""))
    if ok and rec:
        figures.setdefault("resume_s", []).append(round((rec["t_ms"] - mount["t_ms"]) / 1000, 2))
        resumed_clips.append(cam(rec).get("current_clip"))

# ---- the root filesystem under the mount point, the clips ----------------------------------------
drive.check_root_untouched(c, rootview)
before = vmcheck.index_entries(c.json("usb-before-clips.json"))
drive.check_clips(c, must_have=[n for n in before if before[n].get("complete")] + resumed_clips)

for k, v in figures.items():
    what = {"removed_s": "disk vanished -> storage 'removed'", "resume_s": "filesystem mounted -> recording again"}[k]
    c.note(f"figure: {what}: {', '.join(f'{x:.2f}' for x in v)} s")
c.done()
