//! The capture loop of one camera: `run` retries `run_once` with backoff until
//! shutdown; `run_once` opens the device, allocates the ring for its mode, and copies
//! each frame into a free slot, then offers it to the camera's subscribers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{CaptureDevice, Mode, ModeRequest};
use crate::clock::Clock;
use crate::error::{ErrorKind, Result};
use crate::frame::{Fanout, Frame, FrameMeta, FrameRing, PublishError};

/// What the capture loop is doing, for health and `no_frame` reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureState {
    Starting,
    Capturing,
    /// The device is open but no frame came in time.
    NoSignal,
    /// The device is gone (unplugged, driver unbound); looking for it again.
    Disconnected(String),
    /// The device refuses the requested mode or failed otherwise; retrying slowly.
    Failed(String),
    Stopped,
}

impl CaptureState {
    pub fn name(&self) -> &'static str {
        match self {
            CaptureState::Starting => "starting",
            CaptureState::Capturing => "capturing",
            CaptureState::NoSignal => "no_signal",
            CaptureState::Disconnected(_) => "lost",
            CaptureState::Failed(_) => "error",
            CaptureState::Stopped => "stopped",
        }
    }
}

/// Counters of one camera's capture, read by health and metrics.
#[derive(Default, Debug)]
pub struct CaptureStats {
    pub frames_captured: AtomicU64,
    /// Frames lost because every ring slot was held by a consumer.
    pub ring_full_drops: AtomicU64,
    /// Frames lost because they were larger than a slot.
    pub oversize_drops: AtomicU64,
    /// Frames the driver reports it dropped (gaps in its sequence numbers).
    pub driver_drops: AtomicU64,
    /// Frames the source received but skipped as corrupt (torn or truncated JPEGs), over
    /// every open; see also the recorder's count of frames it could not decode.
    pub corrupt_frames: AtomicU64,
    /// Measured frame rate x 1000 (moving average of frame intervals).
    pub fps_milli: AtomicU64,
    /// Failed attempts to open the device.
    pub reopens: AtomicU64,
    /// Times the camera came back after it was lost or stopped sending.
    pub reconnects: AtomicU64,
}

/// Everything the capture thread shares with the rest of the service.
pub struct CaptureShared {
    pub fanout: Arc<Fanout>,
    pub stats: CaptureStats,
    pub state: Mutex<CaptureState>,
    pub mode: Mutex<Option<Mode>>,
    /// The newest frame (holds one ring slot), for snapshots; cleared on signal loss.
    pub latest: Mutex<Option<Frame>>,
    pub shutdown: AtomicBool,
}

impl CaptureShared {
    pub fn new() -> Arc<CaptureShared> {
        Arc::new(CaptureShared {
            fanout: Fanout::new(),
            stats: CaptureStats::default(),
            state: Mutex::new(CaptureState::Starting),
            mode: Mutex::new(None),
            latest: Mutex::new(None),
            shutdown: AtomicBool::new(false),
        })
    }

    fn set_state(&self, state: CaptureState) {
        *self.state.lock().expect("state poisoned") = state;
    }

    pub fn state(&self) -> CaptureState {
        self.state.lock().expect("state poisoned").clone()
    }

    pub fn latest(&self) -> Option<Frame> {
        self.latest.lock().expect("latest poisoned").clone()
    }
}

/// Per-loop settings.
pub struct CaptureLoop {
    pub camera: String,
    pub device: Arc<dyn CaptureDevice>,
    pub request: ModeRequest,
    pub ring_slots: usize,
    pub clock: Arc<dyn Clock>,
    pub shared: Arc<CaptureShared>,
    /// Frame numbers continue across reopens so names and manifests stay unique.
    next_number: u64,
}

const FRAME_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a lost camera is looked for again.
const LOST_RETRY: Duration = Duration::from_millis(200);
/// Consecutive timeouts after which the device is reopened.
const REOPEN_AFTER_TIMEOUTS: u32 = 3;

impl CaptureLoop {
    pub fn new(
        camera: String,
        device: Arc<dyn CaptureDevice>,
        request: ModeRequest,
        ring_slots: usize,
        clock: Arc<dyn Clock>,
        shared: Arc<CaptureShared>,
    ) -> Self {
        CaptureLoop {
            camera,
            device,
            request,
            ring_slots,
            clock,
            shared,
            next_number: 0,
        }
    }

    /// Runs until `shared.shutdown` is set; never gives up on the device.
    ///
    /// A device that went away is looked for again every [`LOST_RETRY`] (a replug must be
    /// picked up within a second or two, and a missing node costs one failed `open`);
    /// any other failure is retried with a backoff that grows to 5 s.
    pub fn run(mut self) {
        let mut backoff = Duration::from_millis(250);
        let mut last_log: Option<(ErrorKind, Instant)> = None;
        let mut opened_before = false;
        while !self.shared.shutdown.load(Ordering::Relaxed) {
            let started = Instant::now();
            let result = self.run_once(&mut opened_before);
            match result {
                Ok(()) => break,
                Err(e) => {
                    if started.elapsed() > Duration::from_secs(10) {
                        backoff = Duration::from_millis(250);
                    }
                    let lost = matches!(e.kind, ErrorKind::NoDevice | ErrorKind::Disconnected);
                    let state = match e.kind {
                        _ if lost => CaptureState::Disconnected(format!("camera lost: {e}")),
                        ErrorKind::NoSignal => CaptureState::NoSignal,
                        _ => CaptureState::Failed(e.to_string()),
                    };
                    self.shared.set_state(state);
                    *self.shared.latest.lock().expect("latest poisoned") = None;
                    // Same error again within a minute: keep quiet (rate-limited log).
                    let repeat = last_log
                        .is_some_and(|(k, t)| k == e.kind && t.elapsed() < Duration::from_secs(60));
                    let wait = if lost { LOST_RETRY } else { backoff };
                    if !repeat {
                        log::warn!(
                            "capture {}: {e}; retrying every {wait:?}{}",
                            self.camera,
                            if lost { "" } else { " or slower" }
                        );
                        last_log = Some((e.kind, Instant::now()));
                    }
                    self.shared.stats.reopens.fetch_add(1, Ordering::Relaxed);
                    self.sleep(wait);
                    if !lost {
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        *self.shared.latest.lock().expect("latest poisoned") = None;
        self.shared.set_state(CaptureState::Stopped);
    }

    fn sleep(&self, total: Duration) {
        let deadline = Instant::now() + total;
        while Instant::now() < deadline && !self.shared.shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens the device and captures until shutdown (`Ok`) or a device error.
    /// `opened_before` tells a reconnect (counted and logged) from the first open.
    pub fn run_once(&mut self, opened_before: &mut bool) -> Result<()> {
        let mut source = self.device.open(&self.request)?;
        if *opened_before {
            self.shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "capture {}: {} reconnected",
                self.camera,
                self.device.info().device
            );
        }
        *opened_before = true;
        let mode = source.mode();
        let mut ring = FrameRing::new(
            self.ring_slots,
            source.max_frame_bytes(),
            mode.format,
            mode.width,
            mode.height,
        );
        *self.shared.mode.lock().expect("mode poisoned") = Some(mode);
        log::info!(
            "capture {}: {} open at {}x{} {} fps {}, ring {} x {} KiB",
            self.camera,
            self.device.info().device,
            mode.width,
            mode.height,
            mode.fps,
            mode.format.name(),
            ring.slot_count(),
            ring.slot_bytes() / 1024
        );
        let shared = Arc::clone(&self.shared);
        let clock = Arc::clone(&self.clock);
        let mut timeouts = 0;
        let mut last_sequence: Option<u64> = None;
        let mut last_ts: Option<u64> = None;
        let mut avg_interval_us = 0.0f64;
        let mut number = self.next_number;
        let mut last_drop_log = Instant::now() - Duration::from_secs(60);
        let mut skipped_seen = 0;
        // Ends the stream for the subscribers (the recorder closes its clip) whenever this
        // open ends, whatever the reason.
        let _interrupt_on_exit = InterruptOnDrop(&shared.fanout);
        while !shared.shutdown.load(Ordering::Relaxed) {
            let result = source.next_frame(FRAME_TIMEOUT, &mut |f| {
                let gap = last_sequence.map_or(0, |prev| f.sequence.saturating_sub(prev + 1));
                shared.stats.driver_drops.fetch_add(gap, Ordering::Relaxed);
                last_sequence = Some(f.sequence);
                let meta = FrameMeta {
                    number,
                    timestamp_us: f.timestamp_us,
                    wall_us: clock.wall_at_us(f.timestamp_us),
                    width: mode.width,
                    height: mode.height,
                    format: mode.format,
                    driver_dropped_before: gap.min(u32::MAX as u64) as u32,
                };
                if let Some(prev) = last_ts {
                    // Average the intervals, not their inverses: 1/x of jittery
                    // intervals would overstate the rate.
                    let interval = f.timestamp_us.saturating_sub(prev).max(1) as f64;
                    avg_interval_us = if avg_interval_us == 0.0 {
                        interval
                    } else {
                        avg_interval_us * 0.9 + interval * 0.1
                    };
                    let fps_milli = (1e9 / avg_interval_us) as u64;
                    shared.stats.fps_milli.store(fps_milli, Ordering::Relaxed);
                }
                last_ts = Some(f.timestamp_us);
                match ring.publish(meta, f.data) {
                    Ok(frame) => {
                        number += 1;
                        shared.stats.frames_captured.fetch_add(1, Ordering::Relaxed);
                        shared.fanout.publish(&frame);
                        *shared.latest.lock().expect("latest poisoned") = Some(frame);
                    }
                    Err(e) => {
                        let counter = match e {
                            PublishError::RingFull => &shared.stats.ring_full_drops,
                            PublishError::TooLarge => &shared.stats.oversize_drops,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if last_drop_log.elapsed() > Duration::from_secs(10) {
                            log::warn!("capture: frame dropped at the ring ({e:?}); every slot busy or frame too large");
                            last_drop_log = Instant::now();
                        }
                    }
                }
            });
            let skipped = source.frames_skipped();
            if skipped != skipped_seen {
                shared
                    .stats
                    .corrupt_frames
                    .fetch_add(skipped - skipped_seen, Ordering::Relaxed);
                skipped_seen = skipped;
            }
            match result {
                Ok(()) => {
                    if timeouts > 0
                        || *shared.state.lock().expect("state poisoned") != CaptureState::Capturing
                    {
                        if timeouts > 0 {
                            shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                            log::warn!("capture {}: frames again", self.camera);
                        }
                        shared.set_state(CaptureState::Capturing);
                    }
                    timeouts = 0;
                }
                Err(e) if e.kind == ErrorKind::NoSignal => {
                    if timeouts == 0 {
                        shared.fanout.interrupt();
                    }
                    timeouts += 1;
                    shared.set_state(CaptureState::NoSignal);
                    *shared.latest.lock().expect("latest poisoned") = None;
                    shared.stats.fps_milli.store(0, Ordering::Relaxed);
                    last_ts = None;
                    avg_interval_us = 0.0;
                    if timeouts >= REOPEN_AFTER_TIMEOUTS {
                        self.next_number = number;
                        return Err(e);
                    }
                }
                Err(e) => {
                    self.next_number = number;
                    shared.stats.fps_milli.store(0, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        self.next_number = number;
        Ok(())
    }
}

/// Calls [`Fanout::interrupt`] when dropped: the end of an open, by any path.
struct InterruptOnDrop<'a>(&'a Fanout);

impl Drop for InterruptOnDrop<'_> {
    fn drop(&mut self) {
        self.0.interrupt();
    }
}
