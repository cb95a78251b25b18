//! End to end through the real binary: rolling H.264 clips that decode fully, match
//! what was captured, tile time without gaps, survive `kill -9`, and obey retention.

mod support;

use std::time::{Duration, Instant};

use support::*;

const SMALL: &str = "[camera]\nsource = \"pattern\"\npattern_jitter = \"10ms\"\nwidth = 320\nheight = 240\nfps = 30\n";

#[test]
fn clips_decode_fully_and_match_what_was_captured() {
    assert!(
        have_ffmpeg(),
        "ffmpeg is required (tests/run.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &format!("{SMALL}[recording]\nclip_length = \"2s\"\n"),
    );
    let mut child = spawn(&config);
    let data = dir.path().join("data");
    wait_for(Duration::from_secs(30), || {
        (clips(&data, "cam0").len() >= 4).then_some(())
    })
    .expect("four clips within 30 s");
    sigterm(&mut child);
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    let files = clips(&data, "cam0");
    let mut prev_end_us: Option<i64> = None;
    let mut total_frames = 0;
    // Under qemu (the aarch64 CI step) the emulated encoder cannot keep up with 30 fps:
    // the recorder drops frames (counted in health), so counts and contiguity are
    // checked on real hardware only; order, decoding and timing hold everywhere.
    let emulated = std::env::var_os("BENCHCAM_EMULATED").is_some();
    for (i, file) in files.iter().enumerate() {
        full_decode(file).unwrap();
        let p = probe(file);
        assert_eq!(p.codec, "h264", "{}", file.display());
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let (start_us, cam, first_frame) =
            benchcam::record::index::parse_clip_file_name(&name).unwrap();
        assert_eq!(cam, "cam0");
        if emulated {
            assert!(
                first_frame >= total_frames,
                "clip {i} starts after the previous one"
            );
            total_frames = first_frame + p.frames;
        } else {
            assert_eq!(
                first_frame, total_frames,
                "clip {i} starts right after the previous one"
            );
            total_frames += p.frames;
        }
        // Timestamps strictly increase, 30 fps spacing within jitter.
        assert!(
            p.pts.windows(2).all(|w| w[1] > w[0]),
            "pts increase in {name}"
        );
        let full_clip = i + 1 < files.len();
        if full_clip && !emulated {
            // A 2 s clip ends at the first frame past 2 s: with the jittery pattern (stamps
            // ±10 ms, now and then a frame 1-3 intervals late) that is 2 s plus at most
            // four frame intervals, and 60 frame slots minus the late ones.
            assert!((50..=61).contains(&p.frames), "{name}: {} frames", p.frames);
            assert!(
                (2.0..2.0 + 4.0 / 30.0).contains(&p.duration_s),
                "{name}: {} s",
                p.duration_s
            );
        }
        // The frames file lists every sample: frame numbers, capture times, sample index.
        let frames_file = file.with_file_name(benchcam::record::index::frames_file_name(&name));
        let lines = benchcam::record::index::read_frames_file(&frames_file, u64::MAX).unwrap();
        assert_eq!(
            lines.len() as u64,
            p.frames,
            "{name}: one frames line per sample"
        );
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l.sample_index, i as u64);
            if !emulated {
                assert_eq!(l.frame_number, first_frame + i as u64);
            }
        }
        assert!(lines
            .windows(2)
            .all(|w| w[1].frame_number > w[0].frame_number));
        assert_eq!(lines[0].frame_number, first_frame);
        assert!(lines
            .windows(2)
            .all(|w| w[1].monotonic_us > w[0].monotonic_us));
        // Frame count and duration agree with the capture times: the clip spans its first
        // to its last capture plus the last sample's duration (one to four intervals).
        let span = (lines[lines.len() - 1].monotonic_us - lines[0].monotonic_us) as f64 / 1e6;
        assert!(
            emulated || (0.0..4.0 / 30.0 + 0.002).contains(&(p.duration_s - span)),
            "{name}: {} s for captures spanning {span} s",
            p.duration_s
        );
        // Sample times are the capture times (90 kHz rounding).
        for (l, pts) in lines.iter().zip(&p.pts) {
            let rel = (l.monotonic_us - lines[0].monotonic_us) as f64 / 1e6;
            assert!(
                (rel - pts).abs() < 0.001,
                "{name}: sample at {pts} s, captured at {rel} s"
            );
        }
        if let Some(prev) = prev_end_us {
            // Clips tile time: the next starts where the previous ended (±2 ms rounding).
            assert!(
                (start_us - prev).abs() <= 2_000,
                "gap between clips: {} µs",
                start_us - prev
            );
        }
        prev_end_us = Some(start_us + (p.duration_s * 1e6) as i64);
    }
}

#[test]
fn kill_9_mid_clip_loses_at_most_one_fragment() {
    assert!(
        have_ffmpeg(),
        "ffmpeg is required (tests/run.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &format!("{SMALL}[recording]\nclip_length = \"3s\"\nfragment_duration = \"500ms\"\n"),
    );
    let data = dir.path().join("data");
    let mut child = spawn(&config);
    // Two closed clips, then kill well inside the third.
    wait_for(Duration::from_secs(30), || {
        (clips(&data, "cam0").len() >= 3).then_some(())
    })
    .expect("three clips within 30 s");
    std::thread::sleep(Duration::from_millis(1700));
    let killed_at_us = benchcam::clock::Clock::wall_us(&benchcam::clock::SystemClock);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = clips(&data, "cam0");
    let interrupted = before.last().unwrap().clone();
    let interrupted_name = interrupted
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let (start_us, _, _) =
        benchcam::record::index::parse_clip_file_name(&interrupted_name).unwrap();
    // Earlier clips are complete already.
    for file in &before[..before.len() - 1] {
        full_decode(file).unwrap();
    }

    // Restart: the torn clip is repaired and indexed, then stop cleanly.
    let mut child = spawn(&config);
    wait_for(Duration::from_secs(20), || {
        http_get(port, "/api/v1/health").filter(|(s, _)| *s == 200)
    })
    .expect("service answers after restart");
    sigterm(&mut child);
    assert!(child.wait().unwrap().success());
    assert!(interrupted.exists(), "the interrupted clip is kept");
    full_decode(&interrupted).unwrap();
    let p = probe(&interrupted);
    let recorded_s = (killed_at_us - start_us) as f64 / 1e6;
    let lost = recorded_s - p.duration_s;
    // At most one fragment (500 ms) plus the frames still queued (≤ 100 ms).
    eprintln!(
        "kill -9: recorded {recorded_s:.3} s before the kill, recovered {:.3} s, lost {lost:.3} s",
        p.duration_s
    );
    assert!(lost <= 0.6, "lost {lost:.3} s of {recorded_s:.3} s");
    assert!(p.duration_s > 1.0, "recovered {} s", p.duration_s);
    for file in clips(&data, "cam0") {
        full_decode(&file).unwrap();
    }
}

#[test]
fn retention_keeps_at_most_the_configured_clip_count() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &format!("{SMALL}[recording]\nclip_length = \"2s\"\nrolling_clips_count = 3\n"),
    );
    let data = dir.path().join("data");
    let mut child = spawn(&config);
    let start = Instant::now();
    let mut max_seen = 0;
    let mut deleted_seen = false;
    let mut first_name = None;
    while start.elapsed() < Duration::from_secs(13) {
        let files = clips(&data, "cam0");
        max_seen = max_seen.max(files.len());
        if let Some(f) = files.first() {
            if first_name.is_none() {
                first_name = Some(f.clone());
            } else if first_name.as_ref() != Some(f) {
                deleted_seen = true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm(&mut child);
    assert!(child.wait().unwrap().success());
    assert!(deleted_seen, "the oldest clip was deleted");
    // Three complete clips plus the open one, never more.
    assert!(max_seen <= 4, "saw {max_seen} clips");
    assert!(
        clips(&data, "cam0").len() <= 3,
        "after stop: {:?}",
        clips(&data, "cam0")
    );
}

#[test]
fn bad_config_is_refused_naming_key_value_and_allowed() {
    let cases = [
        (
            "[recording]\nclip_length = \"5x\"\n",
            ["recording.clip_length", "5x", "30s"],
        ),
        ("[camera]\nfps = 500\n", ["camera.fps", "500", "1 to 120"]),
        (
            "[camera]\nsource = \"webcam\"\n",
            ["camera.source", "webcam", "pattern"],
        ),
        (
            "[recording]\nrolling_clips_count = 1\n",
            ["recording.rolling_clips_count", "1", "2 or more"],
        ),
        (
            "[recording]\nmin_free_space = \"lots\"\n",
            ["recording.min_free_space", "lots", "512MB"],
        ),
        (
            "[streaming]\nmax_sessions = 0\n",
            ["streaming.max_sessions", "0", "1 to 64"],
        ),
        ("[nonsense]\nx = 1\n", ["nonsense", "unknown", "service"]),
    ];
    for (extra, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), free_port(), extra);
        let out = std::process::Command::new(bin())
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: {stderr}");
        for word in expect {
            assert!(
                stderr.contains(word),
                "{extra}: message lacks {word:?}: {stderr}"
            );
        }
        assert_eq!(stderr.trim().lines().count(), 1, "one message: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "nothing created on disk for {extra}"
        );
    }
}

/// Runs the service with an MJPEG pattern camera (15 fps, jittery stamps) and the given
/// `[recording] codec` line until two clips exist; stops it; returns the clips, each
/// checked to decode fully with increasing sample times, and its probe (with the temp dir
/// that holds them).
fn record_mjpeg_camera(codec_line: &str) -> (tempfile::TempDir, Vec<(std::path::PathBuf, Probe)>) {
    assert!(
        have_ffmpeg(),
        "ffmpeg is required (tests/run.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &format!(
            "[camera]\nsource = \"pattern\"\npattern_format = \"mjpeg\"\npattern_jitter = \"10ms\"\nwidth = 320\nheight = 240\nfps = 15\n\
             [recording]\nclip_length = \"2s\"\n{codec_line}"
        ),
    );
    let data = dir.path().join("data");
    let mut child = spawn(&config);
    wait_for(Duration::from_secs(30), || {
        (clips(&data, "cam0").len() >= 2).then_some(())
    })
    .expect("two clips within 30 s");
    sigterm(&mut child);
    assert!(child.wait().unwrap().success());
    let clips = clips(&data, "cam0")
        .into_iter()
        .map(|file| {
            full_decode(&file).unwrap();
            let p = probe(&file);
            assert!(p.frames > 0 && p.pts.windows(2).all(|w| w[1] > w[0]));
            (file, p)
        })
        .collect();
    (dir, clips)
}

#[test]
fn mjpeg_camera_is_recorded_as_h264_by_default() {
    let (_dir, clips) = record_mjpeg_camera("");
    for (file, p) in clips {
        assert_eq!(p.codec, "h264", "{}", file.display());
        let name = file.file_name().unwrap().to_str().unwrap();
        let frames_file = file.with_file_name(benchcam::record::index::frames_file_name(name));
        let lines = benchcam::record::index::read_frames_file(&frames_file, u64::MAX).unwrap();
        assert_eq!(lines.len() as u64, p.frames, "{name}: one line per sample");
    }
}

#[test]
fn mjpeg_camera_is_recorded_as_mjpeg_passthrough() {
    let (_dir, clips) = record_mjpeg_camera("codec = \"mjpeg\"\n");
    for (file, p) in clips {
        assert_eq!(p.codec, "mjpeg", "{}", file.display());
    }
}

#[test]
fn kill_9_during_archiving_is_redone_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &format!("{SMALL}[recording]\nclip_length = \"2s\"\n[auto_recording]\npre_roll = \"1s\"\npost_roll = \"3s\"\n"),
    );
    let data = dir.path().join("data");
    let mut child = spawn(&config);
    wait_for(Duration::from_secs(20), || {
        http_get(port, "/api/v1/health").filter(|(s, _)| *s == 200)
    })
    .expect("service answers");
    std::thread::sleep(Duration::from_secs(2));
    let post = |path: &str, body: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(post("/api/v1/experiments", r#"{"experiment_id": "kill-1"}"#).contains("201 Created"));
    std::thread::sleep(Duration::from_secs(2));
    // Stop blocks for the 3 s post-roll and the archive; kill the service inside it.
    let _ = post("/api/v1/experiments/kill-1/stop", "");
    std::thread::sleep(Duration::from_millis(800));
    child.kill().unwrap();
    child.wait().unwrap();
    let folder = data.join("experiments/kill-1");
    assert!(
        !folder.join("manifest.json").exists(),
        "killed before the archive completed"
    );

    let mut child = spawn(&config);
    let manifest = wait_for(Duration::from_secs(30), || {
        http_get(port, "/api/v1/experiments/kill-1")
            .filter(|(s, body)| *s == 200 && body.contains("\"files\""))
            .map(|(_, body)| body)
    })
    .expect("the archive is redone at restart");
    sigterm(&mut child);
    assert!(child.wait().unwrap().success());
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert!(!manifest["clips"].as_array().unwrap().is_empty());
    for f in manifest["files"].as_array().unwrap() {
        let path = folder.join(f["name"].as_str().unwrap());
        assert_eq!(
            benchcam::experiment::sha256_file(&path).unwrap(),
            f["sha256"].as_str().unwrap()
        );
        if have_ffmpeg() && path.extension().is_some_and(|e| e == "mp4") {
            full_decode(&path).unwrap();
        }
    }
}
