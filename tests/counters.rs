//! Health and /metrics count since the service started: stopping and starting recording
//! does not reset what was recorded or dropped (a Prometheus counter must never go back,
//! and the VM bench once read "0 recorder drops" from a health taken after a stop).

mod common;

use std::time::Duration;

use common::*;

fn clips_frames(t: &TestApp) -> u64 {
    t.get("/api/v1/clips")
        .json()
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["frame_count"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn metric(t: &TestApp, line_start: &str) -> u64 {
    t.get("/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
}

#[test]
fn counts_survive_stopping_and_starting_recording() {
    let t = TestApp::start();
    t.wait_for_frames();
    let mut recorded_before = 0;
    for round in 1..=2 {
        let r = post(t.addr, "/api/v1/cameras/cam0/recording/start", "{}");
        assert_eq!(r.status, 200, "{}", r.text());
        std::thread::sleep(Duration::from_millis(2500));
        let r = post(t.addr, "/api/v1/cameras/cam0/recording/stop", "{}");
        assert_eq!(r.status, 200, "{}", r.text());
        let cam = t.health()["cameras"][0].clone();
        let recorded = cam["frames_recorded"].as_u64().unwrap();
        assert_eq!(cam["recording"], false);
        assert!(
            recorded > recorded_before,
            "round {round}: frames_recorded {recorded} after the stop (was {recorded_before})"
        );
        // frames_recorded is every frame in the clips on disk, from both recordings.
        assert_eq!(
            recorded,
            clips_frames(&t),
            "round {round}: health counts the frames of every clip: {cam}"
        );
        let dropped = metric(
            &t,
            "benchcam_recorder_frames_dropped_total{camera=\"cam0\"}",
        );
        assert_eq!(dropped, cam["recorder_frames_dropped"].as_u64().unwrap());
        recorded_before = recorded;
    }
}
