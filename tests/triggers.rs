//! Experiments over HTTP with simulated GPIO (DESIGN §7): arm, trigger, markers, LEDs,
//! debounce, pulse mode, error statuses, and a crash during archiving.

mod common;
mod support;

use std::time::{Duration, Instant};

use benchcam::config::HumanDuration;
use benchcam::gpio::{BackendChoice, InputConfig, InputMode, InputRole};
use common::*;
use serde_json::Value;

fn inputs(mode: InputMode, debounce_ms: u64) -> Vec<InputConfig> {
    let input = |name: &str, pin, role, mode| InputConfig {
        name: name.into(),
        pin,
        role,
        mode,
        active_low: false,
        pull: None,
        debounce: HumanDuration(Duration::from_millis(debounce_ms)),
    };
    vec![
        input("experiment", 23, InputRole::Experiment, Some(mode)),
        input("marker", 24, InputRole::Marker, None),
    ]
}

fn start(mode: InputMode, debounce_ms: u64) -> TestApp {
    TestApp::start_with(|c| {
        c.auto_recording.enabled = true;
        c.auto_recording.start_on_boot = true;
        c.auto_recording.pre_roll = HumanDuration(Duration::from_secs(1));
        c.auto_recording.post_roll = HumanDuration(Duration::from_millis(500));
        c.gpio.backend = BackendChoice::Sim;
        c.gpio.inputs = Some(inputs(mode, debounce_ms));
    })
}

fn set(t: &TestApp, input: &str, level: bool) {
    let r = post(
        t.addr,
        &format!("/api/v1/gpio/sim/{input}"),
        &format!("{{\"level\": {level}}}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn gpio(t: &TestApp) -> Value {
    get(t.addr, "/api/v1/gpio").json()
}

fn led(t: &TestApp, name: &str) -> bool {
    gpio(t)["leds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap()["on"]
        .as_bool()
        .unwrap()
}

fn active(t: &TestApp) -> Option<Value> {
    get(t.addr, "/api/v1/experiments")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state"] == "running" || e["state"] == "armed")
        .cloned()
}

fn wait_manifest(t: &TestApp, id: &str) -> Value {
    let mut manifest = Value::Null;
    wait_for(patience(Duration::from_secs(30)), "the archive", || {
        let r = get(t.addr, &format!("/api/v1/experiments/{id}"));
        manifest = r.json();
        r.status == 200 && manifest.get("files").is_some()
    });
    manifest
}

#[test]
fn armed_experiment_runs_from_trigger_edge_to_edge_and_archives() {
    let t = start(InputMode::Level, 20);
    std::thread::sleep(Duration::from_secs(2)); // pre-roll material
    let r = post(
        t.addr,
        "/api/v1/experiments",
        r#"{"experiment_id": "trial-7", "method": "maze", "arm": true}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(active(&t).unwrap()["state"], "armed");

    let edge_at = benchcam::clock::monotonic_now_us();
    set(&t, "experiment", true);
    // Poll tightly: the time until the API shows the experiment running is the
    // figure (it includes the 20 ms debounce, which holds every edge back by design).
    let deadline = Instant::now() + patience(Duration::from_secs(5));
    while !active(&t).is_some_and(|e| e["state"] == "running") {
        assert!(
            Instant::now() < deadline,
            "the trigger did not start the experiment"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let latency_ms = (benchcam::clock::monotonic_now_us() - edge_at) as f64 / 1000.0;
    eprintln!(
        "trigger edge -> experiment running seen by the API: {latency_ms:.1} ms (debounce 20 ms)"
    );
    wait_for(
        patience(Duration::from_secs(3)),
        "the recording LED",
        || led(&t, "recording"),
    );

    // Two marker pulses, each longer than the debounce.
    let mut marker_times = Vec::new();
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(400));
        marker_times.push(benchcam::clock::monotonic_now_us());
        set(&t, "marker", true);
        std::thread::sleep(Duration::from_millis(100));
        set(&t, "marker", false);
    }
    std::thread::sleep(Duration::from_millis(800));
    set(&t, "experiment", false);
    let manifest = wait_manifest(&t, "trial-7");
    let folder = t.dir.path().join("experiments/trial-7");

    assert_eq!(manifest["method"], "maze");
    let events = manifest["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["arm", "start", "marker", "marker", "stop"],
        "{events:#?}"
    );
    for (e, sent) in events
        .iter()
        .filter(|e| e["kind"] == "marker")
        .zip(&marker_times)
    {
        assert_eq!(e["source"], "gpio:marker");
        let at = e["monotonic_us"].as_u64().unwrap();
        eprintln!(
            "marker event stamped {} µs after the test sent the edge",
            at.saturating_sub(*sent)
        );
        // The edge is stamped when the sim pin changed: after the request was sent.
        assert!(
            at >= *sent && at - sent < 200_000,
            "marker stamped {} µs after send",
            at - sent
        );
        let nearest = &e["nearest_frame"]["cam0"];
        let number = nearest["frame_number"].as_u64().unwrap();
        let offset = nearest["offset_us"].as_i64().unwrap();
        eprintln!("marker -> nearest frame offset {offset} µs");
        // It is the archived frame captured closest to the edge (the pattern's stamps
        // jitter by up to 10 ms like a driver's, so the gap around the edge sets the bound).
        let frames = support::experiment_frames(&folder);
        let (closest, closest_mono) = *frames
            .iter()
            .min_by_key(|(_, mono)| (mono - at as i64).abs())
            .unwrap();
        assert_eq!(number, closest, "offset {offset} µs");
        assert_eq!(closest_mono - at as i64, offset);
        let before = frames
            .iter()
            .filter(|f| f.1 <= at as i64)
            .map(|f| f.1)
            .max();
        let after = frames.iter().filter(|f| f.1 > at as i64).map(|f| f.1).min();
        if let (Some(b), Some(a)) = (before, after) {
            assert!(
                offset.abs() <= (a - b) / 2 + 1,
                "offset {offset} µs in a {} µs gap",
                a - b
            );
        }
    }
    for f in manifest["files"].as_array().unwrap() {
        let path = folder.join(f["name"].as_str().unwrap());
        assert_eq!(
            benchcam::experiment::sha256_file(&path).unwrap(),
            f["sha256"].as_str().unwrap()
        );
        // Every listed file downloads through the API.
        let r = get(
            t.addr,
            &format!(
                "/api/v1/experiments/trial-7/files/{}",
                f["name"].as_str().unwrap()
            ),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len() as u64, f["size"].as_u64().unwrap());
    }
    // The window [start - pre_roll, stop + post_roll] is covered by the frames' own times.
    let from = manifest["window"]["from_wall_us"].as_i64().unwrap();
    let to = manifest["window"]["to_wall_us"].as_i64().unwrap();
    let clips = manifest["clips"].as_array().unwrap();
    let first_frame_wall = clips
        .iter()
        .map(|c| c["started_wall_us"].as_i64().unwrap())
        .min()
        .unwrap();
    let last_frame_wall = clips
        .iter()
        .map(|c| c["ended_wall_us"].as_i64().unwrap())
        .max()
        .unwrap();
    assert!(first_frame_wall <= from + 34_000 && last_frame_wall >= to - 34_000);
    let r = get(
        t.addr,
        "/api/v1/experiments/trial-7/files/..%2fmanifest.json",
    );
    assert!(r.status == 400 || r.status == 404);
    t.stop();
}

#[test]
fn short_pulses_are_ignored_and_pulse_mode_toggles() {
    let t = start(InputMode::Pulse, 300);
    // A 50 ms blip is shorter than the 300 ms debounce: nothing starts.
    set(&t, "experiment", true);
    std::thread::sleep(Duration::from_millis(50));
    set(&t, "experiment", false);
    std::thread::sleep(Duration::from_millis(800));
    assert!(active(&t).is_none(), "a blip started an experiment");
    // A real pulse starts one (named by the trigger), the next stops it.
    set(&t, "experiment", true);
    std::thread::sleep(Duration::from_millis(500));
    set(&t, "experiment", false);
    wait_for(patience(Duration::from_secs(5)), "pulse to start", || {
        active(&t).is_some()
    });
    let id = active(&t).unwrap()["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("trigger-"), "{id}");
    std::thread::sleep(Duration::from_millis(700));
    set(&t, "experiment", true);
    std::thread::sleep(Duration::from_millis(500));
    set(&t, "experiment", false);
    let manifest = wait_manifest(&t, &id);
    let kinds: Vec<&str> = manifest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["start", "stop"]);
    t.stop();
}

#[test]
fn api_errors_and_a_level_trigger_during_an_api_experiment() {
    let t = start(InputMode::Level, 20);
    let r = post(
        t.addr,
        "/api/v1/experiments",
        r#"{"experiment_id": "../x"}"#,
    );
    assert_eq!((r.status, r.error_code()), (400, "bad_request".to_string()));
    let r = post(t.addr, "/api/v1/experiments", r#"{"experiment_id": 5}"#);
    assert_eq!(r.status, 400);
    let r = post(t.addr, "/api/v1/experiments", "{not json");
    assert_eq!(r.status, 400);
    let r = post(t.addr, "/api/v1/experiments/nobody/stop", "");
    assert_eq!(r.status, 404);
    let r = post(t.addr, "/api/v1/gpio/sim/nosuchinput", r#"{"level": true}"#);
    assert_eq!(r.status, 404);
    let r = post(
        t.addr,
        "/api/v1/gpio/sim/experiment",
        r#"{"level": "high"}"#,
    );
    assert_eq!(r.status, 400);
    let r = post(
        t.addr,
        "/api/v1/experiments",
        r#"{"experiment_id": "api-1", "method": "m"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = post(
        t.addr,
        "/api/v1/experiments",
        r#"{"experiment_id": "api-2"}"#,
    );
    assert_eq!(r.status, 409, "double start");
    // The trigger line toggles while the API-started experiment runs: logged, no change.
    set(&t, "experiment", true);
    std::thread::sleep(Duration::from_millis(300));
    set(&t, "experiment", false);
    std::thread::sleep(Duration::from_millis(300));
    let a = active(&t).expect("still running");
    assert_eq!(a["experiment_id"], "api-1");
    let r = post(t.addr, "/api/v1/experiments/api-1/marker", "");
    assert_eq!(r.status, 200);
    let r = post(t.addr, "/api/v1/experiments/api-1/stop", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let kinds: Vec<String> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["start", "trigger_start", "trigger_stop", "marker", "stop"]
    );
    let r = post(t.addr, "/api/v1/experiments/api-1/stop", "");
    assert_eq!(r.status, 409, "stop twice");
    // Manual archive of the recent clips under a new id.
    let r = post(
        t.addr,
        "/api/v1/experiments/manual-1/archive",
        r#"{"method": "by hand"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.json()["clips"].as_array().unwrap().is_empty());
    let list = get(t.addr, "/api/v1/experiments").json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    t.stop();
}

#[test]
fn a_crash_while_archiving_is_finished_at_restart() {
    // Simulates the crash at its worst point: an experiment stopped, clips linked, no
    // manifest yet. The restart must produce the complete archive.
    let t = start(InputMode::Level, 20);
    std::thread::sleep(Duration::from_secs(1));
    let r = post(
        t.addr,
        "/api/v1/experiments",
        r#"{"experiment_id": "crash-1"}"#,
    );
    assert_eq!(r.status, 201);
    std::thread::sleep(Duration::from_secs(2));
    let r = post(t.addr, "/api/v1/experiments/crash-1/stop", "");
    assert_eq!(r.status, 200);
    let manifest_before = r.json();
    let folder = t.dir.path().join("experiments/crash-1");
    // Roll the folder back to "stopped, archive interrupted".
    std::fs::remove_file(folder.join("manifest.json")).unwrap();
    std::fs::remove_file(folder.join("frames.csv")).unwrap();
    let state_path = folder.join("experiment.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["phase"] = "stopped".into();
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let listed = get(t.addr, "/api/v1/experiments").json();
    assert_eq!(
        listed[0]["complete"], false,
        "without a manifest it does not look complete"
    );

    let dir = t.stop();
    let config = {
        let mut c = test_config(dir.path());
        c.gpio.backend = BackendChoice::Sim;
        c
    };
    let started = Instant::now();
    let t = TestApp::start_in(dir, config);
    let manifest = wait_manifest(&t, "crash-1");
    eprintln!("archive redone at restart within {:?}", started.elapsed());
    assert_eq!(manifest["clips"], manifest_before["clips"]);
    for f in manifest["files"].as_array().unwrap() {
        let path = folder.join(f["name"].as_str().unwrap());
        assert_eq!(
            benchcam::experiment::sha256_file(&path).unwrap(),
            f["sha256"].as_str().unwrap()
        );
    }
    assert_eq!(
        get(t.addr, "/api/v1/experiments").json()[0]["complete"],
        true
    );
    t.stop();
}
