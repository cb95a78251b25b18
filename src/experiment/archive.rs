//! The second half of an experiment: waiting out the post-roll, closing the clips that
//! cover it, archiving them with the manifest; redoing an archive a crash interrupted;
//! deleting archived experiments past their retention.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{manifest, now, wrong_state, Event, Experiment, ExperimentService, Phase, Stamp};
use crate::config::is_experiment_id;
use crate::error::Result;

impl ExperimentService {
    /// Waits out the post-roll, closes the clips that cover it, archives.
    pub(super) fn finish(&self, mut exp: Experiment) -> Result<serde_json::Value> {
        let stopped = exp.stopped.expect("stopped experiments have a stop time");
        self.clock
            .sleep_until_us(stopped.monotonic_us + exp.post_roll_us);
        self.cut_and_wait(&exp.cameras, stopped.monotonic_us + exp.post_roll_us);
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

    /// Closes each camera's open clip with the first frame captured after `after_us`
    /// (monotonic) and waits (≤ 10 s) until the clips holding the frames up to then are
    /// complete on disk. Cutting by the frames' capture time, not by when the recorder gets
    /// the request, keeps the next clip (all after the window) out of the window's clips
    /// even when the recorder runs behind. Every recording camera gets the request: what
    /// the index shows may be behind the recorder (a clip it has opened that its writer has
    /// not indexed yet), so the wait is for the recorder to pass the boundary and then for
    /// its writer to finish everything handed to it until then.
    fn cut_and_wait(&self, cameras: &[String], after_us: u64) {
        struct Cut {
            camera: String,
            stats: Arc<crate::record::recorder::RecorderStats>,
            /// The writer's queue length once the recorder had passed the boundary.
            queued: Option<u64>,
        }
        let boot = crate::clock::boot_id();
        let open_across = |cam: &str| {
            self.storage
                .index
                .open_clips(cam)
                .into_iter()
                .any(|c| c.boot_id == boot && c.first_mono_us <= after_us)
        };
        let mut cuts: Vec<Cut> = cameras
            .iter()
            .filter_map(|id| {
                let stats = self.cameras.cut_clip(id, after_us).ok()??;
                Some(Cut {
                    camera: id.clone(),
                    stats,
                    queued: None,
                })
            })
            .collect();
        // Wait while the writer makes progress (a loaded box writes slowly, and an archive
        // cut short loses frames the user asked for), but never longer than a minute.
        let started = Instant::now();
        let hard_deadline = started + Duration::from_secs(60);
        let mut deadline = started + Duration::from_secs(10);
        let written = |cuts: &[Cut]| -> u64 {
            cuts.iter()
                .map(|c| c.stats.writer_written.load(Ordering::Acquire))
                .sum()
        };
        let mut written_seen = written(&cuts);
        while Instant::now() < deadline.min(hard_deadline) {
            let now_written = written(&cuts);
            if now_written != written_seen {
                deadline = Instant::now() + Duration::from_secs(10);
                written_seen = now_written;
            }
            let mut pending = false;
            for cut in &mut cuts {
                if cut.queued.is_none() && cut.stats.cut_after_us.load(Ordering::Acquire) == 0 {
                    cut.queued = Some(cut.stats.writer_queued.load(Ordering::Acquire));
                }
                pending |= match cut.queued {
                    None => true,
                    Some(queued) => {
                        cut.stats.writer_written.load(Ordering::Acquire) < queued
                            || open_across(&cut.camera)
                    }
                };
            }
            if !pending {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        log::warn!(
            "experiment: clips still open after {:.0} s; archiving what is complete",
            started.elapsed().as_secs_f64()
        );
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
                    label: None,
                });
                self.persist(&exp)?;
                exp
            }
        };
        self.archiving.fetch_add(1, Ordering::Relaxed);
        // A stop of an earlier boot has a monotonic time that means nothing now.
        let this_boot = exp.stop_mark.boot_id == crate::clock::boot_id();
        if let Some(stop) = exp.stopped.filter(|_| this_boot) {
            self.cut_and_wait(&exp.cameras, stop.monotonic_us + exp.post_roll_us);
        }
        let result = self.archive_window(&exp).and_then(|m| {
            let mut done = exp.clone();
            done.phase = Phase::Archived;
            self.persist(&done)?;
            if let Some(r) = self.replica.get() {
                r.archived(id);
            }
            Ok(m)
        });
        self.archiving.fetch_sub(1, Ordering::Relaxed);
        result
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

    /// Deletes archived experiments older than `[experiments] retention` (never by
    /// default). With replication on, only those whose upload was verified, and those at
    /// once with `delete_after_upload`.
    pub fn apply_retention(&self) {
        let keep = self.settings.retention();
        let replica = self.replica.get();
        let after_upload = self.settings.delete_after_upload && replica.is_some();
        if keep.is_none() && !after_upload {
            return;
        }
        let cutoff = keep.map(|k| self.clock.wall_us() - k.as_micros() as i64);
        for exp in self.list_experiments() {
            if exp.phase != Phase::Archived {
                continue;
            }
            let id = &exp.experiment_id;
            let uploaded = replica.map(|r| r.is_verified(id));
            let ended = exp.stopped.map_or(i64::MAX, |s| s.wall_us);
            let old = cutoff.is_some_and(|c| ended < c);
            let why = match uploaded {
                Some(false) => continue,
                Some(true) if after_upload => "its upload was verified",
                _ if old => "retention",
                _ => continue,
            };
            log::info!("experiment {id}: deleted here ({why})");
            let _ = std::fs::remove_dir_all(self.folder(id));
        }
    }

    /// Links the covering clips, writes frames.csv, checksums and the manifest.
    fn archive_window(&self, exp: &Experiment) -> Result<serde_json::Value> {
        let _only_one = self.archive_lock.lock().expect("archive lock poisoned");
        let folder = self.folder(&exp.experiment_id);
        manifest::archive(
            &self.storage,
            &folder,
            exp,
            &Self::window(exp),
            self.clock.wall_us(),
        )
    }
}
