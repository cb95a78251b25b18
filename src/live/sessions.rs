//! Viewer sessions: [`LiveStreamingService`] admits them (capacity, quality, bandwidth,
//! the CPU governor that steps quality down), and keeps their stats for
//! `/api/v1/streaming/sessions` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::camera::{CameraService, NoFrame};
use crate::clock::{monotonic_now_us, rfc3339_ms};
use crate::config::StreamingConfig;

use super::hub::LiveHub;
use super::Quality;

/// MJPEG over HTTP or the WebSocket protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Mjpeg,
    Ws,
}

/// Why a session was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    OverCapacity { max_sessions: usize },
}

/// Live figures of one session; shared between the session and the service's list.
pub struct SessionStats {
    pub id: u64,
    pub kind: SessionKind,
    pub camera: String,
    pub client: String,
    started_wall_us: i64,
    /// What the viewer asked for (`Quality as u8`); CPU load may lower what it gets.
    requested: AtomicU8,
    bytes_sent: AtomicU64,
    frames_sent: AtomicU64,
    /// Frames not sent to stay under the bandwidth cap.
    frames_skipped_bandwidth: AtomicU64,
    /// Sent the recording's H.264 (a WebSocket subscribed with `codec: h264`).
    h264: AtomicBool,
    /// Send times (monotonic µs) of the recent frames, for the fps figure.
    recent: Mutex<heapless::Deque<u64, 128>>,
}

/// The fps window: frames sent in the last this many µs.
const FPS_WINDOW_US: u64 = 2_000_000;

impl SessionStats {
    fn fps(&self) -> f64 {
        let now = monotonic_now_us();
        let recent = self.recent.lock().expect("session stats poisoned");
        let count = recent
            .iter()
            .filter(|&&t| now.saturating_sub(t) <= FPS_WINDOW_US)
            .count();
        count as f64 / (FPS_WINDOW_US as f64 / 1e6)
    }
}

/// What `/api/v1/streaming/sessions` shows for one session.
#[derive(Clone, Debug, Serialize)]
pub struct SessionInfo {
    pub id: u64,
    pub kind: SessionKind,
    pub camera: String,
    pub client: String,
    /// The quality frames are sent at now.
    pub quality: Quality,
    pub requested_quality: Quality,
    /// `jpeg` or `h264`.
    pub codec: &'static str,
    pub fps: f64,
    pub bytes_sent: u64,
    pub frames_sent: u64,
    pub frames_skipped_bandwidth: u64,
    pub started_at: String,
}

/// Streaming settings that can change at run time (`PATCH /api/v1/settings`).
#[derive(Clone, Debug)]
struct LiveSettings {
    enabled: bool,
    max_sessions: usize,
    default_quality: Quality,
    max_bandwidth_kbps: u32,
    cpu_high_water: u32,
}

impl LiveSettings {
    fn from_config(config: &StreamingConfig) -> LiveSettings {
        LiveSettings {
            enabled: config.enabled,
            max_sessions: config.max_sessions,
            default_quality: Quality::parse(&config.default_quality).unwrap_or(Quality::Medium),
            max_bandwidth_kbps: config.max_bandwidth_kbps,
            cpu_high_water: config.cpu_high_water,
        }
    }
}

/// Totals since start, for metrics.
#[derive(Default, Debug)]
pub struct LiveTotals {
    pub sessions_started: AtomicU64,
    pub sessions_refused: AtomicU64,
    /// Bytes sent by every session, including those already closed.
    pub bytes_sent: AtomicU64,
    pub frames_sent: AtomicU64,
}

/// Admits live sessions and keeps their stats; owns the LiveHub.
pub struct LiveStreamingService {
    pub hub: Arc<LiveHub>,
    service: Arc<CameraService>,
    settings: RwLock<LiveSettings>,
    sessions: Mutex<BTreeMap<u64, Arc<SessionStats>>>,
    next_id: AtomicU64,
    /// Process CPU use over the last sample window, percent of all cores x 1000.
    cpu_milli_percent: AtomicU64,
    /// Quality levels every session is lowered by because of CPU load (0-2).
    cpu_step: AtomicU8,
    pub totals: LiveTotals,
    stopped: AtomicBool,
}

/// A live session; dropping it removes it from the list.
pub struct Session {
    stats: Arc<SessionStats>,
    live: Arc<LiveStreamingService>,
    bandwidth: Bandwidth,
}

impl LiveStreamingService {
    /// Creates the service and its CPU monitor thread (which ends with the service).
    pub fn new(service: Arc<CameraService>, config: &StreamingConfig) -> Arc<Self> {
        let live = Arc::new(LiveStreamingService {
            hub: LiveHub::new(Arc::clone(&service), config.quality.clone()),
            service,
            settings: RwLock::new(LiveSettings::from_config(config)),
            sessions: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            cpu_milli_percent: AtomicU64::new(0),
            cpu_step: AtomicU8::new(0),
            totals: LiveTotals::default(),
            stopped: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&live);
        if let Err(e) = std::thread::Builder::new()
            .name("live-cpu".into())
            .spawn(move || cpu_monitor(weak))
        {
            log::warn!("live: no CPU monitor ({e}); quality will not step down under load");
        }
        live
    }

    fn settings(&self) -> LiveSettings {
        self.settings
            .read()
            .expect("live settings poisoned")
            .clone()
    }

    /// Takes the run-time changeable streaming settings (enabled, default quality, ...).
    pub fn apply_config(&self, config: &StreamingConfig) {
        *self.settings.write().expect("live settings poisoned") = LiveSettings::from_config(config);
    }

    pub fn is_enabled(&self) -> bool {
        self.settings
            .read()
            .expect("live settings poisoned")
            .enabled
    }

    pub fn default_quality(&self) -> Quality {
        self.settings
            .read()
            .expect("live settings poisoned")
            .default_quality
    }

    pub fn max_sessions(&self) -> usize {
        self.settings
            .read()
            .expect("live settings poisoned")
            .max_sessions
    }

    /// Process CPU use over the last 2 s window, percent of all cores.
    pub fn cpu_percent(&self) -> f64 {
        self.cpu_milli_percent.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Quality levels sessions are currently lowered by because of CPU load.
    pub fn cpu_step(&self) -> u8 {
        self.cpu_step.load(Ordering::Relaxed)
    }

    /// The quality a session asking for `requested` gets now.
    pub fn effective_quality(&self, requested: Quality) -> Quality {
        requested.step_down(self.cpu_step())
    }

    /// Admits a session unless `max_sessions` (MJPEG and WebSocket together) are open.
    pub fn create_session(
        self: &Arc<Self>,
        kind: SessionKind,
        camera: &str,
        client: &str,
        quality: Quality,
    ) -> Result<Session, Refused> {
        let settings = self.settings();
        let mut sessions = self.sessions.lock().expect("sessions poisoned");
        if sessions.len() >= settings.max_sessions {
            self.totals.sessions_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::OverCapacity {
                max_sessions: settings.max_sessions,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(SessionStats {
            id,
            kind,
            camera: camera.to_string(),
            client: client.to_string(),
            started_wall_us: self.service.clock().wall_us(),
            requested: AtomicU8::new(quality as u8),
            bytes_sent: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            frames_skipped_bandwidth: AtomicU64::new(0),
            h264: AtomicBool::new(false),
            recent: Mutex::new(heapless::Deque::new()),
        });
        sessions.insert(id, Arc::clone(&stats));
        drop(sessions);
        self.totals.sessions_started.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "live: session {id} ({kind:?}) opened by {client} for {camera} at {}",
            quality.name()
        );
        Ok(Session {
            stats,
            live: Arc::clone(self),
            bandwidth: Bandwidth::new(settings.max_bandwidth_kbps),
        })
    }

    /// Every open session, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<SessionStats>> = self
            .sessions
            .lock()
            .expect("sessions poisoned")
            .values()
            .cloned()
            .collect();
        sessions
            .iter()
            .map(|s| {
                let requested = Quality::from_index(s.requested.load(Ordering::Relaxed));
                SessionInfo {
                    id: s.id,
                    kind: s.kind,
                    camera: s.camera.clone(),
                    client: s.client.clone(),
                    quality: self.effective_quality(requested),
                    requested_quality: requested,
                    codec: if s.h264.load(Ordering::Relaxed) {
                        "h264"
                    } else {
                        "jpeg"
                    },
                    fps: s.fps(),
                    bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
                    frames_sent: s.frames_sent.load(Ordering::Relaxed),
                    frames_skipped_bandwidth: s.frames_skipped_bandwidth.load(Ordering::Relaxed),
                    started_at: rfc3339_ms(s.started_wall_us),
                }
            })
            .collect()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().expect("sessions poisoned").len()
    }

    /// Open sessions watching `camera`.
    pub fn viewers_of(&self, camera: &str) -> usize {
        self.sessions
            .lock()
            .expect("sessions poisoned")
            .values()
            .filter(|s| s.camera == camera)
            .count()
    }

    /// Why `camera` has no live frame to give right now (never invents a frame).
    pub fn no_frame_reason(&self, camera: &str) -> NoFrame {
        if !self.is_enabled() {
            return NoFrame::StreamingDisabled;
        }
        match self.service.latest_frame(camera) {
            Err(_) => NoFrame::CameraError,
            Ok(Err(reason)) => reason,
            // Capture has frames but none reached the viewer in time: the JPEG encoder
            // is failing (logged by the encoder), which the viewer sees as a camera error.
            Ok(Ok(_)) => NoFrame::CameraError,
        }
    }

    /// Ends every viewer's stream; new sessions are refused from now on.
    pub fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
        self.hub.shutdown();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn sample_cpu(&self, percent: f64) {
        self.cpu_milli_percent
            .store((percent * 1000.0) as u64, Ordering::Relaxed);
        let high_water = self.settings().cpu_high_water;
        let old = self.cpu_step();
        let new = next_cpu_step(old, percent, high_water);
        if new != old {
            self.cpu_step.store(new, Ordering::Relaxed);
            if new > old {
                log::warn!(
                    "live: process CPU {percent:.0}% is above cpu_high_water {high_water}%: live quality lowered by {new} level(s)"
                );
            } else {
                log::info!(
                    "live: process CPU {percent:.0}% is back down: live quality lowered by {new} level(s)"
                );
            }
        }
    }
}

impl Session {
    pub fn id(&self) -> u64 {
        self.stats.id
    }

    pub fn camera(&self) -> &str {
        &self.stats.camera
    }

    pub fn requested_quality(&self) -> Quality {
        Quality::from_index(self.stats.requested.load(Ordering::Relaxed))
    }

    pub fn set_quality(&self, quality: Quality) {
        self.stats.requested.store(quality as u8, Ordering::Relaxed);
    }

    /// The quality this session is served at now (requested, lowered under CPU load).
    pub fn quality(&self) -> Quality {
        self.live.effective_quality(self.requested_quality())
    }

    pub fn live(&self) -> &Arc<LiveStreamingService> {
        &self.live
    }

    /// Whether a frame of `bytes` fits under the bandwidth cap now; counts a skip if not.
    pub fn admit(&mut self, bytes: usize) -> bool {
        if self.bandwidth.admit(bytes, Instant::now()) {
            true
        } else {
            self.stats
                .frames_skipped_bandwidth
                .fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Whether the session is sent H.264 (shown in `/api/v1/streaming/sessions`).
    pub fn set_h264(&self, on: bool) {
        self.stats.h264.store(on, Ordering::Relaxed);
    }

    /// Counts a frame sent (its bytes counted separately with `add_bytes`).
    pub fn frame_sent(&self) {
        self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.live.totals.frames_sent.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.stats.recent.lock().expect("session stats poisoned");
        if recent.is_full() {
            recent.pop_front();
        }
        // Cannot fail: a slot was freed above if the deque was full.
        let _ = recent.push_back(monotonic_now_us());
    }

    pub fn add_bytes(&self, bytes: usize) {
        self.stats
            .bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.live
            .totals
            .bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn bytes_sent(&self) -> u64 {
        self.stats.bytes_sent.load(Ordering::Relaxed)
    }

    pub fn fps(&self) -> f64 {
        self.stats.fps()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.live
            .sessions
            .lock()
            .expect("sessions poisoned")
            .remove(&self.stats.id);
        log::info!(
            "live: session {} ({:?}) from {} closed after {} frames, {} bytes",
            self.stats.id,
            self.stats.kind,
            self.stats.client,
            self.stats.frames_sent.load(Ordering::Relaxed),
            self.stats.bytes_sent.load(Ordering::Relaxed)
        );
    }
}

/// A token bucket over bytes: a frame is sent while the bucket is not empty (it may go
/// into debt by one frame), so the average stays under the cap and no frame is split.
#[derive(Debug)]
pub struct Bandwidth {
    /// Bytes per second; 0 = no cap.
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Bandwidth {
    pub fn new(max_kbps: u32) -> Self {
        let rate = f64::from(max_kbps) * 1000.0 / 8.0;
        Bandwidth {
            rate,
            tokens: rate,
            last: None,
        }
    }

    pub fn admit(&mut self, bytes: usize, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            // At most one second of burst.
            self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        }
        self.last = Some(now);
        if self.tokens > 0.0 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

/// Quality step for the next window: one level down while CPU is above the high-water
/// mark, one level back up once it is clearly below it (70 %), so it does not flap.
pub fn next_cpu_step(step: u8, cpu_percent: f64, high_water: u32) -> u8 {
    let high = f64::from(high_water);
    if cpu_percent > high {
        (step + 1).min(2)
    } else if cpu_percent < high * 0.7 {
        step.saturating_sub(1)
    } else {
        step
    }
}

/// CPU time (user + system) this process has used, in seconds, from /proc/self/stat.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let ticks = parse_cpu_ticks(&stat)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line, in clock ticks. The
/// command name (field 2) may hold spaces and parentheses, so fields count from the last ')'.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of this process in bytes, from /proc/self/statm.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as u64)
}

/// Samples process CPU every 2 s until the service is dropped or shut down.
fn cpu_monitor(live: Weak<LiveStreamingService>) {
    const WINDOW: Duration = Duration::from_secs(2);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut last = (Instant::now(), process_cpu_seconds());
    loop {
        std::thread::sleep(WINDOW);
        let Some(live) = live.upgrade() else { return };
        if live.is_stopped() {
            return;
        }
        let now = (Instant::now(), process_cpu_seconds());
        if let (Some(before), Some(after)) = (last.1, now.1) {
            let wall = now.0.duration_since(last.0).as_secs_f64();
            if wall > 0.0 {
                live.sample_cpu((after - before) / wall / cores * 100.0);
            }
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_cap_holds_the_average() {
        // 800 kbit/s = 100 kB/s; 10 kB frames offered at 100 fps for 10 s.
        let mut bw = Bandwidth::new(800);
        let start = Instant::now();
        let sent = (0..1000)
            .filter(|n| bw.admit(10_000, start + Duration::from_millis(n * 10)))
            .count();
        // 1 s of burst plus 10 s at 10 frames/s, give or take one frame.
        assert!((100..=112).contains(&sent), "sent {sent}");
        assert!(Bandwidth::new(0).admit(usize::MAX, start));
    }

    #[test]
    fn cpu_step_has_hysteresis() {
        assert_eq!(next_cpu_step(0, 90.0, 85), 1);
        assert_eq!(next_cpu_step(1, 95.0, 85), 2);
        assert_eq!(next_cpu_step(2, 99.0, 85), 2);
        assert_eq!(next_cpu_step(2, 70.0, 85), 2);
        assert_eq!(next_cpu_step(2, 50.0, 85), 1);
        assert_eq!(next_cpu_step(0, 10.0, 85), 0);
    }

    #[test]
    fn parses_proc_stat_with_odd_command_names() {
        let stat = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert!(process_cpu_seconds().is_some());
        assert!(resident_bytes().unwrap() > 0);
    }
}
