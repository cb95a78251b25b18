#!/usr/bin/env python3
"""loopback-corrupt: damaged camera JPEGs (1 in 10 truncated or with garbage inside) are counted
and skipped; benchcam keeps running and recording, and the clips decode fully.

Phases: corrupt-h264 (codec "auto": MJPEG decoded and encoded as H.264) and corrupt-mjpeg
(codec "mjpeg": passthrough, where a damaged JPEG would tear the clip if it were written).
"""
import sys

import vmcheck

c = vmcheck.Checks(sys.argv[1])
c.scenario_ran()
damaged = c.json("damaged.json") or {}
c.note(f"feed: {damaged.get('frames')} JPEGs in a loop, {len(damaged.get('damaged', {}))} of them damaged")
for tag, codec in (("corrupt-h264", "h264"), ("corrupt-mjpeg", "mjpeg")):
    c.check(c.text(f"{tag}-process.txt").strip() == "alive", f"{tag}: benchcam still runs after the damaged feed")
    running = vmcheck.camera(c.json(f"{tag}-running-health.json"), "cam0")
    c.check(running.get("state") == "capturing", f"{tag}: health cameras[0].state == 'capturing'",
            f"it is {running.get('state')!r}")
    corrupt = running.get("corrupt_frames")
    c.check(isinstance(corrupt, int) and corrupt > 0, f"{tag}: health cameras[0].corrupt_frames > 0 (it is {corrupt})")
    series = [vmcheck.camera(h, "cam0") for h in c.json(f"{tag}-health-series.jsonl") or []]
    recorded = [s.get("frames_recorded") for s in series if isinstance(s.get("frames_recorded"), int)]
    growing = len(recorded) >= 3 and all(b > a for a, b in zip(recorded, recorded[1:]))
    c.check(growing, f"{tag}: frames_recorded grows at every 2 s sample (the recorder never stalls): {recorded}")
    c.note(f"{tag}: measured {running.get('fps')} fps, {running.get('frames_captured')} frames captured, "
           f"{corrupt} corrupt, {running.get('frames_dropped')} dropped in all")
    # Skipped damaged frames may leave gaps in frame_number: counted, not judged as recorder drops.
    vmcheck.check_clips(c, tag, "cam0", codec=codec, size=(640, 480), strict=False)
c.done()
