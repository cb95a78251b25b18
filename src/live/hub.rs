//! The live JPEG hub. Per camera and quality level there is at most one encoder thread.
//! It subscribes to the camera's fanout with `Delivery::Latest` (so it can never hold up
//! capture or the recorder), drops frames that come faster than the preset's fps, encodes
//! the rest (an MJPEG camera's JPEGs pass through untouched when they fit the preset;
//! larger ones are decoded, scaled and re-encoded) and publishes an `Arc<LiveFrame>`.
//! Each viewer has a one-slot mailbox that the encoder overwrites: a slow or stalled
//! viewer holds at most one JPEG and never makes the encoder or another viewer wait. The
//! thread exits (and unsubscribes) when its last viewer goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::camera::CameraService;
use crate::capture::PixelFormat;
use crate::config::{QualityPreset, QualityPresets};
use crate::encode::jpeg;
use crate::encode::mjpeg::MjpegDecoder;
use crate::frame::{mailbox, Delivery, Frame, Mailbox, MailboxSender};

use super::Quality;

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
    mailbox: MailboxSender<Arc<LiveFrame>>,
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
    mailbox: Mailbox<Arc<LiveFrame>>,
}

impl Viewer {
    /// Waits for the next (newest) frame. `None` once the hub shuts down.
    pub async fn next(&self) -> Option<Arc<LiveFrame>> {
        self.mailbox.next().await
    }

    /// The frame waiting in the mailbox, if any (always the newest encoded one).
    pub fn try_next(&self) -> Option<Arc<LiveFrame>> {
        self.mailbox.try_next()
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
        let (tx, rx) = mailbox(1);
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
/// Live frames an encoder keeps for reuse. Viewers hold at most one frame each, and a
/// frame is usually sent before the next one is encoded, so a few cover the steady state;
/// beyond them (many slow viewers) frames are allocated and freed.
const FRAME_POOL: usize = 4;

/// Recycles live frames, the `Arc` and its JPEG buffer, once no viewer holds them any more,
/// so the encoder allocates nothing per frame in steady state.
#[derive(Default)]
struct FramePool {
    /// Recently published frames (a clone of each), with the buffer their JPEG was split
    /// from; a frame is free when its clone here is the only reference left.
    recent: Vec<Pooled>,
}

struct Pooled {
    frame: Arc<LiveFrame>,
    /// Made shared once (`shared_buffer`): its `split().freeze()` and, once every `Bytes`
    /// of it is gone, `try_reclaim` allocate nothing.
    buffer: BytesMut,
}

/// A buffer of `capacity` whose shared header exists already (the first `split` of a new
/// `BytesMut` allocates it; `Bytes` taken from a plain one allocate it on every `freeze`).
fn shared_buffer(capacity: usize) -> BytesMut {
    let mut buffer = BytesMut::with_capacity(capacity);
    drop(buffer.split_to(0));
    buffer
}

impl FramePool {
    /// A frame of `channel` holding a copy of `jpeg`.
    fn frame(&mut self, channel: &Channel, facts: FrameFacts, jpeg: &[u8]) -> Arc<LiveFrame> {
        let free = self
            .recent
            .iter()
            .position(|p| Arc::strong_count(&p.frame) == 1);
        let mut pooled = match free {
            Some(i) => self.recent.swap_remove(i),
            None => Pooled {
                frame: Arc::new(LiveFrame {
                    camera: Arc::clone(&channel.camera),
                    frame_number: 0,
                    timestamp_us: 0,
                    quality: channel.quality,
                    width: 0,
                    height: 0,
                    jpeg: Bytes::new(),
                }),
                buffer: BytesMut::new(),
            },
        };
        let f = Arc::get_mut(&mut pooled.frame).expect("only the pool holds a free frame");
        // The frame's old JPEG goes; its buffer comes back unless a send still holds it.
        f.jpeg = Bytes::new();
        if !pooled.buffer.try_reclaim(jpeg.len()) {
            // New buffers get some headroom: JPEG sizes vary from frame to frame.
            pooled.buffer = shared_buffer(jpeg.len() * 5 / 4);
        }
        pooled.buffer.extend_from_slice(jpeg);
        f.jpeg = pooled.buffer.split().freeze();
        f.frame_number = facts.number;
        f.timestamp_us = facts.timestamp_us;
        f.width = facts.width;
        f.height = facts.height;
        let frame = Arc::clone(&pooled.frame);
        if self.recent.len() < FRAME_POOL {
            self.recent.push(pooled);
        }
        frame
    }
}

/// What a live frame says of the camera frame it came from.
#[derive(Clone, Copy)]
struct FrameFacts {
    number: u64,
    timestamp_us: u64,
    width: u32,
    height: u32,
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
        let mut pool = FramePool::default();
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
                let encoded = encode(&frame, &channel.preset, &mut raw_jpeg, &mut mjpeg).map(
                    |(jpeg, width, height)| {
                        let facts = FrameFacts {
                            number: frame.number,
                            timestamp_us: frame.timestamp_us,
                            width,
                            height,
                        };
                        pool.frame(channel, facts, jpeg)
                    },
                );
                let from_mjpeg = frame.format == PixelFormat::Mjpeg;
                let (src_w, src_h) = (frame.width, frame.height);
                // The ring slot goes back before anything is published.
                drop(frame);
                match encoded {
                    Ok(live) => {
                        let n = &channel.counters;
                        if from_mjpeg && (live.width, live.height) == (src_w, src_h) {
                            n.frames_passed_through.fetch_add(1, Ordering::Relaxed);
                        } else {
                            n.frames_encoded.fetch_add(1, Ordering::Relaxed);
                        }
                        n.encode_us_total
                            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                        n.jpeg_bytes_total
                            .fetch_add(live.jpeg.len() as u64, Ordering::Relaxed);
                        channel.publish(live);
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
/// the preset (larger ones are decoded, scaled and re-encoded); returns the JPEG (in the
/// frame or in `raw_jpeg`) and its size.
fn encode<'a>(
    frame: &'a Frame,
    preset: &QualityPreset,
    raw_jpeg: &'a mut Vec<u8>,
    mjpeg: &mut MjpegScaler,
) -> crate::error::Result<(&'a [u8], u32, u32)> {
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
    Ok((bytes, width, height))
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn live_frames_and_their_buffers_are_reused_once_viewers_drop_them() {
        let channel = Channel {
            camera: "cam0".into(),
            quality: Quality::Medium,
            preset: QualityPresets::default().medium,
            viewers: Mutex::new(Viewers::default()),
            counters: EncoderCounters::default(),
            viewer_skips: AtomicU64::new(0),
        };
        let facts = |number| FrameFacts {
            number,
            timestamp_us: number * 33_333,
            width: 640,
            height: 360,
        };
        let mut pool = FramePool::default();
        let a = pool.frame(&channel, facts(1), &[1; 1000]);
        let (a_frame, a_jpeg) = (Arc::as_ptr(&a), a.jpeg.as_ptr());
        let held = pool.frame(&channel, facts(2), &[2; 1000]);
        // A send still holding the JPEG of a frame whose Arc has gone: that buffer stays.
        let sending = held.jpeg.clone();
        drop(a);
        // The first frame is free again: the next one goes into it, Arc and buffer.
        let c = pool.frame(&channel, facts(3), &[3; 900]);
        assert_eq!(Arc::as_ptr(&c), a_frame);
        assert_eq!(c.jpeg.as_ptr(), a_jpeg);
        assert_eq!((c.frame_number, c.timestamp_us), (3, 99_999));
        assert_eq!(&c.jpeg[..], &[3; 900][..]);
        assert_eq!(
            &held.jpeg[..],
            &[2; 1000][..],
            "a held frame is never overwritten"
        );
        drop(held);
        let d = pool.frame(&channel, facts(4), &[4; 800]);
        assert_ne!(
            d.jpeg.as_ptr(),
            sending.as_ptr(),
            "a buffer being sent is not reused"
        );
        assert_eq!(&sending[..], &[2; 1000][..]);
        assert_eq!(&d.jpeg[..], &[4; 800][..]);
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
}
