//! Live-view figures of DESIGN §9, printed by `cargo bench --bench live`:
//!
//! - CPU with 10 viewers / CPU with 1 viewer (same frames, same quality), per preset;
//! - capture → WebSocket client latency p50/p99 at 1280x720 30 fps on loopback;
//! - bytes per frame per quality preset;
//! - resident memory with 720p30 recording and 4 viewers.
//!
//! The service runs in this process on the test-pattern camera; the viewers run in a
//! child process (this binary again, with `--clients`), so the CPU and memory figures are
//! the service's alone. CPU is process time (utime + stime from /proc/self/stat) per
//! second of wall time. Latency compares each frame's capture timestamp (CLOCK_MONOTONIC,
//! the same clock in both processes) with the time its JPEG was fully received.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benchcam::app::{App, Hardware};
use benchcam::clock::monotonic_now_us;
use benchcam::config::{CameraSource, Config};
use benchcam::live::{process_cpu_seconds, resident_bytes};
use benchcam::web::serve_in_background;
use serde_json::{json, Value};
use tungstenite::Message;

const WARM_UP: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(8);
/// Rounds of (1 viewer, 10 viewers) per preset; the median ratio is reported, so one
/// round disturbed by other load on the machine does not decide the figure.
const REPEATS: usize = 3;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--clients") {
        let arg = |n: usize| args.get(i + n).expect("--clients ADDR N QUALITY SECONDS");
        run_clients(
            arg(1).parse().expect("address"),
            arg(2).parse().expect("viewer count"),
            arg(3),
            arg(4).parse().expect("seconds"),
        );
        return;
    }
    // `cargo test --benches` runs this binary too: keep that quick.
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return;
    }
    println!("benchcam live-view bench (1280x720 30 fps test pattern, viewers in a child process)");
    bench_cpu_ratio_and_bytes();
    bench_latency();
    bench_rss();
}

fn config(dir: &std::path::Path, record: bool) -> Config {
    let mut c = Config::default();
    c.service.data_dir = dir.to_path_buf();
    c.camera.source = CameraSource::Pattern;
    c.camera.width = 1280;
    c.camera.height = 720;
    c.camera.fps = 30;
    c.auto_recording.enabled = record;
    c.streaming.max_sessions = 16;
    // No quality step-down: the figures compare fixed presets.
    c.streaming.cpu_high_water = 100;
    // No bandwidth cap: every frame the preset allows is sent.
    c.streaming.max_bandwidth_kbps = 0;
    c
}

struct Service {
    app: App,
    addr: SocketAddr,
    _server: benchcam::web::BackgroundServer,
    _dir: tempfile::TempDir,
}

fn start(record: bool) -> Service {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), record);
    let hardware = Hardware::real(&config);
    let app = App::start(config, hardware).expect("service starts");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = serve_in_background(Arc::clone(&app.state), listener).expect("serve");
    let addr = server.addr;
    std::thread::sleep(Duration::from_millis(500));
    Service {
        app,
        addr,
        _server: server,
        _dir: dir,
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.app.shutdown();
    }
}

/// What the client process saw.
struct ClientReport {
    frames: u64,
    bytes: u64,
    latencies_us: Vec<u64>,
}

/// Runs `viewers` WebSocket viewers at `quality` in a child process for `seconds`;
/// returns once they have connected (the report comes from `finish`).
fn spawn_clients(
    addr: SocketAddr,
    viewers: usize,
    quality: &str,
    seconds: u64,
) -> std::process::Child {
    Command::new(std::env::current_exe().expect("own path"))
        .args([
            "--clients",
            &addr.to_string(),
            &viewers.to_string(),
            quality,
            &seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("client process")
}

fn finish(child: std::process::Child) -> ClientReport {
    let out = child.wait_with_output().expect("client process output");
    assert!(out.status.success(), "client process failed");
    let v: Value = serde_json::from_slice(&out.stdout).expect("client report is JSON");
    ClientReport {
        frames: v["frames"].as_u64().unwrap_or(0),
        bytes: v["bytes"].as_u64().unwrap_or(0),
        latencies_us: v["latencies_us"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default(),
    }
}

/// Process CPU over `WINDOW` after `WARM_UP`, in percent of one core.
fn measure_cpu() -> f64 {
    std::thread::sleep(WARM_UP);
    let (t0, c0) = (
        Instant::now(),
        process_cpu_seconds().expect("/proc/self/stat"),
    );
    std::thread::sleep(WINDOW);
    let (t1, c1) = (
        Instant::now(),
        process_cpu_seconds().expect("/proc/self/stat"),
    );
    (c1 - c0) / t1.duration_since(t0).as_secs_f64() * 100.0
}

fn bench_cpu_ratio_and_bytes() {
    println!();
    println!("CPU with 10 viewers / CPU with 1 viewer (service process, % of one core;");
    println!(
        "{REPEATS} alternating rounds of {} s each, median ratio):",
        WINDOW.as_secs()
    );
    let seconds = (WARM_UP + WINDOW).as_secs() + 2;
    for quality in ["medium", "high"] {
        let service = start(false);
        let mut rounds = Vec::new();
        for _ in 0..REPEATS {
            let one = spawn_clients(service.addr, 1, quality, seconds);
            let cpu_one = measure_cpu();
            let frames_one = finish(one).frames;
            let ten = spawn_clients(service.addr, 10, quality, seconds);
            let cpu_ten = measure_cpu();
            let frames_ten = finish(ten).frames;
            rounds.push((cpu_ten / cpu_one, cpu_one, cpu_ten, frames_one, frames_ten));
        }
        rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, cpu_one, cpu_ten, frames_one, frames_ten) = rounds[rounds.len() / 2];
        let all: Vec<String> = rounds.iter().map(|r| format!("{:.2}", r.0)).collect();
        println!(
            "  {quality:<6}  1 viewer {cpu_one:5.1}%  10 viewers {cpu_ten:5.1}%  ratio {ratio:.2} (rounds {})  target <= 1.15; frames received {frames_one} and {frames_ten}",
            all.join(", ")
        );
        drop(service);
    }

    println!();
    println!("Bytes per frame per quality preset (1280x720 test pattern):");
    let service = start(false);
    let presets = service.app.state.service.config().streaming.quality;
    for (quality, p) in [
        ("low", &presets.low),
        ("medium", &presets.medium),
        ("high", &presets.high),
    ] {
        let report = finish(spawn_clients(service.addr, 1, quality, 5));
        println!(
            "  {quality:<6} {}x{} @ {} fps, JPEG quality {}: {} bytes per frame ({} frames)",
            p.width,
            p.height,
            p.fps,
            p.jpeg_quality,
            report.bytes / report.frames.max(1),
            report.frames
        );
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn bench_latency() {
    println!();
    println!("Capture -> WebSocket client latency, 1280x720 30 fps, high preset, loopback:");
    let service = start(false);
    let report = finish(spawn_clients(service.addr, 1, "high", 12));
    let mut l = report.latencies_us;
    // Drop the first second: encoder start-up.
    let skip = l.len().min(30);
    l.drain(..skip);
    l.sort_unstable();
    let encoders = service.app.state.live.hub.stats();
    let high = encoders
        .iter()
        .find(|e| e.quality == benchcam::live::Quality::High)
        .expect("high encoder stats");
    let encode_ms = high.encode_seconds * 1000.0 / high.frames_encoded.max(1) as f64;
    println!(
        "  p50 {:.1} ms  p99 {:.1} ms  ({} frames); JPEG encode {:.1} ms per frame; target p99 <= {:.1} ms (1 frame interval + encode)",
        percentile(&l, 0.5) as f64 / 1000.0,
        percentile(&l, 0.99) as f64 / 1000.0,
        l.len(),
        encode_ms,
        1000.0 / 30.0 + encode_ms
    );
}

fn bench_rss() {
    println!();
    println!("Resident memory, 720p30 recording + 4 viewers (medium):");
    let service = start(true);
    let clients = spawn_clients(service.addr, 4, "medium", 15);
    std::thread::sleep(Duration::from_secs(12));
    let rss = resident_bytes().expect("/proc/self/statm") as f64 / (1 << 20) as f64;
    let health = service.app.state.service.health_check();
    let report = finish(clients);
    println!(
        "  {rss:.1} MiB (target <= 32 MiB); recorder dropped {} frames; viewers received {} frames",
        health
            .cameras
            .first()
            .map_or(0, |c| c.recorder_frames_dropped),
        report.frames
    );
}

/// The child process: `viewers` WebSocket viewers for `seconds`, then one JSON report.
fn run_clients(addr: SocketAddr, viewers: usize, quality: &str, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..viewers)
        .map(|_| {
            let quality = quality.to_string();
            std::thread::spawn(move || viewer(addr, &quality, deadline))
        })
        .collect();
    let mut frames = 0;
    let mut bytes = 0;
    let mut latencies = Vec::new();
    for t in threads {
        let (f, b, l) = t.join().expect("viewer thread");
        frames += f;
        bytes += b;
        latencies.extend(l);
    }
    println!(
        "{}",
        json!({"frames": frames, "bytes": bytes, "latencies_us": latencies})
    );
}

fn viewer(addr: SocketAddr, quality: &str, deadline: Instant) -> (u64, u64, Vec<u64>) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/api/v1/cameras/cam0/ws"), stream)
        .expect("WebSocket handshake");
    for message in [
        json!({"type": "set_quality", "quality": quality}),
        json!({"type": "subscribe"}),
    ] {
        ws.send(Message::text(message.to_string())).expect("send");
    }
    let (mut frames, mut bytes, mut latencies) = (0, 0, Vec::new());
    let mut pending: Option<Value> = None;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["type"] == "frame" {
                    pending = Some(v);
                }
            }
            Ok(Message::Binary(jpeg)) => {
                let now = monotonic_now_us();
                if let Some(meta) = pending.take() {
                    // Frames sent before set_quality took effect are not counted.
                    if meta["quality"] == quality {
                        frames += 1;
                        bytes += jpeg.len() as u64;
                        let captured = meta["timestamp_us"].as_u64().unwrap_or(now);
                        latencies.push(now.saturating_sub(captured));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("viewer: {e}");
                break;
            }
        }
    }
    let _ = ws.close(None);
    (frames, bytes, latencies)
}
