//! Recording figures, printed by `cargo bench --bench recording`:
//! - real time 1280x720 at 30 fps for 10 s: CPU %, RSS, heap allocations per frame,
//!   ring and recorder drops;
//! - sustained recording rate on one core: the recorder thread's frames per CPU second
//!   (capture runs on a simulated clock as fast as it can, the recorder takes what it can);
//! - recording CPU / ffmpeg's CPU for the same raw frames → H.264 fragmented MP4, against
//!   libx264 `ultrafast` and libopenh264 (DESIGN §9), and for reference libx264 `veryfast`
//!   and libopenh264 with benchcam's own encoder settings. Both sides take the frames at
//!   30 fps, as from a camera: benchcam's recorder from a pattern camera replaying them,
//!   ffmpeg with `-re`. (Paced, a frame costs this VM 1.6–1.7 times its CPU flat out, the
//!   caches gone cold between frames; flat-out peers against a paced recorder, or against
//!   the sustained run, whose recorder skips frames it cannot keep up with and so meets
//!   more motion and more keyframes per frame, compare unequal jobs.)
//!
//! Ratios and per-frame counts are used because these machines are noisy. Each figure of
//! DESIGN §9 is also printed as a `FIGURE|` row for `tests/bench.sh`'s table.
//!
//! `--encode-loop WHAT COUNT` runs one encoder alone instead (tests/arm-cost.sh counts its
//! instructions under qemu-aarch64).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benchcam::camera::discovery::FixedDiscoverer;
use benchcam::camera::CameraService;
use benchcam::capture::pattern::{sample_frames, PatternDevice};
use benchcam::capture::PixelFormat;
use benchcam::clock::{Clock, SimClock, SystemClock};
use benchcam::config::Config;
use benchcam::record::index::RecordingType;
use benchcam::storage::{Limits, Statvfs, Storage};

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{Counting, ALLOCATIONS};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "support/figures.rs"]
mod figures;

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
    let device = PatternDevice::new(0, W, H, FPS, clock.clone());
    service_of(dir, clock, slots, device)
}

fn service_of(
    dir: &std::path::Path,
    clock: Arc<dyn Clock>,
    slots: usize,
    device: PatternDevice,
) -> Arc<CameraService> {
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
    CameraService::new(
        config,
        clock,
        storage,
        Box::new(FixedDiscoverer(vec![Arc::new(device)])),
    )
}

fn real_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let svc = service(dir.path(), Arc::new(SystemClock), 6);
    let cams = svc.detect_cameras().expect("camera");
    svc.start_recording("cam0", RecordingType::Rolling)
        .expect("recording");
    // A live H.264 viewer's mailbox, drained by its own thread the way a WebSocket
    // session takes units (the socket itself is not in this figure: benches/live.rs).
    let viewer = svc
        .watch_h264("cam0")
        .expect("camera")
        .unwrap_or_else(|_| panic!("the pattern camera records H.264"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drain = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut units = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match viewer.try_next() {
                    Some(unit) => {
                        units += 1;
                        drop(unit);
                    }
                    None => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            units
        })
    };
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
    stop.store(true, Ordering::Relaxed);
    let viewer_units = drain.join().expect("viewer thread");
    svc.shutdown();
    println!(
        "real time {W}x{H} @ {FPS} fps pattern -> H.264 recording + 1 H.264 viewer mailbox, 10 s:"
    );
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
    println!("  H.264 viewer units      {viewer_units} (whole run)");
    figures::row(
        "heap allocations per frame, capture → ring → encoder → recorder + H.264 viewer mailbox",
        &format!(
            "{:.3} ({allocs} in {frames} frames)",
            allocs as f64 / frames.max(1) as f64
        ),
        "—",
        None,
        "0",
        Some(allocs == 0),
    );
}

/// The threads a recording runs on (name prefixes): the encoder stage, the recorder, the
/// clip writer.
const RECORDER_THREADS: [&str; 3] = ["enc-", "rec-", "clipw-"];

fn sustained() {
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
    let rec = || RECORDER_THREADS.map(threads_cpu).iter().sum::<f64>();
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
}

/// Frames the recording comparison feeds benchcam and every peer: 10 s at 30 fps.
const COMPARED_FRAMES: usize = 300;

/// benchcam's recording CPU per frame (encoder stage + recorder + clip writer) for the
/// compared frames, replayed by a pattern camera at 30 fps in real time, as the peers get them.
fn paced(frames: &Arc<Vec<Vec<u8>>>) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let device = PatternDevice::new(0, W, H, FPS, clock.clone()).replaying(Arc::clone(frames));
    let svc = service_of(dir.path(), clock, 6, device);
    let cams = svc.detect_cameras().expect("camera");
    svc.start_recording("cam0", RecordingType::Rolling)
        .expect("recording");
    let rec = || RECORDER_THREADS.map(threads_cpu);
    let recorded = || svc.health_check().cameras[0].frames_recorded;
    // Until the encoder is open and the first fragment written.
    std::thread::sleep(Duration::from_secs(1));
    let keyframes = || cams[0].encoder.stats.keyframes.load(Ordering::Relaxed);
    let (cpu0, frames0, keyframes0) = (rec(), recorded(), keyframes());
    std::thread::sleep(Duration::from_secs_f64(COMPARED_FRAMES as f64 / FPS as f64));
    let split: Vec<f64> = rec().iter().zip(cpu0).map(|(t, t0)| t - t0).collect();
    let cpu: f64 = split.iter().sum();
    let frames = recorded() - frames0;
    let keyframes = keyframes() - keyframes0;
    let health = svc.health_check();
    let ring_drops = cams[0]
        .capture
        .stats
        .ring_full_drops
        .load(Ordering::Relaxed);
    svc.shutdown();
    let per_frame = cpu / frames.max(1) as f64;
    println!(
        "paced recording, the {COMPARED_FRAMES} compared frames replayed at {FPS} fps (encoder stage + recorder + clip writer):"
    );
    println!(
        "  frames recorded         {frames}, dropped: ring {ring_drops} / recorder {}",
        health.cameras[0].recorder_frames_dropped
    );
    println!(
        "  keyframes               {keyframes} (one per 1 s fragment, as the peers' -g {FPS})"
    );
    let ms = |t: f64| t * 1000.0 / frames.max(1) as f64;
    println!(
        "  recorder CPU per frame  {:.2} ms (encoder {:.2}, recorder {:.2}, clip writer {:.2})",
        per_frame * 1000.0,
        ms(split[0]),
        ms(split[1]),
        ms(split[2])
    );
    per_frame
}

/// The libx264 peer's arguments: its fastest preset, no frame delay.
const X264_ULTRAFAST: [&str; 6] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
];

/// The peers' bitrate: the recorder's default (`bitrate_kbps = 3000`).
const BITRATE: &str = "3M";

fn versus_ffmpeg() {
    let have = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        println!("ffmpeg comparison: skipped (ffmpeg not installed; tests/run.sh installs it)");
        for peer in ["libx264 ultrafast", "libopenh264"] {
            figures::not_measured(
                &format!("recording CPU per 720p frame / ffmpeg {peer}"),
                "ffmpeg not installed",
                "≤ 1.0",
            );
        }
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = dir.path().join("frames.yuv");
    let frames = COMPARED_FRAMES;
    let raw_frames =
        Arc::new(sample_frames(W, H, PixelFormat::I420, false, frames).expect("pattern frames"));
    std::fs::write(&raw, raw_frames.concat()).expect("writing raw frames");
    let ours_per_frame = paced(&raw_frames);
    let out = dir.path().join("out.mp4");
    println!(
        "recording CPU / ffmpeg, the same {frames} raw {W}x{H} I420 pattern frames at {FPS} fps → H.264 fragmented MP4, \
         {BITRATE}bit/s, 1 thread, keyframe every {FPS} frames; benchcam {:.2} ms CPU/frame:",
        ours_per_frame * 1000.0
    );
    // (label, the figure's target or None for a reference row, how to run it)
    let peers: [(&str, Option<f64>, Peer); 4] = [
        (
            "libx264 ultrafast",
            Some(1.0),
            Peer::Ffmpeg(X264_ULTRAFAST.to_vec()),
        ),
        ("libopenh264", Some(1.0), Peer::OpenH264("ffmpeg")),
        (
            "libopenh264, benchcam's settings",
            None,
            Peer::OpenH264("benchcam"),
        ),
        (
            "libx264 veryfast",
            None,
            Peer::Ffmpeg(vec!["-c:v", "libx264", "-preset", "veryfast"]),
        ),
    ];
    let openh264_in_ffmpeg = ffmpeg_has_encoder("libopenh264");
    let mut openh264_enc: Option<Result<std::path::PathBuf, String>> = None;
    for (name, target, peer) in peers {
        let figure = format!("recording CPU per 720p frame / ffmpeg {name}");
        let target_text = target.map_or("—".to_string(), |t| format!("≤ {t:.1}"));
        let before = children_cpu();
        let how;
        let ran = match peer {
            Peer::Ffmpeg(args) => {
                how = "ffmpeg -re -f rawvideo -i frames.yuv".to_string();
                ffmpeg_encode(&raw, &args, &out, true)
            }
            // `ffmpeg -c:v libopenh264` where this ffmpeg has it, else the same library
            // driven with ffmpeg's parameters and muxed by ffmpeg (`-c copy`).
            Peer::OpenH264("ffmpeg") if openh264_in_ffmpeg => {
                how = "ffmpeg -re -c:v libopenh264".to_string();
                ffmpeg_encode(&raw, &["-c:v", "libopenh264"], &out, true)
            }
            Peer::OpenH264(mode) => {
                let enc = openh264_enc
                    .get_or_insert_with(|| build_openh264_peer(dir.path()))
                    .clone();
                match enc {
                    Ok(enc) => {
                        how = format!(
                            "system libopenh264 {} ({mode} settings, paced) | ffmpeg -c copy (this ffmpeg has no libopenh264)",
                            openh264_version()
                        );
                        openh264_then_mux(&enc, &raw, frames, mode, &out)
                    }
                    Err(why) => {
                        how = String::new();
                        Err(why)
                    }
                }
            }
        };
        match ran {
            Ok(()) => {
                let per_frame = (children_cpu() - before) / frames as f64;
                let ratio = ours_per_frame / per_frame;
                println!(
                    "  {name:34} {:.2} ms CPU/frame; benchcam / peer = {ratio:.2} [{how}]",
                    per_frame * 1000.0
                );
                figures::row(
                    &figure,
                    &format!("{:.2} ms", ours_per_frame * 1000.0),
                    &format!("{:.2} ms", per_frame * 1000.0),
                    Some(ratio),
                    &target_text,
                    target.map(|t| ratio <= t),
                );
            }
            Err(why) => {
                println!("  {name:34} not measured: {why}");
                if target.is_some() {
                    figures::not_measured(&figure, &why, &target_text);
                }
            }
        }
    }
    quality(dir.path(), &raw, &raw_frames);
}

/// What the encoders make of the picture: PSNR and SSIM of benchcam's clips (its default
/// settings, and with `recording.deblocking = true`) and of libx264 `ultrafast`'s, against
/// the same raw frames, decoded by ffmpeg. A CPU ratio only compares like with like when the
/// pictures are as good; these rows have no target of their own.
fn quality(dir: &std::path::Path, raw: &std::path::Path, frames: &[Vec<u8>]) {
    println!(
        "picture quality, the same {} raw frames, {BITRATE}bit/s (ffmpeg psnr and ssim filters):",
        frames.len()
    );
    let mut encoded = Vec::new();
    for deblocking in [false, true] {
        let label = if deblocking {
            "benchcam, deblocking = true"
        } else {
            "benchcam (default: no deblocking)"
        };
        let path = dir.join(format!("benchcam-deblocking-{deblocking}.h264"));
        encoded.push((
            label,
            benchcam_annexb(frames, deblocking, &path).map(|()| path),
        ));
    }
    let x264 = dir.join("x264.mp4");
    encoded.push((
        "libx264 ultrafast",
        ffmpeg_encode(raw, &X264_ULTRAFAST, &x264, false).map(|()| x264),
    ));
    let mut measured = Vec::new();
    for (label, path) in encoded {
        match path.and_then(|p| psnr_ssim(raw, &p).map(|q| (q, p))) {
            Ok(((psnr, ssim), p)) => {
                let kb = std::fs::metadata(&p).map_or(0, |m| m.len()) / 1000;
                println!("  {label:34} PSNR {psnr:.2} dB, SSIM {ssim:.4}, {kb} kB");
                measured.push((label, psnr, ssim));
            }
            Err(why) => println!("  {label:34} not measured: {why}"),
        }
    }
    if let (Some(ours), Some(x264)) = (
        measured
            .iter()
            .find(|m| m.0.starts_with("benchcam (default")),
        measured.iter().find(|m| m.0 == "libx264 ultrafast"),
    ) {
        figures::row(
            "picture quality, PSNR / SSIM: benchcam's default settings vs libx264 ultrafast (same frames and bitrate as the CPU rows)",
            &format!("{:.2} dB / {:.4}", ours.1, ours.2),
            &format!("{:.2} dB / {:.4}", x264.1, x264.2),
            None,
            "—",
            None,
        );
    }
}

/// benchcam's software encoder over `frames` (an IDR every `FPS` frames, as the recorder's
/// fragments force), written as an Annex B stream ffmpeg reads.
fn benchcam_annexb(
    frames: &[Vec<u8>],
    deblocking: bool,
    path: &std::path::Path,
) -> Result<(), String> {
    use benchcam::encode::h264::{H264Encode, H264Encoder, Settings};
    use benchcam::encode::yuv::I420;
    let mut encoder = H264Encoder::with_settings(Settings {
        fps: FPS,
        bitrate_kbps: 3000,
        deblocking,
    });
    let (mut sample, mut stream) = (Vec::new(), Vec::new());
    for (i, frame) in frames.iter().enumerate() {
        sample.clear();
        let picture = I420::from_packed(frame, W, H).map_err(|e| e.to_string())?;
        let e = encoder
            .encode(&picture, i % FPS as usize == 0, &mut sample)
            .map_err(|e| e.to_string())?;
        if e.keyframe {
            let (sps, pps) = encoder.parameter_sets().ok_or("no SPS/PPS after an IDR")?;
            for nal in [sps, pps] {
                stream.extend_from_slice(&[0, 0, 0, 1]);
                stream.extend_from_slice(nal);
            }
        }
        // AVCC (4-byte lengths) → Annex B (start codes).
        let mut at = 0;
        while at + 4 <= sample.len() {
            let len = u32::from_be_bytes(sample[at..at + 4].try_into().expect("4 bytes")) as usize;
            stream.extend_from_slice(&[0, 0, 0, 1]);
            stream.extend_from_slice(&sample[at + 4..at + 4 + len]);
            at += 4 + len;
        }
    }
    std::fs::write(path, stream).map_err(|e| format!("{}: {e}", path.display()))
}

/// Average PSNR (dB, all planes) and SSIM of `encoded` against the raw I420 `raw`.
fn psnr_ssim(raw: &std::path::Path, encoded: &std::path::Path) -> Result<(f64, f64), String> {
    let size = format!("{W}x{H}");
    // Frames paired by their index (one time base, setpts=N), not their times: raw video and Annex B
    // streams carry no rate of their own.
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-i"])
        .arg(encoded)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", &size, "-i"])
        .arg(raw)
        .args([
            "-lavfi",
            "[0:v]settb=1/30,setpts=N,split[a0][a1];[1:v]settb=1/30,setpts=N,split[b0][b1];[a0][b0]psnr;[a1][b1]ssim",
            "-f",
            "null",
            "-",
        ])
        .output()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let after = |key: &str| {
        log.lines()
            .filter_map(|l| l.split(key).nth(1))
            .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .next_back()
    };
    match (after("average:"), after("All:")) {
        (Some(psnr), Some(ssim)) => Ok((psnr, ssim)),
        _ => Err(format!("no psnr/ssim in ffmpeg's output ({})", out.status)),
    }
}

enum Peer {
    /// ffmpeg encoding the raw file with these codec arguments.
    Ffmpeg(Vec<&'static str>),
    /// benches/peers/openh264_enc.c with these settings (`ffmpeg` or `benchcam`), muxed
    /// by ffmpeg.
    OpenH264(&'static str),
}

/// The fMP4 arguments every peer's ffmpeg writes with: 1 s fragments as the recorder's.
const FMP4: [&str; 4] = [
    "-movflags",
    "frag_keyframe+empty_moov+default_base_moof",
    "-frag_duration",
    "1000000",
];

/// `paced`: ffmpeg reads the frames at their rate (`-re`), as from a camera.
fn ffmpeg_encode(
    raw: &std::path::Path,
    codec: &[&str],
    out: &std::path::Path,
    paced: bool,
) -> Result<(), String> {
    let size = format!("{W}x{H}");
    let fps = FPS.to_string();
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(paced.then_some("-re"))
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p"])
        .args(["-s", &size, "-r", &fps, "-i"])
        .arg(raw)
        .args(codec)
        .args(["-b:v", BITRATE, "-g", &fps, "-threads", "1"])
        .args(FMP4)
        .arg(out)
        .status()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("ffmpeg failed ({status}): encoder missing?"))
}

fn ffmpeg_has_encoder(name: &str) -> bool {
    std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|w| w == name)
        })
}

fn openh264_version() -> String {
    std::process::Command::new("pkg-config")
        .args(["--modversion", "openh264"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(String::new, |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
}

/// Compiles benches/peers/openh264_enc.c against the system libopenh264.
fn build_openh264_peer(dir: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let flags = std::process::Command::new("pkg-config")
        .args(["--cflags", "--libs", "openh264"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .ok_or(
            "no libopenh264 in ffmpeg or for the C peer (Debian: apt-get install libopenh264-dev)",
        )?;
    let exe = dir.join("openh264_enc");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/openh264_enc.c");
    let status = std::process::Command::new("cc")
        .args(["-O2", source, "-o"])
        .arg(&exe)
        .args(String::from_utf8_lossy(&flags.stdout).split_whitespace())
        .status()
        .map_err(|e| format!("cc: {e}"))?;
    status
        .success()
        .then_some(exe)
        .ok_or_else(|| format!("compiling {source} failed ({status})"))
}

/// The C peer's Annex B stream piped into `ffmpeg -c copy` → fMP4; both are children.
fn openh264_then_mux(
    enc: &std::path::Path,
    raw: &std::path::Path,
    frames: usize,
    mode: &str,
    out: &std::path::Path,
) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let mut encoder = Command::new(enc)
        .arg(raw)
        .args([
            W.to_string(),
            H.to_string(),
            FPS.to_string(),
            frames.to_string(),
        ])
        .args(["3000000", mode, "paced"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", enc.display()))?;
    let stream = encoder.stdout.take().expect("piped stdout");
    let mux = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "h264", "-framerate"])
        .arg(FPS.to_string())
        .args(["-i", "-", "-c", "copy"])
        .args(FMP4)
        .arg(out)
        .stdin(Stdio::from(stream))
        .status()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    let encoded = encoder.wait().map_err(|e| format!("openh264_enc: {e}"))?;
    if !encoded.success() || !mux.success() {
        return Err(format!(
            "openh264 peer failed (encoder {encoded}, mux {mux})"
        ));
    }
    Ok(())
}

fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Frames `--encode-loop` draws before it encodes (the most it can encode).
const LOOP_FRAMES: usize = 40;

/// `--encode-loop WHAT COUNT`: draws `LOOP_FRAMES` pattern frames, then encodes the first
/// `COUNT` of them with one encoder and nothing else running: `jpeg` (benchcam's, quality
/// 80), `jpeg-encoder` (jpeg-encoder 0.7 fed planar rows, quality 80) or `h264` (benchcam's
/// openh264 encoder at the recorder's settings, an IDR every `FPS` frames). For
/// tests/arm-cost.sh, which counts the instructions of two COUNTs under qemu-aarch64 and
/// takes the difference, so start-up and pattern drawing cancel out.
fn encode_loop(what: &str, count: usize) {
    use benchcam::encode::h264::{H264Encode, H264Encoder};
    use benchcam::encode::jpeg;
    use benchcam::encode::yuv::I420;
    assert!(count <= LOOP_FRAMES, "at most {LOOP_FRAMES} frames");
    let frames =
        sample_frames(W, H, PixelFormat::I420, false, LOOP_FRAMES).expect("pattern frames");
    let mut out = Vec::with_capacity(1 << 21);
    let mut bytes = 0;
    match what {
        "jpeg" => {
            for frame in &frames[..count] {
                jpeg::encode_i420(frame, W, H, 80, &mut out).expect("encodes");
                bytes += out.len();
            }
        }
        "jpeg-encoder" => {
            for frame in &frames[..count] {
                out.clear();
                let picture = I420::from_packed(frame, W, H).expect("I420");
                let mut encoder = jpeg_encoder::Encoder::new(&mut out, 80);
                encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
                encoder.encode_image(PlanarRows(picture)).expect("encodes");
                bytes += out.len();
            }
        }
        "h264" => {
            let mut encoder = H264Encoder::new(FPS, 3000);
            for (i, frame) in frames[..count].iter().enumerate() {
                out.clear();
                let picture = I420::from_packed(frame, W, H).expect("I420");
                let keyframe = i % FPS as usize == 0;
                encoder
                    .encode(&picture, keyframe, &mut out)
                    .expect("encodes");
                bytes += out.len();
            }
        }
        other => panic!("--encode-loop: unknown encoder {other} (jpeg, jpeg-encoder, h264)"),
    }
    println!("encode-loop {what}: {count} frames, {bytes} bytes");
}

/// jpeg-encoder fed from the planes row by row (as benches/jpeg.rs does): its best case
/// for I420, since it takes full-width rows and subsamples itself.
struct PlanarRows<'a>(benchcam::encode::yuv::I420<'a>);

impl jpeg_encoder::ImageBuffer for PlanarRows<'_> {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        jpeg_encoder::JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.0.width as u16
    }

    fn height(&self) -> u16 {
        self.0.height as u16
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let p = &self.0;
        let y = y as usize;
        let cw = p.width.div_ceil(2);
        buffers[0].extend_from_slice(&p.y[y * p.width..][..p.width]);
        for (plane, buffer) in [p.u, p.v].into_iter().zip(&mut buffers[1..3]) {
            let row = &plane[(y / 2) * cw..][..cw];
            buffer.extend(row.iter().flat_map(|&c| [c, c]).take(p.width));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--encode-loop") {
        let what = args.get(i + 1).expect("--encode-loop WHAT COUNT");
        let count = args.get(i + 2).and_then(|c| c.parse().ok()).expect("COUNT");
        encode_loop(what, count);
        return;
    }
    real_time();
    sustained();
    versus_ffmpeg();
}
