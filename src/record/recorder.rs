//! The rolling clip recorder of one camera: an in-order subscriber of the camera's encoder
//! stage that cuts its encoded frames into fragments (each starting at a keyframe on the
//! stage's grid, so every `fragment_duration`) and clips (at the first keyframe past
//! `clip_length`: it asks the stage for one), and hands finished fragments to its own
//! writer thread, which appends them to the clip file, fsyncs, and keeps the clip index
//! current.
//!
//! Sample times are the frames' capture times; the last sample of a fragment gets its
//! duration from the first frame of the next, so consecutive clips tile time exactly.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::fmp4::{self, FragmentBuilder, SampleInfo};
use super::index::{clip_file_name, frames_file_name, ClipRecord, RecordingType, FRAMES_HEADER};
use crate::encode::ring::{StreamParams, Unit};
use crate::encode::stage::StageUser;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::frame::Subscription;
use crate::storage::{volume, Storage};

/// What a recorder needs to know, fixed for its lifetime.
#[derive(Clone, Debug)]
pub struct RecorderSettings {
    pub camera: String,
    pub recording_type: RecordingType,
    pub clip_length: Duration,
    pub fragment_duration: Duration,
    /// The stream's target rate: sizes the fragment buffers.
    pub bitrate_kbps: u32,
    /// Nominal rate: sizes buffers and gives the very last sample its duration.
    pub fps: u32,
}

/// Counters and state shown in health and metrics; shared with the web side.
#[derive(Default, Debug)]
pub struct RecorderStats {
    pub frames_recorded: AtomicU64,
    pub clips_closed: AtomicU64,
    /// Frames not recorded because storage was full (recording paused).
    pub frames_skipped_storage_full: AtomicU64,
    /// Frames that could not be recorded (time went backwards, a stream without
    /// parameters); encoding failures are the encoder stage's.
    pub frames_failed: AtomicU64,
    /// Frames not recorded while the recorder waited for a keyframe to start a clip
    /// (the stage was already running for a viewer, or after a gap).
    pub frames_before_keyframe: AtomicU64,
    pub paused_storage_full: AtomicBool,
    /// Non-zero: close the open clip after the first frame captured after this monotonic
    /// time (µs), so an experiment's window ends inside complete clips and the next clip
    /// starts after it. The recorder sets it back to 0 once done.
    pub cut_after_us: AtomicU64,
    /// Messages (clip opened, fragment, clip closed) the recorder has handed to its
    /// writer thread, and how many of them the writer has finished (on disk, indexed).
    /// Once `written` reaches a value `queued` had, everything handed over before then
    /// is in the index: how an experiment knows its last clip is there.
    pub writer_queued: AtomicU64,
    pub writer_written: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub current_clip: Mutex<Option<String>>,
}

impl RecorderStats {
    fn set_error(&self, message: Option<String>) {
        *self.last_error.lock().expect("stats poisoned") = message;
    }
}

/// A running recorder; dropping it without `stop` also stops it.
pub struct Recorder {
    subscription: Option<Subscription<Unit>>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<RecorderStats>,
}

impl Recorder {
    /// Starts recording the units of `subscription` (the stage's recorder subscriber);
    /// `stage` keeps the encoder running and takes keyframe requests.
    pub fn start(
        subscription: Subscription<Unit>,
        stage: StageUser,
        storage: Arc<Storage>,
        settings: RecorderSettings,
    ) -> Result<Recorder> {
        let stats = Arc::new(RecorderStats::default());
        let subscriber = Arc::clone(subscription.subscriber());
        let thread_stats = Arc::clone(&stats);
        let name = format!("rec-{}", settings.camera);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let mut state = RecorderState::new(settings, storage, thread_stats, stage);
                let mut interrupted = false;
                loop {
                    match subscriber.recv_timeout(Duration::from_millis(250)) {
                        Some(unit) => {
                            interrupted = false;
                            state.on_frame(&unit);
                        }
                        None if subscriber.is_closed() => break,
                        // Frames after the gap come after any cut asked for during it.
                        None if interrupted => state.no_clip_to_cut(),
                        None => {}
                    }
                    // The camera was lost or stopped sending: end the clip at its last
                    // frame now, so it is complete and playable through the gap.
                    if subscriber.take_interruption() {
                        state.close_clip(None);
                        state.no_clip_to_cut();
                        interrupted = true;
                    }
                }
                state.finish();
            })
            .ctx("spawning recorder thread")?;
        Ok(Recorder {
            subscription: Some(subscription),
            thread: Some(thread),
            stats,
        })
    }

    /// Stops after recording every frame already queued; the open clip is finalised.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(sub) = &self.subscription {
            sub.close();
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("recorder thread panicked");
            }
        }
        self.subscription = None;
    }

    /// Frames the recorder lost because it fell behind capture.
    pub fn frames_dropped(&self) -> u64 {
        self.subscription.as_ref().map_or(0, |s| s.dropped())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A finished fragment travelling to the writer; its buffers come back for reuse.
struct FragmentBuf {
    header: Vec<u8>,
    data: Vec<u8>,
    frames: u64,
    last_frame: u64,
    /// Clip-relative end time of the fragment's last sample, µs.
    end_us: u64,
    /// Lines of the clip's frames file for this fragment (see `frames_file_name`).
    frames_csv: Vec<u8>,
}

enum WriterMsg {
    Open {
        path: PathBuf,
        init: Vec<u8>,
        record: ClipRecord,
    },
    Fragment(FragmentBuf),
    Close,
}

/// The clip being built.
struct OpenClip {
    start_us: u64,
    fragment_start_us: u64,
    sequence: u32,
    frame_count: u64,
    /// The stream its samples come from; another stream starts another clip.
    params: Arc<StreamParams>,
}

/// A sample encoded into the current fragment, waiting for its duration.
struct PendingSample {
    size: u32,
    keyframe: bool,
    timestamp_us: u64,
    wall_us: i64,
    frame: u64,
    driver_dropped_before: u32,
}

struct RecorderState {
    settings: RecorderSettings,
    storage: Arc<Storage>,
    stats: Arc<RecorderStats>,
    stage: StageUser,
    clip: Option<OpenClip>,
    pending: Option<PendingSample>,
    samples: Vec<SampleInfo>,
    builder: FragmentBuilder,
    current: Option<FragmentBuf>,
    to_writer: SyncSender<WriterMsg>,
    free_buffers: Receiver<FragmentBuf>,
    writer: Option<JoinHandle<()>>,
    writer_failed: Arc<AtomicBool>,
    /// Frame time of the last storage check while paused, µs.
    last_room_check_us: u64,
    error_logged: bool,
}

impl RecorderState {
    fn new(
        settings: RecorderSettings,
        storage: Arc<Storage>,
        stats: Arc<RecorderStats>,
        stage: StageUser,
    ) -> Self {
        let frames_per_fragment =
            (settings.fps as u64 * settings.fragment_duration.as_millis() as u64 / 1000 + 2)
                as usize
                * 2;
        let (to_writer, writer_rx) = sync_channel(4);
        let (buffer_tx, free_buffers) = sync_channel(4);
        // Three fragment buffers: one being filled, one being written, one spare. Sized
        // for four times the H.264 target rate so steady state never grows them (MJPEG
        // fragments are larger and grow these once, during the first seconds).
        let fragment_bytes =
            (settings.bitrate_kbps as u64 * 125 * settings.fragment_duration.as_millis() as u64
                / 1000
                * 4)
            .max(256 * 1024) as usize;
        for _ in 0..3 {
            buffer_tx
                .send(FragmentBuf {
                    header: Vec::with_capacity(4096),
                    data: Vec::with_capacity(fragment_bytes),
                    frames: 0,
                    last_frame: 0,
                    end_us: 0,
                    frames_csv: Vec::with_capacity(64 * 1024),
                })
                .expect("channel has room for the initial buffers");
        }
        let writer_failed = Arc::new(AtomicBool::new(false));
        let writer = {
            let storage = Arc::clone(&storage);
            let stats = Arc::clone(&stats);
            let failed = Arc::clone(&writer_failed);
            std::thread::Builder::new()
                .name(format!("clipw-{}", settings.camera))
                .spawn(move || write_clips(writer_rx, buffer_tx, storage, stats, failed))
                .expect("spawning clip writer thread")
        };
        RecorderState {
            builder: FragmentBuilder::new(frames_per_fragment),
            samples: Vec::with_capacity(frames_per_fragment),
            settings,
            storage,
            stats,
            stage,
            clip: None,
            pending: None,
            current: None,
            to_writer,
            free_buffers,
            writer: Some(writer),
            writer_failed,
            last_room_check_us: 0,
            error_logged: false,
        }
    }

    fn on_frame(&mut self, frame: &Unit) {
        if self.writer_failed.swap(false, Ordering::AcqRel) {
            // The writer could not write (disk full or I/O error) and gave the clip up.
            self.clip = None;
            self.pending = None;
            self.samples.clear();
            // The fragment being gathered belonged to that clip: its encoded bytes must not
            // start the next clip's first mdat (the VM bench's pulled drive: the first clip
            // after the return began with stale video its moof did not count).
            if let Some(buf) = self.current.as_mut() {
                buf.data.clear();
                buf.frames_csv.clear();
                buf.frames = 0;
            }
            self.pause_for_storage(frame);
        }
        if !self.storage.is_present() && !self.stats.paused_storage_full.load(Ordering::Relaxed) {
            // The supervisor found the drive gone (or read-only): stop mid-clip rather
            // than write into a filesystem that is no longer mounted.
            self.pause_for_storage(frame);
        }
        if self.stats.paused_storage_full.load(Ordering::Relaxed) {
            self.no_clip_to_cut();
            if frame.timestamp_us.saturating_sub(self.last_room_check_us) < 1_000_000 {
                self.stats
                    .frames_skipped_storage_full
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.last_room_check_us = frame.timestamp_us;
            if self.storage.ensure_room(&self.settings.camera).is_err() {
                self.stats
                    .frames_skipped_storage_full
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.stats
                .paused_storage_full
                .store(false, Ordering::Relaxed);
            self.stats.set_error(None);
            log::info!(
                "recorder {}: storage is usable again; recording resumes",
                self.settings.camera
            );
        }
        let result = self.record(frame);
        if let Err(e) = result {
            if e.kind == ErrorKind::StorageFull || volume::is_storage_error(&e) {
                self.storage.report_write_error(&e);
                self.stats
                    .frames_skipped_storage_full
                    .fetch_add(1, Ordering::Relaxed);
                self.pause_for_storage(frame);
            } else {
                self.stats.frames_failed.fetch_add(1, Ordering::Relaxed);
                if !self.error_logged {
                    log::error!("recorder {}: {e}", self.settings.camera);
                    self.error_logged = true;
                }
                self.stats.set_error(Some(e.to_string()));
            }
        }
    }

    /// Stops writing until `ensure_room` passes again (checked once a second), with the
    /// reason for health: the drive is gone or read-only, or it is full.
    fn pause_for_storage(&mut self, frame: &Unit) {
        self.close_clip(None);
        self.stats
            .paused_storage_full
            .store(true, Ordering::Relaxed);
        let why = match self.storage.refresh().error() {
            Some(e) => format!("{e}; recording paused until it is back"),
            None if self.storage.is_full() => {
                "storage full: recording paused until space returns".into()
            }
            None => "storage failed a write: recording paused, retried every second".into(),
        };
        log::warn!("recorder {}: {why}", self.settings.camera);
        self.stats.set_error(Some(why));
        self.last_room_check_us = frame.timestamp_us;
    }

    /// An experiment's boundary passed: the clip must end at the next keyframe (the
    /// first frame captured after the boundary is still in it, unless it is a keyframe
    /// itself and starts the next clip). Returns the boundary.
    fn cut_due(&self, frame: &Unit) -> Option<u64> {
        let cut = self.stats.cut_after_us.load(Ordering::Acquire);
        (cut != 0 && frame.timestamp_us > cut).then_some(cut)
    }

    /// No clip is open (paused for storage, the camera gone) and every frame so far is
    /// handled: a pending cut has nothing to close.
    fn no_clip_to_cut(&self) {
        let cut = self.stats.cut_after_us.load(Ordering::Acquire);
        if cut != 0 && self.clip.is_none() {
            self.cut_done(cut);
        }
    }

    /// Marks the experiment's cut as made; a newer request (a later boundary) stays.
    fn cut_done(&self, cut: u64) {
        let _ =
            self.stats
                .cut_after_us
                .compare_exchange(cut, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    fn record(&mut self, frame: &Unit) -> Result<()> {
        let mut cut = self.cut_due(frame);
        if let (Some(c), Some(clip)) = (cut, &self.clip) {
            if clip.start_us > c {
                // The open clip began after the boundary: it is outside the window already.
                self.cut_done(c);
                cut = None;
            }
        }
        if let Some(clip) = &self.clip {
            if !Arc::ptr_eq(&clip.params, &frame.params) {
                // Another stream (new size, encoder restarted): another clip.
                self.close_clip(None);
            } else if frame.timestamp_us <= self.pending.as_ref().map_or(0, |p| p.timestamp_us) {
                return Err(Error::new(
                    ErrorKind::Codec,
                    "frame time went backwards; frame skipped",
                ));
            }
        }
        if let Some(clip) = &self.clip {
            let since_clip = frame.timestamp_us - clip.start_us;
            let full = since_clip >= self.settings.clip_length.as_micros() as u64;
            if (full || cut.is_some()) && frame.keyframe {
                // The clip ends where this keyframe starts the next one.
                self.close_clip(Some(frame.timestamp_us));
                if let Some(cut) = cut {
                    self.cut_done(cut);
                }
            } else {
                if full || cut.is_some() {
                    self.stage.request_keyframe();
                }
                self.settle_pending(frame.timestamp_us);
                let clip = self.clip.as_ref().expect("checked");
                let elapsed = frame.timestamp_us - clip.fragment_start_us;
                // Fragments start on the stage's keyframe grid (requested keyframes for
                // viewers fall inside them); a late grid keyframe still ends one.
                if frame.keyframe
                    && (frame.boundary
                        || elapsed >= self.settings.fragment_duration.as_micros() as u64)
                {
                    self.flush_fragment(frame.timestamp_us)?;
                }
            }
        } else if let Some(cut) = cut {
            // No clip is open: nothing to cut.
            self.cut_done(cut);
        }
        if self.clip.is_none() && !frame.keyframe {
            // A clip starts at a keyframe: ask for one; this frame stays out.
            self.stage.request_keyframe();
            self.stats
                .frames_before_keyframe
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if self.clip.is_none() {
            self.storage.ensure_room(&self.settings.camera)?;
        }
        let starts_fragment = self.samples.is_empty() && self.pending.is_none();
        let mut buf = match self.current.take() {
            Some(buf) => buf,
            None => self.take_buffer()?,
        };
        let sample = frame.sample();
        buf.data.extend_from_slice(sample);
        self.current = Some(buf);
        if self.clip.is_none() {
            self.open_clip(frame)?;
        }
        let clip = self.clip.as_mut().expect("opened above");
        if starts_fragment {
            clip.fragment_start_us = frame.timestamp_us;
        }
        clip.frame_count += 1;
        self.pending = Some(PendingSample {
            size: sample.len() as u32,
            keyframe: frame.keyframe,
            timestamp_us: frame.timestamp_us,
            wall_us: frame.wall_us,
            frame: frame.number,
            driver_dropped_before: frame.driver_dropped_before,
        });
        self.stats.frames_recorded.fetch_add(1, Ordering::Relaxed);
        self.error_logged = false;
        Ok(())
    }

    fn open_clip(&mut self, frame: &Unit) -> Result<()> {
        let init = frame.params.init.to_vec();
        // The name says when (wall clock) and which frame; after a backwards clock step
        // it could repeat an existing one, so it moves on by a millisecond until free.
        let mut name_us = frame.wall_us;
        let mut file = clip_file_name(name_us, &self.settings.camera, frame.number);
        while self.storage.index.name_taken(&self.settings.camera, &file) {
            name_us += 1000;
            file = clip_file_name(name_us, &self.settings.camera, frame.number);
        }
        let record = ClipRecord {
            camera: self.settings.camera.clone(),
            file: file.clone(),
            recording_type: self.settings.recording_type,
            started_us: frame.wall_us,
            first_mono_us: frame.timestamp_us,
            first_frame: frame.number,
            last_frame: frame.number,
            frame_count: 0,
            duration_us: 0,
            size: init.len() as u64,
            complete: false,
            seq: 0,
            boot_id: crate::clock::boot_id().to_string(),
        };
        let dir = self.storage.index.camera_dir(&self.settings.camera);
        // Only the camera's own folder is made here: rolling/ exists only on a data
        // filesystem that `ensure_room` just found present, so an empty mount point
        // makes this fail instead of filling the root filesystem.
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(e, format!("creating {}", dir.display()))),
        }
        let path = dir.join(&file);
        *self.stats.current_clip.lock().expect("stats poisoned") = Some(file);
        self.send(WriterMsg::Open { path, init, record })?;
        self.clip = Some(OpenClip {
            start_us: frame.timestamp_us,
            fragment_start_us: frame.timestamp_us,
            sequence: 0,
            frame_count: 0,
            params: Arc::clone(&frame.params),
        });
        // The next clip starts at the first frame past clip_length: a keyframe then.
        self.stage
            .request_keyframe_at(frame.timestamp_us + self.settings.clip_length.as_micros() as u64);
        Ok(())
    }

    /// Gives the pending sample its duration, ending at `next_us` (clip-relative
    /// rounding keeps the sum of durations equal to the true elapsed time).
    fn settle_pending(&mut self, next_us: u64) {
        let (Some(p), Some(clip)) = (self.pending.take(), &self.clip) else {
            return;
        };
        let start = fmp4::us_to_ticks(p.timestamp_us - clip.start_us);
        let end = fmp4::us_to_ticks(next_us.max(p.timestamp_us + 1) - clip.start_us);
        self.samples.push(SampleInfo {
            size: p.size,
            duration: (end - start).max(1) as u32,
            keyframe: p.keyframe,
        });
        if let Some(buf) = self.current.as_mut() {
            // Sample index within the clip: samples already in the buffer's fragments.
            let sample_index = clip.frame_count - 1;
            let _ = writeln!(
                buf.frames_csv,
                "{},{},{},{},{}",
                p.frame, p.timestamp_us, p.wall_us, sample_index, p.driver_dropped_before
            );
            buf.frames += 1;
            buf.last_frame = p.frame;
            buf.end_us = next_us - clip.start_us;
        }
    }

    /// Sends the samples gathered so far as one fragment. `next_us` is the capture time
    /// of the frame that follows (already used to settle the last duration).
    fn flush_fragment(&mut self, _next_us: u64) -> Result<()> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let clip = self
            .clip
            .as_mut()
            .expect("fragments belong to an open clip");
        clip.sequence += 1;
        let base = {
            let first_ts = clip.fragment_start_us - clip.start_us;
            fmp4::us_to_ticks(first_ts)
        };
        let mut buf = self
            .current
            .take()
            .expect("a fragment buffer holds the samples");
        let header = self.builder.build(clip.sequence, base, &self.samples)?;
        buf.header.clear();
        buf.header.extend_from_slice(header);
        self.samples.clear();
        self.send(WriterMsg::Fragment(buf))
    }

    /// Ends the open clip. `next_us` is the next frame's time, if one exists, for the
    /// last sample's duration; otherwise the nominal frame interval is used.
    fn close_clip(&mut self, next_us: Option<u64>) {
        if self.clip.is_none() {
            return;
        }
        let last_end = next_us.unwrap_or_else(|| {
            self.pending.as_ref().map_or(0, |p| {
                p.timestamp_us + 1_000_000 / self.settings.fps.max(1) as u64
            })
        });
        self.settle_pending(last_end);
        if let Err(e) = self.flush_fragment(last_end) {
            log::error!("recorder {}: last fragment lost: {e}", self.settings.camera);
        }
        let _ = self.send(WriterMsg::Close);
        self.clip = None;
        self.pending = None;
        self.samples.clear();
        *self.stats.current_clip.lock().expect("stats poisoned") = None;
    }

    fn take_buffer(&mut self) -> Result<FragmentBuf> {
        loop {
            match self.free_buffers.recv_timeout(Duration::from_secs(5)) {
                Ok(mut buf) => {
                    buf.data.clear();
                    buf.frames_csv.clear();
                    buf.frames = 0;
                    return Ok(buf);
                }
                Err(RecvTimeoutError::Timeout) => {
                    log::warn!(
                        "recorder {}: clip writer stalled for 5 s (slow storage?)",
                        self.settings.camera
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::new(ErrorKind::Io, "clip writer thread ended"));
                }
            }
        }
    }

    fn send(&self, msg: WriterMsg) -> Result<()> {
        self.to_writer
            .send(msg)
            .map_err(|_| Error::new(ErrorKind::Io, "clip writer thread ended"))?;
        self.stats.writer_queued.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn finish(mut self) {
        self.close_clip(None);
        let (tx, _) = sync_channel(1);
        drop(std::mem::replace(&mut self.to_writer, tx));
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                log::error!("clip writer thread panicked");
            }
        }
    }
}

/// The writer thread: appends fragments to clip files, fsyncs each, keeps the index.
fn write_clips(
    rx: Receiver<WriterMsg>,
    buffers: SyncSender<FragmentBuf>,
    storage: Arc<Storage>,
    stats: Arc<RecorderStats>,
    failed: Arc<AtomicBool>,
) {
    let mut open: Option<(File, File, PathBuf, ClipRecord)> = None;
    let mut broken = false;
    for msg in rx {
        match msg {
            WriterMsg::Open { path, init, record } => {
                broken = false;
                let frames_path = path.with_file_name(frames_file_name(&record.file));
                let result = File::create(&path)
                    .and_then(|mut f| f.write_all(&init).and_then(|_| f.sync_data()).map(|_| f))
                    .map_err(|e| Error::io(e, format!("creating {}", path.display())));
                let result = result.and_then(|f| {
                    let mut frames = File::create(&frames_path)
                        .map_err(|e| Error::io(e, format!("creating {}", frames_path.display())))?;
                    frames
                        .write_all(FRAMES_HEADER.as_bytes())
                        .ctx("writing frames file")?;
                    if let Some(dir) = path.parent() {
                        crate::storage::sync_dir(dir)?;
                    }
                    storage.index.upsert(record.clone())?;
                    Ok((f, frames))
                });
                match result {
                    Ok((file, frames)) => open = Some((file, frames, path, record)),
                    Err(e) => {
                        give_up(&storage, &stats, &failed, &path, &record, e);
                        broken = true;
                    }
                }
            }
            WriterMsg::Fragment(buf) => {
                if let (false, Some((file, frames, path, record))) = (broken, open.as_mut()) {
                    // The frames rows first: every sample on disk has its row even when
                    // power fails between the two. Rows past the video's end (a cut
                    // between them) are ignored by readers and trimmed at recovery.
                    let written = frames
                        .write_all(&buf.frames_csv)
                        .and_then(|_| frames.sync_data())
                        .and_then(|_| file.write_all(&buf.header))
                        .and_then(|_| file.write_all(&buf.data))
                        .and_then(|_| file.sync_data());
                    match written {
                        Ok(()) => {
                            let bytes = (buf.header.len() + buf.data.len()) as u64;
                            storage.bytes_written.fetch_add(bytes, Ordering::Relaxed);
                            record.size += bytes;
                            record.frame_count += buf.frames;
                            record.last_frame = buf.last_frame;
                            record.duration_us = buf.end_us;
                        }
                        Err(e) => {
                            let e = Error::io(e, format!("writing {}", path.display()));
                            let (_, _, path, record) = open.take().expect("checked");
                            give_up(&storage, &stats, &failed, &path, &record, e);
                            broken = true;
                        }
                    }
                }
                let _ = buffers.send(buf);
            }
            WriterMsg::Close => {
                if let Some((file, frames, path, mut record)) = open.take() {
                    drop((file, frames));
                    record.complete = true;
                    if record.frame_count == 0 {
                        let _ = storage.index.delete(&record.camera, &record.file);
                    } else {
                        close_clip_record(&storage, &stats, &path, record);
                    }
                }
            }
        }
        stats.writer_written.fetch_add(1, Ordering::Release);
    }
}

/// A clip's last fragment is on disk: it is complete in the index, and retention runs.
fn close_clip_record(storage: &Storage, stats: &RecorderStats, path: &Path, record: ClipRecord) {
    if let Err(e) = storage.index.upsert(record.clone()) {
        log::error!("recorder: cannot index {}: {e}", path.display());
    }
    stats.clips_closed.fetch_add(1, Ordering::Relaxed);
    log::info!(
        "recorder {}: clip {} closed: {} frames, {:.1} s, {} bytes",
        record.camera,
        record.file,
        record.frame_count,
        record.duration_us as f64 / 1e6,
        record.size
    );
    storage.enforce_retention(&record.camera);
}

/// A clip could not be written: keep what is on disk and valid, tell the recorder.
fn give_up(
    storage: &Storage,
    stats: &RecorderStats,
    failed: &AtomicBool,
    path: &std::path::Path,
    record: &ClipRecord,
    e: Error,
) {
    log::error!("recorder {}: {e}", record.camera);
    stats.set_error(Some(e.to_string()));
    failed.store(true, Ordering::Release);
    storage.report_write_error(&e);
    if !storage.refresh().is_present() {
        // The drive is gone: the clip is repaired when it is back (index reload).
        return;
    }
    match fmp4::repair(path) {
        Ok(scan) if scan.samples > 0 => {
            let mut r = record.clone();
            r.size = scan.valid_len;
            r.frame_count = scan.samples;
            r.duration_us = scan.duration_us();
            r.last_frame = r.first_frame.saturating_add(scan.samples.saturating_sub(1));
            r.complete = true;
            let frames = path.with_file_name(frames_file_name(&record.file));
            if let Err(e) = super::index::trim_frames_file(&frames, scan.samples) {
                log::warn!("recorder {}: {e}", record.camera);
            }
            let _ = storage.index.upsert(r);
        }
        _ => {
            let _ = storage.index.delete(&record.camera, &record.file);
        }
    }
}
