#!/usr/bin/env python3
"""Feeds JPEG files into a v4l2loopback node as an MJPEG camera would send them (stdlib only).

    loopfeed.py NODE WIDTH HEIGHT FPS LOG.jsonl FILE...

Sets the node's output format to V4L2_PIX_FMT_MJPEG ('MJPG', what UVC webcams report) at
WIDTHxHEIGHT and FPS (VIDIOC_S_FMT, VIDIOC_S_PARM), then write()s the files one per frame
period, round and round, until killed. Each write is one frame to v4l2loopback, stamped by the
driver at write time (CLOCK_MONOTONIC). A late frame is not made up for: the schedule moves on.
LOG gets one line per frame: {"n", "file", "size", "t_ms", "t_end_ms"} (before and after the
write: the driver's timestamp of the frame lies between them).

Why not GStreamer's v4l2sink: under TCG jpegenc makes ~1.6 frames a second at 720p, v4l2sink
drops late buffers when it syncs to the clock (and floods without a clock when fed from files),
it picks 'JPEG' over 'MJPG', and it stamps buffers with its pipeline's running time, not the
monotonic clock. GStreamer makes the JPEGs beforehand (lib.sh's make_jpegs).
"""

import fcntl
import json
import os
import struct
import sys
import time

VIDIOC_S_FMT = 0xC0D05605  # _IOWR('V', 5, struct v4l2_format), 208 bytes on 64-bit
VIDIOC_S_PARM = 0xC0CC5616  # _IOWR('V', 22, struct v4l2_streamparm), 204 bytes
BUF_TYPE_VIDEO_OUTPUT = 2
FIELD_NONE = 1
COLORSPACE_JPEG = 7
CAP_TIMEPERFRAME = 0x1000


def fourcc(s):
    return s[0] | s[1] << 8 | s[2] << 16 | s[3] << 24


def main():
    node, w, h, fps, log_path, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        int(sys.argv[4]), sys.argv[5], sys.argv[6:]
    frames = [(f, open(f, "rb").read()) for f in files]
    size = max(len(d) for _, d in frames)
    fd = os.open(node, os.O_RDWR)
    # struct v4l2_format: type, 4 bytes of padding (the union holds pointers), v4l2_pix_format
    # (12 x u32), the rest of the 200-byte union.
    fmt = bytearray(struct.pack("<I4x12I152x", BUF_TYPE_VIDEO_OUTPUT, w, h, fourcc(b"MJPG"), FIELD_NONE,
                                0, max(size, w * h), COLORSPACE_JPEG, 0, 0, 0, 0, 0))
    fcntl.ioctl(fd, VIDIOC_S_FMT, fmt)
    got_w, got_h, got_fourcc = struct.unpack_from("<3I", fmt, 8)
    if (got_w, got_h, got_fourcc) != (w, h, fourcc(b"MJPG")):
        sys.exit(f"loopfeed: the node took {got_w}x{got_h} {got_fourcc:#x}, not {w}x{h} MJPG")
    # struct v4l2_streamparm: type, v4l2_outputparm (capability, outputmode, timeperframe,
    # extendedmode, writebuffers, reserved[4]), padding to 200 bytes.
    parm = bytearray(struct.pack("<I6I4I160x", BUF_TYPE_VIDEO_OUTPUT, CAP_TIMEPERFRAME, 0, 1, fps, 0, 0,
                                 0, 0, 0, 0))
    fcntl.ioctl(fd, VIDIOC_S_PARM, parm)
    period = 1.0 / fps
    n = slot = 0
    t0 = time.monotonic()
    with open(log_path, "a") as log:
        while True:
            name, data = frames[n % len(frames)]
            t_write = time.monotonic()
            os.write(fd, data)
            t = time.monotonic()
            log.write(json.dumps({"n": n, "file": os.path.basename(name), "size": len(data),
                                  "t_ms": round(t_write * 1000, 2), "t_end_ms": round(t * 1000, 2)}) + "\n")
            log.flush()
            n += 1
            slot += 1
            if t0 + slot * period < t:  # late: the next frame goes in the next free slot, no burst
                slot = int((t - t0) / period) + 1
            time.sleep(max(0.0, t0 + slot * period - time.monotonic()))


if __name__ == "__main__":
    main()
