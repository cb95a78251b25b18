//! Experiments: the state machine (armed → running → stopped → archived), the
//! AutomaticRecordingService that makes an experiment's cameras record, and archiving:
//! the clips covering [start − pre_roll, stop + post_roll] are hard-linked (or copied
//! and fsynced) into `experiments/<id>/` with a per-frame timestamps file and a
//! `manifest.json` that is written last, atomically — its presence means complete.
//!
//! `experiment.json` in the folder holds the live state, so a restart resumes a running
//! experiment and redoes an archive that a crash interrupted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::camera::CameraService;
use crate::clock::{clock_state, ClockState};
use crate::clock::{compact_utc_ms, rfc3339_ms, Clock};
use crate::config::{is_experiment_id, AutoRecordingConfig, ExperimentsConfig};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::record::index::{
    frames_file_name, read_frames_file, ClipRecord, FrameLine, RecordingType,
};
use crate::storage::{link_or_copy, sync_dir, write_atomic, Bound, Protection, Storage, Window};

/// A moment on both clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// CLOCK_MONOTONIC µs: comparable with frame capture times (same boot).
    pub monotonic_us: u64,
    /// Unix µs (UTC).
    pub wall_us: i64,
}

/// Something that happened during an experiment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// start | stop | marker | trigger (a trigger edge that changed nothing) |
    /// camera_lost | camera_restored
    pub kind: String,
    /// `api`, or `gpio:<input name>`
    pub source: String,
    pub at: Stamp,
    /// `clock_step` events: how far the wall clock jumped (µs, negative = backwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_us: Option<i64>,
}

/// Where the recording stood at a moment: its kernel boot and the index's next clip
/// seq. With the Stamp's monotonic time, window bounds that wall-clock steps and
/// reboots cannot move (`storage::Window`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub boot_id: String,
    pub seq: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Armed,
    Running,
    /// Stopped; archive pending or in progress.
    Stopped,
    Archived,
}

/// The persisted state of one experiment (`experiment.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub method: String,
    pub phase: Phase,
    pub cameras: Vec<String>,
    pub armed: Option<Stamp>,
    pub started: Option<Stamp>,
    pub stopped: Option<Stamp>,
    pub pre_roll_us: u64,
    pub post_roll_us: u64,
    pub events: Vec<Event>,
    /// Cameras whose recording this experiment started (stopped again after it).
    pub started_recording: Vec<String>,
    /// Boot and clip order when it was armed or started, and when it stopped.
    #[serde(default)]
    pub start_mark: Mark,
    #[serde(default)]
    pub stop_mark: Mark,
    /// Whether the wall clock was synchronised at the start and the stop.
    #[serde(default)]
    pub clock_at_start: Option<ClockState>,
    #[serde(default)]
    pub clock_at_stop: Option<ClockState>,
}

/// What a trigger input reports (from the GPIO side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TriggerKind {
    Start,
    Stop,
    Marker,
}

const STATE_FILE: &str = "experiment.json";
const MANIFEST: &str = "manifest.json";
const FRAMES_CSV: &str = "frames.csv";

pub struct ExperimentService {
    cameras: Arc<CameraService>,
    storage: Arc<Storage>,
    clock: Arc<dyn Clock>,
    auto: AutoRecordingConfig,
    settings: ExperimentsConfig,
    dir: PathBuf,
    /// The armed or running experiment; at most one at a time.
    active: Mutex<Option<Experiment>>,
    /// Archives in progress (the recording LED blinks while > 0).
    archiving: AtomicUsize,
    /// Serialises archive runs so two never write one folder.
    archive_lock: Mutex<()>,
}

fn now(clock: &dyn Clock) -> Stamp {
    let monotonic_us = clock.monotonic_us();
    Stamp {
        monotonic_us,
        wall_us: clock.wall_at_us(monotonic_us),
    }
}

fn wrong_state(message: String) -> Error {
    Error::new(ErrorKind::WrongState, message)
}

impl ExperimentService {
    pub fn new(
        cameras: Arc<CameraService>,
        storage: Arc<Storage>,
        auto: AutoRecordingConfig,
        settings: ExperimentsConfig,
    ) -> Arc<Self> {
        let dir = storage.data_dir().join("experiments");
        let clock = Arc::clone(cameras.clock());
        Arc::new(ExperimentService {
            cameras,
            storage,
            clock,
            auto,
            settings,
            dir,
            active: Mutex::new(None),
            archiving: AtomicUsize::new(0),
            archive_lock: Mutex::new(()),
        })
    }

    pub fn is_archiving(&self) -> bool {
        self.archiving.load(Ordering::Relaxed) > 0
    }

    /// The armed or running experiment.
    pub fn active(&self) -> Option<Experiment> {
        self.active.lock().expect("experiments poisoned").clone()
    }

    fn folder(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn validate_id(id: &str) -> Result<()> {
        if is_experiment_id(id) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "experiment id {id:?}: use 1-64 of A-Z a-z 0-9 . _ - not starting with a dot"
                ),
            ))
        }
    }

    fn validate_method(method: &str) -> Result<()> {
        if method.chars().count() > 128 || method.chars().any(char::is_control) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "method: up to 128 printable characters",
            ));
        }
        Ok(())
    }

    /// The primary camera (and any listed); every camera when the primary is absent.
    fn resolve_cameras(&self, listed: Option<Vec<String>>) -> Result<Vec<String>> {
        let all: Vec<String> = self
            .cameras
            .cameras()
            .iter()
            .map(|c| c.id.clone())
            .collect();
        let mut chosen = match listed {
            Some(list) if !list.is_empty() => {
                for c in &list {
                    if !all.contains(c) {
                        return Err(Error::new(ErrorKind::NotFound, format!("no camera {c}")));
                    }
                }
                list
            }
            _ if all.contains(&self.auto.primary_camera) => vec![self.auto.primary_camera.clone()],
            _ => all,
        };
        chosen.sort();
        chosen.dedup();
        if chosen.is_empty() {
            return Err(wrong_state("no camera to record the experiment".into()));
        }
        Ok(chosen)
    }

    fn persist(&self, exp: &Experiment) -> Result<()> {
        // Never onto the root filesystem under an empty mount point.
        self.storage.require_present()?;
        let folder = self.folder(&exp.experiment_id);
        std::fs::create_dir_all(&folder).ctx(format!("creating {}", folder.display()))?;
        let text = serde_json::to_vec_pretty(exp).expect("experiment serializes");
        write_atomic(&folder.join(STATE_FILE), &text)
    }

    /// Arms an experiment: it starts at the next trigger start edge. Retention keeps
    /// the clips of its pre-roll from now on.
    pub fn arm(&self, id: &str, method: &str, cameras: Option<Vec<String>>) -> Result<Experiment> {
        Self::validate_method(method)?;
        let mut active = self.active.lock().expect("experiments poisoned");
        self.check_new_locked(&active, id)?;
        let cameras = self.resolve_cameras(cameras)?;
        let at = now(&*self.clock);
        let mut exp = self.new_experiment(id, method, cameras);
        exp.armed = Some(at);
        exp.start_mark = self.mark();
        exp.events.push(Event {
            kind: "arm".into(),
            source: "api".into(),
            at,
            step_us: None,
        });
        self.protect(&exp);
        self.ensure_recording(&exp.cameras);
        self.persist(&exp)?;
        log::info!("experiment {id}: armed ({})", exp.cameras.join(", "));
        *active = Some(exp.clone());
        Ok(exp)
    }

    fn check_new_locked(&self, active: &Option<Experiment>, id: &str) -> Result<()> {
        Self::validate_id(id)?;
        if let Some(a) = active {
            return Err(wrong_state(format!(
                "experiment {} is {:?}; stop it first",
                a.experiment_id, a.phase
            )));
        }
        if self.folder(id).exists() {
            return Err(wrong_state(format!("experiment {id} exists already")));
        }
        Ok(())
    }

    /// Starts an experiment now (or at `at`, a trigger's edge time).
    pub fn start(
        &self,
        id: &str,
        method: &str,
        cameras: Option<Vec<String>>,
        source: &str,
        at: Option<Stamp>,
    ) -> Result<Experiment> {
        Self::validate_method(method)?;
        let mut active = self.active.lock().expect("experiments poisoned");
        self.check_new_locked(&active, id)?;
        let cameras = self.resolve_cameras(cameras)?;
        let exp = self.new_experiment(id, method, cameras);
        let exp = self.begin(exp, source, at.unwrap_or_else(|| now(&*self.clock)))?;
        *active = Some(exp.clone());
        Ok(exp)
    }

    /// A not-yet-started experiment with the configured pre/post roll.
    fn new_experiment(&self, id: &str, method: &str, cameras: Vec<String>) -> Experiment {
        Experiment {
            experiment_id: id.to_string(),
            method: method.to_string(),
            phase: Phase::Armed,
            cameras,
            armed: None,
            started: None,
            stopped: None,
            pre_roll_us: self.auto.pre_roll.0.as_micros() as u64,
            post_roll_us: self.auto.post_roll.0.as_micros() as u64,
            events: Vec::new(),
            started_recording: Vec::new(),
            start_mark: Mark::default(),
            stop_mark: Mark::default(),
            clock_at_start: None,
            clock_at_stop: None,
        }
    }

    /// Armed → running.
    fn begin(&self, mut exp: Experiment, source: &str, at: Stamp) -> Result<Experiment> {
        exp.phase = Phase::Running;
        exp.started = Some(at);
        exp.start_mark = self.mark();
        exp.clock_at_start = Some(clock_state(at.wall_us));
        exp.events.push(Event {
            kind: "start".into(),
            source: source.into(),
            at,
            step_us: None,
        });
        exp.started_recording = self.ensure_recording(&exp.cameras);
        self.protect(&exp);
        self.persist(&exp)?;
        log::info!(
            "experiment {}: started by {source} at {} ({})",
            exp.experiment_id,
            rfc3339_ms(at.wall_us),
            exp.cameras.join(", ")
        );
        Ok(exp)
    }

    /// AutomaticRecordingService: makes the cameras record; returns those it started.
    fn ensure_recording(&self, cameras: &[String]) -> Vec<String> {
        let mut started = Vec::new();
        for id in cameras {
            match self.cameras.start_recording(id, RecordingType::Experiment) {
                Ok(()) => started.push(id.clone()),
                Err(e) if e.kind == ErrorKind::WrongState => {} // already recording
                Err(e) => log::error!("experiment: cannot record {id}: {e}"),
            }
        }
        started
    }

    fn mark(&self) -> Mark {
        Mark {
            boot_id: crate::clock::boot_id().to_string(),
            seq: self.storage.index.next_seq(),
        }
    }

    /// [start − pre_roll, stop + post_roll] (from the arming while not started; open
    /// while running), judged by monotonic time and clip order, not the wall clock.
    fn window(exp: &Experiment) -> Window {
        let start = exp.started.or(exp.armed);
        let pre = exp.pre_roll_us;
        Window {
            cameras: exp.cameras.clone(),
            from: Bound {
                boot_id: exp.start_mark.boot_id.clone(),
                mono_us: start.map_or(0, |s| s.monotonic_us.saturating_sub(pre)),
                wall_us: start.map_or(i64::MIN, |s| s.wall_us - pre as i64),
                seq: exp.start_mark.seq,
            },
            to: exp.stopped.map(|s| Bound {
                boot_id: exp.stop_mark.boot_id.clone(),
                mono_us: s.monotonic_us + exp.post_roll_us,
                wall_us: s.wall_us + exp.post_roll_us as i64,
                seq: exp.stop_mark.seq,
            }),
        }
    }

    fn protect(&self, exp: &Experiment) {
        self.storage.protect(Protection {
            owner: format!("experiment:{}", exp.experiment_id),
            window: Self::window(exp),
        });
    }

    /// The wall clock jumped by `step_us` (NTP's first answer, `date -s`): the running
    /// experiment records it, so its wall times can be corrected.
    pub fn clock_step(&self, step_us: i64) {
        let mut active = self.active.lock().expect("experiments poisoned");
        let Some(exp) = active.as_mut().filter(|e| e.phase == Phase::Running) else {
            return;
        };
        exp.events.push(Event {
            kind: "clock_step".into(),
            source: "clock".into(),
            at: now(&*self.clock),
            step_us: Some(step_us),
        });
        log::warn!(
            "experiment {}: the wall clock stepped by {:+.3} s",
            exp.experiment_id,
            step_us as f64 / 1e6
        );
        if let Err(e) = self.persist(exp) {
            log::error!("experiment {}: {e}", exp.experiment_id);
        }
    }

    /// Logs a marker into the running experiment.
    pub fn marker(&self, source: &str, at: Option<Stamp>) -> Result<()> {
        let mut active = self.active.lock().expect("experiments poisoned");
        let exp = active
            .as_mut()
            .filter(|e| e.phase == Phase::Running)
            .ok_or_else(|| wrong_state("no experiment is running".into()))?;
        let at = at.unwrap_or_else(|| now(&*self.clock));
        exp.events.push(Event {
            kind: "marker".into(),
            source: source.into(),
            at,
            step_us: None,
        });
        self.persist(exp)
    }

    /// Logs that a camera of the running experiment was lost (`camera_lost`) or came back
    /// (`camera_restored`); the manifest shows the gap. Nothing when none runs.
    pub fn camera_event(&self, kind: &str, camera: &str) {
        let mut active = self.active.lock().expect("experiments poisoned");
        let Some(exp) = active
            .as_mut()
            .filter(|e| e.phase == Phase::Running && e.cameras.iter().any(|c| c == camera))
        else {
            return;
        };
        exp.events.push(Event {
            kind: kind.into(),
            source: format!("camera:{camera}"),
            at: now(&*self.clock),
            step_us: None,
        });
        log::info!("experiment {}: {kind} ({camera})", exp.experiment_id);
        if let Err(e) = self.persist(exp) {
            log::error!("experiment {}: {e}", exp.experiment_id);
        }
    }

    /// The data drive went away (`storage_removed`) or came back (`storage_restored`):
    /// the running experiment records it (on disk once the drive is back).
    pub fn storage_event(&self, kind: &str) {
        let mut active = self.active.lock().expect("experiments poisoned");
        let Some(exp) = active.as_mut().filter(|e| e.phase == Phase::Running) else {
            return;
        };
        exp.events.push(Event {
            kind: kind.into(),
            source: "storage".into(),
            at: now(&*self.clock),
            step_us: None,
        });
        log::info!("experiment {}: {kind}", exp.experiment_id);
        if let Err(e) = self.persist(exp) {
            log::warn!("experiment {}: {e}", exp.experiment_id);
        }
    }

    /// Stops `id`, waits `post_roll`, archives, and returns the manifest. Blocks for
    /// post_roll plus the archive: call it off the async executor.
    pub fn stop(&self, id: &str, source: &str, at: Option<Stamp>) -> Result<serde_json::Value> {
        let exp = {
            let mut active = self.active.lock().expect("experiments poisoned");
            match active.as_ref() {
                Some(e) if e.experiment_id == id && e.phase == Phase::Running => {}
                Some(e) if e.experiment_id == id => {
                    // An armed experiment that never started is simply disarmed.
                    let e = active.take().expect("checked");
                    self.storage.unprotect(&format!("experiment:{id}"));
                    let _ = std::fs::remove_dir_all(self.folder(&e.experiment_id));
                    return Err(wrong_state(format!(
                        "experiment {id} was armed, not running; disarmed"
                    )));
                }
                _ if self.folder(id).join(STATE_FILE).exists() => {
                    return Err(wrong_state(format!("experiment {id} is not running")));
                }
                _ => {
                    Self::validate_id(id)?;
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("no experiment {id}"),
                    ));
                }
            }
            let mut exp = active.clone().expect("checked");
            let at = at.unwrap_or_else(|| now(&*self.clock));
            exp.phase = Phase::Stopped;
            exp.stopped = Some(at);
            exp.stop_mark = self.mark();
            exp.clock_at_stop = Some(clock_state(at.wall_us));
            exp.events.push(Event {
                kind: "stop".into(),
                source: source.into(),
                at,
                step_us: None,
            });
            // Stopped only once that is on disk: with the data drive gone the
            // experiment keeps running (and says why) instead of vanishing.
            self.persist(&exp)?;
            *active = None;
            self.protect(&exp);
            log::info!("experiment {id}: stopped by {source}; archiving after the post-roll");
            exp
        };
        self.archiving.fetch_add(1, Ordering::Relaxed);
        let result = self.finish(exp);
        self.archiving.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Waits out the post-roll, closes the clips that cover it, archives.
    fn finish(&self, mut exp: Experiment) -> Result<serde_json::Value> {
        let stopped = exp.stopped.expect("stopped experiments have a stop time");
        self.clock
            .sleep_until_us(stopped.monotonic_us + exp.post_roll_us);
        self.cut_and_wait(&exp.cameras);
        for id in &exp.started_recording {
            // Keep recording if another experiment needs the camera or rolling
            // recording is meant to run all the time.
            let keep = self.active().is_some_and(|a| a.cameras.contains(id))
                || (self.auto.enabled && self.auto.start_on_boot);
            if !keep {
                let _ = self.cameras.stop_recording(id);
            }
        }
        let manifest = self.archive_window(&exp)?;
        exp.phase = Phase::Archived;
        self.persist(&exp)?;
        self.storage
            .unprotect(&format!("experiment:{}", exp.experiment_id));
        Ok(manifest)
    }

    /// Closes each camera's open clip and waits (≤ 10 s) until it is complete on disk.
    fn cut_and_wait(&self, cameras: &[String]) {
        let mut waiting = Vec::new();
        for id in cameras {
            if let Ok(Some(file)) = self.cameras.cut_clip(id) {
                waiting.push((id.clone(), file));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let pending = waiting.iter().any(|(cam, file)| {
                self.storage
                    .index
                    .get(cam, file)
                    .is_some_and(|c| !c.complete)
            });
            if !pending {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        log::warn!("experiment: clips still open after 10 s; archiving what is complete");
    }

    /// archive_experiment_videos by hand: for a stopped experiment, redo its archive;
    /// for a new id, archive the recent clips (the last pre_roll, at least one clip).
    pub fn archive(&self, id: &str, method: &str) -> Result<serde_json::Value> {
        Self::validate_id(id)?;
        Self::validate_method(method)?;
        if self.active().is_some_and(|a| a.experiment_id == id) {
            return Err(wrong_state(format!(
                "experiment {id} is still {:?}",
                self.active().map(|a| a.phase)
            )));
        }
        let exp = match self.load(id) {
            Some(exp) => exp,
            None => {
                let cameras = self.resolve_cameras(None)?;
                let stop = now(&*self.clock);
                let span = self
                    .auto
                    .pre_roll
                    .0
                    .max(self.cameras.config().recording.clip_length.0)
                    .as_micros() as u64;
                let start = Stamp {
                    monotonic_us: stop.monotonic_us.saturating_sub(span),
                    wall_us: stop.wall_us - span as i64,
                };
                let mut exp = self.new_experiment(id, method, cameras);
                exp.phase = Phase::Stopped;
                exp.started = Some(start);
                exp.stopped = Some(stop);
                // The window is exactly the recent span: no extra pre/post roll.
                exp.pre_roll_us = 0;
                exp.post_roll_us = 0;
                exp.events.push(Event {
                    kind: "archive".into(),
                    source: "api".into(),
                    at: stop,
                    step_us: None,
                });
                self.persist(&exp)?;
                exp
            }
        };
        self.archiving.fetch_add(1, Ordering::Relaxed);
        self.cut_and_wait(&exp.cameras);
        let result = self.archive_window(&exp).and_then(|m| {
            let mut done = exp.clone();
            done.phase = Phase::Archived;
            self.persist(&done)?;
            Ok(m)
        });
        self.archiving.fetch_sub(1, Ordering::Relaxed);
        result
    }

    fn load(&self, id: &str) -> Option<Experiment> {
        let text = std::fs::read(self.folder(id).join(STATE_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// At start: resume a running or armed experiment, redo interrupted archives, and
    /// apply experiment retention.
    pub fn recover(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().to_string();
            if !is_experiment_id(&id) {
                continue;
            }
            let Some(exp) = self.load(&id) else { continue };
            match exp.phase {
                Phase::Running | Phase::Armed => {
                    log::warn!(
                        "experiment {id}: was {:?} when the service stopped; resuming",
                        exp.phase
                    );
                    self.protect(&exp);
                    self.ensure_recording(&exp.cameras);
                    let mut active = self.active.lock().expect("experiments poisoned");
                    if active.is_none() {
                        *active = Some(exp);
                    }
                }
                Phase::Stopped => {
                    log::warn!("experiment {id}: archive was interrupted; redoing it");
                    self.archiving.fetch_add(1, Ordering::Relaxed);
                    let result = self.archive_window(&exp);
                    self.archiving.fetch_sub(1, Ordering::Relaxed);
                    match result {
                        Ok(_) => {
                            let mut done = exp;
                            done.phase = Phase::Archived;
                            let _ = self.persist(&done);
                        }
                        Err(e) => log::error!("experiment {id}: archive failed again: {e}"),
                    }
                }
                Phase::Archived => {}
            }
        }
        self.apply_retention();
    }

    /// Deletes archived experiments older than `[experiments] retention` (never by default).
    pub fn apply_retention(&self) {
        let Some(keep) = self.settings.retention() else {
            return;
        };
        let cutoff = self.clock.wall_us() - keep.as_micros() as i64;
        for exp in self.list_experiments() {
            let ended = exp.stopped.map_or(i64::MAX, |s| s.wall_us);
            if exp.phase == Phase::Archived && ended < cutoff {
                log::info!("experiment {}: deleted by retention", exp.experiment_id);
                let _ = std::fs::remove_dir_all(self.folder(&exp.experiment_id));
            }
        }
    }

    fn list_experiments(&self) -> Vec<Experiment> {
        let mut out: Vec<Experiment> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| self.load(&e.file_name().to_string_lossy()))
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.started.or(e.armed).map_or(0, |s| s.wall_us)));
        out
    }

    /// Experiments, newest first, with their phase and times.
    pub fn list(&self) -> Vec<serde_json::Value> {
        self.list_experiments()
            .iter()
            .map(|e| {
                serde_json::json!({
                    "experiment_id": e.experiment_id,
                    "method": e.method,
                    "state": e.phase,
                    "cameras": e.cameras,
                    "started_at": e.started.map(|s| rfc3339_ms(s.wall_us)),
                    "stopped_at": e.stopped.map(|s| rfc3339_ms(s.wall_us)),
                    "events": e.events.len(),
                    "complete": self.folder(&e.experiment_id).join(MANIFEST).exists(),
                })
            })
            .collect()
    }

    /// The manifest of an archived experiment; the live state of an active one.
    pub fn manifest(&self, id: &str) -> Result<serde_json::Value> {
        Self::validate_id(id)?;
        let folder = self.folder(id);
        if let Ok(bytes) = std::fs::read(folder.join(MANIFEST)) {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(ErrorKind::Io, format!("manifest of {id} unreadable: {e}"))
            });
        }
        match self.load(id) {
            Some(exp) => {
                Ok(serde_json::json!({"experiment_id": id, "state": exp.phase, "experiment": exp}))
            }
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("no experiment {id}"),
            )),
        }
    }

    /// Path of an archived file, validated against the manifest's file list.
    pub fn file_path(&self, id: &str, file: &str) -> Result<PathBuf> {
        let manifest = self.manifest(id)?;
        let listed = manifest["files"]
            .as_array()
            .is_some_and(|files| files.iter().any(|f| f["name"] == file));
        if !listed && file != MANIFEST {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("experiment {id} has no file {file:?}"),
            ));
        }
        Ok(self.folder(id).join(file))
    }

    /// Starts, stops or marks from a trigger input. Start when idle starts the armed
    /// experiment (or a new one named by the trigger prefix); Stop only stops an
    /// experiment a trigger started; other edges are logged as events.
    pub fn on_trigger(&self, input: &str, kind: TriggerKind, at: Stamp) {
        let source = format!("gpio:{input}");
        let active = self.active();
        let result = match (kind, active) {
            (TriggerKind::Marker, _) => self.marker(&source, Some(at)).map(|_| ()),
            (TriggerKind::Start, Some(exp)) if exp.phase == Phase::Armed => {
                let mut guard = self.active.lock().expect("experiments poisoned");
                match guard.take() {
                    Some(armed) => match self.begin(armed.clone(), &source, at) {
                        Ok(started) => {
                            *guard = Some(started);
                            Ok(())
                        }
                        Err(e) => {
                            *guard = Some(armed);
                            Err(e)
                        }
                    },
                    None => Ok(()),
                }
            }
            (TriggerKind::Start, None) => {
                let id = format!(
                    "{}-{}",
                    self.settings.trigger_id_prefix,
                    compact_utc_ms(at.wall_us)
                );
                self.start(&id, "", None, &source, Some(at)).map(|_| ())
            }
            (TriggerKind::Stop, Some(exp))
                if exp.phase == Phase::Running
                    && exp
                        .events
                        .iter()
                        .any(|e| e.kind == "start" && e.source.starts_with("gpio:")) =>
            {
                self.stop(&exp.experiment_id, &source, Some(at)).map(|_| ())
            }
            (kind, Some(exp)) if exp.phase == Phase::Running => {
                // A start while running, or a stop of an API-started experiment: logged only.
                let mut guard = self.active.lock().expect("experiments poisoned");
                if let Some(e) = guard.as_mut() {
                    let what = if kind == TriggerKind::Start {
                        "trigger_start"
                    } else {
                        "trigger_stop"
                    };
                    e.events.push(Event {
                        kind: what.into(),
                        source: source.clone(),
                        at,
                        step_us: None,
                    });
                    let _ = self.persist(e);
                }
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            log::warn!("experiment: trigger {input}: {e}");
        }
    }

    /// Links the covering clips, writes frames.csv, checksums and the manifest.
    fn archive_window(&self, exp: &Experiment) -> Result<serde_json::Value> {
        let _only_one = self.archive_lock.lock().expect("archive lock poisoned");
        let started = exp
            .started
            .ok_or_else(|| wrong_state("experiment never started".into()))?;
        let stopped = exp
            .stopped
            .ok_or_else(|| wrong_state("experiment not stopped".into()))?;
        let from_us = started.wall_us - exp.pre_roll_us as i64;
        let to_us = stopped.wall_us + exp.post_roll_us as i64;
        let window = Self::window(exp);
        let folder = self.folder(&exp.experiment_id);
        std::fs::create_dir_all(&folder).ctx(format!("creating {}", folder.display()))?;
        let _ = std::fs::remove_file(folder.join(MANIFEST));
        let t0 = Instant::now();

        let mut clips_json = Vec::new();
        let mut files_json = Vec::new();
        let mut frames: BTreeMap<String, Vec<(FrameLine, String)>> = BTreeMap::new();
        let mut in_window: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        let mut linked = 0;
        for camera in &exp.cameras {
            let mut covering: Vec<ClipRecord> = self
                .storage
                .index
                .list(Some(camera))
                .into_iter()
                .filter(|c| c.complete && window.covers(c))
                .collect();
            covering.sort_by_key(|c| c.seq);
            for clip in covering {
                let src_dir = self.storage.index.camera_dir(camera);
                let frames_name = frames_file_name(&clip.file);
                for name in [&clip.file, &frames_name] {
                    let src = src_dir.join(name);
                    if src.exists() {
                        linked += usize::from(link_or_copy(&src, &folder.join(name))?);
                    }
                }
                let lines = read_frames_file(&src_dir.join(&frames_name), clip.frame_count)
                    .unwrap_or_default();
                let (first_mono, last_mono) = (
                    lines.first().map(|l| l.monotonic_us),
                    lines.last().map(|l| l.monotonic_us),
                );
                frames
                    .entry(camera.clone())
                    .or_default()
                    .extend(lines.iter().map(|l| (*l, clip.file.clone())));
                in_window
                    .entry(camera.clone())
                    .or_default()
                    .extend(lines.iter().map(|l| window.contains_frame(&clip, l)));
                let sha = sha256_file(&folder.join(&clip.file))?;
                clips_json.push(serde_json::json!({
                    "camera": camera,
                    "file": clip.file,
                    "frames_file": frames_name,
                    "started_at": rfc3339_ms(clip.started_us),
                    "ended_at": rfc3339_ms(clip.ended_us()),
                    "started_wall_us": clip.started_us,
                    "ended_wall_us": clip.ended_us(),
                    "first_monotonic_us": first_mono,
                    "last_monotonic_us": last_mono,
                    "duration_s": clip.duration_us as f64 / 1e6,
                    "first_frame": clip.first_frame,
                    "last_frame": clip.last_frame,
                    "frame_count": clip.frame_count,
                    "size": clip.size,
                    "sha256": sha,
                }));
            }
        }

        // Per-frame timestamps of every archived clip; in_window marks the experiment span.
        let mut csv = Vec::with_capacity(64 * 1024);
        csv.extend_from_slice(
            b"camera,frame_number,capture_monotonic_us,capture_wall,clip,sample_index,in_window,driver_dropped_before\n",
        );
        for (camera, lines) in &frames {
            for ((l, clip), &in_window) in lines.iter().zip(&in_window[camera]) {
                let _ = writeln!(
                    csv,
                    "{camera},{},{},{},{clip},{},{},{}",
                    l.frame_number,
                    l.monotonic_us,
                    rfc3339_us(l.wall_us),
                    l.sample_index,
                    u8::from(in_window),
                    l.driver_dropped_before
                );
            }
        }
        write_atomic(&folder.join(FRAMES_CSV), &csv)?;

        let events_json: Vec<serde_json::Value> = exp
            .events
            .iter()
            .map(|e| {
                let nearest: BTreeMap<&String, serde_json::Value> = frames
                    .iter()
                    .filter_map(|(cam, lines)| {
                        nearest_frame(lines, e.at.monotonic_us).map(|(l, clip)| {
                            (
                                cam,
                                serde_json::json!({
                                    "frame_number": l.frame_number,
                                    "clip": clip,
                                    "sample_index": l.sample_index,
                                    "offset_us": l.monotonic_us as i64 - e.at.monotonic_us as i64,
                                }),
                            )
                        })
                    })
                    .collect();
                serde_json::json!({
                    "kind": e.kind,
                    "source": e.source,
                    "step_us": e.step_us,
                    "wall": rfc3339_us(e.at.wall_us),
                    "wall_us": e.at.wall_us,
                    "monotonic_us": e.at.monotonic_us,
                    "nearest_frame": nearest,
                })
            })
            .collect();

        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .ctx("listing archive")?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| !n.starts_with('.') && n != MANIFEST && n != STATE_FILE)
            .collect();
        names.sort();
        for name in names {
            let path = folder.join(&name);
            files_json.push(serde_json::json!({
                "name": name,
                "size": std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                "sha256": sha256_file(&path)?,
            }));
        }
        let manifest = serde_json::json!({
            "manifest_version": 1,
            "experiment_id": exp.experiment_id,
            "method": exp.method,
            "cameras": exp.cameras,
            "start": {"wall": rfc3339_us(started.wall_us), "wall_us": started.wall_us, "monotonic_us": started.monotonic_us},
            "stop": {"wall": rfc3339_us(stopped.wall_us), "wall_us": stopped.wall_us, "monotonic_us": stopped.monotonic_us},
            "window": {
                "from": rfc3339_us(from_us),
                "to": rfc3339_us(to_us),
                "from_wall_us": from_us,
                "to_wall_us": to_us,
                "pre_roll_s": exp.pre_roll_us as f64 / 1e6,
                "post_roll_s": exp.post_roll_us as f64 / 1e6,
                // The clips and in_window are chosen by these (monotonic time within a
                // boot, clip order across boots), not by the wall times above.
                "from_monotonic_us": window.from.mono_us,
                "to_monotonic_us": window.to.as_ref().map(|b| b.mono_us),
                "start_boot_id": exp.start_mark.boot_id,
                "stop_boot_id": exp.stop_mark.boot_id,
            },
            // Whether the wall clock could be trusted: synchronised at start and stop,
            // and every step seen in between (the wall times of frames after a step are
            // off from those before by step_us).
            "clock": {
                "at_start": exp.clock_at_start,
                "at_stop": exp.clock_at_stop,
                "steps": exp.events.iter().filter(|e| e.kind == "clock_step").map(|e| serde_json::json!({
                    "wall": rfc3339_us(e.at.wall_us),
                    "monotonic_us": e.at.monotonic_us,
                    "step_us": e.step_us,
                })).collect::<Vec<_>>(),
            },
            "clips": clips_json,
            "events": events_json,
            "frames_file": FRAMES_CSV,
            "files": files_json,
            "archived_at": rfc3339_ms(self.clock.wall_us()),
            "benchcam_version": env!("CARGO_PKG_VERSION"),
        });
        let text = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        write_atomic(&folder.join(MANIFEST), &text)?;
        sync_dir(&folder)?;
        log::info!(
            "experiment {}: archived {} clips ({linked} hard links) in {:.2} s",
            exp.experiment_id,
            manifest["clips"].as_array().map_or(0, |c| c.len()),
            t0.elapsed().as_secs_f64()
        );
        Ok(manifest)
    }
}

/// The frame whose capture time is nearest to `mono_us`.
fn nearest_frame(lines: &[(FrameLine, String)], mono_us: u64) -> Option<&(FrameLine, String)> {
    let i = lines.partition_point(|(l, _)| l.monotonic_us < mono_us);
    let before = i.checked_sub(1).and_then(|j| lines.get(j));
    let after = lines.get(i);
    match (before, after) {
        (Some(b), Some(a)) => {
            if mono_us - b.0.monotonic_us <= a.0.monotonic_us - mono_us {
                Some(b)
            } else {
                Some(a)
            }
        }
        (b, a) => b.or(a),
    }
}

/// RFC 3339 UTC with microseconds.
fn rfc3339_us(unix_us: i64) -> String {
    let ms = rfc3339_ms(unix_us);
    format!(
        "{}{:03}Z",
        ms.trim_end_matches('Z'),
        unix_us.rem_euclid(1000)
    )
}

/// SHA-256 of a file, hex, read in 256 KiB chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).ctx(format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .ctx(format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u64, mono: u64) -> (FrameLine, String) {
        (
            FrameLine {
                frame_number: n,
                monotonic_us: mono,
                wall_us: mono as i64,
                sample_index: n,
                driver_dropped_before: 0,
            },
            "c".into(),
        )
    }

    #[test]
    fn nearest_frame_picks_the_closer_neighbour() {
        let lines: Vec<_> = (0..5).map(|n| line(n, 1000 + n * 100)).collect();
        assert_eq!(nearest_frame(&lines, 0).unwrap().0.frame_number, 0);
        assert_eq!(nearest_frame(&lines, 1149).unwrap().0.frame_number, 1);
        assert_eq!(nearest_frame(&lines, 1151).unwrap().0.frame_number, 2);
        assert_eq!(nearest_frame(&lines, 9999).unwrap().0.frame_number, 4);
        assert!(nearest_frame(&[], 5).is_none());
    }

    #[test]
    fn ids_are_validated() {
        for good in ["a", "trial-1", "2026.11.24_x", &"x".repeat(64)] {
            assert!(is_experiment_id(good), "{good}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "sp ace", &"x".repeat(65), "é"] {
            assert!(!is_experiment_id(bad), "{bad}");
        }
    }

    #[test]
    fn rfc3339_with_microseconds() {
        assert_eq!(
            rfc3339_us(1_795_520_400_123_456),
            "2026-11-24T11:40:00.123456Z"
        );
    }
}
