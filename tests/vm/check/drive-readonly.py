#!/usr/bin/env python3
"""drive-readonly: the data filesystem turns read-only, or the disk returns EIO, while recording.

Phases (scenarios/drive-readonly.sh): `remount` (mount -o remount,ro, then remount,rw; ext4
refuses the first while a file is open for writing, which is recorded, not judged) and `eio` (the
disk's SCSI state set to "offline": every I/O fails with EIO; then "running", fsck and a fresh
mount). Handled like a pulled drive: within 10 s health's storage.state is no longer "ok"
("read_only", "removed", or in the eio phase "io_error": benchcam's write probe fails while the
filesystem is still mounted with its udev link), status "error", a problem naming storage; recording pauses; the live
view keeps going; nothing lands on the root filesystem under the mount point; within 5 s of the
filesystem being writable again storage is "ok" and within 10 s cam0 records into a new clip; at the
end every clip decodes fully and the index lists exactly the files.
"""
import sys

import drive
import vmcheck

AWAY_LIMIT_MS = 10000
OK_LIMIT_MS = 5000
RECORDING_LIMIT_MS = 10000

c = vmcheck.Checks(sys.argv[1])
c.scenario_ran()
polls = [h for h in c.json("health.jsonl") or [] if "storage" in h]
ws = [m for m in c.json("ws.jsonl") or [] if m.get("event") == "binary"]
events = c.json("events.jsonl") or []
cam = drive.cam
ev = lambda name: next((e for e in events if e.get("event") == name), None)  # noqa: E731
resumed, figures = [], {}


def phase(label, t_cause, t_fixed, clip_before, states):
    """t_cause: the filesystem went read-only / the disk went offline; t_fixed: it is usable again;
    states: the storage.state values that are a right answer (a stale "ok" never is)."""
    away = drive.after(polls, t_cause, lambda h: h["storage"].get("state") != "ok")
    if not c.check(away and away["t_ms"] - t_cause <= AWAY_LIMIT_MS,
                   f"{label}: health storage.state no longer 'ok' within {AWAY_LIMIT_MS / 1000:.0f} s"
                   + (f" ({(away['t_ms'] - t_cause) / 1000:.2f} s: {away['storage'].get('state')!r})" if away else ""),
                   "it stayed 'ok' until the filesystem was unmounted by hand" if away else "it stayed 'ok'"):
        return
    figures.setdefault("away_s", []).append(round((away["t_ms"] - t_cause) / 1000, 2))
    problems = away.get("problems") or []
    c.check(away["storage"].get("state") in states and away.get("status") == "error"
            and any("storage" in p for p in problems),
            f"{label}: storage.state {' or '.join(map(repr, states))}, status 'error', a problem naming storage",
            f"state {away['storage'].get('state')!r}, status {away.get('status')!r}, problems {problems}")
    c.note(f"{label}: {away['storage'].get('state')!r}; problems {problems}")
    lit = drive.after(polls, away["t_ms"], lambda h: drive.led(h, "error") is True, away["t_ms"] + 2000)
    c.check(lit, f"{label}: the error LED on within 2 s")
    drive.check_away(c, label, polls, ws, None, away["t_ms"], t_fixed)
    ok = drive.after(polls, t_fixed, lambda h: h["storage"].get("state") == "ok")
    c.check(ok and ok["t_ms"] - t_fixed <= OK_LIMIT_MS, f"{label}: storage.state 'ok' within {OK_LIMIT_MS / 1000:.0f} s "
            "of the filesystem being writable again" + (f" ({(ok['t_ms'] - t_fixed) / 1000:.2f} s)" if ok else ""),
            "never" if not ok else "")
    base = next((cam(h).get("frames_recorded") for h in reversed(polls) if h["t_ms"] <= t_fixed), None) or 0
    rec = drive.after(polls, t_fixed, lambda h: (cam(h).get("frames_recorded") or 0) > base
                      and cam(h).get("current_clip") not in (None, clip_before))
    if c.check(rec and rec["t_ms"] - t_fixed <= RECORDING_LIMIT_MS, f"{label}: recording again into a new clip within "
               f"{RECORDING_LIMIT_MS / 1000:.0f} s" + (f" ({(rec['t_ms'] - t_fixed) / 1000:.2f} s)" if rec else ""),
               "never" if not rec else ""):
        figures.setdefault("resume_s", []).append(round((rec["t_ms"] - t_fixed) / 1000, 2))
        resumed.append(cam(rec).get("current_clip"))


ro = ev("remount_ro")
if ro and ro.get("rc") == 0:
    phase("remount (mount -o remount,ro)", ro["t_ms"], (ev("remount_rw") or {}).get("t_ms", 1e18),
          (ev("remount_ro_start") or {}).get("clip"), ("read_only", "removed"))
else:
    c.note(f"remount: ext4 refused `mount -o remount,ro` while benchcam recorded ({(ro or {}).get('attempts')} attempts "
           f"in 5 s: {(ro or {}).get('output')!r}): a filesystem with a file open for writing cannot be remounted "
           "read-only, so this phase is not judged")
off, mounted = ev("offline"), ev("mounted")
if c.check(off and mounted and mounted.get("rc") == 0, "eio: the disk went offline and its filesystem was mounted "
           f"again after fsck (e2fsck exit {(ev('fsck') or {}).get('rc')}, unmount {(ev('umount') or {}).get('how')})"):
    phase("eio (SCSI device offline)", off["t_ms"], mounted["t_ms"], off.get("clip"), ("io_error", "read_only", "removed"))
c.note("eio: the kernel said: " + " | ".join(c.text("dmesg-eio.txt").strip().splitlines()[-4:]))
drive.check_root_untouched(c, c.json("rootview.jsonl") or [])
before = vmcheck.index_entries(c.json("remount-before-clips.json"))
drive.check_clips(c, must_have=[n for n in before if before[n].get("complete")] + resumed)
for k, v in figures.items():
    what = {"away_s": "read-only / EIO -> storage not 'ok'", "resume_s": "writable again -> recording again"}[k]
    c.note(f"figure: {what}: {', '.join(f'{x:.2f}' for x in v)} s")
c.done()
