//! Experiments: the state machine (armed → running → stopped → archived), the
//! AutomaticRecordingService that makes an experiment's cameras record, and archiving:
//! the clips covering [start − pre_roll, stop + post_roll] are hard-linked (or copied
//! and fsynced) into `experiments/<id>/` with a per-frame timestamps file and a
//! `manifest.json` that is written last, atomically — its presence means complete.
//!
//! `experiment.json` in the folder holds the live state, so a restart resumes a running
//! experiment and redoes an archive that a crash interrupted (`archive.rs`: everything
//! after the stop).

mod archive;
mod manifest;
mod model;
mod summary;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::camera::CameraService;
use crate::clock::{clock_state, compact_utc_ms, rfc3339_ms, Clock};
use crate::config::{is_experiment_id, AutoRecordingConfig, ExperimentsConfig};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::record::index::RecordingType;
use crate::storage::{write_atomic, Bound, Protection, Storage, Window};
pub use manifest::sha256_file;
pub use model::{Event, Experiment, Mark, Phase, Stamp, TriggerKind};

pub(crate) const STATE_FILE: &str = "experiment.json";
pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const FRAMES_CSV: &str = "frames.csv";

/// Where archives are copied to (replication): retention asks it before deleting, and
/// tells it when an archive is complete.
pub trait Replica: Send + Sync {
    /// The experiment's upload was verified: its local folder may go.
    fn is_verified(&self, id: &str) -> bool;
    /// An archive was just completed.
    fn archived(&self, id: &str);
}

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
    replica: std::sync::OnceLock<Arc<dyn Replica>>,
    /// The manifests' counts the list shows, kept between listings.
    summaries: summary::Summaries,
}

fn now(clock: &dyn Clock) -> Stamp {
    let monotonic_us = clock.monotonic_us();
    Stamp {
        monotonic_us,
        wall_us: clock.wall_at_us(monotonic_us),
    }
}

pub(crate) fn wrong_state(message: String) -> Error {
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
            replica: std::sync::OnceLock::new(),
            summaries: summary::Summaries::default(),
        })
    }

    /// Connects replication (once, before `recover`).
    pub fn set_replica(&self, replica: Arc<dyn Replica>) {
        let _ = self.replica.set(replica);
    }

    pub fn is_archiving(&self) -> bool {
        self.archiving.load(Ordering::Relaxed) > 0
    }

    /// The armed or running experiment.
    pub fn active(&self) -> Option<Experiment> {
        self.active.lock().expect("experiments poisoned").clone()
    }

    /// The armed or running experiment, else the newest one (reads every experiment's
    /// state file: call it seldom).
    pub fn latest(&self) -> Option<Experiment> {
        self.active()
            .or_else(|| self.list_experiments().into_iter().next())
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
            label: None,
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
            label: None,
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
            label: None,
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
        self.marker_labelled(source, at, None)
    }

    /// A marker event with a person's short label (≤ 64 printable characters).
    pub fn marker_labelled(
        &self,
        source: &str,
        at: Option<Stamp>,
        label: Option<String>,
    ) -> Result<()> {
        if let Some(l) = &label {
            if l.chars().count() > 64 || l.chars().any(char::is_control) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "a marker label is at most 64 printable characters",
                ));
            }
        }
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
            label,
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
            label: None,
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
            label: None,
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
                label: None,
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

    fn load(&self, id: &str) -> Option<Experiment> {
        let text = std::fs::read(self.folder(id).join(STATE_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
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

    /// Experiments, newest first, with their phase and times; the counts of an archived
    /// one come from its manifest, parsed once and kept (`summary.rs`).
    pub fn list(&self) -> Vec<serde_json::Value> {
        let experiments = self.list_experiments();
        let list = experiments
            .iter()
            .map(|e| {
                let counts = self.summaries.counts(
                    &e.experiment_id,
                    &self.folder(&e.experiment_id).join(MANIFEST),
                );
                let (until, until_boot) = match e.stopped {
                    Some(s) => (s, e.stop_mark.boot_id.as_str()),
                    None => (now(&*self.clock), crate::clock::boot_id()),
                };
                // By the monotonic clock within one boot (a wall-clock step inside does
                // not count), by the wall clock across a reboot.
                let duration_s = e.started.map(|s| {
                    if e.start_mark.boot_id == until_boot && !until_boot.is_empty() {
                        until.monotonic_us.saturating_sub(s.monotonic_us) as f64 / 1e6
                    } else {
                        (until.wall_us - s.wall_us).max(0) as f64 / 1e6
                    }
                });
                serde_json::json!({
                    "experiment_id": e.experiment_id,
                    "method": e.method,
                    "state": e.phase,
                    "cameras": e.cameras,
                    "started_at": e.started.map(|s| rfc3339_ms(s.wall_us)),
                    "stopped_at": e.stopped.map(|s| rfc3339_ms(s.wall_us)),
                    "duration_s": duration_s,
                    "events": e.events.len(),
                    "complete": counts.is_some(),
                    "clips": counts.map(|c| c.clips),
                    "size_bytes": counts.map(|c| c.size_bytes),
                    "frames": counts.map(|c| c.frames),
                })
            })
            .collect();
        self.summaries
            .keep_only(experiments.iter().map(|e| e.experiment_id.as_str()));
        list
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

    /// The files of an archived experiment for one download, in manifest order, the
    /// manifest last: (name, path). `WrongState` while it has no manifest yet.
    pub fn bundle_files(&self, id: &str) -> Result<Vec<(String, PathBuf)>> {
        Self::validate_id(id)?;
        let folder = self.folder(id);
        if !folder.join(MANIFEST).is_file() {
            return Err(match self.load(id) {
                Some(exp) => wrong_state(format!(
                    "experiment {id} is {:?}: it can be downloaded once it is archived",
                    exp.phase
                )),
                None => Error::new(ErrorKind::NotFound, format!("no experiment {id}")),
            });
        }
        let manifest = self.manifest(id)?;
        let mut files: Vec<(String, PathBuf)> = manifest["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["name"].as_str())
            // Names come from our own manifest; still, nothing that leaves the folder.
            .filter(|n| !n.is_empty() && !n.starts_with('.') && !n.contains(['/', '\\']))
            .map(|n| (n.to_string(), folder.join(n)))
            .collect();
        files.push((MANIFEST.to_string(), folder.join(MANIFEST)));
        // Checked before the download starts: a missing file would cut it short.
        if let Some((name, _)) = files.iter().find(|(_, path)| !path.is_file()) {
            return Err(Error::new(
                ErrorKind::Io,
                format!("experiment {id}: {name} is listed in its manifest but missing"),
            ));
        }
        Ok(files)
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
                        label: None,
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
}

#[cfg(test)]
mod tests;
