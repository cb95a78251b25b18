#!/usr/bin/env python3
"""vivid-raw: YUYV and NV12 at 1280x720 and YUYV at 640x480 from vivid, recorded as H.264.

Per phase: the camera captured in the asked mode while recording; every clip decodes fully,
is H.264 of that size, has as many frames as its .frames.csv and its index entry, contiguous
frame numbers, sample times equal to the driver's capture times (±1 ms), and frames + driver
drops == capture span x fps + 1 (±1), at rates the TCG guest encodes in real time (720p at
4 fps, 480p at 10); yuyv720-30 records at 30 fps with recorder drops only counted. Prints
benchcam's CPU per frame (under TCG), recording and capture alone.
"""
import sys

import vmcheck


def secs_long(tag):
    """Phases recording past one 10 s clip."""
    return tag in ("yuyv720", "nv12-720", "yuyv480")


c = vmcheck.Checks(sys.argv[1])
c.scenario_ran()
cpu = {r["tag"]: r for r in c.json("cpu.jsonl") or []}
for tag, w, h, fps, fmt in (("yuyv720", 1280, 720, 4, "yuyv"), ("nv12-720", 1280, 720, 4, "nv12"),
                            ("yuyv480", 640, 480, 10, "yuyv"), ("yuyv720-30", 1280, 720, 30, "yuyv")):
    running = vmcheck.camera(c.json(f"{tag}-running-health.json"), "cam0")
    c.check(running.get("state") == "capturing" and running.get("recording"),
            f"{tag}: health cameras[0].state == 'capturing' while recording",
            f"state {running.get('state')!r}, recording {running.get('recording')}")
    mode = vmcheck.camera(c.json(f"{tag}-cameras.json"), "cam0").get("mode") or {}
    c.check((mode.get("width"), mode.get("height"), mode.get("fps"), str(mode.get("format")).lower())
            == (w, h, fps, fmt), f"{tag}: /api/v1/cameras mode is {fmt} {w}x{h} @ {fps}", f"mode {mode}")
    c.note(f"{tag}: measured {running.get('fps')} fps; driver drops {running.get('driver_frames_dropped')}; "
           f"recorder drops {running.get('recorder_frames_dropped')}")
    # At 30 fps the TCG guest cannot encode 720p in real time: recorder drops are counted, not judged.
    vmcheck.check_clips(c, tag, "cam0", codec="h264", size=(w, h), fps=fps, strict=fps < 30,
                        min_clips=2 if secs_long(tag) else 1)
    for kind in ("recording", "capture-only"):
        r = cpu.get(f"{tag}-{kind}")
        if r:
            c.note(f"{tag}: benchcam CPU {r['cpu_ms_per_frame']} ms/frame {kind} "
                   f"({r['frames']} frames in {r['wall_ms'] / 1000:.1f} s, {r['fps']} fps; TCG guest)")
c.done()
