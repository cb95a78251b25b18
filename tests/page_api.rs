//! What the page's experiment cards, mark button and storage plot read from the API:
//! labelled markers, the list's per-experiment figures, the storage history.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn markers_carry_a_label_and_cards_get_their_figures() {
    let t = TestApp::start();
    let r = post(
        t.addr,
        "/api/v1/experiments",
        r#"{"experiment_id": "card-1", "method": "dish 3"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    std::thread::sleep(Duration::from_millis(600));
    let running = &t.get("/api/v1/experiments").json()[0];
    assert_eq!(running["state"], "running");
    assert!(running["duration_s"].as_f64().unwrap() >= 0.5, "{running}");
    assert!(running["clips"].is_null() && running["size_bytes"].is_null());

    let mark = |body: &str| post(t.addr, "/api/v1/experiments/card-1/marker", body);
    assert_eq!(mark(r#"{"label": "added reagent"}"#).status, 200);
    assert_eq!(mark("").status, 200, "no body: a marker without a label");
    for bad in [
        r#"{"label": 5}"#,
        "[1]",
        &format!(r#"{{"label": "{}"}}"#, "x".repeat(65)),
        r#"{"label": "a\nb"}"#,
    ] {
        let r = mark(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    std::thread::sleep(Duration::from_secs(2));
    let r = post(t.addr, "/api/v1/experiments/card-1/stop", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let manifest = r.json();
    let markers: Vec<_> = manifest["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "marker")
        .collect();
    assert_eq!(markers.len(), 2);
    assert_eq!(markers[0]["label"], "added reagent");
    assert!(markers[1]["label"].is_null());

    let card = &t.get("/api/v1/experiments").json()[0];
    assert_eq!(card["state"], "archived");
    let clips = manifest["clips"].as_array().unwrap();
    assert_eq!(card["clips"].as_u64().unwrap(), clips.len() as u64);
    let frames: u64 = clips
        .iter()
        .map(|c| c["frame_count"].as_u64().unwrap())
        .sum();
    assert_eq!(card["frames"].as_u64().unwrap(), frames);
    let size: u64 = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["size"].as_u64().unwrap())
        .sum();
    assert_eq!(card["size_bytes"].as_u64().unwrap(), size);
    let d = card["duration_s"].as_f64().unwrap();
    assert!((2.0..10.0).contains(&d), "start to stop: {d} s");
}

#[test]
fn storage_history_has_a_sample_from_start_and_now() {
    let t = TestApp::start();
    wait_for(
        patience(Duration::from_secs(5)),
        "a first history sample",
        || {
            t.get("/api/v1/storage/history").json()["samples"]
                .as_array()
                .is_some_and(|s| s.len() >= 2)
        },
    );
    let h = t.get("/api/v1/storage/history").json();
    assert_eq!(h["interval_s"], 300);
    let samples = h["samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    let (used, free, total) = (
        last["used_bytes"].as_u64().unwrap(),
        last["free_bytes"].as_u64().unwrap(),
        last["total_bytes"].as_u64().unwrap(),
    );
    assert!(total > 0 && free <= total && used <= total, "{last}");
    let disk = benchcam::storage::Statvfs;
    let (real_free, real_total) =
        benchcam::storage::SpaceProbe::space(&disk, t.dir.path()).unwrap();
    assert_eq!(total, real_total, "the data filesystem's size");
    assert!(
        free.abs_diff(real_free) < 64 << 20,
        "free {free} vs statvfs {real_free}"
    );
    assert!(samples[0]["t_us"].as_i64() <= last["t_us"].as_i64());
    // Under a minute of data: no rate yet, so no estimate (never a made-up one).
    assert!(
        h["recording_bytes_per_hour"].is_null() && h["hours_left"].is_null(),
        "{h}"
    );
}
