//! Storage full: recording pauses, health says why, the service stays up, and
//! recording resumes by itself when space returns. Runs the real app in-process with
//! a simulated disk whose free space the test controls.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benchcam::app::{App, Hardware};
use benchcam::camera::discovery::ConfigDiscoverer;
use benchcam::clock::{Clock, SystemClock};
use benchcam::config::Config;
use benchcam::storage::SimSpace;

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn full_disk_pauses_recording_and_space_returning_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(
        "[camera]\nsource = \"pattern\"\npattern_jitter = \"10ms\"\nwidth = 160\nheight = 120\nfps = 30\n\
         [recording]\nclip_length = \"2s\"\nmin_free_space = \"1GB\"\n",
    )
    .unwrap();
    config.service.data_dir = dir.path().join("data");
    let space = Arc::new(SimSpace::default());
    space.total.store(32_000_000_000, Ordering::Relaxed);
    space.free.store(20_000_000_000, Ordering::Relaxed);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let hardware = Hardware {
        discoverer: Box::new(ConfigDiscoverer {
            camera: config.camera.clone(),
            clock: clock.clone(),
        }),
        clock,
        space: Box::new(space.clone()),
    };
    let app = App::start(config, hardware).unwrap();
    let service = &app.service;
    let health = || service.health_check();

    assert!(
        wait_until(Duration::from_secs(10), || health().storage.rolling_bytes
            > 0),
        "recording starts"
    );
    assert_eq!(health().status, "ok", "{:?}", health().problems);

    // The disk fills up (below the 1 GB reserve) and nothing can be freed: the sim
    // disk does not grow when retention deletes files.
    space.free.store(100_000_000, Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(10), || health().cameras[0]
            .recording_paused),
        "recording pauses: {:?}",
        health()
    );
    let h = health();
    assert_eq!(h.status, "error");
    assert!(h.storage.full);
    assert!(
        h.problems.iter().any(|p| p.contains("storage full")),
        "{:?}",
        h.problems
    );
    assert!(
        h.cameras[0].recording,
        "still recording (paused), not stopped"
    );
    assert_eq!(h.cameras[0].state, "capturing", "capture goes on");
    let bytes_when_paused = h.storage.rolling_bytes;
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        health().storage.rolling_bytes <= bytes_when_paused,
        "nothing written while paused"
    );

    // Space returns: recording resumes by itself within about a second.
    space.free.store(20_000_000_000, Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(10), || !health().cameras[0]
            .recording_paused
            && health().storage.rolling_bytes > bytes_when_paused),
        "recording resumes: {:?}",
        health()
    );
    assert_eq!(health().status, "ok", "{:?}", health().problems);
    app.shutdown();
    // Everything that is indexed is a complete, playable clip.
    for clip in app.service.storage.index.list(Some("cam0")) {
        assert!(clip.complete && clip.frame_count > 0, "{clip:?}");
    }
}
