//! Recording figures, printed by `cargo bench --bench recording`:
//! - real time 1280x720 at 30 fps for 10 s: CPU %, RSS, heap allocations per frame,
//!   ring and recorder drops;
//! - sustained recording rate on one core: the recorder thread's frames per CPU second
//!   (capture runs on a simulated clock as fast as it can, the recorder takes what it can);
//! - recording CPU / ffmpeg's CPU for the same raw frames → H.264 fragmented MP4.
//!
//! Ratios and per-frame counts are used because these machines are noisy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benchcam::camera::discovery::FixedDiscoverer;
use benchcam::camera::CameraService;
use benchcam::capture::pattern::PatternDevice;
use benchcam::capture::{CaptureDevice, ModeRequest, PixelFormat};
use benchcam::clock::{Clock, SimClock, SystemClock};
use benchcam::config::Config;
use benchcam::record::index::RecordingType;
use benchcam::storage::{Limits, Statvfs, Storage};

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{Counting, ALLOCATIONS};

#[global_allocator]
static GLOBAL: Counting = Counting;

const W: u32 = 1280;
const H: u32 = 720;
const FPS: u32 = 30;

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// utime + stime of a stat file, in seconds.
fn stat_cpu(path: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let after = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / ticks_per_second()
}

fn process_cpu() -> f64 {
    stat_cpu("/proc/self/stat")
}

/// CPU seconds of this process's threads whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> f64 {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(prefix) {
            total += stat_cpu(&task.path().join("stat").to_string_lossy());
        }
    }
    total
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn service(dir: &std::path::Path, clock: Arc<dyn Clock>, slots: usize) -> Arc<CameraService> {
    let mut config = Config::parse(&format!(
        "[camera]\nwidth = {W}\nheight = {H}\nfps = {FPS}\nring_slots = {slots}\n[recording]\nclip_length = \"1m\"\n"
    ))
    .expect("bench config is valid");
    config.service.data_dir = dir.to_path_buf();
    let storage = Storage::open(
        dir,
        None,
        Limits {
            max_clips: 100,
            max_bytes: 1 << 40,
            min_free: 0,
        },
        Box::new(Statvfs),
    )
    .expect("opening bench storage");
    let device = Arc::new(PatternDevice::new(0, W, H, FPS, clock.clone()));
    CameraService::new(
        config,
        clock,
        storage,
        Box::new(FixedDiscoverer(vec![device])),
    )
}

fn real_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let svc = service(dir.path(), Arc::new(SystemClock), 6);
    let cams = svc.detect_cameras().expect("camera");
    svc.start_recording("cam0", RecordingType::Rolling)
        .expect("recording");
    std::thread::sleep(Duration::from_secs(3));
    let stats = &cams[0].capture.stats;
    // Read the CPU counter first: reading /proc allocates, and must not be counted.
    let c0 = process_cpu();
    let (f0, a0, t0) = (
        stats.frames_captured.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(10));
    let frames = stats.frames_captured.load(Ordering::Relaxed) - f0;
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - a0;
    let cpu = process_cpu() - c0;
    let wall = t0.elapsed().as_secs_f64();
    let rss = rss_mib();
    let health = svc.health_check();
    svc.shutdown();
    println!("real time {W}x{H} @ {FPS} fps pattern -> H.264 recording, 10 s:");
    println!("  captured fps            {:.1}", frames as f64 / wall);
    println!("  CPU                     {:.1} % of one core (capture + pattern drawing + encode + mux + fsync)", cpu / wall * 100.0);
    println!("  RSS                     {rss:.1} MiB");
    println!(
        "  heap allocations/frame  {:.3} ({allocs} in {frames} frames)",
        allocs as f64 / frames.max(1) as f64
    );
    println!(
        "  dropped frames          ring {} / recorder {}",
        stats.ring_full_drops.load(Ordering::Relaxed),
        health.cameras[0].recorder_frames_dropped
    );
}

fn sustained() -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    // The simulated clock jumps ahead on every sleep: capture delivers frames as fast
    // as it can draw them, and the recorder takes whatever its queue holds.
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(1_000_000, 1_795_520_400_000_000, true));
    let svc = service(dir.path(), clock, 12);
    let _cams = svc.detect_cameras().expect("camera");
    svc.start_recording("cam0", RecordingType::Rolling)
        .expect("recording");
    std::thread::sleep(Duration::from_secs(2));
    // The encoder stage encodes; the recorder cuts fragments; the writer writes.
    let rec = || threads_cpu("enc-") + threads_cpu("rec-") + threads_cpu("clipw-");
    let recorded = || svc.health_check().cameras[0].frames_recorded;
    let (cpu0, frames0, t0) = (rec(), recorded(), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let cpu = rec() - cpu0;
    let frames = recorded() - frames0;
    let wall = t0.elapsed().as_secs_f64();
    svc.shutdown();
    let per_frame = cpu / frames.max(1) as f64;
    println!("sustained recording, {W}x{H} H.264 (encoder stage + recorder + clip writer):");
    println!("  frames recorded         {frames}");
    println!(
        "  recorder CPU per frame  {:.2} ms  => {:.1} fps on one core",
        per_frame * 1000.0,
        1.0 / per_frame
    );
    println!(
        "  recorder busy           {:.0} % of the measured {wall:.1} s",
        cpu / wall * 100.0
    );
    per_frame
}

fn versus_ffmpeg(ours_per_frame: f64) {
    let have = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        println!("ffmpeg comparison: skipped (ffmpeg not installed; tests/run.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = dir.path().join("frames.yuv");
    let frames = 300;
    {
        let clock: Arc<dyn Clock> = Arc::new(SimClock::new(0, 0, true));
        let device = PatternDevice::new(0, W, H, FPS, clock);
        let req = ModeRequest {
            width: W,
            height: H,
            fps: FPS,
            formats: vec![PixelFormat::I420],
        };
        let mut source = device.open(&req).expect("pattern opens");
        let mut out = Vec::with_capacity((W * H * 3 / 2) as usize * frames);
        for _ in 0..frames {
            source
                .next_frame(Duration::from_secs(1), &mut |f| {
                    out.extend_from_slice(f.data)
                })
                .expect("frame");
        }
        std::fs::write(&raw, out).expect("writing raw frames");
    }
    for (name, args) in [
        (
            "libx264 ultrafast",
            vec![
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ],
        ),
        (
            "libx264 veryfast",
            vec!["-c:v", "libx264", "-preset", "veryfast"],
        ),
    ] {
        let before = children_cpu();
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "yuv420p",
                "-s",
                &format!("{W}x{H}"),
                "-r",
                "30",
                "-i",
            ])
            .arg(&raw)
            .args(&args)
            .args([
                "-b:v",
                "3M",
                "-g",
                "30",
                "-threads",
                "1",
                "-movflags",
                "frag_keyframe+empty_moov+default_base_moof",
                "-frag_duration",
                "1000000",
            ])
            .arg(dir.path().join("out.mp4"))
            .status();
        if !status.is_ok_and(|s| s.success()) {
            println!("ffmpeg {name}: not available");
            continue;
        }
        let per_frame = (children_cpu() - before) / frames as f64;
        println!(
            "ffmpeg {name:18} {:.2} ms CPU/frame; benchcam recording / ffmpeg = {:.2}",
            per_frame * 1000.0,
            ours_per_frame / per_frame
        );
    }
}

fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    real_time();
    let ours = sustained();
    versus_ffmpeg(ours);
}
