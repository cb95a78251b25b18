//! A data disk that hangs for seconds (an SD card in an fsync or its garbage collection,
//! a USB drive resetting) freezes nothing a phone sees: while the storage check and the
//! recorder's index write wait on the disk, the page's requests, clip downloads and the
//! live WebSocket keep answering, the web executor keeps its watchdog heartbeat, and
//! recording carries on when the disk answers again.
//!
//! Before this, the index held its one lock across the journal's fsync and the storage
//! check held the lock health reads: one slow fsync stopped every connection of the
//! service (they share one executor thread).

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benchcam::storage::SimSpace;
use common::*;
use serde_json::json;

/// Un-hangs the disk however the test ends, so that a failure is reported, not a hang.
struct Unhang(Arc<SimSpace>);

impl Drop for Unhang {
    fn drop(&mut self) {
        self.0.hung.store(false, Ordering::Relaxed);
    }
}

fn clip_count(t: &TestApp) -> usize {
    t.get("/api/v1/clips").json().as_array().unwrap().len()
}

/// GET `path`, or a panic after `limit` (a reader that waits on nothing but the answer).
fn get_within(t: &TestApp, path: &str, limit: Duration) -> Resp {
    let (tx, rx) = std::sync::mpsc::channel();
    let (addr, owned) = (t.addr, path.to_string());
    std::thread::spawn(move || {
        let _ = tx.send(get(addr, &owned));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{path}: no answer in {limit:?} while the disk hangs"))
}

#[test]
fn a_hung_disk_freezes_no_page_download_or_viewer() {
    let space = Arc::new(SimSpace::default());
    space.total.store(32_000_000_000, Ordering::Relaxed);
    space.free.store(20_000_000_000, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let t = TestApp::start_on(dir, config, Box::new(Arc::clone(&space)));
    assert_eq!(
        post(t.addr, "/api/v1/cameras/cam0/recording/start", "").status,
        200
    );
    let clip = t.complete_clip(patience(Duration::from_secs(15)));
    let clip_path = format!("/api/v1/clips/cam0/{}", clip["filename"].as_str().unwrap());
    let mut ws = ws_connect(t.addr, "cam0");
    ws_send(&mut ws, json!({"type": "subscribe"}));
    ws_frame(&mut ws, patience(Duration::from_secs(5)));

    // The disk hangs: the once-a-second storage check waits in its probe, and the
    // recorder's next index write waits behind the journal (held as a stalled fsync
    // holds it).
    space.hung.store(true, Ordering::Relaxed);
    let _unhang = Unhang(Arc::clone(&space));
    let journal = t.app.service.storage.index.hold_journal();
    wait_for(
        patience(Duration::from_secs(5)),
        "the storage check to wait on the disk",
        || space.waiting.load(Ordering::Relaxed) >= 1,
    );

    let hung_for = Instant::now();
    let limit = patience(Duration::from_secs(2));
    let frames = || {
        get_within(&t, "/api/v1/health", limit).json()["cameras"][0]["frames_captured"]
            .as_u64()
            .unwrap()
    };
    let frames_before = frames();
    let mut rounds = 0;
    while hung_for.elapsed() < Duration::from_secs(4) {
        for path in [
            "/api/v1/health",
            "/api/v1/cameras",
            "/api/v1/clips",
            "/api/v1/storage/history",
            "/api/v1/experiments",
            "/api/v1/settings",
            "/api/v1/streaming/sessions",
            "/metrics",
        ] {
            let asked = Instant::now();
            let r = get_within(&t, path, limit);
            let took = asked.elapsed();
            assert_eq!(r.status, 200, "{path} while the disk hangs: {}", r.text());
            assert!(took < limit, "{path} took {took:?} while the disk hangs");
        }
        let asked = Instant::now();
        let r = request(t.addr, "GET", &clip_path, &[("Range", "bytes=0-7")], b"");
        assert_eq!(
            (r.status, r.body.len()),
            (206, 8),
            "a download while the disk hangs"
        );
        assert!(
            asked.elapsed() < limit,
            "a download took {:?}",
            asked.elapsed()
        );
        // The viewer keeps getting frames (ws_frame fails after `limit`).
        ws_frame(&mut ws, limit);
        assert!(
            t.app.state.web.heartbeat_age() < patience(Duration::from_secs(3)),
            "the web executor stopped beating: the watchdog would restart the service"
        );
        rounds += 1;
    }
    let health = get_within(&t, "/api/v1/health", limit).json();
    assert_eq!(health["cameras"][0]["recording"], true, "{health}");
    assert!(
        frames() > frames_before + 30,
        "capture went on while the disk hung: {health}"
    );
    eprintln!("{rounds} rounds of every request answered while the disk hung for 4 s");

    // The disk answers again: recording carries on into new clips.
    let clips_before = clip_count(&t);
    space.hung.store(false, Ordering::Relaxed);
    drop(journal);
    wait_for(
        patience(Duration::from_secs(15)),
        "new clips after the disk came back",
        || clip_count(&t) >= clips_before + 2,
    );
    assert_eq!(
        post(t.addr, "/api/v1/cameras/cam0/recording/stop", "").status,
        200
    );
}
