#!/usr/bin/env python3
"""clock-step: a real `date -s` back 3 hours and then forward 1 day during an experiment
recording from vivid (640x480 YUYV at 10 fps, 10 s clips, 1 s pre/post-roll).

Checks: the manifest lists both steps with their size (±2 s of what `date -s` did) and the
clock state at start and stop; frames.csv marks in_window exactly the frames whose monotonic
capture time lies in [start - pre_roll, stop + post_roll]; the archived frames reach both ends
of the window and follow each other frame for frame; clip names are unique and every clip decodes; the clip list is in
recording order (seq) although the names jump with the clock.
"""
import csv
import json
import os
import sys

import vmcheck

c = vmcheck.Checks(sys.argv[1])
c.scenario_ran()
exp_dir = c.path("data", "clock", "experiments", "stepped")
try:
    manifest = json.load(open(os.path.join(exp_dir, "manifest.json")))
except (OSError, ValueError) as e:
    c.check(False, "the experiment was archived with a manifest", str(e))
    c.done()

steps_done = c.json("steps.jsonl") or []
steps = manifest.get("clock", {}).get("steps", [])
c.check(len(steps) == 2, "manifest.clock.steps lists 2 steps", f"{steps}")
for want, got in zip((-3 * 3600 * 1e6, 24 * 3600 * 1e6), steps):
    c.check(abs(got.get("step_us", 0) - want) < 2e6,
            f"step of {want / 3.6e9:+.0f} h recorded as {got.get('step_us', 0) / 3.6e9:+.4f} h")
for at in ("at_start", "at_stop"):
    state = manifest.get("clock", {}).get(at) or {}
    c.check(state.get("source") in ("adjtimex", "timesyncd", "unknown"),
            f"manifest.clock.{at} records the clock state", f"{state}")
    c.note(f"clock {at}: synchronized={state.get('synchronized')} source={state.get('source')}")

events = {e["kind"]: e for e in manifest.get("events", [])}
pre = manifest["window"]["pre_roll_s"] * 1e6
post = manifest["window"]["post_roll_s"] * 1e6
lo = events["start"]["monotonic_us"] - pre
hi = events["stop"]["monotonic_us"] + post
rows = list(csv.DictReader(open(os.path.join(exp_dir, "frames.csv"))))
wrong = [r for r in rows if (r["in_window"] == "1") != (lo <= int(r["capture_monotonic_us"]) <= hi)]
c.check(rows and not wrong, f"frames.csv: in_window follows the monotonic window ({len(rows)} frames)",
        f"{len(wrong)} rows wrong, e.g. {wrong[:2]}")
mono = sorted(int(r["capture_monotonic_us"]) for r in rows)
period = 1e6 / 10
c.check(bool(mono) and mono[0] <= lo + 1.5 * period and mono[-1] >= hi - 1.5 * period,
        "the archived clips reach both ends of the window",
        f"frames {mono[:1]}..{mono[-1:]} vs window {lo:.0f}..{hi:.0f}")
# No clip missing from the archive: each archived clip starts at the frame after the last one
# of the clip before it (in recording order), across both steps. (Frames the TCG guest's
# recorder dropped inside a clip are counted by check_clips below.)
archived = manifest.get("clips", [])
breaks = [(a["file"], a["last_frame"], b["file"], b["first_frame"]) for a, b in zip(archived, archived[1:])
          if b["first_frame"] != a["last_frame"] + 1]
c.check(archived and not breaks, "the archived clips follow each other frame for frame across the steps",
        f"{breaks}")
names = [cl["file"] for cl in archived]
c.check(len(names) == len(set(names)) and len(names) >= 4, f"{len(names)} archived clips, names unique",
        f"{names}")

listed = [cl["filename"] for cl in c.json("clock-clips.json") or [] if cl.get("camera_id") == "cam0"]
c.check(len(listed) == len(set(listed)), "clip names unique in the index", f"{listed}")
c.check(listed != sorted(listed, reverse=True),
        "the clip list is in recording order, not name order (the names jumped with the clock)",
        f"{listed}")
vmcheck.check_clips(c, "clock", "cam0", codec="h264", size=(640, 480), strict=False, min_clips=4)
c.done()
