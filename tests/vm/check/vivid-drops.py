#!/usr/bin/env python3
"""vivid-drops: frames the driver drops (gaps in v4l2_buffer.sequence) are counted.

vivid's percentage_of_dropped_buffers=20 for 15 s while benchcam records 640x480 YUYV at 10 fps:
health cameras[0].driver_frames_dropped > 0; /metrics counts them for cam0; the .frames.csv
column driver_dropped_before adds up to the health counter; the clips decode fully and the frame
accounting (frames + driver drops == span x fps + 1) holds.
"""
import sys

import vmcheck

c = vmcheck.Checks(sys.argv[1])
c.scenario_ran()
health = vmcheck.camera(c.json("drops-health.json"), "cam0")
before = vmcheck.camera(c.json("before-health.json"), "cam0").get("driver_frames_dropped") or 0
counter = health.get("driver_frames_dropped")
c.check(isinstance(counter, int) and counter > 0,
        f"health cameras[0].driver_frames_dropped > 0 (it is {counter}; {before} before the injection)")

metrics = c.text("drops-metrics.txt")
m = vmcheck.metric(metrics, "benchcam_driver_frames_dropped_total", {"camera": "cam0"})
if m is None:
    alt = vmcheck.metric(metrics, "benchcam_frames_dropped_total", {"camera": "cam0", "reason": "driver"})
    c.check(alt is not None and alt > 0,
            f'/metrics benchcam_frames_dropped_total{{camera="cam0",reason="driver"}} > 0 (it is {alt}; '
            'there is no benchcam_driver_frames_dropped_total)')
else:
    c.check(m > 0, f'/metrics benchcam_driver_frames_dropped_total{{camera="cam0"}} > 0 (it is {m:g})')

rows = vmcheck.check_clips(c, "drops", "cam0", codec="h264", size=(640, 480), fps=10)
all_rows = [r for rs in rows.values() for r in rs or []]
has_col = bool(all_rows) and "driver_dropped_before" in all_rows[0]
if c.check(has_col, ".frames.csv has the column driver_dropped_before"):
    total = sum(r.get("driver_dropped_before") or 0 for r in all_rows)
    recorded_drops = (counter or 0) - before
    c.check(abs(total - recorded_drops) <= max(2, 0.1 * recorded_drops),
            f"sum of driver_dropped_before ({total}) == the health counter's rise while recording "
            f"({recorded_drops}) ±max(2, 10 %)")
    share = total / (total + len(all_rows)) if all_rows else 0
    c.note(f"{total} driver drops over {len(all_rows)} recorded frames: {share:.0%} of the frame periods "
           "(20 % injected for 15 of the recorded seconds)")
c.done()
