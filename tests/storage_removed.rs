//! The data drive goes away while recording: recording pauses with "storage removed",
//! nothing lands under the empty mount point, live frames keep coming, and recording
//! resumes by itself when the same filesystem is back. Runs the real app in-process:
//! once with a simulated drive, once with a real mount that is unmounted and mounted
//! again (needs root for mount(2); CI runs as root). The VM bench does the same with a
//! USB disk that qemu unplugs (tests/vm).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benchcam::app::{App, Hardware};
use benchcam::camera::discovery::ConfigDiscoverer;
use benchcam::clock::{Clock, SystemClock};
use benchcam::config::Config;
use benchcam::error::ErrorKind;
use benchcam::storage::{SimSpace, SpaceProbe, Statvfs};

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

fn start(data_dir: &Path, space: Box<dyn SpaceProbe>) -> App {
    let mut config = Config::parse(
        "[camera]\nsource = \"pattern\"\npattern_jitter = \"10ms\"\nwidth = 160\nheight = 120\nfps = 30\n\
         [recording]\nclip_length = \"2s\"\nfragment_duration = \"500ms\"\nmin_free_space = \"0\"\n",
    )
    .unwrap();
    config.service.data_dir = data_dir.to_path_buf();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let hardware = Hardware {
        discoverer: Box::new(ConfigDiscoverer {
            camera: config.camera.clone(),
            clock: clock.clone(),
        }),
        clock,
        space,
    };
    App::start(config, hardware).unwrap()
}

/// The app on a simulated 32 GB drive, once it has recorded something.
fn start_on_sim_drive(dir: &Path) -> (App, Arc<SimSpace>) {
    let space = Arc::new(SimSpace::default());
    space.total.store(32_000_000_000, Ordering::Relaxed);
    space.free.store(20_000_000_000, Ordering::Relaxed);
    let app = start(&dir.join("data"), Box::new(space.clone()));
    assert!(
        wait_until(Duration::from_secs(10), || app
            .service
            .health_check()
            .storage
            .rolling_bytes
            > 0),
        "recording starts"
    );
    (app, space)
}

fn latest_frame(app: &App) -> u64 {
    app.service
        .latest_frame("cam0")
        .ok()
        .and_then(|f| f.ok())
        .map_or(0, |f| f.number)
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn pulled_drive_pauses_recording_and_its_return_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (app, space) = start_on_sim_drive(dir.path());
    let service = &app.service;
    let health = || service.health_check();
    assert_eq!(health().storage.state, "ok");

    space.removed.store(true, Ordering::Relaxed);
    let pulled = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || health().storage.state
            == "removed"
            && health().cameras[0].recording_paused),
        "recording pauses: {:?}",
        health()
    );
    eprintln!("pause after {} ms", pulled.elapsed().as_millis());
    let h = health();
    assert_eq!(h.status, "error");
    assert!(
        h.problems.iter().any(|p| p.starts_with("storage removed")),
        "{:?}",
        h.problems
    );
    assert!(
        h.cameras[0].recording,
        "still recording (paused), not stopped"
    );
    // Nothing is written or deleted meanwhile; live frames keep coming.
    let files = files_under(&dir.path().join("data"));
    let frame = latest_frame(&app);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(latest_frame(&app) > frame + 20, "live view goes on");
    assert_eq!(
        files_under(&dir.path().join("data")),
        files,
        "no file changed"
    );
    // Experiments cannot start (their folder would be written): 503-kind error.
    let e = app
        .experiments
        .start("while-removed", "api", None, "api", None)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::StorageRemoved, "{e}");

    space.removed.store(false, Ordering::Relaxed);
    let bytes = health().storage.rolling_bytes;
    assert!(
        wait_until(Duration::from_secs(10), || !health().cameras[0]
            .recording_paused
            && health().storage.rolling_bytes > bytes),
        "recording resumes: {:?}",
        health()
    );
    assert_eq!(health().status, "ok", "{:?}", health().problems);
    app.shutdown();
    for clip in app.service.storage.index.list(Some("cam0")) {
        assert!(clip.complete && clip.frame_count > 0, "{clip:?}");
    }
}

/// A card that returns EIO while its udev link and mount stay (ext4's emergency
/// read-only on recent kernels does not show in statvfs): the writer's failed write is
/// reported, the write probe keeps failing, so recording pauses with `io_error`; when
/// writes work again it resumes by itself.
#[test]
fn a_drive_returning_eio_pauses_recording_until_writes_work_again() {
    let dir = tempfile::tempdir().unwrap();
    let (app, space) = start_on_sim_drive(dir.path());
    let service = &app.service;
    let health = || service.health_check();
    space.writes_fail.store(true, Ordering::Relaxed);
    // What the clip writer does when a write gets EIO.
    let eio = benchcam::error::Error::io(
        std::io::Error::from_raw_os_error(libc::EIO),
        "writing a clip",
    );
    service.storage.report_write_error(&eio);
    assert!(
        wait_until(Duration::from_secs(5), || health().storage.state
            == "io_error"
            && health().cameras[0].recording_paused),
        "recording pauses: {:?}",
        health()
    );
    let h = health();
    assert_eq!(h.status, "error");
    assert!(
        h.problems.iter().any(|p| p.starts_with("storage failing")),
        "{:?}",
        h.problems
    );
    // Still failing a second later (the probe runs each refresh): still paused.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(health().storage.state, "io_error");
    space.writes_fail.store(false, Ordering::Relaxed);
    let bytes = health().storage.rolling_bytes;
    assert!(
        wait_until(Duration::from_secs(10), || health().storage.state == "ok"
            && !health().cameras[0].recording_paused
            && health().storage.rolling_bytes > bytes),
        "recording resumes: {:?}",
        health()
    );
    app.shutdown();
    for clip in app.service.storage.index.list(Some("cam0")) {
        assert!(clip.complete && clip.frame_count > 0, "{clip:?}");
    }
}

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?}: {st}");
}

/// A real mount: a tmpfs ("the drive") bind-mounted at the data directory, unmounted
/// while recording and mounted again.
#[test]
fn unmounted_data_dir_is_never_written_and_remounting_resumes() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mount(2) needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let drive = dir.path().join("drive");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&drive).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    let (drive_s, mnt_s) = (drive.to_str().unwrap(), mnt.to_str().unwrap());
    run(
        "mount",
        &["-t", "tmpfs", "-o", "size=64m", "benchcam-test", drive_s],
    );
    run("mount", &["--bind", drive_s, mnt_s]);
    let app = start(&mnt, Box::new(Statvfs));
    let health = || app.service.health_check();
    assert!(
        wait_until(Duration::from_secs(10), || health().storage.rolling_bytes
            > 0),
        "recording starts"
    );

    run("umount", &["-l", mnt_s]);
    let pulled = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || health().storage.state
            == "removed"),
        "removal seen: {:?}",
        health()
    );
    let seen_ms = pulled.elapsed().as_millis();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        files_under(&mnt),
        Vec::<String>::new(),
        "nothing written under the empty mount point"
    );
    assert!(health().cameras[0].recording_paused);
    // Another, empty filesystem mounted there is not the drive: still removed.
    run(
        "mount",
        &["-t", "tmpfs", "-o", "size=8m", "benchcam-other", mnt_s],
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        health().storage.state,
        "removed",
        "an empty filesystem is not adopted"
    );
    assert_eq!(files_under(&mnt), Vec::<String>::new());
    run("umount", &[mnt_s]);

    let before = app.service.storage.index.list(Some("cam0")).len();
    run("mount", &["--bind", drive_s, mnt_s]);
    let back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || health().storage.state == "ok"
            && !health().cameras[0].recording_paused),
        "recording resumes: {:?}",
        health()
    );
    let resumed_ms = back.elapsed().as_millis();
    assert!(
        wait_until(Duration::from_secs(10), || app
            .service
            .storage
            .index
            .list(Some("cam0"))
            .len()
            > before),
        "a new clip after the return"
    );
    eprintln!("unmount -> removed {seen_ms} ms; mount -> recording {resumed_ms} ms");
    app.shutdown();
    for clip in app.service.storage.index.list(Some("cam0")) {
        assert!(clip.complete && clip.frame_count > 0, "{clip:?}");
        assert!(
            mnt.join("rolling/cam0").join(&clip.file).is_file(),
            "{clip:?}"
        );
    }
    drop(app);
    let _ = Command::new("umount").args(["-l", mnt_s]).status();
    let _ = Command::new("umount").args(["-l", drive_s]).status();
}
