//! The web API over real sockets: every endpoint of DESIGN §4 (but experiments and GPIO)
//! and every WebSocket message of §5, bad input included, against the real app started
//! in-process with the test-pattern camera.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tungstenite::Message;

/// How long to wait for something that normally takes well under a second.
fn short() -> Duration {
    patience(Duration::from_secs(5))
}

#[test]
fn page_and_assets_are_served_with_types_and_etags() {
    let t = TestApp::start();
    for (path, kind) in [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let r = get(t.addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        let etag = r.header("etag").expect("etag").to_string();
        assert!(!r.body.is_empty());
        let again = request(t.addr, "GET", path, &[("If-None-Match", &etag)], b"");
        assert_eq!(again.status, 304, "{path} revalidates");
        assert!(again.body.is_empty());
    }
    assert!(get(t.addr, "/").text().contains("<html"));
    let missing = get(t.addr, "/nope.html");
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (404, "not_found")
    );
    let wrong_method = post(t.addr, "/api/v1/health", "");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.error_code(), "method_not_allowed");
}

#[test]
fn health_reports_cameras_storage_and_streaming() {
    let t = TestApp::start();
    let r = get(t.addr, "/api/v1/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let h = r.json();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert!(h["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(h["uptime_s"].is_u64());
    assert!(h["storage"]["free_disk_space_gb"].as_f64().unwrap() > 0.0);
    assert_eq!(h["storage"]["writable"], true);
    let cam = &h["cameras"][0];
    assert_eq!(cam["id"], "cam0");
    assert_eq!(cam["state"], "capturing");
    assert_eq!(cam["recording"], false);
    assert!(cam["frames_captured"].as_u64().unwrap() > 0);
    assert_eq!(h["streaming"]["enabled"], true);
    assert_eq!(h["streaming"]["sessions"], 0);
    assert!(h["problems"].as_array().unwrap().is_empty());
}

#[test]
fn cameras_list_shows_mode_modes_state_and_recording() {
    let t = TestApp::start();
    let list = get(t.addr, "/api/v1/cameras").json();
    let cam = &list[0];
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(cam["id"], "cam0");
    assert_eq!(cam["device"], "pattern0");
    assert_eq!(cam["backend"], "pattern");
    assert!(cam["name"].as_str().unwrap().contains("pattern"));
    assert_eq!(cam["mode"]["width"], WIDTH);
    assert_eq!(cam["mode"]["height"], HEIGHT);
    assert_eq!(cam["mode"]["format"], "i420");
    assert_eq!(cam["modes"].as_array().unwrap().len(), 2);
    assert_eq!(cam["state"], "capturing");
    assert_eq!(cam["recording"], false);
}

#[test]
fn recording_start_stop_answers_by_state_and_camera() {
    let t = TestApp::start();
    let start = "/api/v1/cameras/cam0/recording/start";
    let stop = "/api/v1/cameras/cam0/recording/stop";
    let r = post(t.addr, start, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"camera": "cam0", "recording": true}));
    assert_eq!(get(t.addr, "/api/v1/cameras").json()[0]["recording"], true);
    let again = post(t.addr, start, "");
    assert_eq!(
        (again.status, again.error_code().as_str()),
        (409, "wrong_state")
    );
    // Rescan would take the recorder's source away.
    let rescan = post(t.addr, "/api/v1/cameras/rescan", "");
    assert_eq!(
        (rescan.status, rescan.error_code().as_str()),
        (409, "wrong_state")
    );
    let r = post(t.addr, stop, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["recording"], false);
    let again = post(t.addr, stop, "");
    assert_eq!(
        (again.status, again.error_code().as_str()),
        (409, "wrong_state")
    );

    for path in [
        "/api/v1/cameras/cam7/recording/start",
        "/api/v1/cameras/camera0/recording/stop",
        "/api/v1/cameras/cam7/snapshot.jpg",
    ] {
        let method = if path.ends_with(".jpg") {
            "GET"
        } else {
            "POST"
        };
        let r = request(t.addr, method, path, &[], b"");
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
    let bad_json = post(t.addr, start, "{not json");
    assert_eq!(
        (bad_json.status, bad_json.error_code().as_str()),
        (400, "bad_json")
    );
    let bad_type = post(t.addr, start, r#"{"recording_type": "forever"}"#);
    assert_eq!(bad_type.status, 400);
    let huge = "x".repeat(64 * 1024);
    let too_big = post(t.addr, start, &huge);
    assert_eq!(
        (too_big.status, too_big.error_code().as_str()),
        (413, "too_large")
    );
    // Manual type by default, rolling when asked.
    let r = post(t.addr, start, r#"{"recording_type": "rolling"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(post(t.addr, stop, "").status, 200);
}

#[test]
fn rescan_finds_the_cameras_again_when_idle() {
    let t = TestApp::start();
    let r = post(t.addr, "/api/v1/cameras/rescan", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()[0]["id"], "cam0");
    t.wait_for_frames();
    // Live view follows the new capture thread after a rescan.
    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "request_frame"}));
    let (meta, jpeg) = ws_frame(&mut ws, short());
    assert_eq!(meta["size"], jpeg.len());
    assert_eq!(post(t.addr, "/api/v1/cameras/rescan", "").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    ws_send(&mut ws, json!({"type": "request_frame"}));
    let (meta2, _) = ws_frame(&mut ws, short());
    assert_eq!(meta2["camera"], "cam0");
}

#[test]
fn snapshot_is_a_full_size_jpeg_and_503_without_frames() {
    let t = TestApp::start();
    let r = get(t.addr, "/api/v1/cameras/cam0/snapshot.jpg");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    assert!(r.header("x-frame-number").is_some());
    assert_eq!(decode_jpeg(&r.body), (WIDTH as u16, HEIGHT as u16));

    // A stalled camera has no frame: 503 no_frame with the reason, never an old picture.
    t.faults.stall.store(true, Ordering::Relaxed);
    wait_for(
        patience(Duration::from_secs(10)),
        "capture to notice the stall",
        || get(t.addr, "/api/v1/cameras/cam0/snapshot.jpg").status == 503,
    );
    let r = get(t.addr, "/api/v1/cameras/cam0/snapshot.jpg");
    assert_eq!(r.error_code(), "no_frame");
    assert_eq!(r.json()["error"]["reason"], "not_capturing");
    t.faults.stall.store(false, Ordering::Relaxed);
    wait_for(patience(Duration::from_secs(15)), "frames again", || {
        get(t.addr, "/api/v1/cameras/cam0/snapshot.jpg").status == 200
    });
}

#[test]
fn mjpeg_camera_larger_than_a_preset_is_scaled_for_it() {
    let t = TestApp::start_with(|c| {
        c.camera.formats = vec!["mjpeg".into()];
        c.camera.width = 1280;
        c.camera.height = 720;
    });
    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "set_quality", "quality": "low"}));
    ws_send(&mut ws, json!({"type": "request_frame"}));
    let (meta, jpeg) = ws_frame(&mut ws, patience(Duration::from_secs(5)));
    assert_eq!(meta["quality"], "low");
    // The low preset is 640x360: the camera's 1280x720 JPEG is decoded and re-encoded.
    assert_eq!(decode_jpeg(&jpeg), (640, 360));
}

#[test]
fn mjpeg_snapshot_passes_the_camera_jpeg_through() {
    let t = TestApp::start_with(|c| c.camera.formats = vec!["mjpeg".into()]);
    assert_eq!(
        get(t.addr, "/api/v1/cameras").json()[0]["mode"]["format"],
        "mjpeg"
    );
    let r = get(t.addr, "/api/v1/cameras/cam0/snapshot.jpg");
    assert_eq!(r.status, 200);
    assert_eq!(decode_jpeg(&r.body), (WIDTH as u16, HEIGHT as u16));
    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "request_frame"}));
    let (_, jpeg) = ws_frame(&mut ws, short());
    assert_eq!(decode_jpeg(&jpeg), (WIDTH as u16, HEIGHT as u16));
    let metrics = get(t.addr, "/metrics").text();
    let passed = metric(
        &metrics,
        "benchcam_live_frames_passed_through_total{camera=\"cam0\",quality=\"medium\"}",
    );
    assert!(
        passed >= 1.0,
        "MJPEG frames pass through without re-encoding"
    );
    let encoded = metric(
        &metrics,
        "benchcam_live_frames_encoded_total{camera=\"cam0\",quality=\"medium\"}",
    );
    assert_eq!(encoded, 0.0);
}

/// Reads one part of a multipart stream: its headers and body.
fn read_part(reader: &mut impl BufRead) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("part header");
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .expect("every part has a Content-Length")
        .1
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (headers, body)
}

fn open_mjpeg(t: &TestApp, query: &str) -> (u16, Vec<(String, String)>, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(t.addr).unwrap();
    stream
        .set_read_timeout(Some(patience(Duration::from_secs(10))))
        .unwrap();
    write!(
        stream,
        "GET /api/v1/cameras/cam0/stream.mjpg{query} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    (status, headers, reader)
}

#[test]
fn mjpeg_stream_parts_have_boundaries_lengths_and_decodable_jpegs() {
    let t = TestApp::start();
    let (status, headers, reader) = open_mjpeg(&t, "?quality=high");
    assert_eq!(status, 200);
    let content_type = &headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .unwrap()
        .1;
    let boundary = content_type
        .strip_prefix("multipart/x-mixed-replace; boundary=")
        .expect("multipart/x-mixed-replace with a boundary")
        .to_string();
    let mut parts = BufReader::new(ChunkedReader::new(reader));
    let mut line = String::new();
    parts.read_line(&mut line).unwrap();
    assert_eq!(
        line,
        format!("--{boundary}\r\n"),
        "stream opens with the boundary"
    );
    let mut numbers = Vec::new();
    for _ in 0..8 {
        let (headers, body) = read_part(&mut parts);
        let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("content-type").as_deref(), Some("image/jpeg"));
        assert_eq!(decode_jpeg(&body), (WIDTH as u16, HEIGHT as u16));
        numbers.push(get("x-frame-number").unwrap().parse::<u64>().unwrap());
        // Each JPEG is followed by CRLF and the next boundary at once.
        let mut after = vec![0; boundary.len() + 6];
        parts.read_exact(&mut after).unwrap();
        assert_eq!(after, format!("\r\n--{boundary}\r\n").as_bytes());
    }
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "frames move forward: {numbers:?}"
    );
    let sessions = t.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["kind"], "mjpeg");
    assert_eq!(sessions[0]["quality"], "high");
    drop(parts);
    wait_for(
        short(),
        "the MJPEG session to end with its connection",
        || t.sessions().is_empty(),
    );

    let r = get(t.addr, "/api/v1/cameras/cam0/stream.mjpg?quality=ultra");
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_quality"));
    let r = get(t.addr, "/api/v1/cameras/cam3/stream.mjpg");
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
}

#[test]
fn ws_request_frame_sends_frame_json_then_the_jpeg() {
    let t = TestApp::start();
    let mut ws = ws_connect(t.addr, "cam0");
    let status = ws_until(&mut ws, "status", short());
    assert_eq!(status["camera"], "cam0");
    ws_send(&mut ws, json!({"type": "request_frame"}));
    let (meta, jpeg) = ws_frame(&mut ws, short());
    let keys: Vec<&str> = meta
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "type",
        "camera",
        "frame_number",
        "timestamp_us",
        "size",
        "quality",
    ] {
        assert!(keys.contains(&key), "{key} in {meta}");
    }
    assert_eq!(meta["camera"], "cam0");
    assert_eq!(meta["quality"], "medium", "the default quality");
    assert_eq!(meta["size"], jpeg.len());
    assert_eq!(decode_jpeg(&jpeg), (WIDTH as u16, HEIGHT as u16));
    let now = benchcam::clock::monotonic_now_us();
    let ts = meta["timestamp_us"].as_u64().unwrap();
    assert!(
        ts <= now && now - ts < 5_000_000,
        "capture timestamp on CLOCK_MONOTONIC"
    );
    // Pulling again gives a newer frame, not the same one.
    ws_send(&mut ws, json!({"type": "request_frame"}));
    let (meta2, _) = ws_frame(&mut ws, short());
    assert!(meta2["frame_number"].as_u64() > meta["frame_number"].as_u64());
    // Pull mode pushes nothing unasked.
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["type"], "status", "only status arrives unasked: {v}");
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn ws_subscribe_pushes_frames_at_the_preset_rate_and_set_quality_changes_it() {
    let t = TestApp::start();
    let mut ws = ws_connect(t.addr, "cam0");
    assert_eq!(ws_until(&mut ws, "status", short())["quality"], "medium");
    ws_send(&mut ws, json!({"type": "set_quality", "quality": "high"}));
    // set_quality is answered with a status showing the new quality.
    let status = ws_until(&mut ws, "status", short());
    assert_eq!(status["quality"], "high");
    ws_send(&mut ws, json!({"type": "subscribe"}));
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let (meta, jpeg) = ws_frame(&mut ws, short());
        assert_eq!(meta["quality"], "high");
        assert_eq!(meta["size"], jpeg.len());
        count += 1;
    }
    assert!(
        // Under qemu the encoder cannot keep 30 fps; the rate checks are the host's.
        count >= if emulated() { 2 } else { 20 },
        "high preset is 30 fps: got {count} frames in 2 s"
    );

    ws_send(&mut ws, json!({"type": "set_quality", "quality": "low"}));
    // Frames already on their way may still be high; then low only, at 5 fps.
    let deadline = Instant::now() + short();
    loop {
        let (meta, _) = ws_frame(&mut ws, short());
        if meta["quality"] == "low" {
            break;
        }
        assert!(Instant::now() < deadline, "quality never switched to low");
    }
    let started = Instant::now();
    let mut low = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let (meta, _) = ws_frame(&mut ws, short());
        assert_eq!(meta["quality"], "low");
        low += 1;
    }
    assert!(
        (if emulated() { 1 } else { 6 }..=14).contains(&low),
        "low preset is 5 fps: got {low} frames in 2 s"
    );
    let sessions = t.sessions();
    assert_eq!(sessions[0]["kind"], "ws");
    assert_eq!(sessions[0]["quality"], "low");
    assert!(sessions[0]["bytes_sent"].as_u64().unwrap() > 0);
}

#[test]
fn ws_ping_pong_and_status_every_second() {
    let t = TestApp::start_with(|c| c.auto_recording.enabled = true);
    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "ping"}));
    assert_eq!(ws_until(&mut ws, "pong", short()), json!({"type": "pong"}));
    let first = Instant::now();
    let s1 = ws_until(&mut ws, "status", short());
    let s2 = ws_until(&mut ws, "status", short());
    let gap = first.elapsed();
    assert!(
        gap < patience(Duration::from_millis(2600)),
        "two statuses took {gap:?}"
    );
    for s in [&s1, &s2] {
        assert_eq!(s["camera"], "cam0");
        assert!(emulated() || s["fps"].as_f64().unwrap() > 20.0, "{s}");
        assert_eq!(s["recording"], true, "auto recording at boot: {s}");
        assert_eq!(s["viewers"], 1);
        assert_eq!(s["quality"], "medium");
        assert_eq!(s["streaming"], true);
    }
}

#[test]
fn ws_bad_messages_get_errors_and_the_session_stays_open() {
    let t = TestApp::start();
    let mut ws = ws_connect(t.addr, "cam0");
    let cases = [
        (Message::text("{not json"), "bad_json"),
        (Message::text("[1,2,3]"), "bad_message"),
        (Message::text(r#"{"kind": "ping"}"#), "bad_message"),
        (Message::text(r#"{"type": 7}"#), "bad_message"),
        (
            Message::text(r#"{"type": "launch_rocket"}"#),
            "unknown_type",
        ),
        (
            Message::text(r#"{"type": "set_quality", "quality": "ultra"}"#),
            "bad_quality",
        ),
        (Message::text(r#"{"type": "set_quality"}"#), "bad_quality"),
        (Message::binary(vec![1u8, 2, 3]), "bad_message"),
    ];
    for (message, code) in cases {
        ws.send(message.clone()).unwrap();
        let e = ws_until(&mut ws, "error", short());
        assert_eq!(e["code"], code, "for {message:?}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    ws_send(&mut ws, json!({"type": "ping"}));
    ws_until(&mut ws, "pong", short());
    ws_send(&mut ws, json!({"type": "request_frame"}));
    ws_frame(&mut ws, short());
}

#[test]
fn ws_oversize_messages_close_with_1009() {
    let t = TestApp::start();
    for size in [4097, 100_000] {
        let mut ws = ws_connect(t.addr, "cam0");
        ws_send(&mut ws, json!({"type": "ping"}));
        ws_until(&mut ws, "pong", short());
        let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(size));
        ws.send(Message::text(big)).unwrap();
        let (code, reason) = ws_close_code(&mut ws);
        assert_eq!(code, 1009, "{size}-byte message: {reason}");
        assert!(reason.contains("4096"), "{reason}");
    }
    // A message of exactly the limit is fine.
    let mut ws = ws_connect(t.addr, "cam0");
    let pad = 4096 - r#"{"type":"ping","pad":""}"#.len();
    ws.send(Message::text(format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(pad)
    )))
    .unwrap();
    ws_until(&mut ws, "pong", short());
    wait_for(short(), "oversize sessions to be gone", || {
        t.sessions().len() == 1
    });
}

#[test]
fn over_capacity_ws_closes_1013_and_mjpeg_gets_503() {
    let t = TestApp::start_with(|c| c.streaming.max_sessions = 2);
    let mut a = ws_connect(t.addr, "cam0");
    let (_, _, _mjpeg) = open_mjpeg(&t, "");
    ws_until(&mut a, "status", short());
    wait_for(short(), "two sessions", || t.sessions().len() == 2);
    let mut c = ws_connect(t.addr, "cam0");
    let (code, reason) = ws_close_code(&mut c);
    assert_eq!(code, 1013);
    assert!(reason.contains("max 2"), "{reason}");
    let r = get(t.addr, "/api/v1/cameras/cam0/stream.mjpg");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "too_many_sessions")
    );
    // Closing one frees its place.
    drop(a);
    wait_for(short(), "a free place", || t.sessions().len() == 1);
    let mut d = ws_connect(t.addr, "cam0");
    ws_until(&mut d, "status", short());
}

#[test]
fn ws_refuses_plain_requests_and_unknown_cameras() {
    let t = TestApp::start();
    let r = get(t.addr, "/api/v1/cameras/cam0/ws");
    assert_eq!((r.status, r.error_code().as_str()), (400, "not_websocket"));
    match ws_connect_with(t.addr, "cam5", &[]) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected 404, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn stalled_camera_gives_no_frame_with_a_reason_never_a_fabricated_frame() {
    let t = TestApp::start();
    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "subscribe"}));
    ws_frame(&mut ws, short());
    t.faults.stall.store(true, Ordering::Relaxed);
    // Frames in flight may still arrive; then no_frame, and no frame after it.
    let nf = ws_until(&mut ws, "no_frame", patience(Duration::from_secs(10)));
    assert_eq!(nf["reason"], "not_capturing");
    let mut pull = ws_connect(t.addr, "cam0");
    ws_send(&mut pull, json!({"type": "request_frame"}));
    let nf = ws_until(&mut pull, "no_frame", short());
    assert_eq!(nf["reason"], "not_capturing");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet_until {
        if let Ok(Message::Text(t)) = ws.read() {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_ne!(v["type"], "frame", "no frame while the camera is stalled");
        }
    }
    ws.get_ref()
        .set_read_timeout(Some(patience(Duration::from_secs(10))))
        .unwrap();
    t.faults.stall.store(false, Ordering::Relaxed);
    ws_frame(&mut ws, patience(Duration::from_secs(15)));
}

#[test]
fn streaming_disabled_gives_ws_no_frame_and_mjpeg_503() {
    let t = TestApp::start();
    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "subscribe"}));
    ws_frame(&mut ws, short());
    let r = request(
        t.addr,
        "PATCH",
        "/api/v1/settings",
        &[],
        br#"{"streaming": {"enabled": false}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let nf = ws_until(&mut ws, "no_frame", short());
    assert_eq!(nf["reason"], "streaming_disabled");
    ws_send(&mut ws, json!({"type": "request_frame"}));
    assert_eq!(
        ws_until(&mut ws, "no_frame", short())["reason"],
        "streaming_disabled"
    );
    let r = get(t.addr, "/api/v1/cameras/cam0/stream.mjpg");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "streaming_disabled")
    );
    assert_eq!(t.health()["streaming"]["enabled"], false);
    let r = request(
        t.addr,
        "PATCH",
        "/api/v1/settings",
        &[],
        br#"{"streaming": {"enabled": true}}"#,
    );
    assert_eq!(r.status, 200);
    ws_frame(&mut ws, short());
}

/// Records until two 2 s clips exist (the first one closed), then stops; returns the list.
fn record_clips(t: &TestApp) -> Vec<Value> {
    let start = post(t.addr, "/api/v1/cameras/cam0/recording/start", "");
    assert_eq!(start.status, 200);
    wait_for(patience(Duration::from_secs(15)), "two clips", || {
        get(t.addr, "/api/v1/clips")
            .json()
            .as_array()
            .unwrap()
            .len()
            >= 2
    });
    let stop = post(t.addr, "/api/v1/cameras/cam0/recording/stop", "");
    assert_eq!(stop.status, 200);
    get(t.addr, "/api/v1/clips")
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn clips_are_listed_newest_first_and_downloaded_with_ranges() {
    let t = TestApp::start();
    let clips = record_clips(&t);
    assert!(clips.len() >= 2, "{clips:?}");
    let starts: Vec<&str> = clips
        .iter()
        .map(|c| c["started_at"].as_str().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] > w[1]),
        "newest first: {starts:?}"
    );
    for c in &clips {
        for key in [
            "camera_id",
            "filename",
            "started_at",
            "duration_s",
            "file_size",
            "frame_count",
            "recording_type",
            "complete",
        ] {
            assert!(c.get(key).is_some(), "{key} in {c}");
        }
        assert_eq!(c["recording_type"], "manual");
        assert_eq!(c["complete"], true);
    }
    assert_eq!(
        get(t.addr, "/api/v1/clips?camera=cam0")
            .json()
            .as_array()
            .unwrap()
            .len(),
        clips.len()
    );
    let r = get(t.addr, "/api/v1/clips?camera=cam4");
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    let r = get(t.addr, "/api/v1/clips?camera=..%2Fetc");
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_camera"));

    let clip = &clips[0];
    let name = clip["filename"].as_str().unwrap();
    let path = format!("/api/v1/clips/cam0/{name}");
    let on_disk = std::fs::read(t.dir.path().join("rolling/cam0").join(name)).unwrap();
    assert_eq!(clip["file_size"], on_disk.len());
    let whole = get(t.addr, &path);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-type"), Some("video/mp4"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.body, on_disk);
    assert_eq!(&whole.body[4..8], b"ftyp");

    let len = on_disk.len();
    let ranged = |range: &str| request(t.addr, "GET", &path, &[("Range", range)], b"");
    let r = ranged("bytes=100-1099");
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes 100-1099/{len}")
    );
    assert_eq!(r.header("content-length").unwrap(), "1000");
    assert_eq!(r.body, &on_disk[100..1100]);
    let r = ranged("bytes=-64");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &on_disk[len - 64..]);
    let r = ranged(&format!("bytes={}-", len - 10));
    assert_eq!(r.body, &on_disk[len - 10..]);
    let r = ranged(&format!("bytes=500-{}", len * 2));
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes 500-{}/{len}", len - 1)
    );
    assert_eq!(r.body, &on_disk[500..]);
    let r = ranged(&format!("bytes={len}-"));
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range").unwrap(), format!("bytes */{len}"));
    // Multi-range is not supported: the whole file, as RFC 9110 allows.
    let r = ranged("bytes=0-1,5-6");
    assert_eq!((r.status, r.body.len()), (200, len));
    let head = request(t.addr, "HEAD", &path, &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").unwrap(), len.to_string());
    let download = get(t.addr, &format!("{path}?download=1"));
    assert!(download
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
}

#[test]
fn large_clips_stream_from_disk_with_ranges_past_4_gib() {
    use benchcam::record::index::{clip_file_name, ClipRecord, RecordingType};
    let t = TestApp::start();
    // A sparse 5 GiB "clip" known to the index, with a marker past the 4 GiB mark.
    let size: u64 = 5 << 30;
    let started_us = 1_795_520_400_000_000;
    let name = clip_file_name(started_us, "cam0", 0);
    let dir = t.dir.path().join("rolling/cam0");
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::File::create(dir.join(&name)).unwrap();
    file.set_len(size).unwrap();
    let marker_at = (4u64 << 30) + 12_345;
    std::os::unix::fs::FileExt::write_all_at(&file, b"benchcam-marker", marker_at).unwrap();
    drop(file);
    t.app
        .service
        .storage
        .index
        .upsert(ClipRecord {
            camera: "cam0".into(),
            file: name.clone(),
            recording_type: RecordingType::Manual,
            started_us,
            first_mono_us: 0,
            first_frame: 0,
            last_frame: 0,
            frame_count: 1,
            duration_us: 1_000_000,
            size,
            complete: true,
            seq: 0,
            boot_id: String::new(),
        })
        .unwrap();
    let path = format!("/api/v1/clips/cam0/{name}");
    let range = format!("bytes={marker_at}-{}", marker_at + 14);
    let r = request(t.addr, "GET", &path, &[("Range", &range)], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"benchcam-marker");
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes {marker_at}-{}/{size}", marker_at + 14)
    );

    // The whole file streams: read 256 MiB of it while memory stays flat.
    let rss = || benchcam::live::resident_bytes().unwrap() as f64 / (1 << 20) as f64;
    let before = rss();
    let mut stream = TcpStream::connect(t.addr).unwrap();
    // CI ran this beside the TCG VM bench twice and the stream gave no byte for 30 s at
    // 38 MB while the server answered other requests (not reproduced here in 22 runs
    // beside the VM): wait longer, and say so if it stalls anyway.
    stream
        .set_read_timeout(Some(patience(Duration::from_secs(120))))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let (status, headers) = read_head(&mut reader);
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-length") && v == &size.to_string()));
    let mut buf = vec![0u8; 1 << 16];
    let mut got: u64 = 0;
    while got < 256 << 20 {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                // A stalled stream, or a stalled server? Ask it something else.
                let (tx, rx) = std::sync::mpsc::channel();
                let addr = t.addr;
                std::thread::spawn(move || {
                    let _ = tx.send(get(addr, "/api/v1/health").status);
                });
                let meanwhile = match rx.recv_timeout(Duration::from_secs(5)) {
                    Ok(status) => format!("answered /api/v1/health with {status}"),
                    Err(_) => "did not answer /api/v1/health in 5 s either".to_string(),
                };
                panic!("the download stalled at byte {got} ({e}); the server {meanwhile}");
            }
        };
        assert!(n > 0, "stream ended early at {got}");
        got += n as u64;
    }
    let after = rss();
    // Under qemu-user, resident memory includes the emulator's translation cache.
    assert!(
        emulated() || after - before < 64.0,
        "memory grew from {before:.1} to {after:.1} MiB while streaming 256 MiB"
    );
}

#[test]
fn clip_paths_never_traverse() {
    let t = TestApp::start();
    let clips = record_clips(&t);
    let name = clips[0]["filename"].as_str().unwrap().to_string();
    // Files that exist in the data dir but are not clips of the index.
    std::fs::write(t.dir.path().join("rolling/cam0/stray.mp4"), b"not a clip").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", t.dir.path().join("rolling/cam0/link.mp4")).unwrap();
    for (path, status) in [
        ("/api/v1/clips/cam0/../../settings.toml", 400),
        ("/api/v1/clips/cam0/../../index/journal.bin", 400),
        ("/api/v1/clips/../cam0/x.mp4", 400),
        ("/api/v1/clips/cam0/%2e%2e%2f%2e%2e%2fsettings.toml", 400),
        ("/api/v1/clips/cam0/..%2F..%2Findex%2Fjournal.bin", 400),
        ("/api/v1/clips/%2e%2e/index", 400),
        ("/api/v1/clips/cam0/%2e%2e", 400),
        ("/api/v1/clips/cam0/.hidden.mp4", 400),
        ("/api/v1/clips/cam0/..\\..\\settings.toml", 400),
        ("/api/v1/clips/cam0/stray.mp4", 404),
        ("/api/v1/clips/cam0/link.mp4", 404),
        ("/api/v1/clips/cam0/nope.mp4", 404),
        ("/api/v1/clips/cam1/nope.mp4", 404),
        ("/api/v1/clips/index/journal.bin", 404),
        ("/api/v1/clips/etc/passwd", 404),
    ] {
        let r = get(t.addr, path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
    }
    // An encoded form of a real name is refused too: names are matched exactly.
    let encoded = name.replace('.', "%2E");
    assert_eq!(
        get(t.addr, &format!("/api/v1/clips/cam0/{encoded}")).status,
        400
    );
    assert_eq!(
        get(t.addr, &format!("/api/v1/clips/cam0/{name}")).status,
        200
    );
}

#[test]
fn streaming_sessions_list_live_viewers_and_forget_closed_ones() {
    let t = TestApp::start();
    assert!(t.sessions().is_empty());
    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "subscribe"}));
    for _ in 0..10 {
        ws_frame(&mut ws, short());
    }
    let (_, _, mut mjpeg) = open_mjpeg(&t, "?quality=low");
    let mut first = String::new();
    mjpeg.read_line(&mut first).unwrap();
    let sessions = t.sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let ws_session = sessions
        .iter()
        .find(|s| s["kind"] == "ws")
        .expect("ws session");
    let mjpeg_session = sessions
        .iter()
        .find(|s| s["kind"] == "mjpeg")
        .expect("mjpeg session");
    assert_eq!(mjpeg_session["quality"], "low");
    assert_eq!(ws_session["quality"], "medium");
    assert!(ws_session["client"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(ws_session["bytes_sent"].as_u64().unwrap() > 1000);
    assert!(
        emulated() || ws_session["fps"].as_f64().unwrap() > 3.0,
        "{ws_session}"
    );
    assert!(ws_session["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(ws_session["id"].as_u64().is_some());
    assert_eq!(t.health()["streaming"]["sessions"], 2);
    drop(ws);
    drop(mjpeg);
    wait_for(short(), "sessions to end with their connections", || {
        t.sessions().is_empty()
    });
}

#[test]
fn settings_are_validated_persisted_applied_and_survive_a_restart() {
    let t = TestApp::start();
    let s = get(t.addr, "/api/v1/settings").json();
    assert_eq!(s["streaming"]["default_quality"], "medium");
    assert_eq!(s["recording"]["clip_length"], "2s");
    let patch = |body: &str| request(t.addr, "PATCH", "/api/v1/settings", &[], body.as_bytes());
    let r = patch(
        r#"{"recording": {"clip_length": "10s", "rolling_clips_count": 5, "max_rolling_size": "50MB", "min_free_space": "1MB"},
                      "streaming": {"default_quality": "low"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["recording"]["clip_length"], "10s");
    assert_eq!(r.json()["recording"]["max_rolling_size"], "50MB");
    let saved = std::fs::read_to_string(t.dir.path().join("settings.toml")).unwrap();
    assert!(saved.contains("clip_length = \"10s\""), "{saved}");
    assert!(saved.contains("default_quality = \"low\""), "{saved}");
    // Applied live: new viewers get the new default quality.
    let mut ws = ws_connect(t.addr, "cam0");
    assert_eq!(ws_until(&mut ws, "status", short())["quality"], "low");
    drop(ws);

    for (body, code) in [
        (r#"{"recording": {"clip_length": "1s"}}"#, "invalid_setting"),
        (r#"{"recording": {"clip_length": 5}}"#, "invalid_setting"),
        (
            r#"{"recording": {"rolling_clips_count": 1}}"#,
            "invalid_setting",
        ),
        (
            r#"{"recording": {"max_rolling_size": "lots"}}"#,
            "invalid_setting",
        ),
        (
            r#"{"streaming": {"default_quality": "ultra"}}"#,
            "invalid_setting",
        ),
        (r#"{"streaming": {"enabled": "yes"}}"#, "invalid_setting"),
        (
            r#"{"service": {"access_token": "0123456789"}}"#,
            "invalid_setting",
        ),
        (r#"{"camera": {"width": 640}}"#, "invalid_setting"),
        (r#"{"recording": {"bitrate_kbps": 100}}"#, "invalid_setting"),
        (r#"{"recording": 5}"#, "invalid_setting"),
        ("[]", "invalid_setting"),
        ("{oops", "bad_json"),
    ] {
        let r = patch(body);
        assert_eq!((r.status, r.error_code().as_str()), (400, code), "{body}");
    }
    let big = format!(
        r#"{{"recording": {{"clip_length": "{}"}}}}"#,
        "9".repeat(20_000)
    );
    assert_eq!(patch(&big).status, 413);
    // Refused patches changed nothing.
    assert_eq!(
        get(t.addr, "/api/v1/settings").json()["recording"]["clip_length"],
        "10s"
    );

    let dir = t.stop();
    let config = test_config(dir.path());
    let t2 = TestApp::start_in(dir, config);
    let s = get(t2.addr, "/api/v1/settings").json();
    assert_eq!(
        s["recording"]["clip_length"], "10s",
        "settings.toml overrides the config"
    );
    assert_eq!(s["recording"]["rolling_clips_count"], 5);
    assert_eq!(s["streaming"]["default_quality"], "low");
}

/// The value of the sample `line` (name with labels) in a metrics text.
fn metric(text: &str, line: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no sample {line}"))
}

#[test]
fn metrics_are_prometheus_text_with_camera_subscriber_and_live_figures() {
    let t = TestApp::start_with(|c| c.auto_recording.enabled = true);
    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "subscribe"}));
    for _ in 0..5 {
        ws_frame(&mut ws, short());
    }
    let r = get(t.addr, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = l.rsplit_once(' ').unwrap();
        assert!(name.starts_with("benchcam_"), "{l}");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {l}"));
    }
    assert!(metric(&text, "benchcam_frames_captured_total{camera=\"cam0\"}") > 0.0);
    assert_eq!(
        metric(
            &text,
            "benchcam_frames_dropped_total{camera=\"cam0\",reason=\"ring_full\"}"
        ),
        0.0
    );
    assert_eq!(metric(&text, "benchcam_recording{camera=\"cam0\"}"), 1.0);
    assert!(
        metric(
            &text,
            "benchcam_subscriber_frames_delivered_total{camera=\"cam0\",subscriber=\"recorder\"}"
        ) > 0.0
    );
    assert!(metric(&text, "benchcam_subscriber_frames_delivered_total{camera=\"cam0\",subscriber=\"live-medium\"}") > 0.0);
    assert_eq!(
        metric(
            &text,
            "benchcam_recorder_frames_dropped_total{camera=\"cam0\"}"
        ),
        0.0
    );
    assert!(metric(&text, "benchcam_storage_free_bytes") > 0.0);
    assert_eq!(metric(&text, "benchcam_live_sessions{kind=\"ws\"}"), 1.0);
    assert!(metric(&text, "benchcam_live_bytes_sent_total") > 0.0);
    assert!(
        metric(
            &text,
            "benchcam_live_frames_encoded_total{camera=\"cam0\",quality=\"medium\"}"
        ) >= 5.0
    );
    assert!(metric(&text, "benchcam_process_resident_memory_bytes") > 0.0);
    assert!(text.contains("# TYPE benchcam_frames_captured_total counter"));
}

const TOKEN: &str = "bench-token-1234";

#[test]
fn access_token_protects_writes_and_login_sets_a_strict_cookie() {
    let t = TestApp::start_with(|c| c.service.access_token = TOKEN.into());
    let rescan = "/api/v1/cameras/rescan";
    let r = post(t.addr, rescan, "");
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));
    let wrong = request(
        t.addr,
        "POST",
        rescan,
        &[("Authorization", "Bearer nope-nope-nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let basic = request(t.addr, "POST", rescan, &[("Authorization", TOKEN)], b"");
    assert_eq!(basic.status, 401, "the token needs the Bearer scheme");
    let bearer = format!("Bearer {TOKEN}");
    let ok = request(t.addr, "POST", rescan, &[("Authorization", &bearer)], b"");
    assert_eq!(ok.status, 200, "{}", ok.text());
    t.wait_for_frames();
    let patch = request(t.addr, "PATCH", "/api/v1/settings", &[], b"{}");
    assert_eq!(patch.status, 401);
    // Reads stay open without protect_reads.
    assert_eq!(get(t.addr, "/api/v1/health").status, 200);
    assert_eq!(get(t.addr, "/api/v1/cameras/cam0/snapshot.jpg").status, 200);

    let r = post(t.addr, "/api/v1/login", r#"{"token": "guess-guess"}"#);
    assert_eq!((r.status, r.error_code().as_str()), (401, "bad_token"));
    assert!(r.header("set-cookie").is_none());
    let r = post(t.addr, "/api/v1/login", r#"{"nothing": 1}"#);
    assert_eq!(r.status, 400);
    let r = post(
        t.addr,
        "/api/v1/login",
        &format!(r#"{{"token": "{TOKEN}"}}"#),
    );
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is not the token itself"
    );
    let pair = cookie.split(';').next().unwrap();
    let with_cookie = request(
        t.addr,
        "POST",
        "/api/v1/cameras/cam0/recording/start",
        &[("Cookie", pair)],
        b"",
    );
    assert_eq!(with_cookie.status, 200);
    let forged = request(
        t.addr,
        "POST",
        "/api/v1/cameras/cam0/recording/stop",
        &[("Cookie", "benchcam_session=00ff")],
        b"",
    );
    assert_eq!(forged.status, 401);
    let stop = request(
        t.addr,
        "POST",
        "/api/v1/cameras/cam0/recording/stop",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(stop.status, 200);
}

#[test]
fn protect_reads_closes_the_api_but_not_the_page() {
    let t = TestApp::start_with(|c| {
        c.service.access_token = TOKEN.into();
        c.service.protect_reads = true;
    });
    for path in ["/", "/app.js", "/style.css"] {
        assert_eq!(get(t.addr, path).status, 200, "{path}");
    }
    for path in [
        "/api/v1/health",
        "/api/v1/cameras",
        "/api/v1/clips",
        "/api/v1/settings",
        "/api/v1/streaming/sessions",
        "/api/v1/cameras/cam0/snapshot.jpg",
        "/api/v1/cameras/cam0/stream.mjpg",
        "/metrics",
    ] {
        let r = get(t.addr, path);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (401, "unauthorized"),
            "{path}"
        );
    }
    match ws_connect_with(t.addr, "cam0", &[]) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let bearer = format!("Bearer {TOKEN}");
    let r = request(
        t.addr,
        "GET",
        "/api/v1/health",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200);
    let login = post(
        t.addr,
        "/api/v1/login",
        &format!(r#"{{"token": "{TOKEN}"}}"#),
    );
    let pair = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut ws =
        ws_connect_with(t.addr, "cam0", &[("Cookie", &pair)]).expect("cookie opens the ws");
    ws_send(&mut ws, json!({"type": "request_frame"}));
    ws_frame(&mut ws, short());
}

/// A client connection with a small receive buffer that never reads.
fn stalled_mjpeg_viewer(t: &TestApp) -> TcpStream {
    let stream = common::net::connect_from(1, t.addr, true).expect("connect");
    let mut s = &stream;
    s.write_all(b"GET /api/v1/cameras/cam0/stream.mjpg?quality=high HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stream
}

#[test]
fn stalled_viewer_and_16_ws_viewers_cost_the_recorder_no_frame_and_memory_stays_bounded() {
    let t = TestApp::start_with(|c| c.auto_recording.enabled = true);
    let stalled = stalled_mjpeg_viewer(&t);
    wait_for(short(), "the stalled viewer's session", || {
        t.sessions().len() == 1
    });
    let rss_at = || benchcam::live::resident_bytes().unwrap() as f64 / (1 << 20) as f64;

    let addr = t.addr;
    let viewers: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let mut ws = ws_connect(addr, "cam0");
                let quality = if i % 2 == 0 { "low" } else { "medium" };
                ws_send(&mut ws, json!({"type": "set_quality", "quality": quality}));
                ws_send(&mut ws, json!({"type": "subscribe"}));
                let started = Instant::now();
                let mut frames = 0;
                while started.elapsed() < Duration::from_secs(8) {
                    let (meta, jpeg) = ws_frame(&mut ws, short());
                    assert_eq!(meta["size"], jpeg.len());
                    frames += 1;
                }
                frames
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let rss_early = rss_at();
    let stalled_bytes_early = t
        .sessions()
        .iter()
        .find(|s| s["kind"] == "mjpeg")
        .map(|s| s["bytes_sent"].as_u64().unwrap())
        .expect("the stalled viewer is still a session");
    let frames: Vec<u32> = viewers.into_iter().map(|v| v.join().unwrap()).collect();
    let rss_late = rss_at();
    for (i, n) in frames.iter().enumerate() {
        // low is 5 fps, medium 15 fps, for 8 s.
        let least = match (emulated(), i % 2) {
            (true, _) => 2,
            (false, 0) => 15,
            (false, _) => 40,
        };
        assert!(*n >= least, "viewer {i} got only {n} frames: {frames:?}");
    }
    let health = t.health();
    let cam = &health["cameras"][0];
    assert_eq!(cam["recording"], true);
    // Under qemu the H.264 encoder itself cannot keep up with 30 fps, viewers or not;
    // the recorder's immunity to viewers is judged on the host.
    if !emulated() {
        assert_eq!(cam["recorder_frames_dropped"], 0, "{health}");
        // No frame lost to viewers holding ring slots. (The pattern's own "driver" skips
        // a slot when its thread wakes a whole interval late on a loaded machine: that
        // is counted too, but it is not the viewers' doing.)
        assert_eq!(
            cam["frames_dropped"].as_u64().unwrap()
                - cam["driver_frames_dropped"].as_u64().unwrap(),
            0,
            "{health}"
        );
    }
    // Under qemu-user, resident memory includes the emulator's translation cache.
    if !emulated() {
        assert!(
            rss_late - rss_early < 24.0,
            "resident memory grew from {rss_early:.1} to {rss_late:.1} MiB while viewers watched"
        );
        assert!(rss_late < 300.0, "resident memory {rss_late:.1} MiB");
    }

    let metrics = get(t.addr, "/metrics").text();
    let captured = metric(&metrics, "benchcam_frames_captured_total{camera=\"cam0\"}");
    let medium = metric(
        &metrics,
        "benchcam_live_frames_encoded_total{camera=\"cam0\",quality=\"medium\"}",
    );
    assert!(
        medium <= captured / 2.0 + 10.0,
        "medium (15 fps) encodes once per frame for 8 viewers: {medium} of {captured}"
    );
    // The stalled viewer's frames are replaced in its one-frame mailbox, not queued.
    let skips = metric(
        &metrics,
        "benchcam_live_viewer_skips_total{camera=\"cam0\",quality=\"high\"}",
    );
    assert!(skips > 10.0, "stalled viewer skipped {skips} frames");
    let stalled_bytes_late = t
        .sessions()
        .iter()
        .find(|s| s["kind"] == "mjpeg")
        .map(|s| s["bytes_sent"].as_u64().unwrap());
    if let Some(late) = stalled_bytes_late {
        assert!(
            late - stalled_bytes_early < 2 << 20,
            "a stalled viewer is not sent megabytes: {stalled_bytes_early} then {late}"
        );
    }
    // And it is dropped once its socket has not drained for the stall limit.
    wait_for(
        patience(Duration::from_secs(45)),
        "the stalled viewer to be dropped",
        || !t.sessions().iter().any(|s| s["kind"] == "mjpeg"),
    );
    drop(stalled);
    if !emulated() {
        assert_eq!(t.health()["cameras"][0]["recorder_frames_dropped"], 0);
    }
}

#[test]
fn first_boot_setup_problems_show_in_health() {
    let t = TestApp::start();
    assert_eq!(t.health()["status"], "ok", "{}", t.health());
    std::fs::write(
        t.dir.path().join("setup-problems.txt"),
        "wifi_psk: 5 characters, WPA2 needs 8 to 63\nunknown key `colour`\n",
    )
    .unwrap();
    let h = t.health();
    assert_eq!(h["status"], "degraded");
    let problems: Vec<&str> = h["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems.contains(&"first-boot setup: wifi_psk: 5 characters, WPA2 needs 8 to 63"),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"first-boot setup: unknown key `colour`"),
        "{problems:?}"
    );
    t.stop();
}
