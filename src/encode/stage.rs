//! The encoder stage of one camera: the one encode of each frame that clips and live
//! H.264 viewers share (DESIGN §2).
//!
//! Its thread subscribes to the camera's raw frames in order, encodes each (H.264, or JPEG
//! when clips are MJPEG) and publishes it into the camera's [`EncodedRing`] as a [`Unit`]:
//! to the recorder through an in-order [`Fanout`] and to each live H.264 viewer through a
//! small mailbox of its own. It runs while someone uses it (a recorder, a viewer) and
//! stops when the last [`StageUser`] goes.
//!
//! Keyframes: the first frame of a stream, then one every `fragment_duration` of capture
//! time on a fixed grid (the recorder starts its fragments there, so a power cut loses at
//! most one fragment), and one on request: the recorder's (a clip starts) and a viewer's
//! (a picture for someone who just joined), the latter at most every
//! `VIEWER_KEYFRAME_INTERVAL`.
//!
//! Rules of the raw ring hold here too: the stage never waits for a consumer. A viewer
//! whose mailbox is full loses that frame and everything up to the next keyframe (it asks
//! for one), counted; a viewer never takes the slots the recorder needs
//! (`RECORDER_SLOTS` stay for it); the recorder loses frames only when it falls
//! `RECORDER_QUEUE` frames behind.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};

use super::fmp4::{self, FragmentBuilder, SampleInfo, TrackCodec};
use super::h264::{self, H264Encode};
use super::live_timeline::LiveTimeline;
use super::mjpeg::MjpegDecoder;
use super::ring::{EncodedRing, StreamParams, Unit, UnitMeta};
use super::{jpeg, yuv};
use crate::capture::PixelFormat;
use crate::config::Codec;
use crate::error::{Error, ErrorKind, Result};
use crate::frame::mailbox::TrySendError;
use crate::frame::{mailbox, Delivery, Fanout, Frame, Mailbox, MailboxSender, Subscription};

/// Units the recorder may have waiting (about two seconds at 30 fps).
pub const RECORDER_QUEUE: usize = 64;
/// Units one viewer may have waiting before it loses frames (about 270 ms at 30 fps).
pub const VIEWER_QUEUE: usize = 8;
/// Slots that stay for the recorder whatever the viewers hold: its queue, the unit it
/// is copying, and the one being encoded.
const RECORDER_SLOTS: usize = RECORDER_QUEUE + 2;
/// Slots per viewer: its mailbox, the unit its session is sending, one in the socket's
/// write path.
const SLOTS_PER_VIEWER: usize = VIEWER_QUEUE + 2;
/// Viewer keyframe requests closer together than this wait for the next keyframe.
pub const VIEWER_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// How long the thread waits for a frame before it checks whether it is still used.
const POLL: Duration = Duration::from_millis(250);

/// How the stage encodes, fixed from one start of its thread to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageSettings {
    /// `h264` (also for `auto`) or `mjpeg`.
    pub codec: Codec,
    pub bitrate_kbps: u32,
    /// The software encoder's deblocking filter (`recording.deblocking`).
    pub deblocking: bool,
    /// Nominal frame rate: encoder rate control and live sample durations.
    pub fps: u32,
    /// The keyframe grid.
    pub fragment_duration: Duration,
    /// Raw frames the stage may have waiting (the raw ring's slots minus capture's).
    pub raw_queue: usize,
    /// The most live viewers at once (`streaming.max_sessions`): sizes the ring.
    pub max_viewers: usize,
}

impl StageSettings {
    pub fn is_h264(&self) -> bool {
        self.codec != Codec::Mjpeg
    }
}

/// Counters since the service started, for health and metrics.
#[derive(Default, Debug)]
pub struct StageStats {
    pub frames_encoded: AtomicU64,
    pub keyframes: AtomicU64,
    pub encode_us_total: AtomicU64,
    pub bytes_encoded: AtomicU64,
    /// Frames that could not be encoded (unsupported format, codec error).
    pub frames_failed: AtomicU64,
    /// Camera JPEGs too damaged to decode: skipped.
    pub frames_corrupt: AtomicU64,
    /// Raw frames lost because the stage fell behind capture while a recorder listened.
    pub dropped_while_recording: AtomicU64,
    /// Raw frames lost because the stage fell behind capture (any time).
    pub raw_dropped: AtomicU64,
    /// Encoded frames not published: every slot was held.
    pub ring_full: AtomicU64,
    /// Frames viewers lost (mailbox full, or waiting for a keyframe after a loss).
    pub viewer_drops: AtomicU64,
    /// Keyframes made because a viewer or the recorder asked.
    pub keyframes_requested: AtomicU64,
    /// Encoded-ring slots whose buffer exists: the most units held at once (bounded by
    /// the ring's size, `RECORDER_SLOTS` + `SLOTS_PER_VIEWER` per viewer).
    pub ring_slots_grown: AtomicU64,
    /// Encoded-ring slots held by consumers after the latest frame.
    pub ring_slots_in_use: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

struct ViewerEntry {
    id: u64,
    /// Closed when the entry goes, however it goes: a session waiting on it wakes.
    mailbox: MailboxSender<Unit>,
    /// False until a keyframe has been delivered (again, after a loss).
    in_sync: bool,
}

#[derive(Default)]
struct Control {
    users: usize,
    running: bool,
    settings: Option<StageSettings>,
}

/// The encoder stage of one camera.
pub struct EncoderStage {
    camera: String,
    source: Arc<Fanout<Frame>>,
    units: Arc<Fanout<Unit>>,
    control: Mutex<Control>,
    viewers: Mutex<(u64, Vec<ViewerEntry>)>,
    keyframe_wanted: AtomicBool,
    /// Non-zero: the first frame captured at or after this monotonic time (µs) becomes a
    /// keyframe (where the recorder's next clip starts).
    keyframe_at_us: AtomicU64,
    last_viewer_keyframe: Mutex<Option<Instant>>,
    /// The stream being produced (None while stopped).
    params: Mutex<Option<Arc<StreamParams>>>,
    backend: Mutex<Option<&'static str>>,
    pub stats: StageStats,
}

/// Keeps the stage running; the thread stops after the last one is dropped.
pub struct StageUser(Arc<EncoderStage>);

impl StageUser {
    /// The next frame becomes a keyframe.
    pub fn request_keyframe(&self) {
        self.0.request_keyframe();
    }

    /// The first frame captured at or after `at_us` becomes a keyframe.
    pub fn request_keyframe_at(&self, at_us: u64) {
        self.0.request_keyframe_at(at_us);
    }

    pub fn stage(&self) -> &Arc<EncoderStage> {
        &self.0
    }
}

impl Drop for StageUser {
    fn drop(&mut self) {
        self.0.control.lock().expect("stage poisoned").users -= 1;
    }
}

/// A live H.264 viewer's mailbox. Dropping it unregisters the viewer.
pub struct H264Viewer {
    stage: Arc<EncoderStage>,
    id: u64,
    mailbox: Mailbox<Unit>,
    _user: StageUser,
}

impl H264Viewer {
    /// The next unit for this viewer; `None` once the stage stopped for good (the camera
    /// went away).
    pub async fn next(&self) -> Option<Unit> {
        self.mailbox.next().await
    }

    pub fn try_next(&self) -> Option<Unit> {
        self.mailbox.try_next()
    }

    /// Units waiting in the mailbox.
    pub fn pending(&self) -> usize {
        self.mailbox.len()
    }

    pub fn stage(&self) -> &Arc<EncoderStage> {
        &self.stage
    }
}

impl Drop for H264Viewer {
    fn drop(&mut self) {
        self.stage
            .viewers
            .lock()
            .expect("viewers poisoned")
            .1
            .retain(|v| v.id != self.id);
    }
}

/// Why a viewer cannot have H.264.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoH264 {
    /// Clips are MJPEG: there is no H.264 encode to share.
    ClipsAreMjpeg,
    /// The stage could not start its thread.
    NotStarted(String),
}

impl EncoderStage {
    pub fn new(camera: &str, source: Arc<Fanout<Frame>>) -> Arc<EncoderStage> {
        Arc::new(EncoderStage {
            camera: camera.to_string(),
            source,
            units: Fanout::new(),
            control: Mutex::new(Control::default()),
            viewers: Mutex::new((0, Vec::new())),
            keyframe_wanted: AtomicBool::new(false),
            keyframe_at_us: AtomicU64::new(0),
            last_viewer_keyframe: Mutex::new(None),
            params: Mutex::new(None),
            backend: Mutex::new(None),
            stats: StageStats::default(),
        })
    }

    /// Starts using the stage (its thread starts with `settings` if it was stopped; a
    /// running thread keeps the settings it started with).
    pub fn attach(self: &Arc<Self>, settings: &StageSettings) -> Result<StageUser> {
        let mut control = self.control.lock().expect("stage poisoned");
        control.users += 1;
        let user = StageUser(Arc::clone(self));
        if !control.running {
            let stage = Arc::clone(self);
            let thread_settings = settings.clone();
            // Subscribed before the thread runs, so no frame after `attach` is missed.
            let source = self
                .source
                .subscribe("encoder", Delivery::InOrder(settings.raw_queue.max(1)));
            std::thread::Builder::new()
                .name(format!("enc-{}", self.camera))
                .spawn(move || stage.run(source, thread_settings))
                .map_err(|e| Error::io(e, "spawning the encoder thread"))?;
            control.running = true;
            control.settings = Some(settings.clone());
        }
        Ok(user)
    }

    /// The settings of the running thread (None while stopped).
    pub fn running_settings(&self) -> Option<StageSettings> {
        let control = self.control.lock().expect("stage poisoned");
        control.running.then(|| control.settings.clone()).flatten()
    }

    /// The recorder's view: every unit in order (`RECORDER_QUEUE` may wait).
    pub fn subscribe_recorder(&self) -> Subscription<Unit> {
        self.units
            .subscribe("recorder", Delivery::InOrder(RECORDER_QUEUE))
    }

    /// A live H.264 viewer: its first unit is a keyframe (one is asked for now).
    pub fn watch(
        self: &Arc<Self>,
        settings: &StageSettings,
    ) -> std::result::Result<H264Viewer, NoH264> {
        let running = self.running_settings();
        if !running.as_ref().unwrap_or(settings).is_h264() {
            return Err(NoH264::ClipsAreMjpeg);
        }
        let user = self
            .attach(settings)
            .map_err(|e| NoH264::NotStarted(e.to_string()))?;
        let (tx, rx) = mailbox(VIEWER_QUEUE);
        let id = {
            let mut viewers = self.viewers.lock().expect("viewers poisoned");
            viewers.0 += 1;
            let id = viewers.0;
            viewers.1.push(ViewerEntry {
                id,
                mailbox: tx,
                in_sync: false,
            });
            id
        };
        self.request_keyframe_for_viewer();
        Ok(H264Viewer {
            stage: Arc::clone(self),
            id,
            mailbox: rx,
            _user: user,
        })
    }

    /// Live H.264 viewers now.
    pub fn viewer_count(&self) -> usize {
        self.viewers.lock().expect("viewers poisoned").1.len()
    }

    /// The next frame becomes a keyframe (the recorder starts a clip).
    pub fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Release);
    }

    /// The first frame captured at or after `at_us` (monotonic) becomes a keyframe; the
    /// earliest of several requests wins.
    pub fn request_keyframe_at(&self, at_us: u64) {
        let at_us = at_us.max(1);
        let _ = self
            .keyframe_at_us
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now == 0 || at_us < now).then_some(at_us)
            });
    }

    /// Subscribers of the encoded frames (the recorder): names, delivered, dropped.
    pub fn unit_subscribers(&self) -> Vec<(String, u64, u64)> {
        self.units.stats()
    }

    /// A keyframe soon, unless a viewer got one less than `VIEWER_KEYFRAME_INTERVAL` ago
    /// (then the viewer waits for the next one: many joins cannot flood the stream with
    /// keyframes).
    fn request_keyframe_for_viewer(&self) {
        let mut last = self.last_viewer_keyframe.lock().expect("stage poisoned");
        if last.is_none_or(|t| t.elapsed() >= VIEWER_KEYFRAME_INTERVAL) {
            *last = Some(Instant::now());
            self.request_keyframe();
        }
    }

    /// The stream being produced now.
    pub fn params(&self) -> Option<Arc<StreamParams>> {
        self.params.lock().expect("stage poisoned").clone()
    }

    /// `openh264`, `v4l2-m2m` or `jpeg` once the encoder opened.
    pub fn backend(&self) -> Option<&'static str> {
        *self.backend.lock().expect("stage poisoned")
    }

    pub fn is_running(&self) -> bool {
        self.control.lock().expect("stage poisoned").running
    }

    /// Decides, under the control lock, whether the thread ends; an `attach` afterwards
    /// sees `running == false` and starts a new one.
    fn should_stop(&self) -> bool {
        let mut control = self.control.lock().expect("stage poisoned");
        if control.users == 0 {
            control.running = false;
            *self.params.lock().expect("stage poisoned") = None;
            return true;
        }
        false
    }

    fn run(self: Arc<Self>, source: Subscription<Frame>, settings: StageSettings) {
        log::debug!("encoder {}: started", self.camera);
        let mut work = Work::new(&settings);
        let mut raw_dropped = 0;
        loop {
            if self.should_stop() {
                break;
            }
            match source.recv_timeout(POLL) {
                Some(frame) => {
                    work.encode(&self, &frame);
                }
                None if source.is_closed() => {
                    // The camera stopped (rescan, shutdown): nothing more will come.
                    self.units.close_all();
                    self.end_viewers();
                    // Wait for the users to go, so `running` stays true meanwhile and
                    // nobody starts a thread on a camera that is gone; a viewer that
                    // joins meanwhile is ended too (its session looks the camera up
                    // again, and finds the new one after a rescan).
                    while !self.should_stop() {
                        std::thread::sleep(POLL);
                        self.end_viewers();
                    }
                    break;
                }
                None => {}
            }
            let dropped = source.dropped();
            if dropped != raw_dropped {
                let n = dropped - raw_dropped;
                self.stats.raw_dropped.fetch_add(n, Ordering::Relaxed);
                if self.units.subscriber_count() > 0 {
                    self.stats
                        .dropped_while_recording
                        .fetch_add(n, Ordering::Relaxed);
                }
                raw_dropped = dropped;
            }
            if source.take_interruption() {
                // The camera was lost or went quiet: the recorder closes its clip, and
                // the stream restarts with a keyframe.
                self.units.interrupt();
                work.next_keyframe_us = None;
            }
        }
        log::debug!("encoder {}: stopped", self.camera);
    }

    /// Ends every viewer's mailbox (their sessions see the camera is gone).
    fn end_viewers(&self) {
        for v in &self.viewers.lock().expect("viewers poisoned").1 {
            v.mailbox.close();
        }
    }

    /// Hands `unit` to the recorder and to every viewer that can take it.
    fn deliver(&self, unit: &Unit, viewer_room: bool) {
        self.units.publish(unit);
        let mut want_keyframe = false;
        let mut viewers = self.viewers.lock().expect("viewers poisoned");
        for v in viewers.1.iter_mut() {
            if !v.in_sync && !unit.keyframe {
                self.stats.viewer_drops.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !viewer_room {
                // The recorder's slots are all that is left: viewers wait.
                v.in_sync = false;
                want_keyframe = true;
                self.stats.viewer_drops.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match v.mailbox.try_send(unit.clone()) {
                Ok(()) => v.in_sync = true,
                Err(TrySendError::Full(_)) => {
                    // Everything up to the next keyframe would not decode without it.
                    v.in_sync = false;
                    want_keyframe = true;
                    self.stats.viewer_drops.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Closed(_)) => {}
            }
        }
        drop(viewers);
        if want_keyframe {
            self.request_keyframe_for_viewer();
        }
    }

    fn set_error(&self, message: Option<String>) {
        *self.stats.last_error.lock().expect("stage poisoned") = message;
    }
}

/// What the stage's thread works with: the encoder, its scratch buffers, the ring.
struct Work {
    settings: StageSettings,
    ring: EncodedRing,
    h264: Option<Box<dyn H264Encode>>,
    /// The stream's parameters; replaced when the encoder reopens or the size changes.
    params: Option<Arc<StreamParams>>,
    /// Converted or decoded picture (raw formats other than I420, MJPEG cameras).
    i420: Vec<u8>,
    mjpeg: MjpegDecoder,
    /// The encoded sample before it goes into its slot.
    sample: Vec<u8>,
    live_moof: FragmentBuilder,
    live_sequence: u32,
    /// Capture time the stream's decode times count from.
    epoch_us: u64,
    /// Where live fragments' samples start and end (ticks from `epoch_us`).
    live_timeline: LiveTimeline,
    /// The next keyframe on the grid (None: the next frame is one).
    next_keyframe_us: Option<u64>,
    last_error_log: Option<Instant>,
}

impl Work {
    fn new(settings: &StageSettings) -> Work {
        let fps = settings.fps.max(1) as u64;
        // A P-frame at the target rate, with room; keyframes grow a slot once.
        let slot_bytes =
            (settings.bitrate_kbps as u64 * 125 / fps * 3).clamp(16 * 1024, 512 * 1024);
        let slots = RECORDER_SLOTS + settings.max_viewers * SLOTS_PER_VIEWER;
        Work {
            ring: EncodedRing::new(slots, RECORDER_SLOTS.min(16), slot_bytes as usize),
            settings: settings.clone(),
            h264: None,
            params: None,
            i420: Vec::new(),
            mjpeg: MjpegDecoder::new(),
            sample: Vec::with_capacity(slot_bytes as usize),
            live_moof: FragmentBuilder::new(1),
            live_sequence: 0,
            epoch_us: 0,
            live_timeline: LiveTimeline::default(),
            next_keyframe_us: None,
            last_error_log: None,
        }
    }

    fn encode(&mut self, stage: &EncoderStage, frame: &Frame) {
        let started = Instant::now();
        match self.encode_frame(stage, frame) {
            Ok(Some(unit)) => {
                let n = &stage.stats;
                n.frames_encoded.fetch_add(1, Ordering::Relaxed);
                n.bytes_encoded
                    .fetch_add(unit.sample().len() as u64, Ordering::Relaxed);
                if unit.keyframe {
                    n.keyframes.fetch_add(1, Ordering::Relaxed);
                }
                n.encode_us_total
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                let in_use = self.ring.slots_in_use();
                n.ring_slots_in_use.store(in_use as u64, Ordering::Relaxed);
                n.ring_slots_grown
                    .store(self.ring.slots_grown() as u64, Ordering::Relaxed);
                let viewer_room = self.ring.slot_count() - in_use > RECORDER_SLOTS;
                stage.deliver(&unit, viewer_room);
                stage.set_error(None);
            }
            Ok(None) => {
                stage.stats.ring_full.fetch_add(1, Ordering::Relaxed);
                // The chain is broken for everyone: start again at a keyframe.
                self.next_keyframe_us = None;
            }
            Err(e) if e.kind == ErrorKind::Corrupt => {
                // Damaged camera frames are normal with USB webcams: skipped, counted,
                // logged at the 1st, 10th, 100th, ...
                let n = stage.stats.frames_corrupt.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 10u64.pow(n.ilog10()) {
                    log::warn!(
                        "encoder {}: skipped {n} damaged frame(s), latest: {e}",
                        stage.camera
                    );
                }
            }
            Err(e) => {
                stage.stats.frames_failed.fetch_add(1, Ordering::Relaxed);
                if self
                    .last_error_log
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                {
                    log::error!(
                        "encoder {}: {e} (repeats are logged once a minute)",
                        stage.camera
                    );
                    self.last_error_log = Some(Instant::now());
                }
                stage.set_error(Some(e.to_string()));
                // The next good frame starts a fresh chain.
                self.next_keyframe_us = None;
            }
        }
    }

    /// Encodes one frame into the ring; `Ok(None)` when the ring had no free slot.
    fn encode_frame(&mut self, stage: &EncoderStage, frame: &Frame) -> Result<Option<Unit>> {
        // A camera JPEG is decoded (or, for MJPEG clips, checked) first: a damaged one
        // is skipped before it touches the stream.
        if frame.format == PixelFormat::Mjpeg {
            if self.settings.is_h264() {
                self.mjpeg
                    .decode_i420(frame.data(), frame.width, frame.height, &mut self.i420)?;
            } else {
                self.mjpeg.check(frame.data(), frame.width, frame.height)?;
            }
        }
        if let Some(p) = &self.params {
            if (p.width, p.height) != (frame.width, frame.height) {
                // A new size is a new stream: new parameter sets, new init segment.
                self.params = None;
                self.h264 = None;
                self.next_keyframe_us = None;
            }
        }
        let at = stage.keyframe_at_us.load(Ordering::Acquire);
        let due = at != 0 && frame.timestamp_us >= at;
        if due {
            let _ =
                stage
                    .keyframe_at_us
                    .compare_exchange(at, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        let requested = stage.keyframe_wanted.swap(false, Ordering::AcqRel) || due;
        let on_grid = self
            .next_keyframe_us
            .is_none_or(|due| frame.timestamp_us >= due);
        let force = requested || on_grid;
        self.sample.clear();
        let keyframe = if self.settings.is_h264() {
            self.encode_h264(stage, frame, force)?
        } else {
            self.encode_jpeg(frame)?;
            true
        };
        if on_grid && keyframe {
            let step = self.settings.fragment_duration.as_micros().max(1) as u64;
            let mut due = self.next_keyframe_us.unwrap_or(frame.timestamp_us) + step;
            while due <= frame.timestamp_us {
                due += step;
            }
            self.next_keyframe_us = Some(due);
        } else if requested && keyframe {
            stage
                .stats
                .keyframes_requested
                .fetch_add(1, Ordering::Relaxed);
        }
        if self.params.is_none() {
            self.new_stream(stage, frame)?;
        }
        let params = self.params.as_ref().expect("made above");
        let meta = UnitMeta {
            number: frame.number,
            timestamp_us: frame.timestamp_us,
            wall_us: frame.wall_us,
            driver_dropped_before: frame.driver_dropped_before,
            keyframe,
            boundary: on_grid && keyframe,
        };
        if !self.settings.is_h264() {
            let sample = &self.sample;
            return self.ring.publish(meta, params, |b| {
                b.extend_from_slice(sample);
                Ok(0)
            });
        }
        // One sample in its own fragment: what a live viewer appends to its buffer.
        self.live_sequence = self.live_sequence.wrapping_add(1);
        let interval_us = 1_000_000 / self.settings.fps.max(1) as u64;
        let at = fmp4::us_to_ticks(frame.timestamp_us.saturating_sub(self.epoch_us));
        let (start, duration) = self.live_timeline.next(at, fmp4::us_to_ticks(interval_us));
        let header = self.live_moof.build(
            self.live_sequence,
            start,
            &[SampleInfo {
                size: self.sample.len() as u32,
                duration,
                keyframe,
            }],
        )?;
        let sample = &self.sample;
        self.ring.publish(meta, params, |b| {
            b.put_slice(header);
            b.put_slice(sample);
            Ok::<_, Error>(header.len())
        })
    }

    fn encode_h264(&mut self, stage: &EncoderStage, frame: &Frame, force: bool) -> Result<bool> {
        if self.h264.is_none() {
            let encoder = h264::open(
                frame.width,
                frame.height,
                h264::Settings {
                    fps: self.settings.fps,
                    bitrate_kbps: self.settings.bitrate_kbps,
                    deblocking: self.settings.deblocking,
                },
            )?;
            log::info!("encoder {}: H.264 by {}", stage.camera, encoder.backend());
            *stage.backend.lock().expect("stage poisoned") = Some(encoder.backend());
            self.h264 = Some(encoder);
            self.params = None;
        }
        let picture = match frame.format {
            PixelFormat::I420 => yuv::I420::from_packed(frame.data(), frame.width, frame.height)?,
            // Decoded into `i420` at the top of `encode_frame`.
            PixelFormat::Mjpeg => yuv::I420::from_packed(&self.i420, frame.width, frame.height)?,
            format => {
                yuv::to_i420(
                    format,
                    frame.data(),
                    frame.width,
                    frame.height,
                    &mut self.i420,
                )?;
                yuv::I420::from_packed(&self.i420, frame.width, frame.height)?
            }
        };
        let first = self.params.is_none();
        let encoder = self.h264.as_mut().expect("opened above");
        let e = encoder.encode(&picture, force || first, &mut self.sample)?;
        if (force || first) && !e.keyframe {
            return Err(Error::new(
                ErrorKind::Codec,
                "encoder ignored a forced keyframe",
            ));
        }
        if e.keyframe {
            if let (Some(p), Some((sps, pps))) = (&self.params, encoder.parameter_sets()) {
                if let TrackCodec::H264 { sps: s, pps: q } = &p.codec {
                    if (s.as_slice(), q.as_slice()) != (sps, pps) {
                        // New parameter sets mid-stream: a new init segment follows.
                        self.params = None;
                    }
                }
            }
        }
        Ok(e.keyframe)
    }

    fn encode_jpeg(&mut self, frame: &Frame) -> Result<()> {
        if frame.format == PixelFormat::Mjpeg {
            self.sample.extend_from_slice(frame.data());
            return Ok(());
        }
        jpeg::encode_raw(
            frame.format,
            frame.data(),
            frame.width,
            frame.height,
            (frame.width, frame.height),
            85,
            &mut self.sample,
        )
    }

    /// Starts a new stream at `frame` (a keyframe): its parameters and init segment.
    fn new_stream(&mut self, stage: &EncoderStage, frame: &Frame) -> Result<()> {
        let (codec, codec_string) = if self.settings.is_h264() {
            let encoder = self.h264.as_ref().expect("H.264 streams have an encoder");
            let (sps, pps) = encoder.parameter_sets().ok_or_else(|| {
                Error::new(ErrorKind::Codec, "no SPS/PPS after the first keyframe")
            })?;
            let name = match sps.get(1..4) {
                Some(p) => format!("avc1.{:02x}{:02x}{:02x}", p[0], p[1], p[2]),
                None => return Err(Error::new(ErrorKind::Codec, "SPS too short")),
            };
            (
                TrackCodec::H264 {
                    sps: sps.to_vec(),
                    pps: pps.to_vec(),
                },
                name,
            )
        } else {
            (TrackCodec::Jpeg, "jpeg".to_string())
        };
        let mut init = Vec::with_capacity(1024);
        fmp4::init_segment(frame.width, frame.height, &codec, &mut init)?;
        let params = Arc::new(StreamParams {
            codec,
            width: frame.width,
            height: frame.height,
            codec_string,
            init: Bytes::from(init),
        });
        self.epoch_us = frame.timestamp_us;
        self.live_timeline = LiveTimeline::default();
        self.live_sequence = 0;
        *stage.params.lock().expect("stage poisoned") = Some(Arc::clone(&params));
        self.params = Some(params);
        Ok(())
    }
}
