//! Live view: [`LiveHub`] turns each camera's newest frame into a JPEG once per quality
//! level, only while someone watches, and hands the shared JPEG to every viewer;
//! [`LiveStreamingService`] admits viewer sessions (capacity, quality, bandwidth, CPU)
//! and keeps their stats for `/api/v1/streaming/sessions` and `/metrics`.
//!
//! Per camera and quality level there is at most one encoder thread. It subscribes to the
//! camera's fanout with `Delivery::Latest` (so it can never hold up capture or the
//! recorder), drops frames that come faster than the preset's fps, encodes the rest
//! (an MJPEG camera's JPEGs pass through untouched when they fit the preset; larger ones
//! are decoded, scaled and re-encoded) and publishes an `Arc<LiveFrame>`. Each viewer
//! has a one-slot mailbox that the encoder overwrites: a slow or stalled viewer holds at
//! most one JPEG and never makes the encoder or another viewer wait. The thread exits
//! (and unsubscribes) when its last viewer goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::camera::{CameraService, NoFrame};
use crate::capture::PixelFormat;
use crate::clock::{monotonic_now_us, rfc3339_ms};
use crate::config::{QualityPreset, QualityPresets, StreamingConfig};
use crate::encode::jpeg;
use crate::encode::mjpeg::MjpegDecoder;
use crate::frame::{Delivery, Frame};

/// A live-view quality level (the `[streaming.quality]` presets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Low,
    Medium,
    High,
}

impl Quality {
    pub const ALL: [Quality; 3] = [Quality::Low, Quality::Medium, Quality::High];

    pub fn parse(name: &str) -> Option<Quality> {
        Quality::ALL.into_iter().find(|q| q.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Quality::Low => "low",
            Quality::Medium => "medium",
            Quality::High => "high",
        }
    }

    /// This level lowered by `steps` (never below `Low`).
    pub fn step_down(self, steps: u8) -> Quality {
        let index = (self as u8).saturating_sub(steps);
        Quality::ALL[index as usize]
    }

    pub fn preset(self, presets: &QualityPresets) -> &QualityPreset {
        match self {
            Quality::Low => &presets.low,
            Quality::Medium => &presets.medium,
            Quality::High => &presets.high,
        }
    }

    fn from_index(index: u8) -> Quality {
        Quality::ALL[(index as usize).min(2)]
    }
}

/// One encoded live frame, shared by every viewer of its camera and quality.
#[derive(Debug)]
pub struct LiveFrame {
    pub camera: Arc<str>,
    pub frame_number: u64,
    /// Capture time on CLOCK_MONOTONIC, µs (the frame's own timestamp).
    pub timestamp_us: u64,
    pub quality: Quality,
    pub width: u32,
    pub height: u32,
    pub jpeg: Bytes,
}

/// Counters of one encoder (camera x quality), for metrics.
#[derive(Default, Debug)]
pub struct EncoderCounters {
    pub frames_encoded: AtomicU64,
    /// MJPEG frames sent on without re-encoding.
    pub frames_passed_through: AtomicU64,
    /// Frames skipped because they came faster than the preset's fps.
    pub frames_skipped_fps: AtomicU64,
    pub encode_errors: AtomicU64,
    pub encode_us_total: AtomicU64,
    pub jpeg_bytes_total: AtomicU64,
}

/// A snapshot of one encoder's state for metrics.
#[derive(Clone, Debug, Serialize)]
pub struct EncoderStats {
    pub camera: String,
    pub quality: Quality,
    pub viewers: usize,
    pub running: bool,
    pub frames_encoded: u64,
    pub frames_passed_through: u64,
    pub frames_skipped_fps: u64,
    pub encode_errors: u64,
    pub encode_seconds: f64,
    pub jpeg_bytes: u64,
    /// Frames replaced in a viewer's mailbox before that viewer took them.
    pub viewer_skips: u64,
}

struct ViewerEntry {
    id: u64,
    mailbox: async_channel::Sender<Arc<LiveFrame>>,
}

/// Who watches one camera at one quality, and whether its encoder thread runs.
#[derive(Default)]
struct Viewers {
    next_id: u64,
    list: Vec<ViewerEntry>,
    encoder_running: bool,
}

/// The encoder of one camera at one quality level, and its viewers.
struct Channel {
    camera: Arc<str>,
    quality: Quality,
    preset: QualityPreset,
    viewers: Mutex<Viewers>,
    counters: EncoderCounters,
    viewer_skips: AtomicU64,
}

impl Channel {
    /// Decides, under the viewer lock, whether the encoder thread should stop; a viewer
    /// arriving afterwards sees `encoder_running == false` and starts a new thread.
    fn encoder_should_exit(&self, shutdown: &AtomicBool) -> bool {
        let mut viewers = self.viewers.lock().expect("viewers poisoned");
        if viewers.list.is_empty() || shutdown.load(Ordering::Acquire) {
            viewers.encoder_running = false;
            return true;
        }
        false
    }

    fn publish(&self, frame: Arc<LiveFrame>) {
        let viewers = self.viewers.lock().expect("viewers poisoned");
        for viewer in &viewers.list {
            // Replaces an unread frame: the viewer only ever gets the newest.
            if let Ok(Some(_old)) = viewer.mailbox.force_send(Arc::clone(&frame)) {
                self.viewer_skips.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Encodes live JPEGs per camera and quality while viewers exist.
pub struct LiveHub {
    service: Arc<CameraService>,
    presets: QualityPresets,
    channels: Mutex<HashMap<(String, Quality), Arc<Channel>>>,
    shutdown: Arc<AtomicBool>,
}

/// One viewer of a camera at one quality. Dropping it unregisters it; the encoder
/// stops when the last viewer of its camera and quality is gone.
pub struct Viewer {
    channel: Arc<Channel>,
    id: u64,
    mailbox: async_channel::Receiver<Arc<LiveFrame>>,
}

impl Viewer {
    /// Waits for the next (newest) frame. `None` once the hub shuts down.
    pub async fn next(&self) -> Option<Arc<LiveFrame>> {
        self.mailbox.recv().await.ok()
    }

    /// The frame waiting in the mailbox, if any (always the newest encoded one).
    pub fn try_next(&self) -> Option<Arc<LiveFrame>> {
        self.mailbox.try_recv().ok()
    }

    pub fn quality(&self) -> Quality {
        self.channel.quality
    }

    pub fn camera(&self) -> &str {
        &self.channel.camera
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.channel
            .viewers
            .lock()
            .expect("viewers poisoned")
            .list
            .retain(|v| v.id != self.id);
    }
}

impl LiveHub {
    pub fn new(service: Arc<CameraService>, presets: QualityPresets) -> Arc<LiveHub> {
        Arc::new(LiveHub {
            service,
            presets,
            channels: Mutex::new(HashMap::new()),
            shutdown: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Registers a viewer of `camera` at `quality`, starting its encoder if needed. The
    /// camera need not exist yet (a rescan may bring it back); the encoder waits for it.
    pub fn watch(&self, camera: &str, quality: Quality) -> Viewer {
        let channel = {
            let mut channels = self.channels.lock().expect("channels poisoned");
            Arc::clone(
                channels
                    .entry((camera.to_string(), quality))
                    .or_insert_with(|| {
                        Arc::new(Channel {
                            camera: Arc::from(camera),
                            quality,
                            preset: quality.preset(&self.presets).clone(),
                            viewers: Mutex::new(Viewers::default()),
                            counters: EncoderCounters::default(),
                            viewer_skips: AtomicU64::new(0),
                        })
                    }),
            )
        };
        let (tx, rx) = async_channel::bounded(1);
        let mut viewers = channel.viewers.lock().expect("viewers poisoned");
        let id = viewers.next_id;
        viewers.next_id += 1;
        viewers.list.push(ViewerEntry { id, mailbox: tx });
        if !viewers.encoder_running && !self.shutdown.load(Ordering::Acquire) {
            let worker = EncoderThread {
                service: Arc::clone(&self.service),
                channel: Arc::clone(&channel),
                shutdown: Arc::clone(&self.shutdown),
            };
            match std::thread::Builder::new()
                .name(format!("live-{camera}-{}", quality.name()))
                .spawn(move || worker.run())
            {
                Ok(_) => viewers.encoder_running = true,
                Err(e) => log::error!("live: cannot start the {camera} encoder thread: {e}"),
            }
        }
        drop(viewers);
        Viewer {
            channel,
            id,
            mailbox: rx,
        }
    }

    /// Per-encoder counters, sorted by camera and quality.
    pub fn stats(&self) -> Vec<EncoderStats> {
        let channels = self.channels.lock().expect("channels poisoned");
        let mut out: Vec<EncoderStats> = channels
            .values()
            .map(|c| {
                let viewers = c.viewers.lock().expect("viewers poisoned");
                let n = &c.counters;
                EncoderStats {
                    camera: c.camera.to_string(),
                    quality: c.quality,
                    viewers: viewers.list.len(),
                    running: viewers.encoder_running,
                    frames_encoded: n.frames_encoded.load(Ordering::Relaxed),
                    frames_passed_through: n.frames_passed_through.load(Ordering::Relaxed),
                    frames_skipped_fps: n.frames_skipped_fps.load(Ordering::Relaxed),
                    encode_errors: n.encode_errors.load(Ordering::Relaxed),
                    encode_seconds: n.encode_us_total.load(Ordering::Relaxed) as f64 / 1e6,
                    jpeg_bytes: n.jpeg_bytes_total.load(Ordering::Relaxed),
                    viewer_skips: c.viewer_skips.load(Ordering::Relaxed),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.camera, a.quality).cmp(&(&b.camera, b.quality)));
        out
    }

    /// Stops every encoder and ends every viewer's stream (`next` returns `None`).
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for channel in self.channels.lock().expect("channels poisoned").values() {
            for viewer in &channel.viewers.lock().expect("viewers poisoned").list {
                viewer.mailbox.close();
            }
        }
    }
}

/// The body of one encoder thread.
struct EncoderThread {
    service: Arc<CameraService>,
    channel: Arc<Channel>,
    shutdown: Arc<AtomicBool>,
}

/// How long the encoder waits for a frame before it checks whether anyone still watches.
const ENCODER_POLL: Duration = Duration::from_millis(200);
/// JPEG buffers an encoder keeps for reuse. Viewers hold at most one frame each, and a
/// frame is usually sent before the next one is encoded, so a few buffers cover the
/// steady state; beyond them (many slow viewers) buffers are allocated and freed.
const JPEG_POOL: usize = 4;

/// Recycles JPEG buffers once no viewer holds them any more, so the encoder allocates
/// nothing per frame in steady state.
#[derive(Default)]
struct JpegPool {
    /// Clones of recently published JPEGs; a buffer is free when its clone here is the
    /// only reference left.
    recent: Vec<Bytes>,
}

impl JpegPool {
    /// A buffer holding a copy of `bytes`.
    fn fill(&mut self, bytes: &[u8]) -> Bytes {
        let mut buffer = None;
        if let Some(i) = self.recent.iter().position(Bytes::is_unique) {
            if let Ok(mut reused) = self.recent.swap_remove(i).try_into_mut() {
                reused.clear();
                buffer = Some(reused);
            }
        }
        // New buffers get some headroom: JPEG sizes vary from frame to frame.
        let mut buffer = buffer.unwrap_or_else(|| BytesMut::with_capacity(bytes.len() * 5 / 4));
        buffer.extend_from_slice(bytes);
        let jpeg = buffer.freeze();
        if self.recent.len() < JPEG_POOL {
            self.recent.push(jpeg.clone());
        }
        jpeg
    }
}

/// Nice value of the live encoder threads: with more viewers than the board can serve,
/// the picture on the phones suffers, not the clips (capture and recording stay at 0).
const ENCODER_NICE: libc::c_int = 10;

/// Lowers the calling thread's priority to `ENCODER_NICE` (Linux nice values are per
/// thread). Lowering needs no privilege; benchcam.service lets setpriority through its
/// system call filter for this.
fn yield_to_recording() {
    // SAFETY: gettid and setpriority on this thread's own id; no memory is passed.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, ENCODER_NICE) } != 0 {
        log::debug!(
            "live: cannot lower the encoder's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl EncoderThread {
    fn run(self) {
        yield_to_recording();
        let channel = &self.channel;
        let name = format!("live-{}", channel.quality.name());
        let interval_us = 1_000_000 / u64::from(channel.preset.fps.max(1));
        let mut pacer = FpsPacer::new(interval_us);
        let mut raw_jpeg = Vec::new();
        let mut pool = JpegPool::default();
        let mut mjpeg = MjpegScaler::default();
        let mut last_error_log: Option<Instant> = None;
        log::debug!(
            "live: encoder {} {} started",
            channel.camera,
            channel.quality.name()
        );
        'camera: while !channel.encoder_should_exit(&self.shutdown) {
            let camera = match self.service.camera(&channel.camera) {
                Ok(c) => c,
                Err(_) => {
                    // Gone after a rescan, perhaps back soon; viewers get `no_frame`.
                    std::thread::sleep(ENCODER_POLL);
                    continue;
                }
            };
            let subscription = camera.capture.fanout.subscribe(&name, Delivery::Latest);
            drop(camera);
            loop {
                if channel.encoder_should_exit(&self.shutdown) {
                    break 'camera;
                }
                let Some(frame) = subscription.recv_timeout(ENCODER_POLL) else {
                    if subscription.is_closed() {
                        // Capture of this camera stopped (rescan or shutdown): look it up again.
                        std::thread::sleep(ENCODER_POLL);
                        continue 'camera;
                    }
                    continue;
                };
                if !pacer.admit(frame.timestamp_us) {
                    channel
                        .counters
                        .frames_skipped_fps
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let started = Instant::now();
                let encoded = encode(
                    &frame,
                    &channel.preset,
                    &mut raw_jpeg,
                    &mut pool,
                    &mut mjpeg,
                );
                let (number, timestamp_us, format) =
                    (frame.number, frame.timestamp_us, frame.format);
                let (src_w, src_h) = (frame.width, frame.height);
                // The ring slot goes back before anything is published.
                drop(frame);
                match encoded {
                    Ok((jpeg, width, height)) => {
                        let n = &channel.counters;
                        if format == PixelFormat::Mjpeg && (width, height) == (src_w, src_h) {
                            n.frames_passed_through.fetch_add(1, Ordering::Relaxed);
                        } else {
                            n.frames_encoded.fetch_add(1, Ordering::Relaxed);
                        }
                        n.encode_us_total
                            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                        n.jpeg_bytes_total
                            .fetch_add(jpeg.len() as u64, Ordering::Relaxed);
                        channel.publish(Arc::new(LiveFrame {
                            camera: Arc::clone(&channel.camera),
                            frame_number: number,
                            timestamp_us,
                            quality: channel.quality,
                            width,
                            height,
                            jpeg,
                        }));
                    }
                    Err(e) => {
                        channel
                            .counters
                            .encode_errors
                            .fetch_add(1, Ordering::Relaxed);
                        if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                            log::warn!(
                                "live: {} {} JPEG encode failed: {e} (repeats are logged once a minute)",
                                channel.camera,
                                channel.quality.name()
                            );
                            last_error_log = Some(Instant::now());
                        }
                    }
                }
            }
        }
        log::debug!(
            "live: encoder {} {} stopped",
            channel.camera,
            channel.quality.name()
        );
    }
}

/// What a live encoder needs to scale an MJPEG camera's frames down to a smaller preset:
/// the decoder and the decoded picture (allocated on first use, then reused).
#[derive(Default)]
struct MjpegScaler {
    decoder: MjpegDecoder,
    i420: Vec<u8>,
}

/// Encodes one frame, or passes an MJPEG camera's JPEG through untouched when it fits
/// the preset (larger ones are decoded, scaled and re-encoded); returns the JPEG and its
/// size.
fn encode(
    frame: &Frame,
    preset: &QualityPreset,
    raw_jpeg: &mut Vec<u8>,
    pool: &mut JpegPool,
    mjpeg: &mut MjpegScaler,
) -> crate::error::Result<(Bytes, u32, u32)> {
    let fits = frame.width <= preset.width && frame.height <= preset.height;
    let (bytes, width, height): (&[u8], u32, u32) = if frame.format == PixelFormat::Mjpeg && fits {
        (frame.data(), frame.width, frame.height)
    } else if frame.format == PixelFormat::Mjpeg {
        mjpeg
            .decoder
            .decode_i420(frame.data(), frame.width, frame.height, &mut mjpeg.i420)?;
        jpeg::encode_raw(
            PixelFormat::I420,
            &mjpeg.i420,
            frame.width,
            frame.height,
            (preset.width, preset.height),
            preset.jpeg_quality,
            raw_jpeg,
        )?;
        let (w, h) = jpeg::fit(frame.width, frame.height, preset.width, preset.height);
        (raw_jpeg.as_slice(), w, h)
    } else {
        jpeg::encode_raw(
            frame.format,
            frame.data(),
            frame.width,
            frame.height,
            (preset.width, preset.height),
            preset.jpeg_quality,
            raw_jpeg,
        )?;
        let (w, h) = jpeg::fit(frame.width, frame.height, preset.width, preset.height);
        (raw_jpeg.as_slice(), w, h)
    };
    Ok((pool.fill(bytes), width, height))
}

/// Drops frames that arrive faster than a preset's fps, judged by capture timestamps so
/// that the rate is right whatever the scheduling jitter.
#[derive(Debug)]
pub struct FpsPacer {
    interval_us: u64,
    next_due_us: Option<u64>,
}

impl FpsPacer {
    pub fn new(interval_us: u64) -> Self {
        FpsPacer {
            interval_us,
            next_due_us: None,
        }
    }

    /// Whether the frame captured at `timestamp_us` should be encoded.
    pub fn admit(&mut self, timestamp_us: u64) -> bool {
        // A quarter interval of slack: a 30 fps camera feeding a 15 fps preset keeps every
        // second frame even when timestamps jitter by a few ms.
        let slack = self.interval_us / 4;
        match self.next_due_us {
            Some(due) if timestamp_us + slack < due => false,
            Some(due) if timestamp_us < due + self.interval_us => {
                self.next_due_us = Some(due + self.interval_us);
                true
            }
            // First frame, or a gap (camera stalled): restart the schedule here.
            _ => {
                self.next_due_us = Some(timestamp_us + self.interval_us);
                true
            }
        }
    }
}

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
    fn quality_names_and_steps() {
        assert_eq!(Quality::parse("medium"), Some(Quality::Medium));
        assert_eq!(Quality::parse("ultra"), None);
        assert_eq!(Quality::High.step_down(1), Quality::Medium);
        assert_eq!(Quality::High.step_down(5), Quality::Low);
        assert_eq!(Quality::Low.step_down(0), Quality::Low);
    }

    #[test]
    fn pacer_keeps_every_second_frame_of_a_30fps_camera_for_15fps() {
        let mut pacer = FpsPacer::new(1_000_000 / 15);
        // 30 fps with +-2 ms jitter.
        let kept = (0..60u64)
            .map(|n| n * 33_333 + if n % 2 == 0 { 2_000 } else { 0 })
            .filter(|&ts| pacer.admit(ts + 1_000_000))
            .count();
        assert_eq!(kept, 30);
    }

    #[test]
    fn jpeg_buffers_are_reused_once_viewers_drop_them() {
        let mut pool = JpegPool::default();
        let a = pool.fill(&[1; 1000]);
        let a_ptr = a.as_ptr();
        let held = pool.fill(&[2; 1000]);
        drop(a);
        // The first buffer is free again: the next frame goes into it.
        let c = pool.fill(&[3; 900]);
        assert_eq!(c.as_ptr(), a_ptr);
        assert_eq!(&c[..], &[3; 900][..]);
        assert_eq!(
            &held[..],
            &[2; 1000][..],
            "a held frame is never overwritten"
        );
        assert_ne!(held.as_ptr(), a_ptr);
    }

    #[test]
    fn pacer_restarts_after_a_gap() {
        let mut pacer = FpsPacer::new(200_000);
        assert!(pacer.admit(0));
        assert!(!pacer.admit(100_000));
        assert!(pacer.admit(5_000_000));
        assert!(!pacer.admit(5_100_000));
        assert!(pacer.admit(5_200_000));
    }

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
