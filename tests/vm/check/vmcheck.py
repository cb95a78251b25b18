"""Shared checks of the VM bench's host-side checkers (tests/vm/check/NAME.py).

A checker gets the scenario's results directory (target/vm/results/NAME) and prints one line per
check: `  ok: ...` or `  FAILED: ...` (tests/vm/run.sh counts them), plus `  note: ...` lines for
figures. Python 3 stdlib only; ffmpeg and ffprobe come from the host.

Layout of a results directory (tests/vm/guest/main.sh and lib.sh):
  scenario.json, scenario.log, dmesg.txt     how the scenario ran in the guest
  PHASE-health.json, PHASE-cameras.json, PHASE-clips.json, PHASE-gpio.json, PHASE-metrics.txt
                                             API captures after the phase's recording stopped
                                             (PHASE-running-*: the same while it still ran)
  data/PHASE/rolling/CAM/*.mp4, *.frames.csv benchcam's data dir of the phase
  benchcam-PHASE.log, config-PHASE.toml, probe-*.txt, v4l2-*.txt, cpu.jsonl
"""

import csv
import json
import os
import re
import subprocess
import sys


class Checks:
    """Counts and prints checks; `done()` exits non-zero when one failed."""

    def __init__(self, results):
        self.results = results
        self.passed = 0
        self.failed = 0

    def ok(self, text):
        self.passed += 1
        print(f"  ok: {text}", flush=True)

    def bad(self, text):
        self.failed += 1
        print(f"  FAILED: {text}", flush=True)

    def check(self, cond, text, why=""):
        if cond:
            self.ok(text)
        else:
            self.bad(f"{text}{' (' + why + ')' if why else ''}")
        return bool(cond)

    def note(self, text):
        print(f"  note: {text}", flush=True)

    def path(self, *parts):
        return os.path.join(self.results, *parts)

    def json(self, name):
        """A JSON file of the results (a .jsonl file: the list of its lines, skipping a torn last
        line), or None when it is missing or not JSON."""
        try:
            with open(self.path(name)) as f:
                text = f.read()
        except OSError:
            return None
        if name.endswith(".jsonl"):
            out = []
            for line in text.splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
            return out
        try:
            return json.loads(text)
        except ValueError:
            return None

    def text(self, name):
        try:
            with open(self.path(name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def scenario_ran(self):
        """The scenario finished in time with exit status 0."""
        s = self.json("scenario.json") or {}
        self.check(
            s.get("rc") == 0 and not s.get("timed_out"),
            f"scenario ran to its end in the guest ({s.get('seconds', '?')} s of {s.get('limit_s', '?')})",
            f"rc {s.get('rc')}, timed out {s.get('timed_out')}; last lines: "
            + " | ".join(self.text("scenario.log").strip().splitlines()[-3:]),
        )

    def done(self):
        sys.exit(1 if self.failed else 0)


def camera(health, cam):
    """The camera's entry in a health (or cameras) document, or {}."""
    if isinstance(health, dict):
        health = health.get("cameras", [])
    for c in health or []:
        if c.get("id") == cam:
            return c
    return {}


def run(cmd, stderr=True):
    """(exit status, output); stderr=False keeps stderr out of the output (JSON on stdout)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if stderr else subprocess.PIPE,
                       text=True, errors="replace")
    return p.returncode, p.stdout if stderr else p.stdout + ("\n" + p.stderr if p.returncode else "")


def decode_errors(clip):
    """What a full decode prints (nothing for a good clip; DESIGN.md §11's command)."""
    rc, out = run(["ffmpeg", "-nostdin", "-v", "error", "-i", clip, "-fps_mode", "passthrough",
                   "-enc_time_base", "-1", "-f", "null", "-"])
    if rc != 0 and not out.strip():
        out = f"ffmpeg exited {rc}"
    return out.strip()


def probe(clip):
    """codec_name, width, height, nb_read_frames (decoded frames) of the first video stream."""
    rc, out = run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                   "-show_entries", "stream=codec_name,width,height,nb_read_frames",
                   "-of", "json", clip], stderr=False)
    try:
        s = json.loads(out)["streams"][0]
        s["nb_read_frames"] = int(s.get("nb_read_frames", -1))
        return s
    except (ValueError, KeyError, IndexError):
        return {"error": out.strip()[:300]}


def packet_pts(clip):
    """Presentation times (s) of the video packets, sorted."""
    rc, out = run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                   "packet=pts_time", "-of", "csv=p=0", clip], stderr=False)
    pts = []
    for line in out.splitlines():
        line = line.strip().rstrip(",")
        try:
            pts.append(float(line))
        except ValueError:
            pass
    return sorted(pts)


def frames_csv(path):
    """Rows of a clip's .frames.csv as dicts of ints (where they parse)."""
    rows = []
    try:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                rows.append({k: _int(v) for k, v in r.items()})
    except OSError:
        return None
    return rows


def _int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


def clips(results, phase, cam="cam0"):
    """The phase's clips of a camera: [(mp4 path, frames.csv path)], in name (= time) order."""
    d = os.path.join(results, "data", phase, "rolling", cam)
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".mp4"))
    except OSError:
        return []
    return [(os.path.join(d, n), os.path.join(d, n[:-4] + ".frames.csv")) for n in names]


def index_entries(clips_json, cam="cam0"):
    """filename -> CameraRecordingModel of the clip index (GET /api/v1/clips)."""
    return {c["filename"]: c for c in clips_json or [] if c.get("camera_id") == cam}


def metric(text, name, labels):
    """The value of a Prometheus sample `name{labels...}` (labels: dict, a subset), or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


# Above this share of one vCPU (benchcam's utime + stime over wall time while recording) the guest
# is too slow for the recorder to keep up: the host's other work starves the emulator (a TCG guest
# on 2 shared cores runs 10-40x slower than the host), and recorder drops are then counted, not
# judged. An idle host leaves benchcam at ~30-40 % at the judged rates (README, VM bench); clip
# rotation (an IDR, a new file, the index) needs headroom on top of the steady load.
BUSY_LIMIT = 0.55


def busy(c, tag):
    """benchcam's CPU over wall time during the phase's recording measurements (cpu.jsonl tags
    `TAG-recording`, `TAG-recording-2`, ...): the highest, or None."""
    loads = [r["cpu_ms"] / r["wall_ms"] for r in c.json("cpu.jsonl") or []
             if str(r.get("tag", "")).startswith(f"{tag}-recording") and r.get("wall_ms")]
    return max(loads) if loads else None


def check_clips(c, phase, cam="cam0", codec="h264", size=None, fps=None, min_clips=1, strict=True,
                feed=None, index=None, busy_limit=BUSY_LIMIT):
    """The standard clip checks of a recording phase, one line each over all its clips:
    full decode silent, codec (and size), frame counts (file == .frames.csv == index), complete
    in the index, sample times == capture times (±1 ms), and the frame accounting: with `fps`
    (the nominal rate), every frame period of the capture span is a frame of the clip, a frame
    the recorder dropped (a gap in frame_number) or one the driver dropped (driver_dropped_before):
    (last - first frame_number + 1) + driver drops == span x fps + 1, within ±1 frame or 2 %
    (whichever is more: under TCG the driver stamps frames up to several periods late, so the two
    end frames move the span by more than a frame).
    strict: also no recorder drops (frame numbers contiguous); otherwise they are only counted
    (a rate the TCG guest cannot encode in real time).
    feed: for a v4l2loopback camera, the feeder's log (loopfeed.py: one line per frame written,
    which the driver stamps at write time): instead of the fps accounting, every frame written
    between a clip's first and last frame is in the clip (with strict only).
    index: the clips capture to take frame_count and complete from (default PHASE-clips.json).
    busy_limit: strict judges recorder drops only while benchcam used less than this share of a
    vCPU (busy(): PHASE-recording in cpu.jsonl). Returns the clips' rows."""
    label = f"{phase}/{cam}"
    found = clips(c.results, phase, cam)
    index = index_entries(c.json(index or f"{phase}-clips.json"), cam)
    load = busy(c, phase)
    if strict and load is not None and load >= busy_limit:
        c.note(f"{label}: benchcam used {load:.0%} of a vCPU while recording (limit {busy_limit:.0%}): the "
               "guest is too slow (host busy?), recorder drops are counted, not judged")
        strict = False
    if not c.check(len(found) >= min_clips, f"{label}: {len(found)} clips recorded (>= {min_clips})"):
        return {}
    names = [os.path.basename(p) for p, _ in found]

    errors = {n: decode_errors(p) for n, (p, _) in zip(names, found)}
    bad = {n: e for n, e in errors.items() if e}
    c.check(not bad, f"{label}: every clip decodes fully (ffmpeg -v error ... -f null - prints nothing)",
            "; ".join(f"{n}: {e.splitlines()[0][:160]}" for n, e in bad.items()))

    probes = {n: probe(p) for n, (p, _) in zip(names, found)}
    wrong = {n: p for n, p in probes.items()
             if p.get("codec_name") != codec or (size and (p.get("width"), p.get("height")) != size)}
    want = codec + (f" {size[0]}x{size[1]}" if size else "")
    c.check(not wrong, f"{label}: every clip is {want}",
            "; ".join(f"{n}: {p.get('codec_name')} {p.get('width')}x{p.get('height')} {p.get('error', '')}"
                      for n, p in wrong.items()))

    rows = {n: frames_csv(csvp) for n, (_, csvp) in zip(names, found)}
    mismatch = []
    for n in names:
        file_frames = probes[n].get("nb_read_frames")
        csv_rows = len(rows[n]) if rows[n] is not None else None
        idx = index.get(n, {}).get("frame_count")
        if not (file_frames == csv_rows == idx):
            mismatch.append(f"{n}: file {file_frames}, .frames.csv {csv_rows}, index {idx}")
    c.check(not mismatch, f"{label}: frames in each clip == rows of its .frames.csv == index frame_count "
            f"({sum(p.get('nb_read_frames', 0) for p in probes.values())} frames)", "; ".join(mismatch))
    incomplete = [n for n in names if not index.get(n, {}).get("complete")]
    c.check(not incomplete, f"{label}: every clip is complete in the index", ", ".join(incomplete))

    rec_drops = {}
    for n in names:
        nums = [r.get("frame_number") for r in rows[n] or []]
        if nums and all(isinstance(x, int) for x in nums):
            rec_drops[n] = (nums[-1] - nums[0] + 1) - len(nums)
    total_rec = sum(rec_drops.values())
    where = ", ".join(f"{n}: {d}" for n, d in rec_drops.items() if d)
    if strict:
        c.check(total_rec == 0, f"{label}: frame numbers contiguous in each clip (no recorder drops)", where)
    else:
        c.note(f"{label}: recorder dropped {total_rec} frames inside clips ({where or 'none'}): "
               "not judged at this rate")

    worst = 0.0
    bad_pts = []
    for n, (p, _) in zip(names, found):
        pts = packet_pts(p)
        us = [r.get("capture_monotonic_us") for r in rows[n] or []]
        if len(pts) != len(us) or not us:
            bad_pts.append(f"{n}: {len(pts)} packets vs {len(us)} rows")
            continue
        clip_worst = max(abs((pt - pts[0]) - (u - us[0]) / 1e6) for pt, u in zip(pts, us))
        worst = max(worst, clip_worst)
        if clip_worst > 0.001:
            bad_pts.append(f"{n}: off by {clip_worst * 1000:.2f} ms")
    c.check(not bad_pts, f"{label}: sample times == capture_monotonic_us deltas (worst {worst * 1000:.3f} ms, "
            "limit 1 ms)", "; ".join(bad_pts))

    intervals = []
    for n in names:
        us = [r.get("capture_monotonic_us") for r in rows[n] or []]
        intervals += [(b - a) / 1000 for a, b in zip(us, us[1:]) if isinstance(a, int) and isinstance(b, int)]
    if intervals:
        s = sorted(intervals)
        c.note(f"{label}: frame intervals min {s[0]:.1f} / median {s[len(s) // 2]:.1f} / max {s[-1]:.1f} ms "
               f"({len(s) + 1} frames)")

    if feed is not None and strict:
        # The driver stamps a frame while write() runs: between the feeder's t_ms and t_end_ms.
        sent = [(f["t_ms"], f.get("t_end_ms", f["t_ms"])) for f in feed]
        off = []
        for n in names:
            r = rows[n] or []
            if len(r) < 2:
                continue
            a, b = r[0]["capture_monotonic_us"] / 1000, r[-1]["capture_monotonic_us"] / 1000
            written = sum(1 for t0, t1 in sent if t0 <= b + 0.5 and t1 >= a - 0.5)
            # Frames v4l2loopback overwrote before benchcam took them are its sequence gaps.
            dropped = sum(x.get("driver_dropped_before", 0) or 0 for x in r[1:])
            if written != len(r) + dropped:
                off.append(f"{n}: {len(r)} frames + {dropped} driver drops, {written} written by the feeder "
                           "in its span")
        c.check(not off, f"{label}: every frame the camera sent during a clip is in it or counted as a driver "
                f"drop ({len(sent)} sent)",
                "; ".join(off))
    elif fps and not strict:
        c.note(f"{label}: frame accounting not judged (the driver_dropped_before of frames the recorder "
               "dropped is not in the clips)")
    elif fps and strict:
        off, total_drv = [], 0
        drops_col = all(rows[n] and "driver_dropped_before" in rows[n][0] for n in names)
        for n in names:
            r = rows[n] or []
            if len(r) < 2:
                continue
            span = (r[-1]["capture_monotonic_us"] - r[0]["capture_monotonic_us"]) / 1e6
            periods = r[-1]["frame_number"] - r[0]["frame_number"] + 1
            dropped = sum(x.get("driver_dropped_before", 0) or 0 for x in r[1:]) if drops_col else 0
            total_drv += dropped
            expect = span * fps + 1
            if abs(periods + dropped - expect) > max(1.0, 0.02 * expect):
                off.append(f"{n}: {len(r)} frames + {periods - len(r)} recorder + {dropped} driver drops "
                           f"in {span:.3f} s, expected {expect:.1f}")
        what = "frames + recorder and driver drops" if drops_col else \
            "frames + recorder drops (no driver_dropped_before column in .frames.csv)"
        c.check(not off, f"{label}: {what} == capture span x {fps} fps + 1 (±1 or 2 %) in each clip "
                f"({total_drv} driver drops)", "; ".join(off))
    return rows


def check_state(c, name, cam, state):
    """The camera's state in a health capture."""
    h = c.json(name) or {}
    got = camera(h, cam).get("state")
    return c.check(got == state, f"{name}: {cam} state == {state!r}", f"it is {got!r}")


def jpeg_info(data):
    """A JPEG's frame size, its quantisation tables (the DQT segments) and its header (every byte
    before the scan data), or None when it does not parse as a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i, dqt, w, h = 2, b"", None, None
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        seg = data[i + 4:i + 2 + length]
        if marker == 0xDB:
            dqt += seg
        elif marker in (0xC0, 0xC1, 0xC2) and len(seg) >= 5:
            h, w = int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big")
        elif marker == 0xDA:
            return {"width": w, "height": h, "dqt": dqt, "header": data[:i + 2 + length],
                    "ends_with_eoi": data.rstrip(b"\x00")[-2:] == b"\xff\xd9"}
        i += 2 + length
    return None
