#!/usr/bin/env python3
"""power-cut: judges one power cut of tests/vm/power-cut.sh, and prints the figures of a run.

    power-cut.py CUT_DIR AFTER_DIR FIGURES.jsonl    the cut of CUT_DIR's boot, seen from AFTER_DIR's
    power-cut.py --summary FIGURES.jsonl CYCLES SEED SECONDS RETRIES
    power-cut.py --store CYCLE_DIR STORE KNOWN      keeps the files a boot sent, by MD5

CUT_DIR (results/cycle-N) is the boot whose power was cut: its health watcher's log (health.jsonl,
every 100 ms: frames captured and recorded, the open clip), window.json, cut.json (sysrq: the
CLOCK_MONOTONIC time of the cut), experiment-started.json, cpu.log. AFTER_DIR (cycle-N+1) is the
next boot on the same data disk: fsck.rc/fsck.txt (e2fsck -fn after the kernel's journal recovery),
clips.json (GET /api/v1/clips after benchcam's restart), files.txt and files.md5 (the files beside
it), rolling/ (the complete clips whose content the host did not hold yet: store/<MD5> keeps every
one sent), experiments-seen.txt, stop-ID.json, experiments/ID/ and exp-ID.md5 (archives).

Checks, one line each: fsck clean; benchcam restarted and records again; the index lists exactly the
files (size, completeness); every clip decodes fully (ffmpeg -v error ... -f null - prints nothing)
and holds as many frames as the index says, each with its .frames.csv row (and no row past them:
recovery trims them); the frames lost at the cut (from the one after the newest frame on disk to the
newest benchcam had captured at its last health poll before the cut) span at most fragment_duration
of capture time — or, when the recorder was behind at the cut (a starved TCG guest drops the newest
frames before any cut), the frames it had taken and the cut lost do; the experiment running at the
cut resumed; every archive completed with a manifest whose sizes and SHA-256 match its files, whose
clips decode, and which holds clips from both sides of the cut.
"""
import csv
import hashlib
import json
import os
import re
import sys

import vmcheck

FRAGMENT_MS = 500      # guest/power-cut.sh's recording.fragment_duration
FRAME_MS = 100         # its 10 fps


def load(path, default=None):
    try:
        with open(path) as f:
            if path.endswith(".jsonl"):
                out = []
                for line in f:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass  # the line the cut tore
                return out
            return json.load(f)
    except (OSError, ValueError):
        return default


def text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def name_wall_ms(name):
    """UTC milliseconds of a clip name's first frame (20261124T114000.123Z_cam0_000042.mp4)."""
    m = re.match(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)\.(\d{3})Z_", name)
    if not m:
        return None
    import calendar
    y, mo, d, h, mi, s, ms = (int(x) for x in m.groups())
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000 + ms


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Decoded:
    """Full-decode results by SHA-256 (a clip unchanged since an earlier cycle is not decoded
    again): {"errors": str, "frames": int, "pts": [s]}."""

    def __init__(self, path):
        self.path = path
        self.cache = load(path, {}) or {}

    def get(self, clip):
        key = sha256(clip)
        if key not in self.cache:
            self.cache[key] = {"errors": vmcheck.decode_errors(clip),
                               "frames": vmcheck.probe(clip).get("nb_read_frames", -1),
                               "pts": vmcheck.packet_pts(clip)}
        return self.cache[key]

    def save(self):
        with open(self.path, "w") as f:
            json.dump(self.cache, f)


def md5_list(path):
    """name -> MD5 of an md5sum listing (guest/power-cut.sh's files.md5, exp-ID.md5)."""
    out = {}
    for line in text(path).splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1]] = parts[0]
    return out


def store_files(cycle_dir, store, known):
    """Keeps every file a boot sent (its clips and archive files) in STORE/<MD5> and lists the MD5
    in KNOWN, which the guest reads to send only contents the host does not hold."""
    os.makedirs(store, exist_ok=True)
    dirs = [os.path.join(cycle_dir, "rolling")]
    exp = os.path.join(cycle_dir, "experiments")
    if os.path.isdir(exp):
        dirs += [os.path.join(exp, d) for d in os.listdir(exp) if not d.startswith(".")]
    sums = []
    for d in dirs:
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            p = os.path.join(d, name)
            h = hashlib.md5()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            dst = os.path.join(store, h.hexdigest())
            if not os.path.exists(dst):
                try:
                    os.link(p, dst)
                except OSError:
                    import shutil
                    shutil.copyfile(p, dst)
            sums.append(h.hexdigest())
    with open(known, "a") as f:
        f.writelines(f"{m}\n" for m in sums)


def frames_rows(path, samples):
    """The .frames.csv rows of samples the clip holds (what benchcam's reader keeps), how many
    lines did not parse (a tear) and how many rows are past the clip's samples (the rows of a
    fragment reach the disk before its video: recovery trims what a cut between them left)."""
    rows, torn, past = [], 0, 0
    try:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                try:
                    row = {k: int(r[k]) for k in ("frame_number", "capture_monotonic_us", "sample_index")}
                except (TypeError, ValueError, KeyError):
                    torn += 1
                    continue
                if row["sample_index"] < samples:
                    rows.append(row)
                else:
                    past += 1
    except OSError:
        return None, 0, 0
    return rows, torn, past


def judge(cut_dir, after_dir, figures_path):
    c = vmcheck.Checks(after_dir)
    win = load(os.path.join(cut_dir, "window.json"), {}) or {}
    after_win = load(os.path.join(after_dir, "window.json"), {}) or {}
    n = win.get("cycle", "?")
    kind = win.get("cut", "?")
    label = f"cut {n} ({kind} {win.get('delay_s')} s into the window{', archive phase' if win.get('phase') == 'archive' else ''})"
    print(f"== {label}")
    fig = {"cycle": n, "kind": kind, "delay_s": win.get("delay_s"), "phase": win.get("phase")}
    decoded = Decoded(os.path.join(os.path.dirname(figures_path), "decoded.json"))

    # ---- fsck ---------------------------------------------------------------------------------
    rc = text(os.path.join(after_dir, "fsck.rc")).strip()
    recovered = "recovery complete" in text(os.path.join(after_dir, "dmesg-recovery.txt"))
    fig["fsck_ok"] = rc == "0"
    fig["journal_replayed"] = recovered
    c.check(rc == "0", f"{label}: e2fsck -fn of the data filesystem clean after the kernel's journal recovery "
            f"({'journal replayed' if recovered else 'no journal replay needed'})",
            f"exit {rc or '?'}: " + " | ".join(text(os.path.join(after_dir, "fsck.txt")).strip().splitlines()[-4:]))
    if after_win.get("cut") == "none":
        rc2 = text(os.path.join(after_dir, "fsck-final.rc")).strip()
        c.check(rc2 == "0", "last boot: e2fsck -fn clean after benchcam stopped and /data was unmounted",
                f"exit {rc2 or '?'}: " + " | ".join(text(os.path.join(after_dir, "fsck-final.txt")).strip().splitlines()[-4:]))

    # ---- restart ------------------------------------------------------------------------------
    # The next boot's health watcher (from benchcam's start): recording again, frames written.
    polls = [(h["t_ms"], vmcheck.camera(h, "cam0")) for h in load(os.path.join(after_dir, "health.jsonl"), []) or []
             if vmcheck.camera(h, "cam0")]
    again = next((t for t, cam in polls if cam.get("recording") and (cam.get("frames_recorded") or 0) > 0), None)
    up = after_win.get("mono_up_ms")
    c.check(again is not None, f"{label}: benchcam restarted on the disk and records again"
            + (f" ({again - up:.0f} ms after it answered)" if again is not None and up else ""),
            f"{len(polls)} health polls, none with cam0 recording a frame")

    # ---- the index against the files ------------------------------------------------------------
    start_after = after_win.get("wall_start_ms") or 0
    clips = [e for e in load(os.path.join(after_dir, "clips.json"), []) or [] if e.get("camera_id") == "cam0"]
    files = {}
    for line in text(os.path.join(after_dir, "files.txt")).splitlines():
        size, _, name = line.partition(" ")
        if size.isdigit():
            files[name] = int(size)
    # Clips from before this boot (this boot's first clip is being written while the lists are taken).
    old = lambda name: (name_wall_ms(name) or 0) < start_after - 1000  # noqa: E731
    index = {e["filename"]: e for e in clips if old(e["filename"])}
    mp4s = {name: size for name, size in files.items() if name.endswith(".mp4") and old(name)}
    # The files were listed just before the index was read: a clip that retention deleted in
    # between (it logs each) is on disk and not in the index.
    log_after = text(os.path.join(after_dir, "benchcam-pc.log"))
    retired = {name for name in set(mp4s) - set(index) if f"retention deleted cam0/{name}" in log_after}
    if retired:
        c.note(f"{label}: retention deleted {', '.join(sorted(retired))} between the listing and the index read")
    c.check(set(index) == set(mp4s) - retired, f"{label}: the index lists exactly the clip files on disk "
            f"({len(mp4s)} from earlier boots)",
            f"only in the index: {sorted(set(index) - set(mp4s))}; only on disk: {sorted(set(mp4s) - set(index) - retired)}")
    wrong = [f"{name}: index {e.get('file_size')} B, complete {e.get('complete')}, file {mp4s.get(name)} B"
             for name, e in index.items() if not e.get("complete") or e.get("file_size") != mp4s.get(name)
             and name in mp4s]
    c.check(not wrong, f"{label}: every clip of an earlier boot is complete in the index, with the file's size",
            "; ".join(wrong))
    no_csv = [name for name in mp4s if name[:-4] + ".frames.csv" not in files]
    c.check(not no_csv, f"{label}: every clip has its .frames.csv", ", ".join(no_csv))

    # ---- every clip decodes, frames == index == .frames.csv rows ---------------------------------
    # Each file is found by the MD5 the guest listed: the copy it sent now or an earlier one.
    store = os.path.join(os.path.dirname(figures_path), "store")
    sums = md5_list(os.path.join(after_dir, "files.md5"))
    where = lambda name: os.path.join(store, sums.get(name, "-"))  # noqa: E731
    missing = [name for name in index if not os.path.exists(where(name))
               or not os.path.exists(where(name[:-4] + ".frames.csv"))]
    c.check(not missing, f"{label}: every clip of the index (and its .frames.csv) reached the host for the checks",
            ", ".join(missing))
    unplayable, counts, short_csv, torn_csv, long_csv = [], [], [], [], []
    rows_of = {}
    for name, e in sorted(index.items()):
        path = where(name)
        if not os.path.exists(path):
            continue
        d = decoded.get(path)
        if d["errors"]:
            unplayable.append(f"{name}: {d['errors'].splitlines()[0][:160]}")
        if d["frames"] != e.get("frame_count"):
            counts.append(f"{name}: decoded {d['frames']}, index {e.get('frame_count')}")
        rows, torn, past = frames_rows(where(name[:-4] + ".frames.csv"), max(d["frames"], 0))
        rows_of[name] = (rows or [], d)
        if rows is None or len(rows) != d["frames"]:
            short_csv.append(f"{name}: {len(rows) if rows is not None else 'no'} rows for {d['frames']} samples")
        if torn:
            torn_csv.append(f"{name}: {torn}")
        if past:
            long_csv.append(f"{name}: {past} rows past its {d['frames']} samples")
    fig["unplayable"] = [u.split(":")[0] for u in unplayable]
    fig["clips_checked"] = len(rows_of)
    fig["short_csv"] = [u.split(":")[0] for u in short_csv]
    fig["long_csv"] = [u.split(":")[0] for u in long_csv]
    # A clip's defect fails the check of the cut that made it; later cycles, which find the same
    # clip unchanged, name it in a note (it stays until retention deletes it).
    reported_path = os.path.join(os.path.dirname(figures_path), "reported.json")
    reported = load(reported_path, {}) or {}

    def once(kind, items, text):
        new = [i for i in items if f"{kind}:{i.split(':')[0]}" not in reported]
        old = [i.split(":")[0] for i in items if f"{kind}:{i.split(':')[0]}" in reported]
        c.check(not new, text, "; ".join(new))
        if old:
            c.note(f"{label}: still so (failed at an earlier cut): " + ", ".join(
                f"{i} (cut {reported[f'{kind}:{i}']})" for i in old))
        for i in new:
            reported[f"{kind}:{i.split(':')[0]}"] = n

    once("decode", unplayable, f"{label}: every clip decodes fully ({len(rows_of)} clips)")
    once("count", counts, f"{label}: frames in each clip == the index's frame_count")
    once("csv", short_csv, f"{label}: every sample of every clip has its .frames.csv row")
    once("csv-past", long_csv, f"{label}: no .frames.csv row past its clip's samples (recovery trimmed them)")
    with open(reported_path, "w") as f:
        json.dump(reported, f)
    if torn_csv:
        c.note(f"{label}: .frames.csv lines that do not parse (torn by the cut; benchcam's reader skips them): "
               + ", ".join(torn_csv))
    # The .frames.csv files recovery cut back: longer before benchcam started (disk-before.txt,
    # listed after the journal recovery) than after (files.txt): the cut came between a fragment's
    # rows and its video.
    sizes_before = {}
    for line in text(os.path.join(after_dir, "disk-before.txt")).splitlines():
        kind_, size, path = (line.split(" ", 2) + ["", ""])[:3]
        if kind_ == "f" and size.isdigit() and path.endswith(".frames.csv"):
            sizes_before[os.path.basename(path)] = int(size)
    trimmed = sorted(name for name, size in files.items() if size < sizes_before.get(name, size))
    fig["trimmed_csv"] = trimmed
    if trimmed:
        c.note(f"{label}: recovery trimmed the .frames.csv of " + ", ".join(
            f"{name} ({sizes_before[name]} -> {files[name]} B)" for name in trimmed))

    # benchcam's CPU in the cut boot's last seconds (guest/power-cut.sh's cpu.log, CLK_TCK 100).
    cpu = []
    for line in text(os.path.join(cut_dir, "cpu.log")).splitlines():
        try:
            t, u, st = line.split()
            cpu.append((float(t), int(u) + int(st)))
        except ValueError:
            pass
    if len(cpu) >= 2:
        (t0, c0), (t1, c1) = cpu[max(0, len(cpu) - 6)], cpu[-1]
        if t1 > t0:
            fig["benchcam_cpu"] = round((c1 - c0) / 100 / (t1 - t0), 2)
            c.note(f"{label}: benchcam used {fig['benchcam_cpu']:.0%} of a vCPU in the last {t1 - t0:.0f} s "
                   "before the cut (TCG guest)")

    # ---- what the cut lost ----------------------------------------------------------------------
    # The cut boot's clips: named after its benchcam started, before this boot's.
    start_cut = win.get("wall_start_ms") or 0
    cut_clips = sorted(name for name in rows_of if start_cut - 1000 <= (name_wall_ms(name) or 0) < start_after - 1000)
    hl = [h for h in load(os.path.join(cut_dir, "health.jsonl"), []) or [] if vmcheck.camera(h, "cam0")]
    cut = load(os.path.join(cut_dir, "cut.json"), {}) or {}
    interrupted = next((vmcheck.camera(h, "cam0").get("current_clip") for h in reversed(hl)
                        if vmcheck.camera(h, "cam0").get("current_clip")), None)
    fig["interrupted_clip"] = interrupted
    if interrupted:
        fig["interrupted_clip_survived"] = interrupted in index
        c.note(f"{label}: the clip open at the cut, {interrupted}, "
               + ("is on disk after the restart, repaired" if interrupted in index else
                  "is gone after the restart (benchcam removes a clip with no complete fragment)"))
    newest_disk = None
    if cut_clips:
        rows, d = rows_of[cut_clips[-1]]
        last_row = max(rows, key=lambda r: r["sample_index"]) if rows else None
        if last_row and last_row["sample_index"] == d["frames"] - 1:
            newest_disk = (last_row["capture_monotonic_us"], last_row["frame_number"])
        else:
            # The newest samples have no .frames.csv row: the MP4's sample times are the capture
            # times, counted from the clip's first row.
            first = min(rows, key=lambda r: r["sample_index"]) if rows else None
            if first and first["sample_index"] == 0 and d["pts"]:
                newest_disk = (first["capture_monotonic_us"] + round((d["pts"][-1] - d["pts"][0]) * 1e6),
                               index[cut_clips[-1]].get("last_frame"))
                c.note(f"{label}: time of the newest frame on disk from the MP4 (its .frames.csv row is missing)")
            else:
                # No row at all: from the newest row of an earlier clip of that boot, one frame
                # period per frame number (skipped slots would make it later: the loss found is
                # then, if anything, too large).
                earlier = [(name, max(rows_of[name][0], key=lambda r: r["sample_index"]))
                           for name in cut_clips[:-1] if rows_of[name][0]]
                f_last = index[cut_clips[-1]].get("last_frame")
                if earlier and f_last is not None:
                    name, r = earlier[-1]
                    newest_disk = (r["capture_monotonic_us"] + (f_last - r["frame_number"]) * FRAME_MS * 1000, f_last)
                    c.note(f"{label}: {cut_clips[-1]} has no .frames.csv rows: the time of its last frame "
                           f"(#{f_last}) is estimated from {name}'s last row (#{r['frame_number']})")
    if not hl or newest_disk is None:
        c.bad(f"{label}: the loss can be measured (health polls before the cut: {len(hl)}; clips of the cut "
              f"boot on disk: {len(cut_clips)}{', the newest without usable rows' if cut_clips else ''})")
    else:
        t_disk_us, f_disk = newest_disk
        cam_at = [(h["t_ms"], vmcheck.camera(h, "cam0")) for h in hl]
        t_last, last = cam_at[-1]
        captured, recorded = last.get("frames_captured") or 0, last.get("frames_recorded") or 0
        rec_dropped = last.get("recorder_frames_dropped") or 0
        # The newest frame benchcam had at the last poll before the cut is frames_captured - 1 (frame
        # numbers count from 0). The pattern camera stamps frames on a fixed 10 fps grid, skipping
        # (and counting as driver drops) slots it was too late for: its capture time is the newest
        # on disk's plus one period per frame and per slot skipped since.
        f_new = captured - 1
        drv_then = next((cam.get("driver_frames_dropped") or 0 for _, cam in cam_at
                         if (cam.get("frames_captured") or 0) > f_disk), last.get("driver_frames_dropped") or 0)
        skipped = (last.get("driver_frames_dropped") or 0) - drv_then
        lost = max(0, f_new - f_disk)
        # The lost frames run from the one after the newest on disk to the newest captured: their
        # capture times span at most fragment_duration when only the fragment being gathered (and
        # the frame that closed it) was lost.
        span = max(0, lost - 1 + skipped) * FRAME_MS if lost else 0
        gap = (lost + skipped) * FRAME_MS if lost else 0
        # Frames of the cut boot that reached the disk: every clip it closed (its log says how many
        # frames; retention may have deleted the oldest since) and those on disk after the restart.
        closed = dict(re.findall(r"recorder cam0: clip (\S+\.mp4) closed: (\d+) frames",
                                 text(os.path.join(cut_dir, "benchcam-pc.log"))))
        reached = {name: int(k) for name, k in closed.items()}
        reached.update({name: rows_of[name][1]["frames"] for name in cut_clips})
        on_disk = sum(reached.values())
        taken_lost = max(0, recorded - on_disk)   # frames the recorder had taken, not on disk
        # Whether the recorder kept up: frames captured and not yet taken (its queue) and frames it
        # dropped in the last 2 s before the cut.
        behind = captured - recorded - rec_dropped
        earlier = next((cam for t, cam in reversed(cam_at) if t <= t_last - 2000), cam_at[0][1])
        recent_drops = rec_dropped - (earlier.get("recorder_frames_dropped") or 0)
        kept_up = behind <= 2 and recent_drops == 0
        fig.update({"loss_ms": span if kept_up else max(0, taken_lost - 1) * FRAME_MS, "gap_ms": gap,
                    "lost_frames": lost, "taken_not_on_disk": taken_lost, "recorder_behind": behind,
                    "recorder_recent_drops": recent_drops, "kept_up": kept_up,
                    "poll_before_cut_ms": round(cut["t_ms"] - t_last, 1) if cut.get("t_ms") else None})
        extra = ""
        if cut.get("t_ms"):
            # sysrq: the cut's own time bounds the loss from above.
            fig["to_cut_ms"] = round(cut["t_ms"] - (t_disk_us / 1000 + FRAME_MS), 1)
            extra = f"; {fig['to_cut_ms']:.0f} ms from the first lost frame to the sysrq cut itself"
        detail = (f"frames #{f_disk + 1}..#{f_new} lost, newest on disk #{f_disk}; the recorder had taken "
                  f"{recorded} frames, {taken_lost} of them not on disk after the restart, {behind} captured "
                  f"frames were not yet taken, {recent_drops} dropped in the last 2 s{extra}")
        if kept_up:
            c.check(span <= FRAGMENT_MS, f"{label}: the frames lost at the cut span at most fragment_duration "
                    f"({span} ms <= {FRAGMENT_MS} ms: {detail})")
        else:
            # A recorder that falls behind (a starved TCG guest) loses the newest frames before any
            # cut: those are judged by recorder drops elsewhere, not here. The cut's own loss is what
            # it had taken and encoded.
            c.note(f"{label}: the recorder was behind at the cut ({behind} frames queued, {recent_drops} dropped "
                   "in the last 2 s: the guest is too slow, host busy?): judged on the frames it had taken")
            c.check((taken_lost - 1) * FRAME_MS <= FRAGMENT_MS if taken_lost else True,
                    f"{label}: the frames the recorder had taken and the cut lost span at most fragment_duration "
                    f"({max(0, taken_lost - 1) * FRAME_MS} ms <= {FRAGMENT_MS} ms: {detail})")

    # ---- experiments ----------------------------------------------------------------------------
    seen = dict(line.split() for line in text(os.path.join(after_dir, "experiments-seen.txt")).splitlines()
                if len(line.split()) == 2)
    started = load(os.path.join(cut_dir, "experiment-started.json"), {}) or {}
    exp_id = f"pc-{n}"
    if started.get("http") == 201:
        fig["resumed"] = seen.get(exp_id) == "running"
        c.check(fig["resumed"], f"{label}: experiment {exp_id}, running at the cut, resumed after the restart",
                f"state after the restart: {seen.get(exp_id)!r}")
    else:
        c.note(f"{label}: the cut came before experiment {exp_id} started (HTTP {started.get('http')}); "
               f"after the restart: {seen.get(exp_id, 'absent')}")
        if exp_id in seen:
            c.check(seen[exp_id] in ("running", "archived"), f"{label}: experiment {exp_id} is running or archived",
                    f"it is {seen[exp_id]}")
    # What this boot stopped (the POST returned: stop-ID.json has the manifest) or found stopped
    # (an archive the cut interrupted, redone at start) must be archived and copied, unless this
    # boot's own cut came before the copies were done (the next boot then finds them).
    stopped = {f[len("stop-"):-len(".json")] for f in os.listdir(after_dir)
               if f.startswith("stop-") and f.endswith(".json") and os.path.getsize(os.path.join(after_dir, f))}
    archives = os.path.join(after_dir, "experiments")
    copied = sorted(x for x in os.listdir(archives) if not x.startswith(".")) if os.path.isdir(archives) else []
    if os.path.exists(os.path.join(after_dir, "archives-copied")):
        left = [i for i in stopped | {i for i, st in seen.items() if st == "stopped"} if i not in copied]
        c.check(not left, f"{label}: every experiment stopped after the restart, or whose archive the cut "
                f"interrupted, is archived ({', '.join(copied) or 'none'})", "not archived: " + ", ".join(left))
    else:
        c.note(f"{label}: the next cut came before the archives were copied; the boot after it checks them")
    for eid in copied:
        folder = os.path.join(archives, eid)
        m = load(os.path.join(folder, "manifest.json"))
        esums = md5_list(os.path.join(after_dir, f"exp-{eid}.md5"))

        def archived(name, folder=folder, esums=esums):
            """An archive file: copied now, or the content the host already holds."""
            p = os.path.join(folder, name)
            return p if os.path.exists(p) else os.path.join(store, esums.get(name, "-"))

        if not c.check(isinstance(m, dict), f"{label}: {eid}: manifest.json complete"):
            continue
        bad = []
        for f in m.get("files", []):
            p = archived(f["name"])
            if not os.path.exists(p):
                bad.append(f"{f['name']}: missing")
            elif os.path.getsize(p) != f.get("size") or sha256(p) != f.get("sha256"):
                bad.append(f"{f['name']}: size {os.path.getsize(p)} vs {f.get('size')}, sha256 differs"
                           if sha256(p) != f.get("sha256") else f"{f['name']}: size differs")
        fig.setdefault("archives", {})[eid] = not bad
        c.check(not bad and m.get("files"), f"{label}: {eid}: every file's size and SHA-256 match the manifest "
                f"({len(m.get('files', []))} files)", "; ".join(bad))
        clips_m = m.get("clips", [])
        undec = []
        for clip in clips_m:
            p = archived(clip["file"])
            if os.path.exists(p):
                dd = decoded.get(p)
                if dd["errors"] or dd["frames"] != clip.get("frame_count"):
                    undec.append(f"{clip['file']}: {dd['errors'][:120] or str(dd['frames']) + ' frames'}")
        c.check(clips_m and not undec, f"{label}: {eid}: its {len(clips_m)} clips decode fully with the manifest's "
                "frame counts", "; ".join(undec))
        if eid == exp_id and started.get("http") == 201:
            before = [x for x in clips_m if x.get("started_wall_us", 0) / 1000 < start_after - 1000]
            after = [x for x in clips_m if x.get("started_wall_us", 0) / 1000 >= start_after - 1000]
            c.check(before and after, f"{label}: {eid}: the archive holds clips from before the cut ({len(before)}) "
                    f"and after the restart ({len(after)})")
    decoded.save()
    with open(figures_path, "a") as f:
        f.write(json.dumps(fig) + "\n")
    c.done()


def summary(figures_path, cycles, seed, seconds, retries):
    figs = load(figures_path, []) or []
    losses = [f["loss_ms"] for f in figs if f.get("loss_ms") is not None]
    gaps = [f["gap_ms"] for f in figs if f.get("gap_ms") is not None]
    unplayable = sorted({u for f in figs for u in f.get("unplayable", [])})
    kinds = {}
    for f in figs:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    resumed = [f["resumed"] for f in figs if "resumed" in f]
    archives = {k: v for f in figs for k, v in (f.get("archives") or {}).items()}
    to_cut = [f["to_cut_ms"] for f in figs if f.get("to_cut_ms") is not None]
    print("power cuts (tests/vm/power-cut.sh):")
    print(f"  cycles: {len(figs)} of {cycles} judged ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}); "
          f"seed {seed}; {seconds} s; boot retries {retries}")
    print(f"  unplayable clips: {len(unplayable)}{' (' + ', '.join(unplayable) + ')' if unplayable else ''}")
    short = sorted({u for f in figs for u in f.get("short_csv", [])})
    print(f"  clips with samples but no .frames.csv row for them: {len(short)}"
          f"{' (' + ', '.join(short) + ')' if short else ''}")
    long_ = sorted({u for f in figs for u in f.get("long_csv", [])})
    print(f"  clips with .frames.csv rows past their samples after recovery: {len(long_)}"
          f"{' (' + ', '.join(long_) + ')' if long_ else ''}")
    print(f"  cuts whose loss could not be measured: {sum(1 for f in figs if f.get('loss_ms') is None)}")
    if losses:
        print(f"  loss at the cut (capture-time span of the lost frames): largest {max(losses):.0f} ms, "
              f"mean {sum(losses) / len(losses):.0f} ms over {len(losses)} cuts (limit: fragment_duration "
              f"{FRAGMENT_MS} ms); newest captured to newest on disk: largest {max(gaps):.0f} ms, "
              f"mean {sum(gaps) / len(gaps):.0f} ms")
    else:
        print("  loss at the cut: not measured")
    if to_cut:
        print(f"  first lost frame to the sysrq cut itself: largest {max(to_cut):.0f} ms, "
              f"mean {sum(to_cut) / len(to_cut):.0f} ms")
    judged = [f for f in figs if "kept_up" in f]
    print(f"  loss judged on every captured frame at {sum(1 for f in judged if f['kept_up'])} cuts, on the "
          f"frames the recorder had taken at {sum(1 for f in judged if not f['kept_up'])} (recorder behind)")
    print(f"  fsck failures: {sum(1 for f in figs if not f.get('fsck_ok'))}; journal replayed at "
          f"{sum(1 for f in figs if f.get('journal_replayed'))} of {len(figs)} boots")
    print(f"  experiments resumed after the cut: {sum(resumed)} of {len(resumed)}; archives with matching "
          f"checksums: {sum(archives.values())} of {len(archives)}")
    gone = sum(1 for f in figs if f.get("interrupted_clip") and not f.get("interrupted_clip_survived"))
    print(f"  clips open at the cut that were gone after it (no complete fragment): {gone}")
    trimmed = sum(1 for f in figs if f.get("trimmed_csv"))
    print(f"  cuts after which recovery trimmed .frames.csv rows past the video (the cut came between "
          f"a fragment's rows and its video): {trimmed}")


if __name__ == "__main__":
    if sys.argv[1] == "--store":
        store_files(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "--summary":
        summary(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
    else:
        judge(sys.argv[1], sys.argv[2], sys.argv[3])
