//! Live H.264 over the WebSocket (DESIGN §5): the recording's one encode per frame, shared
//! with every viewer; the recorder loses nothing to them.

mod common;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tungstenite::Message;

/// Subscribes `ws` to H.264; returns the `init` message and the init segment.
fn subscribe_h264(ws: &mut Ws) -> (Value, Vec<u8>) {
    ws_send(ws, json!({"type": "subscribe", "codec": "h264"}));
    let init = ws_until(ws, "init", patience(Duration::from_secs(10)));
    match ws.read().expect("read init segment") {
        Message::Binary(b) => (init, b.to_vec()),
        other => panic!("expected the init segment after init, got {other:?}"),
    }
}

/// The next H.264 `frame` message and its `moof` + `mdat`.
fn next_unit(ws: &mut Ws) -> (Value, Vec<u8>) {
    ws_frame(ws, patience(Duration::from_secs(10)))
}

fn have_ffmpeg() -> bool {
    std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn box_type(bytes: &[u8], at: usize) -> &[u8] {
    &bytes[at + 4..at + 8]
}

fn ffmpeg_frames(path: &std::path::Path) -> (u64, String) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        // Capture times, not a constant rate (as for clips: tests/support full_decode).
        .args(["-fps_mode", "passthrough", "-enc_time_base", "-1"])
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let frames = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (frames, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_h264_viewer_gets_init_then_frames_from_a_keyframe_and_they_decode() {
    assert!(
        have_ffmpeg(),
        "ffmpeg is required (tests/run.sh installs it)"
    );
    let t = TestApp::start();
    let mut ws = ws_connect(t.addr, "cam0");
    let asked = Instant::now();
    let (init, segment) = subscribe_h264(&mut ws);
    assert!(
        init["codec"].as_str().unwrap().starts_with("avc1."),
        "{init}"
    );
    assert_eq!(
        (init["width"].as_u64(), init["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(box_type(&segment, 0), b"ftyp");
    let mut stream = segment.clone();
    let mut numbers = Vec::new();
    for i in 0..60 {
        let (meta, fragment) = next_unit(&mut ws);
        if i == 0 {
            assert_eq!(
                meta["keyframe"], true,
                "the first frame is a keyframe: {meta}"
            );
            // A keyframe was asked for when the viewer joined; nothing recorded here, so
            // the encoder started for this viewer.
            assert!(asked.elapsed() < patience(Duration::from_secs(3)));
        }
        assert_eq!(meta["codec"], "h264");
        assert_eq!(meta["size"].as_u64(), Some(fragment.len() as u64));
        assert_eq!(box_type(&fragment, 0), b"moof", "{meta}");
        numbers.push(meta["frame_number"].as_u64().unwrap());
        stream.extend_from_slice(&fragment);
    }
    assert!(
        numbers.windows(2).all(|w| w[1] > w[0]),
        "frame numbers increase: {numbers:?}"
    );
    let path = t.dir.path().join("live.mp4");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&stream)
        .unwrap();
    let (frames, errors) = ffmpeg_frames(&path);
    assert_eq!(frames, 60, "every fragment decodes ({errors})");
    assert!(errors.trim().is_empty(), "ffmpeg: {errors}");
    // The status says which stream the session gets.
    let status = ws_until(&mut ws, "status", Duration::from_secs(3));
    assert_eq!(status["codec"], "h264", "{status}");
    // Back to JPEG on a plain subscribe.
    ws_send(&mut ws, json!({"type": "subscribe"}));
    let deadline = Instant::now() + patience(Duration::from_secs(10));
    loop {
        assert!(
            Instant::now() < deadline,
            "no JPEG frame after switching back"
        );
        let (meta, bytes) = next_unit(&mut ws);
        if meta.get("codec").is_none() {
            decode_jpeg(&bytes);
            break;
        }
    }
}

/// A live fragment's decode time and its one sample's duration (timescale ticks).
fn fragment_timing(fragment: &[u8]) -> (u64, u64) {
    use mp4_atom::{Decode, Moof, TrunSamples};
    let moof = Moof::decode(&mut &fragment[..]).expect("a moof");
    let traf = &moof.traf[0];
    let start = traf.tfdt.as_ref().expect("tfdt").base_media_decode_time;
    let TrunSamples::Explicit(entries) = &traf.trun[0].samples else {
        panic!("explicit trun entries");
    };
    assert_eq!(entries.len(), 1, "one sample per live fragment");
    (start, u64::from(entries[0].duration.expect("a duration")))
}

#[test]
fn live_fragments_leave_no_hole_in_the_timeline_when_the_camera_jitters() {
    // Driver-like stamps: up to 12 ms off the cadence, one frame in 50 late by 1-3 frames.
    // With each sample lasting one nominal interval from its own stamp, every late frame
    // left a hole the browser stops at (and the page then jumped, skipping pictures).
    let t = TestApp::start_with(|c| {
        c.camera.pattern_jitter = benchcam::config::HumanDuration(Duration::from_millis(12));
    });
    let mut ws = ws_connect(t.addr, "cam0");
    subscribe_h264(&mut ws);
    let mut timing = Vec::new();
    for _ in 0..150 {
        let (meta, fragment) = next_unit(&mut ws);
        timing.push((
            meta["frame_number"].as_u64().unwrap(),
            fragment_timing(&fragment),
        ));
    }
    let fps = t.health()["cameras"][0]["mode"]["fps"]
        .as_u64()
        .unwrap_or(30);
    let interval = 90_000 / fps;
    let mut lengthened = 0;
    for pair in timing.windows(2) {
        let ((_, (start, duration)), (number, (next, _))) = (pair[0], pair[1]);
        assert_eq!(
            start + duration,
            next,
            "frame {number}: a hole or an overlap before it: {timing:?}"
        );
        lengthened += usize::from(duration > interval * 3 / 2);
    }
    // The jitter is there (the stamps are not a cadence), and the late frames' samples
    // covered their wait.
    assert!(
        timing.iter().any(|(_, (_, d))| *d != interval),
        "every sample lasted exactly one interval: no jitter reached the stream?"
    );
    eprintln!(
        "{} fragments, {lengthened} lengthened past 1.5 intervals",
        timing.len()
    );
}

#[test]
fn recording_and_h264_viewers_share_one_encode_per_frame() {
    let t = TestApp::start();
    let r = post(t.addr, "/api/v1/cameras/cam0/recording/start", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let camera = t.app.service.camera("cam0").unwrap();
    let mut viewers: Vec<Ws> = (0..4).map(|_| ws_connect(t.addr, "cam0")).collect();
    for ws in &mut viewers {
        subscribe_h264(ws);
    }
    let before = camera.encoder.stats.frames_encoded.load(Ordering::Relaxed);
    let recorded_before = camera.frames_recorded();
    let mut got = vec![Vec::new(); viewers.len()];
    for _ in 0..45 {
        for (ws, got) in viewers.iter_mut().zip(&mut got) {
            let (meta, _) = next_unit(ws);
            got.push(meta["frame_number"].as_u64().unwrap());
        }
    }
    let encoded = camera.encoder.stats.frames_encoded.load(Ordering::Relaxed) - before;
    let recorded = camera.frames_recorded() - recorded_before;
    // One encode per frame: what the recorder took and what 4 viewers took is the same
    // stream (a few frames apart at the ends of the window).
    assert!(
        encoded.abs_diff(recorded) <= 5,
        "encoded {encoded} frames, recorded {recorded}"
    );
    assert!(
        encoded < 45 * 2,
        "4 viewers and a recorder: {encoded} encodes for ~45 frames"
    );
    // Every viewer saw the same frames.
    let (first, last) = (
        got.iter().map(|g| g[0]).max().unwrap(),
        got.iter().map(|g| *g.last().unwrap()).min().unwrap(),
    );
    assert!(last > first + 10, "the viewers' windows overlap: {got:?}");
    let span = |g: &Vec<u64>| -> Vec<u64> {
        g.iter()
            .copied()
            .filter(|&n| (first..=last).contains(&n))
            .collect()
    };
    for g in &got[1..] {
        assert_eq!(span(g), span(&got[0]), "the viewers get the same units");
    }
    let sessions = t.sessions();
    assert_eq!(sessions.len(), 4, "{sessions:?}");
    assert!(
        sessions.iter().all(|s| s["codec"] == "h264"),
        "the sessions list says they get H.264: {sessions:?}"
    );
    let metrics = t.get("/metrics").text();
    assert!(
        metrics.contains("benchcam_live_h264_viewers{camera=\"cam0\"} 4"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("h264"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn clips_in_mjpeg_mean_no_h264_and_the_session_stays_usable() {
    let t = TestApp::start_with(|c| c.recording.codec = benchcam::config::Codec::Mjpeg);
    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "subscribe", "codec": "h264"}));
    let e = ws_until(&mut ws, "error", patience(Duration::from_secs(5)));
    assert_eq!(e["code"], "h264_unavailable", "{e}");
    ws_send(&mut ws, json!({"type": "subscribe", "codec": "vp9"}));
    let e = ws_until(&mut ws, "error", patience(Duration::from_secs(5)));
    assert_eq!(e["code"], "bad_codec", "{e}");
    ws_send(&mut ws, json!({"type": "subscribe"}));
    let (_, jpeg) = next_unit(&mut ws);
    decode_jpeg(&jpeg);
}

#[test]
fn a_viewer_joining_mid_recording_gets_a_keyframe_without_waiting_for_the_next_fragment() {
    let t = TestApp::start_with(|c| {
        c.recording.clip_length = benchcam::config::HumanDuration(Duration::from_secs(60));
        c.recording.fragment_duration = benchcam::config::HumanDuration(Duration::from_secs(10));
    });
    let r = post(t.addr, "/api/v1/cameras/cam0/recording/start", "");
    assert_eq!(r.status, 200, "{}", r.text());
    std::thread::sleep(Duration::from_secs(1));
    let camera = t.app.service.camera("cam0").unwrap();
    let requested = camera
        .encoder
        .stats
        .keyframes_requested
        .load(Ordering::Relaxed);
    let mut ws = ws_connect(t.addr, "cam0");
    let asked = Instant::now();
    subscribe_h264(&mut ws);
    let (meta, _) = next_unit(&mut ws);
    let waited = asked.elapsed();
    assert_eq!(meta["keyframe"], true, "{meta}");
    assert!(
        camera
            .encoder
            .stats
            .keyframes_requested
            .load(Ordering::Relaxed)
            > requested,
        "the viewer's keyframe was made on request, not the 10 s grid's"
    );
    if !emulated() {
        assert!(
            waited < Duration::from_secs(3),
            "first frame after {waited:?}"
        );
    }
}

#[test]
fn the_recorder_drops_nothing_while_16_h264_viewers_watch_one_stalled() {
    let t = TestApp::start_with(|c| {
        c.camera.width = 640;
        c.camera.height = 480;
        c.camera.pattern_noise = true;
    });
    let r = post(t.addr, "/api/v1/cameras/cam0/recording/start", "");
    assert_eq!(r.status, 200, "{}", r.text());
    // The stalled one: subscribes, then never reads, through a 4 KiB window.
    let stalled = {
        let s = common::net::connect_from(20, t.addr, true).unwrap();
        let (mut ws, _) = tungstenite::client(format!("ws://{}/api/v1/cameras/cam0/ws", t.addr), s)
            .unwrap_or_else(|_| panic!("handshake"));
        ws_send(&mut ws, json!({"type": "subscribe", "codec": "h264"}));
        ws
    };
    let mut viewers: Vec<Ws> = (0..15).map(|_| ws_connect(t.addr, "cam0")).collect();
    for ws in &mut viewers {
        subscribe_h264(ws);
    }
    let camera = t.app.service.camera("cam0").unwrap();
    let rss = || benchcam::live::resident_bytes().unwrap_or(0);
    let seconds = if emulated() { 6 } else { 8 };
    let start = Instant::now();
    let mut rss_early = 0;
    let mut received = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        for ws in &mut viewers {
            let (meta, _) = next_unit(ws);
            assert_eq!(meta["codec"], "h264");
            received += 1;
        }
        if rss_early == 0 && start.elapsed() > Duration::from_secs(2) {
            rss_early = rss();
        }
    }
    let rss_late = rss();
    let health = t.health();
    let cam = &health["cameras"][0];
    // Nothing the viewers do costs the recorder a frame: it never waits behind them and
    // they never take its slots.
    let recorder = camera.encoder.unit_subscribers();
    assert_eq!(recorder.len(), 1, "{recorder:?}");
    assert_eq!(
        recorder[0].2, 0,
        "the recorder fell behind the encoder: {recorder:?}"
    );
    assert_eq!(camera.encoder.stats.ring_full.load(Ordering::Relaxed), 0);
    // Under qemu-user (the aarch64 CI step) the encoder itself cannot keep up with 30 fps
    // of 640x480, so capture → encoder drops are not the viewers' doing there.
    if !emulated() {
        assert_eq!(camera.recorder_drops(), 0, "recorder drops; health {cam}");
    }
    assert!(
        camera.frames_recorded() > 30 * (seconds - 2),
        "recorded {}",
        camera.frames_recorded()
    );
    let stats = &camera.encoder.stats;
    assert!(
        stats.viewer_drops.load(Ordering::Relaxed) > 0,
        "the stalled viewer lost frames (and nobody else waited for it)"
    );
    assert!(
        received > 15 * 30 * (seconds - 2) / 2,
        "the 15 readers kept getting frames: {received}"
    );
    let grown = stats.ring_slots_grown.load(Ordering::Relaxed);
    assert!(
        grown
            <= (benchcam::encode::stage::RECORDER_QUEUE
                + 2
                + 16 * (benchcam::encode::stage::VIEWER_QUEUE + 2)) as u64,
        "ring slots grown: {grown}"
    );
    assert!(
        rss_late < rss_early + 16 * 1024 * 1024,
        "memory stays bounded: {} MiB after 2 s, {} MiB at the end",
        rss_early >> 20,
        rss_late >> 20
    );
    drop(stalled);
}

#[test]
fn an_h264_viewer_is_told_when_the_camera_goes_and_resumes_at_a_keyframe() {
    let t = TestApp::start();
    let mut ws = ws_connect(t.addr, "cam0");
    subscribe_h264(&mut ws);
    next_unit(&mut ws);
    t.faults.unplugged.store(true, Ordering::Relaxed);
    let gone = ws_until(&mut ws, "no_frame", patience(Duration::from_secs(10)));
    assert_eq!(gone["reason"], "camera_error", "{gone}");
    t.faults.unplugged.store(false, Ordering::Relaxed);
    // Back: the stream goes on from a keyframe (a new init only if the stream changed).
    let deadline = Instant::now() + patience(Duration::from_secs(20));
    let first = loop {
        assert!(
            Instant::now() < deadline,
            "no frame after the camera came back"
        );
        if let Message::Text(text) = ws.read().expect("read") {
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["type"] == "frame" {
                break v;
            }
        }
    };
    assert_eq!(first["keyframe"], true, "{first}");
}
