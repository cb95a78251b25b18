#!/usr/bin/env python3
"""loopback-mjpeg: an MJPEG webcam (v4l2loopback sending JPEGs made by GStreamer's jpegenc).

mjpeg720 (1280x720, 4 fps) and mjpeg480 (640x480, 10 fps), codec "auto": the clips are H.264
(transcoded), decode fully and hold every frame the camera sent while they were open; the live snapshot is one of the JPEGs the
camera sent, byte for byte (passthrough).
passthrough720 (30 fps, codec "mjpeg"): MJPEG clips that decode fully, counts matching.
mjpeg720-30: auto at the camera's 30 fps for the CPU figures (recorder drops only counted).
"""
import glob
import os
import sys

import vmcheck

c = vmcheck.Checks(sys.argv[1])
c.scenario_ran()
cpu = {r["tag"]: r for r in c.json("cpu.jsonl") or []}


def snapshot_is_the_cameras(tag, sent, w, h):
    try:
        snap = open(c.path(f"{tag}-snapshot.jpg"), "rb").read()
    except OSError:
        snap = b""
    info = vmcheck.jpeg_info(snap)
    if not c.check(info and (info["width"], info["height"]) == (w, h),
                   f"{tag}: /api/v1/cameras/cam0/snapshot.jpg is a {w}x{h} JPEG",
                   f"{len(snap)} bytes, {info and (info['width'], info['height'])}"):
        return
    files = sorted(glob.glob(c.path(sent, "*.jpg")))
    same = [os.path.basename(p) for p in files if open(p, "rb").read() == snap]
    ref = vmcheck.jpeg_info(open(files[0], "rb").read()) if files else None
    c.check(bool(same), f"{tag}: the snapshot is byte-identical to a JPEG the camera sent "
            f"({same[0] if same else 'none'} of {len(files)}: passed through untouched)",
            "its header is " + ("jpegenc's" if ref and ref["header"] == info["header"] else
                                "not jpegenc's: re-encoded"))


for tag, w, h, fps, codec, strict in (("mjpeg720", 1280, 720, 4, "h264", True),
                                      ("mjpeg480", 640, 480, 10, "h264", True),
                                      ("passthrough720", 1280, 720, 30, "mjpeg", True),
                                      ("mjpeg720-30", 1280, 720, 30, "h264", False)):
    running = vmcheck.camera(c.json(f"{tag}-running-health.json"), "cam0")
    c.check(running.get("state") == "capturing" and running.get("recording"),
            f"{tag}: health cameras[0].state == 'capturing' while recording",
            f"state {running.get('state')!r}, recording {running.get('recording')}")
    mode = vmcheck.camera(c.json(f"{tag}-cameras.json"), "cam0").get("mode") or {}
    c.check((mode.get("width"), mode.get("height"), str(mode.get("format")).lower()) == (w, h, "mjpeg"),
            f"{tag}: /api/v1/cameras mode is mjpeg {w}x{h}", f"mode {mode}")
    c.note(f"{tag}: measured {running.get('fps')} fps; driver drops {running.get('driver_frames_dropped')}; "
           f"corrupt {running.get('corrupt_frames')}; recorder drops {running.get('recorder_frames_dropped')}")
    # Frames counted against what the feeder wrote (v4l2loopback reports no drops of its own).
    vmcheck.check_clips(c, tag, "cam0", codec=codec, size=(w, h), fps=fps, strict=strict,
                        feed=c.json(f"{tag}-feed.jsonl") or [])
    if tag in ("mjpeg720", "mjpeg480"):
        snapshot_is_the_cameras(tag, "sent720" if w == 1280 else "sent480", w, h)
    for kind in ("recording", "capture-only"):
        r = cpu.get(f"{tag}-{kind}")
        if r:
            c.note(f"{tag}: benchcam CPU {r['cpu_ms_per_frame']} ms/frame {kind} "
                   f"({r['frames']} frames in {r['wall_ms'] / 1000:.1f} s, {r['fps']} fps; TCG guest)")
c.done()
