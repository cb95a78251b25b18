//! The wall clock steps (NTP's first answer on a box without an RTC, `date -s`) while
//! recording: experiment windows, retention order and clip names follow the monotonic
//! clock and the recording order, and the manifest says what the clock did. Runs the
//! real app in-process on an injected clock whose wall time the test steps (monotonic
//! time is the machine's own). The VM bench does it with a real `date -s` (tests/vm).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use benchcam::app::{App, Hardware};
use benchcam::camera::discovery::ConfigDiscoverer;
use benchcam::clock::{Clock, SystemClock};
use benchcam::config::Config;
use benchcam::storage::Statvfs;

const HOUR_US: i64 = 3_600_000_000;

/// The machine's clocks, with a wall-clock offset the test can step.
#[derive(Default)]
struct SteppedClock {
    offset_us: AtomicI64,
}

impl SteppedClock {
    fn step(&self, by_us: i64) {
        self.offset_us.fetch_add(by_us, Ordering::SeqCst);
    }
}

impl Clock for SteppedClock {
    fn monotonic_us(&self) -> u64 {
        SystemClock.monotonic_us()
    }
    fn wall_us(&self) -> i64 {
        SystemClock.wall_us() + self.offset_us.load(Ordering::SeqCst)
    }
    fn sleep_until_us(&self, deadline_us: u64) {
        SystemClock.sleep_until_us(deadline_us)
    }
}

fn start(dir: &std::path::Path, clock: Arc<SteppedClock>, extra: &str) -> App {
    let mut config = Config::parse(&format!(
        "[camera]\nsource = \"pattern\"\npattern_jitter = \"10ms\"\nwidth = 160\nheight = 120\nfps = 30\n\
         [recording]\nclip_length = \"2s\"\nfragment_duration = \"250ms\"\n{extra}"
    ))
    .unwrap();
    config.service.data_dir = dir.join("data");
    let clock: Arc<dyn Clock> = clock;
    let hardware = Hardware {
        discoverer: Box::new(ConfigDiscoverer {
            camera: config.camera.clone(),
            clock: clock.clone(),
        }),
        clock,
        space: Box::new(Statvfs),
    };
    App::start(config, hardware).unwrap()
}

fn csv_rows(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn experiment_window_survives_clock_steps_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SteppedClock::default());
    let app = start(
        dir.path(),
        clock.clone(),
        "[auto_recording]\npre_roll = \"500ms\"\npost_roll = \"500ms\"\n",
    );
    std::thread::sleep(Duration::from_millis(2500));
    let exps = &app.experiments;
    let started = exps.start("stepped", "api", None, "api", None).unwrap();
    let start_mono = started.started.unwrap().monotonic_us;
    std::thread::sleep(Duration::from_millis(2200));
    clock.step(-5 * HOUR_US); // NTP steps a fast clock back 5 hours
    std::thread::sleep(Duration::from_millis(2200));
    exps.marker("api", None).unwrap();
    clock.step(2 * 24 * HOUR_US); // and later forward two days
    std::thread::sleep(Duration::from_millis(2200));
    let manifest = exps.stop("stepped", "api", None).unwrap();
    let folder = dir.path().join("data/experiments/stepped");
    let stop_mono = manifest["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "stop")
        .unwrap()["monotonic_us"]
        .as_u64()
        .unwrap();

    // Both steps are in the manifest, with their size, and the clock state is recorded.
    let steps: Vec<i64> = manifest["clock"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step_us"].as_i64().unwrap())
        .collect();
    assert_eq!(steps.len(), 2, "{}", manifest["clock"]);
    assert!((steps[0] + 5 * HOUR_US).abs() < 100_000, "{steps:?}");
    assert!((steps[1] - 48 * HOUR_US).abs() < 100_000, "{steps:?}");
    for at in ["at_start", "at_stop"] {
        let state = &manifest["clock"][at];
        assert!(state["source"].is_string(), "{at}: {state}");
    }

    // The frames in the window are every frame captured between start − pre-roll and
    // stop + post-roll by the monotonic clock: none lost to the steps, no gap.
    let rows = csv_rows(&folder.join("frames.csv"));
    let (lo, hi) = (start_mono - 500_000, stop_mono + 500_000);
    let mono = |r: &Vec<String>| r[2].parse::<u64>().unwrap();
    for r in &rows {
        assert_eq!(
            r[6] == "1",
            (lo..=hi).contains(&mono(r)),
            "in_window follows the monotonic window: {r:?} ({lo}..={hi})"
        );
    }
    // The archived clips hold every frame recorded in the window: the rolling clips
    // (complete after shutdown, the archive's hard links among them) have no frame in
    // [lo, hi] that the archive lacks, and the archive reaches the window's ends by the
    // recorded frames next to it (a time margin would not hold with the pattern's
    // jitter on a loaded machine).
    let mut all: Vec<u64> = rows.iter().map(mono).collect();
    all.sort_unstable();
    let gaps = all.windows(2).filter(|w| w[1] - w[0] > 200_000).count();
    assert_eq!(gaps, 0, "no hole in the archived frames");
    app.shutdown();
    let archived: BTreeSet<u64> = all.iter().copied().collect();
    let mut recorded: Vec<(u64, u64)> = Vec::new(); // (frame_number, capture mono)
    for entry in std::fs::read_dir(dir.path().join("data/rolling/cam0")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".frames.csv") {
            for r in csv_rows(&path) {
                recorded.push((r[0].parse().unwrap(), r[1].parse().unwrap()));
            }
        }
    }
    recorded.sort_unstable();
    let missing: Vec<&(u64, u64)> = recorded
        .iter()
        .filter(|(_, m)| (lo..=hi).contains(m) && !archived.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "recorded in the window but not archived: {missing:?} ({lo}..={hi})"
    );
    let last = *all.last().unwrap();
    let next = recorded.iter().find(|(_, m)| *m > last);
    assert!(
        last > hi || next.is_some_and(|(_, m)| *m > hi),
        "clips cover the post-roll: the archive ends at {last}, the next recorded frame \
         is {next:?}, the window ends at {hi}"
    );
    let first = all[0];
    let before = recorded.iter().rev().find(|(_, m)| *m < first);
    assert!(
        first <= lo || before.is_none_or(|(_, m)| *m < lo),
        "clips cover the pre-roll: the archive begins at {first}, the recorded frame \
         before it is {before:?}, the window begins at {lo}"
    );
    // Each archived clip is named once; names follow the wall clock (so they jump).
    let clips: BTreeSet<&str> = manifest["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["file"].as_str().unwrap())
        .collect();
    assert_eq!(clips.len(), manifest["clips"].as_array().unwrap().len());
    assert!(clips.len() >= 3, "{clips:?}");
}

#[test]
fn retention_deletes_the_first_recorded_clips_after_a_backwards_step() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SteppedClock::default());
    let app = start(dir.path(), clock.clone(), "rolling_clips_count = 3\n");
    let index = &app.service.storage.index;
    let wait_clips = |n: usize| {
        let t = std::time::Instant::now();
        while index
            .list(Some("cam0"))
            .iter()
            .filter(|c| c.complete)
            .count()
            < n
        {
            assert!(t.elapsed() < Duration::from_secs(20), "clips do not appear");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_clips(2);
    let before: BTreeSet<String> = index
        .list(Some("cam0"))
        .into_iter()
        .map(|c| c.file)
        .collect();
    clock.step(-24 * HOUR_US);
    // Clips recorded after the step get names from the day before: they sort first, but
    // they are the newest and retention keeps them; the ones from before go.
    std::thread::sleep(Duration::from_millis(8500));
    let after = index.list(Some("cam0"));
    app.shutdown();
    let kept: BTreeSet<String> = after.iter().map(|c| c.file.clone()).collect();
    assert!(
        kept.is_disjoint(&before),
        "the clips from before the step are the oldest and were deleted: {kept:?} / {before:?}"
    );
    // The newest by recording order is listed first, though its name sorts first too.
    let seqs: Vec<u64> = after.iter().map(|c| c.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    let names_sorted: Vec<&String> = kept.iter().collect();
    let listed: Vec<&String> = after.iter().map(|c| &c.file).collect();
    assert!(
        names_sorted.iter().all(|n| before.iter().all(|b| *n < b)),
        "post-step names sort before pre-step names: {listed:?}"
    );
}
