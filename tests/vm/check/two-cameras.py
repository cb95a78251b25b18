#!/usr/bin/env python3
"""two-cameras: vivid (1280x720 YUYV) and a v4l2loopback MJPEG camera (640x480) record at once.

Both capture in their own mode, health recorder_frames_dropped == 0 for both, and each camera's
clips decode fully with their counts matching (H.264 for both: MJPEG is transcoded by default).
"""
import sys

import vmcheck

c = vmcheck.Checks(sys.argv[1])
c.scenario_ran()
cams = c.json("two-cameras.json") or []
running = c.json("two-running-health.json") or {}
final = c.json("two-health.json") or {}
c.check(len(cams) == 2, f"two cameras detected: {[(x.get('id'), x.get('name'), x.get('device')) for x in cams]}")
for cam in cams:
    cid = cam.get("id")
    mode = cam.get("mode") or {}
    fmt = str(mode.get("format")).lower()
    size = (mode.get("width"), mode.get("height"))
    want = ((1280, 720), "yuyv") if "vivid" in str(cam.get("name")).lower() else ((640, 480), "mjpeg")
    c.check((size, fmt) == want, f"{cid} ({cam.get('name')}): mode {fmt} {size[0]}x{size[1]} "
            f"(want {want[1]} {want[0][0]}x{want[0][1]})")
    h = vmcheck.camera(running, cid)
    c.check(h.get("state") == "capturing" and h.get("recording"), f"{cid}: capturing and recording while the other one does",
            f"state {h.get('state')!r}, recording {h.get('recording')}")
    drops = vmcheck.camera(final, cid).get("recorder_frames_dropped")
    load = vmcheck.busy(c, "two")
    if load is not None and load >= 1.2:
        c.note(f"{cid}: health recorder_frames_dropped {drops}: not judged, benchcam used {load:.0%} of a vCPU "
               "(the guest is too slow: host busy?)")
    else:
        c.check(drops == 0, f"{cid}: health recorder_frames_dropped == 0 (it is {drops})")
    c.note(f"{cid}: {h.get('fps')} fps, {h.get('frames_recorded')} frames recorded")
    vivid = want[1] == "yuyv"
    # Two encoder threads on two vCPUs: too slow a guest only above 120 % of one vCPU.
    vmcheck.check_clips(c, "two", cid, codec="h264", size=want[0], fps=4, busy_limit=1.2,
                        feed=None if vivid else c.json("feed.jsonl") or [])
c.done()
