//! The two one-file downloads, through the real HTTP server with the pattern camera:
//! a span of time as one MP4 (`/api/v1/cameras/{cam}/recording.mp4?start=&end=`) that
//! decodes fully and holds exactly the frames captured in it, and an archived experiment
//! as one ZIP whose files match the manifest's SHA-256s.

mod common;
mod support;

use std::io::Read;
use std::time::Duration;

use benchcam::clock::{parse_time, rfc3339_ms};
use benchcam::record::index::{frames_file_name, read_frames_file};
use common::*;
use serde_json::Value;

fn record_for(t: &TestApp, seconds: u64) {
    let r = post(t.addr, "/api/v1/cameras/cam0/recording/start", "");
    assert_eq!(r.status, 200, "{}", r.text());
    std::thread::sleep(Duration::from_secs(seconds));
}

/// Every frame recorded so far: (wall µs) of each frames-file row, all clips, in order.
fn recorded_frames(t: &TestApp) -> Vec<i64> {
    let index = &t.app.service.storage.index;
    let mut clips = index.list(Some("cam0"));
    clips.sort_by_key(|c| c.seq);
    let mut walls = Vec::new();
    for clip in clips {
        let path = index.camera_dir("cam0").join(frames_file_name(&clip.file));
        let rows = read_frames_file(&path, clip.frame_count).unwrap_or_default();
        walls.extend(rows.iter().map(|r| r.wall_us));
    }
    walls
}

#[test]
fn a_span_across_clips_is_one_mp4_with_exactly_its_frames() {
    assert!(
        support::have_ffmpeg(),
        "ffmpeg is required (tests/run.sh installs it)"
    );
    let t = TestApp::start();
    record_for(&t, 7);
    let walls = recorded_frames(&t);
    // Under qemu (the aarch64 step) the emulated encoder keeps fewer frames.
    let least = if emulated() { 30 } else { 100 };
    assert!(walls.len() > least, "{} frames recorded", walls.len());
    // 3 s from 1.3 s in: crosses at least one 2 s clip boundary.
    let from = walls[0] + 1_300_000;
    let to = from + 3_000_000;
    let path = format!(
        "/api/v1/cameras/cam0/recording.mp4?start={}&end={}",
        rfc3339_ms(from),
        rfc3339_ms(to)
    );
    let head = request(t.addr, "HEAD", &path, &[], b"");
    assert_eq!(head.status, 200, "{}", head.text());
    let r = t.get(&path);
    assert_eq!(r.status, 200, "{}", r.text());
    let length: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, r.body.len(), "Content-Length is the body's length");
    assert_eq!(head.header("content-length"), r.header("content-length"));
    assert_eq!(r.header("content-type"), Some("video/mp4"));

    let start = parse_time(r.header("x-benchcam-span-start").unwrap()).unwrap();
    let end = parse_time(r.header("x-benchcam-span-end").unwrap()).unwrap();
    let frames: u64 = r.header("x-benchcam-span-frames").unwrap().parse().unwrap();
    // It starts at the fragment (keyframe) holding `from`: at most one 500 ms fragment
    // early (+ the pattern's 10 ms jitter), and ends with the last frame by `to`.
    assert!(
        start <= from && from - start <= 520_000,
        "start {start}, asked {from}"
    );
    assert!(end <= to && to - end <= 60_000, "end {end}, asked {to}");
    assert!(
        walls.iter().any(|&w| w > to),
        "recorded past the span's end"
    );
    // The headers are in milliseconds (truncated).
    let expected = walls
        .iter()
        .filter(|&&w| w >= start && w <= end + 999)
        .count() as u64;
    assert_eq!(
        frames, expected,
        "the frames captured in the span, each once"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("span.mp4");
    std::fs::write(&file, &r.body).unwrap();
    support::full_decode(&file).expect("the span decodes fully");
    let probe = support::probe(&file);
    assert_eq!(probe.codec, "h264");
    assert_eq!(probe.frames, frames, "ffprobe counts the announced frames");
    let announced: f64 = r
        .header("x-benchcam-span-duration")
        .unwrap()
        .parse()
        .unwrap();
    let captured = (end - start) as f64 / 1e6;
    // The last frame lasts a frame interval (longer where frames were dropped before it).
    let slack = if emulated() { 0.5 } else { 0.070 };
    assert!(
        (announced - captured).abs() < slack,
        "duration {announced} s vs frames captured over {captured} s (+1 frame)"
    );
    assert!(
        (probe.duration_s - announced).abs() < 0.040,
        "ffprobe {} s vs announced {announced} s",
        probe.duration_s
    );
    // Sample times are kept: presentation times rise by the capture intervals.
    assert!(probe.pts.windows(2).all(|w| w[1] > w[0]), "{:?}", probe.pts);
}

#[test]
fn span_requests_are_checked() {
    let t = TestApp::start();
    record_for(&t, 2);
    let now = benchcam::clock::rfc3339_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64,
    );
    let cases = [
        ("/api/v1/cameras/cam0/recording.mp4", 400, "start"),
        ("/api/v1/cameras/cam0/recording.mp4?start=2026-12-01T10:00:00Z", 400, "end"),
        ("/api/v1/cameras/cam0/recording.mp4?start=yesterday&end=now", 400, "RFC 3339"),
        (
            "/api/v1/cameras/cam0/recording.mp4?start=2026-12-01T10:00:01Z&end=2026-12-01T10:00:00Z",
            400,
            "after",
        ),
        (
            "/api/v1/cameras/cam0/recording.mp4?start=2001-01-01T00:00:00Z&end=2001-01-01T00:05:00Z",
            404,
            "no recording",
        ),
        ("/api/v1/cameras/camX/recording.mp4?start=1&end=2", 404, "camX"),
    ];
    for (path, status, says) in cases {
        let r = t.get(path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(says),
            "{path}: {}",
            r.text()
        );
    }
    // A span reaching now includes the clip still being written.
    let r = t.get(&format!(
        "/api/v1/cameras/cam0/recording.mp4?start=1&end={now}"
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("x-benchcam-span-frames")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 20
    );
}

#[test]
fn an_experiment_downloads_as_one_zip_matching_its_manifest() {
    let t = TestApp::start();
    let r = post(
        t.addr,
        "/api/v1/experiments",
        r#"{"experiment_id": "zip-1", "method": "by hand"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let early = t.get("/api/v1/experiments/zip-1/download.zip");
    assert_eq!(early.status, 409, "running: not yet: {}", early.text());
    std::thread::sleep(Duration::from_secs(3));
    let r = post(t.addr, "/api/v1/experiments/zip-1/stop", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let manifest = t.get("/api/v1/experiments/zip-1").json();

    let r = t.get("/api/v1/experiments/zip-1/download.zip");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/zip"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(r.body.clone())).expect("a ZIP");
    let files = manifest["files"].as_array().unwrap();
    assert!(files
        .iter()
        .any(|f| f["name"].as_str().unwrap().ends_with(".mp4")));
    assert_eq!(
        zip.len(),
        files.len() + 1,
        "every listed file and the manifest"
    );
    for f in files {
        let name = format!("zip-1/{}", f["name"].as_str().unwrap());
        let mut entry = zip
            .by_name(&name)
            .unwrap_or_else(|_| panic!("{name} in the ZIP"));
        assert_eq!(
            entry.compression(),
            zip::CompressionMethod::Stored,
            "{name}"
        );
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        use sha2::Digest;
        let sha = format!("{:x}", sha2::Sha256::digest(&bytes));
        assert_eq!(sha, f["sha256"].as_str().unwrap(), "{name}");
    }
    let mut entry = zip.by_name("zip-1/manifest.json").unwrap();
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    let zipped: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(zipped, manifest, "the manifest the API serves");

    for (path, status) in [
        ("/api/v1/experiments/none-such/download.zip", 404),
        ("/api/v1/experiments/..%2Fetc/download.zip", 400),
    ] {
        let r = t.get(path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }
}

#[test]
fn a_download_abandoned_midway_stops_being_written() {
    use std::io::{BufRead, BufReader, Write};
    let t = TestApp::start_with(|c| {
        c.camera.width = 1280;
        c.camera.height = 720;
        // Grain, so the clips grow fast enough under emulation too.
        c.camera.pattern_noise = true;
    });
    record_for(&t, 1);
    let path = "/api/v1/cameras/cam0/recording.mp4?start=1&end=9999999999";
    let len = || -> u64 {
        let head = request(t.addr, "HEAD", path, &[], b"");
        head.header("content-length")
            .map_or(0, |l| l.parse().unwrap())
    };
    // More than everything between a producer and its client holds (three 64 KiB chunks,
    // hyper's write buffer, the 256 KiB send buffer the kernel doubles, a 4 KiB window),
    // so each producer is stuck on its client when the client goes. A span of 500 kB was
    // sent whole into those buffers under emulation (CI's aarch64 step): every producer
    // had finished before the check.
    wait_for(
        patience(Duration::from_secs(30)),
        "a span over 2 MB",
        || len() > 2_000_000,
    );
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut s = common::net::connect_from(10 + i, t.addr, true).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains("200"), "{line}");
        let mut some = [0u8; 1000];
        std::io::Read::read_exact(&mut reader, &mut some).unwrap();
        clients.push(reader);
    }
    let web = &t.app.state.web;
    let producing = || {
        web.downloads_producing
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(producing(), 4, "each stalled download waits on its client");
    // The places are taken: a fifth is told to come back, not queued behind them.
    let busy = t.get(path);
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert_eq!(busy.error_code(), "busy");
    assert_eq!(busy.header("retry-after"), Some("5"));
    // The phones walk away: every producer stops (it does not read the rest of the span),
    // and the places are free again.
    drop(clients);
    wait_for(Duration::from_secs(5), "the producers to stop", || {
        producing() == 0
    });
    assert_eq!(t.get(path).status, 200);
}
