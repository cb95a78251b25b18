//! An experiment's archive: the clips of its window hard-linked (or copied and fsynced)
//! into `experiments/<id>/`, `frames.csv` with every archived frame's times and whether it
//! lies in the window, and `manifest.json` (clips, events with their nearest frames, the
//! clock's state and steps, SHA-256 of every file), written last and atomically.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::model::Experiment;
use super::{wrong_state, FRAMES_CSV, MANIFEST, STATE_FILE};
use crate::clock::rfc3339_ms;
use crate::error::{Result, ResultExt};
use crate::record::index::{frames_file_name, read_frames_file, ClipRecord, FrameLine};
use crate::storage::{link_or_copy, sync_dir, write_atomic, Storage, Window};

/// Links the clips of `window` into `folder`, writes frames.csv, checksums and the
/// manifest (last, atomically: its presence means the archive is complete).
pub fn archive(
    storage: &Storage,
    folder: &Path,
    exp: &Experiment,
    window: &Window,
    archived_wall_us: i64,
) -> Result<serde_json::Value> {
    let started = exp
        .started
        .ok_or_else(|| wrong_state("experiment never started".into()))?;
    let stopped = exp
        .stopped
        .ok_or_else(|| wrong_state("experiment not stopped".into()))?;
    let from_us = started.wall_us - exp.pre_roll_us as i64;
    let to_us = stopped.wall_us + exp.post_roll_us as i64;
    std::fs::create_dir_all(folder).ctx(format!("creating {}", folder.display()))?;
    let _ = std::fs::remove_file(folder.join(MANIFEST));
    let t0 = Instant::now();

    let mut clips_json = Vec::new();
    let mut files_json = Vec::new();
    let mut frames: BTreeMap<String, Vec<(FrameLine, String)>> = BTreeMap::new();
    let mut in_window: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    let mut linked = 0;
    for camera in &exp.cameras {
        let mut covering: Vec<ClipRecord> = storage
            .index
            .list(Some(camera))
            .into_iter()
            .filter(|c| c.complete && window.covers(c))
            .collect();
        covering.sort_by_key(|c| c.seq);
        for clip in covering {
            let src_dir = storage.index.camera_dir(camera);
            let frames_name = frames_file_name(&clip.file);
            for name in [&clip.file, &frames_name] {
                let src = src_dir.join(name);
                if src.exists() {
                    linked += usize::from(link_or_copy(&src, &folder.join(name))?);
                }
            }
            let lines =
                read_frames_file(&src_dir.join(&frames_name), clip.frame_count).unwrap_or_default();
            let (first_mono, last_mono) = (
                lines.first().map(|l| l.monotonic_us),
                lines.last().map(|l| l.monotonic_us),
            );
            frames
                .entry(camera.clone())
                .or_default()
                .extend(lines.iter().map(|l| (*l, clip.file.clone())));
            in_window
                .entry(camera.clone())
                .or_default()
                .extend(lines.iter().map(|l| window.contains_frame(&clip, l)));
            let sha = sha256_file(&folder.join(&clip.file))?;
            clips_json.push(serde_json::json!({
                "camera": camera,
                "file": clip.file,
                "frames_file": frames_name,
                "started_at": rfc3339_ms(clip.started_us),
                "ended_at": rfc3339_ms(clip.ended_us()),
                "started_wall_us": clip.started_us,
                "ended_wall_us": clip.ended_us(),
                "first_monotonic_us": first_mono,
                "last_monotonic_us": last_mono,
                "duration_s": clip.duration_us as f64 / 1e6,
                "first_frame": clip.first_frame,
                "last_frame": clip.last_frame,
                "frame_count": clip.frame_count,
                "size": clip.size,
                "sha256": sha,
            }));
        }
    }

    // Per-frame timestamps of every archived clip; in_window marks the experiment span.
    let mut csv = Vec::with_capacity(64 * 1024);
    csv.extend_from_slice(
        b"camera,frame_number,capture_monotonic_us,capture_wall,clip,sample_index,in_window,driver_dropped_before\n",
    );
    for (camera, lines) in &frames {
        for ((l, clip), &in_window) in lines.iter().zip(&in_window[camera]) {
            let _ = writeln!(
                csv,
                "{camera},{},{},{},{clip},{},{},{}",
                l.frame_number,
                l.monotonic_us,
                rfc3339_us(l.wall_us),
                l.sample_index,
                u8::from(in_window),
                l.driver_dropped_before
            );
        }
    }
    write_atomic(&folder.join(FRAMES_CSV), &csv)?;

    let events_json: Vec<serde_json::Value> = exp
        .events
        .iter()
        .map(|e| {
            let nearest: BTreeMap<&String, serde_json::Value> = frames
                .iter()
                .filter_map(|(cam, lines)| {
                    nearest_frame(lines, e.at.monotonic_us).map(|(l, clip)| {
                        (
                            cam,
                            serde_json::json!({
                                "frame_number": l.frame_number,
                                "clip": clip,
                                "sample_index": l.sample_index,
                                "offset_us": l.monotonic_us as i64 - e.at.monotonic_us as i64,
                            }),
                        )
                    })
                })
                .collect();
            serde_json::json!({
                "kind": e.kind,
                "source": e.source,
                "step_us": e.step_us,
                "label": e.label,
                "wall": rfc3339_us(e.at.wall_us),
                "wall_us": e.at.wall_us,
                "monotonic_us": e.at.monotonic_us,
                "nearest_frame": nearest,
            })
        })
        .collect();

    let mut names: Vec<String> = std::fs::read_dir(folder)
        .ctx("listing archive")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.') && n != MANIFEST && n != STATE_FILE)
        .collect();
    names.sort();
    for name in names {
        let path = folder.join(&name);
        files_json.push(serde_json::json!({
            "name": name,
            "size": std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            "sha256": sha256_file(&path)?,
        }));
    }
    let manifest = serde_json::json!({
        "manifest_version": 1,
        "experiment_id": exp.experiment_id,
        "method": exp.method,
        "cameras": exp.cameras,
        "start": {"wall": rfc3339_us(started.wall_us), "wall_us": started.wall_us, "monotonic_us": started.monotonic_us},
        "stop": {"wall": rfc3339_us(stopped.wall_us), "wall_us": stopped.wall_us, "monotonic_us": stopped.monotonic_us},
        "window": {
            "from": rfc3339_us(from_us),
            "to": rfc3339_us(to_us),
            "from_wall_us": from_us,
            "to_wall_us": to_us,
            "pre_roll_s": exp.pre_roll_us as f64 / 1e6,
            "post_roll_s": exp.post_roll_us as f64 / 1e6,
            // The clips and in_window are chosen by these (monotonic time within a
            // boot, clip order across boots), not by the wall times above.
            "from_monotonic_us": window.from.mono_us,
            "to_monotonic_us": window.to.as_ref().map(|b| b.mono_us),
            "start_boot_id": exp.start_mark.boot_id,
            "stop_boot_id": exp.stop_mark.boot_id,
        },
        // Whether the wall clock could be trusted: synchronised at start and stop,
        // and every step seen in between (the wall times of frames after a step are
        // off from those before by step_us).
        "clock": {
            "at_start": exp.clock_at_start,
            "at_stop": exp.clock_at_stop,
            "steps": exp.events.iter().filter(|e| e.kind == "clock_step").map(|e| serde_json::json!({
                "wall": rfc3339_us(e.at.wall_us),
                "monotonic_us": e.at.monotonic_us,
                "step_us": e.step_us,
            })).collect::<Vec<_>>(),
        },
        "clips": clips_json,
        "events": events_json,
        "frames_file": FRAMES_CSV,
        "files": files_json,
        "archived_at": rfc3339_ms(archived_wall_us),
        "benchcam_version": env!("CARGO_PKG_VERSION"),
    });
    let text = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    write_atomic(&folder.join(MANIFEST), &text)?;
    sync_dir(folder)?;
    log::info!(
        "experiment {}: archived {} clips ({linked} hard links) in {:.2} s",
        exp.experiment_id,
        manifest["clips"].as_array().map_or(0, |c| c.len()),
        t0.elapsed().as_secs_f64()
    );
    Ok(manifest)
}

/// The frame whose capture time is nearest to `mono_us`.
fn nearest_frame(lines: &[(FrameLine, String)], mono_us: u64) -> Option<&(FrameLine, String)> {
    let i = lines.partition_point(|(l, _)| l.monotonic_us < mono_us);
    let before = i.checked_sub(1).and_then(|j| lines.get(j));
    let after = lines.get(i);
    match (before, after) {
        (Some(b), Some(a)) => {
            if mono_us - b.0.monotonic_us <= a.0.monotonic_us - mono_us {
                Some(b)
            } else {
                Some(a)
            }
        }
        (b, a) => b.or(a),
    }
}

/// RFC 3339 UTC with microseconds.
fn rfc3339_us(unix_us: i64) -> String {
    let ms = rfc3339_ms(unix_us);
    format!(
        "{}{:03}Z",
        ms.trim_end_matches('Z'),
        unix_us.rem_euclid(1000)
    )
}

/// SHA-256 of a file, hex, read in 256 KiB chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).ctx(format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .ctx(format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u64, mono: u64) -> (FrameLine, String) {
        (
            FrameLine {
                frame_number: n,
                monotonic_us: mono,
                wall_us: mono as i64,
                sample_index: n,
                driver_dropped_before: 0,
            },
            "c".into(),
        )
    }

    #[test]
    fn nearest_frame_picks_the_closer_neighbour() {
        let lines: Vec<_> = (0..5).map(|n| line(n, 1000 + n * 100)).collect();
        assert_eq!(nearest_frame(&lines, 0).unwrap().0.frame_number, 0);
        assert_eq!(nearest_frame(&lines, 1149).unwrap().0.frame_number, 1);
        assert_eq!(nearest_frame(&lines, 1151).unwrap().0.frame_number, 2);
        assert_eq!(nearest_frame(&lines, 9999).unwrap().0.frame_number, 4);
        assert!(nearest_frame(&[], 5).is_none());
    }

    #[test]
    fn rfc3339_with_microseconds() {
        assert_eq!(
            rfc3339_us(1_795_520_400_123_456),
            "2026-11-24T11:40:00.123456Z"
        );
    }
}
