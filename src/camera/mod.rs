//! CameraService: the single entry point for camera operations — discovery, capture
//! threads, recording start/stop, the latest frame, and health.

pub mod discovery;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::capture::worker::{CaptureLoop, CaptureShared, CaptureState};
use crate::capture::{explain_mode, CameraInfo, CaptureDevice, Mode, ModeRequest};
use crate::clock::{rfc3339_ms, Clock};
use crate::config::{Codec, Config};
use crate::encode::stage::{EncoderStage, H264Viewer, NoH264, StageSettings};
use crate::error::{Error, ErrorKind, Result};
use crate::frame::Frame;
use crate::record::index::RecordingType;
use crate::record::recorder::{Recorder, RecorderSettings, RecorderStats};
use crate::storage::Storage;
use discovery::Discoverer;

/// One camera: its device, capture thread, and recorder when recording.
pub struct Camera {
    pub id: String,
    pub info: CameraInfo,
    /// The mode picked for the configured request, and why (`capture::explain_mode`).
    pub mode_choice: String,
    pub device: Arc<dyn CaptureDevice>,
    pub capture: Arc<CaptureShared>,
    /// The one encode of each frame shared by the recorder and live H.264 viewers.
    pub encoder: Arc<EncoderStage>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Held only to read or swap the slot: status, health and metrics read it from the
    /// web executor, so it is never held while a recorder starts or stops.
    recorder: Mutex<Option<Recorder>>,
    /// Serialises starting and stopping (which open files and start the encoder).
    recorder_control: Mutex<()>,
    /// What the recorders that already stopped counted, so health and metrics count since
    /// the service started, not since the last start of recording.
    past: RecorderTotals,
}

/// Counters of stopped recorders, added up.
#[derive(Default)]
struct RecorderTotals {
    dropped: AtomicU64,
    failed: AtomicU64,
    recorded: AtomicU64,
}

impl Camera {
    pub fn is_recording(&self) -> bool {
        self.recorder.lock().expect("recorder poisoned").is_some()
    }

    pub fn mode(&self) -> Option<Mode> {
        *self.capture.mode.lock().expect("mode poisoned")
    }

    /// A count since the service started: what stopped recorders counted (`past`) plus
    /// what the current one has counted so far.
    fn since_start(&self, past: &AtomicU64, current: impl Fn(&Recorder) -> u64) -> u64 {
        let recorder = self.recorder.lock().expect("recorder poisoned");
        past.load(Ordering::Relaxed) + recorder.as_ref().map_or(0, current)
    }

    /// Frames the recording lost since the service started: the recorders fell behind
    /// the encoder, the encoder fell behind capture while recording, or its ring was full.
    pub fn recorder_drops(&self) -> u64 {
        let stage = &self.encoder.stats;
        self.since_start(&self.past.dropped, |r| r.frames_dropped())
            + stage.dropped_while_recording.load(Ordering::Relaxed)
            + stage.ring_full.load(Ordering::Relaxed)
    }

    /// Frames written to clips since the service started.
    pub fn frames_recorded(&self) -> u64 {
        self.since_start(&self.past.recorded, |r| {
            r.stats.frames_recorded.load(Ordering::Relaxed)
        })
    }

    /// Frames the encoder could not encode or the recorders could not record since the
    /// service started.
    pub fn recorder_failed(&self) -> u64 {
        self.encoder.stats.frames_failed.load(Ordering::Relaxed)
            + self.since_start(&self.past.failed, |r| {
                r.stats.frames_failed.load(Ordering::Relaxed)
            })
    }

    /// Damaged camera frames skipped: by the capture source (cut short) and by the
    /// encoder's MJPEG decoder (damaged inside).
    pub fn corrupt_frames(&self) -> u64 {
        self.capture.stats.corrupt_frames.load(Ordering::Relaxed)
            + self.encoder.stats.frames_corrupt.load(Ordering::Relaxed)
    }

    /// Stops the recorder (finalising its clip) and keeps its counts.
    fn stop_recorder(&self) -> bool {
        let _control = self.recorder_control.lock().expect("recorder poisoned");
        let Some(r) = self.recorder.lock().expect("recorder poisoned").take() else {
            return false;
        };
        let (stats, dropped) = (Arc::clone(&r.stats), r.frames_dropped());
        r.stop();
        let add = |total: &AtomicU64, n: u64| total.fetch_add(n, Ordering::Relaxed);
        add(&self.past.dropped, dropped);
        add(
            &self.past.failed,
            stats.frames_failed.load(Ordering::Relaxed),
        );
        add(
            &self.past.recorded,
            stats.frames_recorded.load(Ordering::Relaxed),
        );
        true
    }

    fn stop_capture(&self) {
        self.capture.shutdown.store(true, Ordering::Relaxed);
        self.capture.fanout.close_all();
        if let Some(t) = self.thread.lock().expect("thread poisoned").take() {
            let _ = t.join();
        }
    }
}

/// Why no frame can be given (the `no_frame` reasons of the WebSocket protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoFrame {
    NotCapturing,
    StreamingDisabled,
    CameraError,
}

impl NoFrame {
    pub fn reason(self) -> &'static str {
        match self {
            NoFrame::NotCapturing => "not_capturing",
            NoFrame::StreamingDisabled => "streaming_disabled",
            NoFrame::CameraError => "camera_error",
        }
    }
}

/// Per-camera health.
#[derive(Debug, Clone, Serialize)]
pub struct CameraHealth {
    pub id: String,
    pub state: &'static str,
    pub fps: f64,
    pub frames_captured: u64,
    /// All frames lost anywhere: ring full, oversize, driver gaps, damaged, recorder behind.
    pub frames_dropped: u64,
    /// Frames the camera's driver dropped (gaps in its sequence numbers).
    pub driver_frames_dropped: u64,
    /// Damaged camera frames skipped (torn or truncated JPEGs).
    pub corrupt_frames: u64,
    /// Times the camera came back after it was lost or stopped sending.
    pub reconnects: u64,
    /// Frames the recorder lost because it fell behind, since the service started (every
    /// recording, not only the current one).
    pub recorder_frames_dropped: u64,
    /// Frames written to clips since the service started.
    pub frames_recorded: u64,
    /// Frames the recorder took but could not encode or write (not storage full, not
    /// damaged camera frames); each also sets a recorder problem.
    pub recorder_frames_failed: u64,
    pub recording: bool,
    pub recording_paused: bool,
    pub current_clip: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageHealth {
    pub path: String,
    pub free_disk_space_gb: f64,
    pub total_gb: f64,
    pub writable: bool,
    pub rolling_bytes: u64,
    pub full: bool,
    /// `ok`, `full`, `removed` (unplugged or unmounted), `read_only` or `io_error`
    /// (writes fail with the drive still mounted).
    pub state: &'static str,
    /// `service.data_device` when set.
    pub device: Option<String>,
}

/// health_check(): what a monitoring dashboard or the page's Status tab shows.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub timestamp: String,
    pub uptime_s: u64,
    pub version: &'static str,
    pub storage: StorageHealth,
    pub cameras: Vec<CameraHealth>,
    pub active_threads: usize,
    pub problems: Vec<String>,
}

/// Written by the OS image's first-boot setup into the data dir when its settings file
/// had bad values (README.md, "The appliance").
pub const SETUP_PROBLEMS: &str = "setup-problems.txt";

pub struct CameraService {
    config: RwLock<Config>,
    clock: Arc<dyn Clock>,
    pub storage: Arc<Storage>,
    discoverer: Box<dyn Discoverer>,
    cameras: RwLock<Vec<Arc<Camera>>>,
    started_mono_us: u64,
}

impl CameraService {
    pub fn new(
        config: Config,
        clock: Arc<dyn Clock>,
        storage: Arc<Storage>,
        discoverer: Box<dyn Discoverer>,
    ) -> Arc<Self> {
        let started_mono_us = clock.monotonic_us();
        Arc::new(CameraService {
            config: RwLock::new(config),
            clock,
            storage,
            discoverer,
            cameras: RwLock::new(Vec::new()),
            started_mono_us,
        })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn config(&self) -> Config {
        self.config.read().expect("config poisoned").clone()
    }

    /// Replaces the settings used for recordings started from now on.
    pub fn set_config(&self, config: Config) {
        *self.config.write().expect("config poisoned") = config;
    }

    /// detect_cameras: probes devices and starts a capture thread for each. Refused
    /// while any camera records (its recorder would lose its source).
    pub fn detect_cameras(&self) -> Result<Vec<Arc<Camera>>> {
        if self.cameras().iter().any(|c| c.is_recording()) {
            return Err(Error::new(
                ErrorKind::WrongState,
                "cannot rescan while a camera is recording",
            ));
        }
        let old = std::mem::take(&mut *self.cameras.write().expect("cameras poisoned"));
        for camera in old {
            camera.stop_capture();
        }
        let config = self.config();
        let request = ModeRequest {
            width: config.camera.width,
            height: config.camera.height,
            fps: config.camera.fps,
            formats: config.camera.pixel_formats(),
        };
        let mut cameras = Vec::new();
        for (i, device) in self.discoverer.discover().into_iter().enumerate() {
            let id = format!("cam{i}");
            let info = device.info().clone();
            let (mode, mode_choice) = explain_mode(&info.modes, &request);
            log::info!(
                "camera {id}: {} ({}, {})",
                info.name,
                info.device,
                info.backend
            );
            if mode.is_some_and(|m| {
                (m.width, m.height, m.fps, Some(&m.format))
                    == (
                        request.width,
                        request.height,
                        request.fps,
                        request.formats.first(),
                    )
            }) {
                log::info!("camera {id}: {mode_choice}");
            } else {
                log::warn!("camera {id}: {mode_choice}");
            }
            let shared = CaptureShared::new();
            let worker = CaptureLoop::new(
                id.clone(),
                Arc::clone(&device),
                request.clone(),
                config.camera.ring_slots,
                Arc::clone(&self.clock),
                Arc::clone(&shared),
            );
            let thread = std::thread::Builder::new()
                .name(format!("cap-{id}"))
                .spawn(move || worker.run())
                .map_err(|e| Error::io(e, "spawning capture thread"))?;
            let encoder = EncoderStage::new(&id, Arc::clone(&shared.fanout));
            cameras.push(Arc::new(Camera {
                id,
                info,
                mode_choice,
                device,
                capture: shared,
                encoder,
                thread: Mutex::new(Some(thread)),
                recorder: Mutex::new(None),
                recorder_control: Mutex::new(()),
                past: RecorderTotals::default(),
            }));
        }
        if cameras.is_empty() {
            log::warn!("no camera found");
        }
        *self.cameras.write().expect("cameras poisoned") = cameras.clone();
        Ok(cameras)
    }

    pub fn cameras(&self) -> Vec<Arc<Camera>> {
        self.cameras.read().expect("cameras poisoned").clone()
    }

    pub fn camera(&self, id: &str) -> Result<Arc<Camera>> {
        self.cameras()
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no camera {id}")))
    }

    /// start_recording: rolling clips of `id` from the next frame on.
    pub fn start_recording(&self, id: &str, recording_type: RecordingType) -> Result<()> {
        let camera = self.camera(id)?;
        let _control = camera.recorder_control.lock().expect("recorder poisoned");
        if camera.is_recording() {
            return Err(Error::new(
                ErrorKind::WrongState,
                format!("{id} is already recording"),
            ));
        }
        let config = self.config();
        let r = &config.recording;
        let stage_settings = stage_settings(&config);
        if let Some(running) = camera.encoder.running_settings() {
            if running != stage_settings {
                // A viewer keeps the encoder running with older settings: the clips
                // would not follow the new ones.
                log::info!(
                    "recording {id}: the encoder runs with earlier settings (for live viewers); they apply once it restarts"
                );
            }
        }
        let user = camera.encoder.attach(&stage_settings)?;
        let subscription = camera.encoder.subscribe_recorder();
        // The first frame from now on starts the clip.
        user.request_keyframe();
        let settings = RecorderSettings {
            camera: id.to_string(),
            recording_type,
            clip_length: r.clip_length.0,
            fragment_duration: r.fragment_duration.0,
            bitrate_kbps: r.bitrate_kbps,
            fps: config.camera.fps,
        };
        let recorder = Recorder::start(subscription, user, Arc::clone(&self.storage), settings)?;
        *camera.recorder.lock().expect("recorder poisoned") = Some(recorder);
        log::info!("recording {id}: started");
        Ok(())
    }

    /// A live H.264 viewer of `id`: the recording's encode (started for the viewer when
    /// nothing records). Err(NoH264) when clips are MJPEG.
    pub fn watch_h264(&self, id: &str) -> Result<std::result::Result<H264Viewer, NoH264>> {
        let camera = self.camera(id)?;
        Ok(camera.encoder.watch(&stage_settings(&self.config())))
    }

    /// stop_recording: finalises the open clip and waits for it to be on disk.
    pub fn stop_recording(&self, id: &str) -> Result<()> {
        let camera = self.camera(id)?;
        if camera.stop_recorder() {
            log::info!("recording {id}: stopped");
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::WrongState,
                format!("{id} is not recording"),
            ))
        }
    }

    /// Closes `id`'s open clip after its first frame captured after `after_us`
    /// (monotonic), so every frame up to then is in complete clips and the next clip
    /// starts after it.
    /// Returns the request's flag, which the recorder clears once the cut is made (None:
    /// not recording).
    pub fn cut_clip(&self, id: &str, after_us: u64) -> Result<Option<Arc<RecorderStats>>> {
        let camera = self.camera(id)?;
        let recorder = camera.recorder.lock().expect("recorder poisoned");
        let Some(r) = recorder.as_ref() else {
            return Ok(None);
        };
        // A boundary not yet reached (a clock of another boot) would cut some later clip.
        let after_us = after_us.min(self.clock.monotonic_us());
        r.stats
            .cut_after_us
            .store(after_us.max(1), Ordering::Release);
        // The first frame captured after the boundary starts the next clip: a keyframe.
        camera.encoder.request_keyframe_at(after_us + 1);
        Ok(Some(r.stats.clone()))
    }

    /// The newest raw frame of a camera, or why there is none.
    pub fn latest_frame(&self, id: &str) -> Result<std::result::Result<Frame, NoFrame>> {
        let camera = self.camera(id)?;
        Ok(match camera.capture.latest() {
            Some(frame) => Ok(frame),
            None => Err(match camera.capture.state() {
                CaptureState::Failed(_) | CaptureState::Disconnected(_) => NoFrame::CameraError,
                _ => NoFrame::NotCapturing,
            }),
        })
    }

    pub fn health_check(&self) -> Health {
        let mut problems = Vec::new();
        let mut error = false;
        let mut degraded = false;
        let space = self.storage.report();
        let limits = self.storage.limits();
        if space.full {
            error = true;
            problems.push(format!(
                "storage full: {:.2} GB free, below min_free_space; recording paused",
                space.free as f64 / 1e9
            ));
        } else if space.free < limits.min_free.saturating_mul(2) {
            degraded = true;
            problems.push(format!(
                "storage low: {:.2} GB free",
                space.free as f64 / 1e9
            ));
        }
        if let Some(e) = space.presence.error() {
            error = true;
            problems.push(format!("{e}; recording paused until it is back"));
        } else if !space.writable {
            error = true;
            problems.push(format!(
                "data directory {} is not writable",
                self.storage.data_dir().display()
            ));
        }
        // Problems the image's first-boot setup found in its settings file (one a line).
        if let Ok(text) = std::fs::read_to_string(self.storage.data_dir().join(SETUP_PROBLEMS)) {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                degraded = true;
                problems.push(format!("first-boot setup: {line}"));
            }
        }
        let cameras = self.cameras();
        if cameras.is_empty() {
            error = true;
            problems.push("no camera found".into());
        }
        let mut threads = 1;
        let camera_health = cameras
            .iter()
            .map(|c| {
                let stats = &c.capture.stats;
                let state = c.capture.state();
                match &state {
                    CaptureState::Disconnected(why) | CaptureState::Failed(why) => {
                        error = true;
                        problems.push(format!("{}: {why}", c.id));
                    }
                    CaptureState::NoSignal => {
                        degraded = true;
                        problems.push(format!("{}: no frames from the camera", c.id));
                    }
                    _ => {}
                }
                let corrupt = c.corrupt_frames();
                let (frames_recorded, failed, rec_drops) =
                    (c.frames_recorded(), c.recorder_failed(), c.recorder_drops());
                let recorder = c.recorder.lock().expect("recorder poisoned");
                let (paused, clip) = match recorder.as_ref() {
                    Some(r) => {
                        threads += 2;
                        let paused = r.stats.paused_storage_full.load(Ordering::Relaxed);
                        if let Some(e) = r.stats.last_error.lock().expect("stats poisoned").as_ref()
                        {
                            if !paused {
                                degraded = true;
                            }
                            problems.push(format!("{} recorder: {e}", c.id));
                        }
                        (
                            paused,
                            r.stats.current_clip.lock().expect("stats poisoned").clone(),
                        )
                    }
                    None => (false, None),
                };
                threads += 1;
                CameraHealth {
                    id: c.id.clone(),
                    state: state.name(),
                    fps: stats.fps_milli.load(Ordering::Relaxed) as f64 / 1000.0,
                    frames_captured: stats.frames_captured.load(Ordering::Relaxed),
                    frames_dropped: stats.ring_full_drops.load(Ordering::Relaxed)
                        + stats.oversize_drops.load(Ordering::Relaxed)
                        + stats.driver_drops.load(Ordering::Relaxed)
                        + corrupt
                        + rec_drops
                        + failed,
                    driver_frames_dropped: stats.driver_drops.load(Ordering::Relaxed),
                    corrupt_frames: corrupt,
                    reconnects: stats.reconnects.load(Ordering::Relaxed),
                    recorder_frames_dropped: rec_drops,
                    frames_recorded,
                    recorder_frames_failed: failed,
                    recording: recorder.is_some(),
                    recording_paused: paused,
                    current_clip: clip,
                }
            })
            .collect();
        let now = self.clock.monotonic_us();
        Health {
            status: if error {
                "error"
            } else if degraded {
                "degraded"
            } else {
                "ok"
            },
            timestamp: rfc3339_ms(self.clock.wall_us()),
            uptime_s: now.saturating_sub(self.started_mono_us) / 1_000_000,
            version: env!("CARGO_PKG_VERSION"),
            storage: StorageHealth {
                path: self.storage.data_dir().display().to_string(),
                free_disk_space_gb: space.free as f64 / 1e9,
                total_gb: space.total as f64 / 1e9,
                writable: space.writable,
                rolling_bytes: space.rolling_bytes,
                full: space.full,
                state: match &space.presence {
                    p if !p.is_present() => p.name(),
                    _ if space.full => "full",
                    _ => "ok",
                },
                device: self.storage.device().map(|d| d.to_string()),
            },
            cameras: camera_health,
            active_threads: threads,
            problems,
        }
    }

    /// Stops every recorder (finalising clips) and every capture thread.
    pub fn shutdown(&self) {
        for camera in self.cameras() {
            camera.stop_recorder();
            camera.stop_capture();
        }
    }
}

/// How the encoder stages encode, from the config.
pub fn stage_settings(config: &Config) -> StageSettings {
    StageSettings {
        codec: match config.recording.codec {
            Codec::Mjpeg => Codec::Mjpeg,
            Codec::Auto | Codec::H264 => Codec::H264,
        },
        bitrate_kbps: config.recording.bitrate_kbps,
        deblocking: config.recording.deblocking,
        fps: config.camera.fps,
        fragment_duration: config.recording.fragment_duration.0,
        // The raw ring keeps three slots for capture, the JPEG live view and the snapshot.
        raw_queue: config.camera.ring_slots.saturating_sub(3).max(1),
        max_viewers: config.streaming.max_sessions,
    }
}
