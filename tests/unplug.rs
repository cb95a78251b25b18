//! A camera unplugged while it records, and plugged back (issue 8, in-process with the
//! test-pattern camera's unplug switch; tests/vm proves the same against vivid):
//! within 1 s the camera is `lost`, health says so naming it, the error LED is on,
//! WebSocket viewers get `no_frame` `camera_error`, MJPEG viewers get the "no signal"
//! picture about once a second, and the open clip is closed and plays; after the replug
//! it captures again under the same id, records into a new clip, and the running
//! experiment has the gap as `camera_lost` / `camera_restored` events. An experiment
//! stopped while the camera is gone is archived at once.

mod common;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use benchcam::gpio::BackendChoice;
use common::*;
use serde_json::{json, Value};

fn led(t: &TestApp, name: &str) -> bool {
    get(t.addr, "/api/v1/gpio").json()["leds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap()["on"]
        .as_bool()
        .unwrap()
}

/// Starts experiment `id` over the API and waits until its camera has recorded some frames.
fn start_experiment(t: &TestApp, id: &str, method: &str) {
    let body = json!({"experiment_id": id, "method": method}).to_string();
    let r = post(t.addr, "/api/v1/experiments", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    wait_for(patience(Duration::from_secs(10)), "recording", || {
        t.health()["cameras"][0]["frames_recorded"]
            .as_u64()
            .unwrap_or(0)
            > 20
    });
}

/// Reads multipart parts from a raw (chunked) MJPEG response until `until`; returns
/// (real frames, "no signal" placeholders) seen, and the time of the first placeholder.
fn count_parts(reader: &mut impl BufRead, until: Instant) -> (u32, u32, Option<Instant>) {
    let (mut frames, mut placeholders, mut first) = (0, 0, None);
    let mut line = String::new();
    while Instant::now() < until {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            // The read timeout: nothing came for a while; look at the clock again.
            Err(_) => continue,
        }
        if line.starts_with("X-No-Signal") {
            placeholders += 1;
            first.get_or_insert_with(Instant::now);
        } else if line.starts_with("X-Frame-Number") {
            frames += 1;
        }
    }
    (frames, placeholders, first)
}

#[test]
fn unplug_and_replug_while_recording_an_experiment() {
    let t = TestApp::start_with(|c| {
        c.gpio.backend = BackendChoice::Sim;
        c.recording.clip_length = benchcam::config::HumanDuration(Duration::from_secs(30));
    });
    start_experiment(&t, "unplug1", "unplug test");
    let clip_before = t.health()["cameras"][0]["current_clip"]
        .as_str()
        .unwrap()
        .to_string();

    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "subscribe"}));
    ws_frame(&mut ws, patience(Duration::from_secs(5)));
    let mut mjpeg = TcpStream::connect(t.addr).unwrap();
    mjpeg
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    write!(
        mjpeg,
        "GET /api/v1/cameras/cam0/stream.mjpg?quality=low HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut mjpeg = BufReader::new(mjpeg);
    let (frames, _, _) = count_parts(&mut mjpeg, Instant::now() + Duration::from_secs(1));
    assert!(frames > 0, "MJPEG frames before the unplug");

    // Unplug.
    t.faults.unplugged.store(true, Ordering::Relaxed);
    let unplugged = Instant::now();
    let limit = patience(Duration::from_secs(1));
    let mut health = Value::Null;
    while unplugged.elapsed() < limit * 3 {
        health = t.health();
        if health["cameras"][0]["state"] == "lost" && led(&t, "error") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let noticed = unplugged.elapsed();
    assert_eq!(health["cameras"][0]["state"], "lost", "{health}");
    assert!(noticed <= limit, "lost after {noticed:?}");
    assert_eq!(health["status"], "error");
    let problems = health["problems"].to_string();
    assert!(
        problems.contains("cam0") && problems.contains("lost"),
        "{problems}"
    );
    let nf = ws_until(&mut ws, "no_frame", limit * 2);
    assert_eq!(nf["reason"], "camera_error");
    // MJPEG: the placeholder about once a second, no camera frames.
    let (frames, placeholders, first) =
        count_parts(&mut mjpeg, Instant::now() + Duration::from_millis(3500));
    assert!(placeholders >= 2, "{placeholders} placeholders in 3.5 s");
    assert!(frames <= 1, "{frames} camera frames while unplugged");
    assert!(first.is_some());
    // The clip open at the unplug is closed: complete in the index, not current.
    wait_for(patience(Duration::from_secs(3)), "clip closed", || {
        let clips = get(t.addr, "/api/v1/clips?camera=cam0").json();
        clips
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["filename"] == clip_before.as_str() && c["complete"] == true)
            && t.health()["cameras"][0]["current_clip"].is_null()
    });
    let path = t.dir.path().join("rolling/cam0").join(&clip_before);
    if support::have_ffmpeg() {
        support::full_decode(&path).unwrap();
    }

    std::thread::sleep(Duration::from_secs(1));
    // Replug.
    t.faults.unplugged.store(false, Ordering::Relaxed);
    let replugged = Instant::now();
    wait_for(patience(Duration::from_secs(2)), "capturing again", || {
        t.health()["cameras"][0]["state"] == "capturing"
    });
    let back = replugged.elapsed();
    wait_for(patience(Duration::from_secs(5)), "a new clip", || {
        t.health()["cameras"][0]["current_clip"]
            .as_str()
            .is_some_and(|c| c != clip_before)
    });
    let health = t.health();
    assert_eq!(health["cameras"][0]["id"], "cam0");
    assert!(health["cameras"][0]["reconnects"].as_u64().unwrap() >= 1);
    ws_frame(&mut ws, patience(Duration::from_secs(5)));
    let (frames, _, _) = count_parts(&mut mjpeg, Instant::now() + Duration::from_secs(2));
    assert!(frames > 0, "MJPEG frames after the replug");
    println!("unplug noticed after {noticed:?}; capturing again {back:?} after the replug");

    std::thread::sleep(Duration::from_millis(500));
    let r = post(t.addr, "/api/v1/experiments/unplug1/stop", "{}");
    assert_eq!(r.status, 200, "{}", r.text());
    let manifest = r.json();
    let kinds: Vec<&str> = manifest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["start", "camera_lost", "camera_restored", "stop"],
        "{manifest}"
    );
    let mut body = Vec::new();
    let _ = mjpeg
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(10)));
    let _ = mjpeg.read_to_end(&mut body);
}

/// An experiment stopped while its camera is unplugged is archived at once with what was
/// recorded: the clip cut the stop asks for has nothing to wait for while no frames come.
#[test]
fn an_experiment_stopped_while_its_camera_is_unplugged_archives_at_once() {
    let t = TestApp::start_with(|c| {
        c.auto_recording.post_roll = benchcam::config::HumanDuration(Duration::ZERO);
    });
    start_experiment(&t, "gone", "stopped while unplugged");
    t.faults.unplugged.store(true, Ordering::Relaxed);
    wait_for(patience(Duration::from_secs(3)), "the camera lost", || {
        t.health()["cameras"][0]["state"] == "lost"
    });
    let asked = Instant::now();
    let r = post(t.addr, "/api/v1/experiments/gone/stop", "{}");
    let took = asked.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    // The recorder gives up on a cut only after 10 s without it.
    assert!(
        took < patience(Duration::from_secs(3)),
        "the stop took {took:?}"
    );
    let manifest = r.json();
    assert!(
        manifest["clips"][0]["frame_count"].as_u64().unwrap() > 20,
        "{manifest}"
    );
}
