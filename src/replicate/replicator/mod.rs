//! The Replicator: one thread that uploads each archived experiment (and, when asked,
//! each finished rolling clip) to the object store, file by file in manifest order with
//! the manifest last, verifies every object with HEAD against the manifest's SHA-256, and
//! keeps the journal so an interrupted upload resumes. It reads archives; it never
//! changes them, and it never deletes anything, here or there.
//!
//! This file is the thread and its plan (what to send, in which order, under which keys);
//! `upload` sends and verifies one job; `status` is what the API, health and /metrics read.

mod status;
mod upload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use status::Summary;
use upload::RateLimiter;

use super::config::ReplicationConfig;
use super::journal::{Entry, FileEntry, JobState, Journal};
use super::s3::ObjectStore;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};

/// Longest wait between tries after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the archive folders are looked at when nothing wakes the thread.
const SCAN_EVERY: Duration = Duration::from_secs(10);

/// What the API, the page, health and /metrics read.
#[derive(Default)]
struct Shared {
    /// Journal entries by job, as last saved.
    entries: BTreeMap<String, Entry>,
    /// Why replication cannot run at all (secret unreadable, ...).
    problem: Option<String>,
    /// Outside the upload window right now.
    waiting_for_window: bool,
}

pub struct Replicator {
    config: ReplicationConfig,
    store: Arc<dyn ObjectStore>,
    journal: Journal,
    clock: Arc<dyn Clock>,
    experiments_dir: PathBuf,
    /// The rolling clips' index (for `send = [.., "rolling"]`).
    storage: Arc<crate::storage::Storage>,
    hostname: String,
    shared: Mutex<Shared>,
    wake: (Mutex<bool>, Condvar),
    stop: AtomicBool,
    /// Bytes of the part or object being sent that have left so far.
    sending: AtomicU64,
    uploaded_total: AtomicU64,
    resent_total: AtomicU64,
    limiter: RateLimiter,
}

impl Replicator {
    pub fn new(
        config: ReplicationConfig,
        store: Arc<dyn ObjectStore>,
        storage: Arc<crate::storage::Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Replicator>> {
        let data_dir = storage.data_dir().to_path_buf();
        let journal = Journal::open(&data_dir)?;
        let mut shared = Shared::default();
        for entry in journal.all() {
            shared.entries.insert(entry.job.clone(), entry);
        }
        Ok(Arc::new(Replicator {
            limiter: RateLimiter::new(config.max_rate.0),
            config,
            store,
            journal,
            clock,
            experiments_dir: data_dir.join("experiments"),
            storage,
            hostname: crate::host::hostname(),
            shared: Mutex::new(shared),
            wake: (Mutex::new(false), Condvar::new()),
            stop: AtomicBool::new(false),
            sending: AtomicU64::new(0),
            uploaded_total: AtomicU64::new(0),
            resent_total: AtomicU64::new(0),
        }))
    }

    /// A replicator that cannot run, for health and the API to say why.
    pub fn set_problem(&self, why: String) {
        self.shared.lock().expect("replication poisoned").problem = Some(why);
    }

    /// Starts the upload thread; it ends after `shutdown`.
    pub fn start(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("replicate".into())
            .spawn(move || me.run())
            .expect("spawning the replication thread")
    }

    /// Looks for new work now (an archive finished, or the user asked to retry).
    pub fn wake(&self) {
        let (lock, cv) = &self.wake;
        *lock.lock().expect("replication wake poisoned") = true;
        cv.notify_all();
    }

    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`, or until woken.
    fn sleep(&self, d: Duration) {
        let (lock, cv) = &self.wake;
        let mut woken = lock.lock().expect("replication wake poisoned");
        if !*woken {
            woken = cv
                .wait_timeout(woken, d)
                .expect("replication wake poisoned")
                .0;
        }
        *woken = false;
    }

    fn run(self: Arc<Self>) {
        let mut failures = 0u32;
        while !self.stopping() {
            if let Some(window) = self.config.window() {
                let inside = window.contains(local_minute(self.clock.wall_us()));
                self.shared
                    .lock()
                    .expect("replication poisoned")
                    .waiting_for_window = !inside;
                if !inside {
                    self.sleep(Duration::from_secs(30));
                    continue;
                }
            }
            let mut failed = false;
            for job in self.jobs() {
                if self.stopping() {
                    break;
                }
                if let Err(e) = self.run_job(job) {
                    if self.stopping() {
                        break;
                    }
                    log::warn!("replication: {e}");
                    failed = true;
                    // One failing job (a file gone, a bad key) must not starve the
                    // others, but a store that is down fails them all alike.
                    if e.kind != ErrorKind::InvalidInput || e.to_string().contains("HTTP 403") {
                        break;
                    }
                }
            }
            if failed {
                failures = failures.saturating_add(1);
                let backoff = Duration::from_secs(1u64 << failures.min(9)).min(MAX_BACKOFF);
                self.sleep(backoff);
            } else {
                failures = 0;
                self.sleep(SCAN_EVERY);
            }
        }
    }

    /// Jobs not yet verified, oldest first: each archived experiment's folder (the
    /// manifest is written last, so its presence means complete).
    fn jobs(&self) -> Vec<Entry> {
        let mut found: Vec<(std::time::SystemTime, Entry)> = Vec::new();
        if self.config.sends_experiments() {
            for dir in std::fs::read_dir(&self.experiments_dir)
                .into_iter()
                .flatten()
                .flatten()
            {
                let id = dir.file_name().to_string_lossy().to_string();
                if !crate::config::is_experiment_id(&id) {
                    continue;
                }
                let manifest = dir.path().join(crate::experiment::MANIFEST);
                let Ok(meta) = std::fs::metadata(&manifest) else {
                    continue;
                };
                let job = format!("experiment:{id}");
                let known = self.entry(&job);
                let entry = match known {
                    Some(e) if e.state == JobState::Verified => continue,
                    Some(e) => e,
                    None => match self.plan_experiment(&id, &manifest) {
                        Ok(e) => {
                            self.save(&e);
                            e
                        }
                        Err(e) => {
                            log::warn!("replication: experiment {id}: {e}");
                            continue;
                        }
                    },
                };
                found.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), entry));
            }
        }
        found.sort_by_key(|(t, _)| *t);
        let mut jobs: Vec<Entry> = found.into_iter().map(|(_, e)| e).collect();
        if self.config.sends_rolling() {
            jobs.extend(self.rolling_jobs());
        }
        jobs
    }

    /// Finished rolling clips not yet verified, oldest first, after the experiments.
    /// Entries of clips that retention deleted are dropped from the journal.
    fn rolling_jobs(&self) -> Vec<Entry> {
        let index = &self.storage.index;
        let mut live = std::collections::HashSet::new();
        let mut jobs = Vec::new();
        for camera in index.cameras() {
            for clip in index.complete_oldest_first(&camera) {
                let job = format!("rolling:{camera}/{}", clip.file);
                live.insert(job.clone());
                let known = self.entry(&job);
                match known {
                    Some(e) if e.state == JobState::Verified => {}
                    Some(e) => jobs.push(e),
                    None => match self.plan_clip(&camera, &clip.file) {
                        Ok(e) => {
                            self.save(&e);
                            jobs.push(e);
                        }
                        Err(e) => log::warn!("replication: {job}: {e}"),
                    },
                }
            }
        }
        let gone: Vec<String> = {
            let shared = self.shared.lock().expect("replication poisoned");
            shared
                .entries
                .keys()
                .filter(|j| j.starts_with("rolling:") && !live.contains(*j))
                .cloned()
                .collect()
        };
        for job in gone {
            let entry = self
                .shared
                .lock()
                .expect("replication poisoned")
                .entries
                .remove(&job);
            if entry.is_some_and(|e| e.state != JobState::Verified) {
                log::warn!("replication: {job} was deleted here before it was uploaded");
            }
            self.journal.remove(&job);
        }
        jobs
    }

    /// A rolling clip and its frames file, hashed now (clips do not change once complete).
    fn plan_clip(&self, camera: &str, file: &str) -> Result<Entry> {
        let folder = self.storage.index.camera_dir(camera);
        let prefix = format!("{}/rolling/{camera}/", safe_segment(&self.hostname));
        let mut files = Vec::new();
        for name in [
            file.to_string(),
            crate::record::index::frames_file_name(file),
        ] {
            let path = folder.join(&name);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let sha256 = crate::experiment::sha256_file(&path)?;
            files.push(FileEntry {
                key: format!("{prefix}{name}"),
                name,
                size: meta.len(),
                sha256,
                ..Default::default()
            });
        }
        if files.is_empty() {
            return Err(Error::new(ErrorKind::NotFound, format!("{file} is gone")));
        }
        let destination = format!("{}{prefix}", self.store.location());
        Ok(Entry::new(
            format!("rolling:{camera}/{file}"),
            destination,
            files,
        ))
    }

    /// The files of an archived experiment, in its manifest's order, the manifest last.
    fn plan_experiment(&self, id: &str, manifest_path: &Path) -> Result<Entry> {
        let bytes = std::fs::read(manifest_path)
            .map_err(|e| Error::io(e, format!("reading {}", manifest_path.display())))?;
        let manifest: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::new(ErrorKind::Io, format!("manifest unreadable: {e}")))?;
        let prefix = self
            .config
            .prefix
            .replace("{hostname}", &safe_segment(&self.hostname))
            .replace("{experiment_id}", id);
        let mut files = Vec::new();
        for f in manifest["files"].as_array().into_iter().flatten() {
            let (Some(name), Some(size), Some(sha)) =
                (f["name"].as_str(), f["size"].as_u64(), f["sha256"].as_str())
            else {
                continue;
            };
            if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
                continue;
            }
            files.push(FileEntry {
                name: name.into(),
                size,
                sha256: sha.into(),
                key: format!("{prefix}{name}"),
                ..Default::default()
            });
        }
        files.push(FileEntry {
            name: crate::experiment::MANIFEST.into(),
            size: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
            key: format!("{prefix}{}", crate::experiment::MANIFEST),
            ..Default::default()
        });
        let destination = format!("{}{prefix}", self.store.location());
        Ok(Entry::new(format!("experiment:{id}"), destination, files))
    }

    /// The journal's entry of a job, as last saved.
    fn entry(&self, job: &str) -> Option<Entry> {
        let shared = self.shared.lock().expect("replication poisoned");
        shared.entries.get(job).cloned()
    }

    fn save(&self, entry: &Entry) {
        if let Err(e) = self.journal.save(entry) {
            log::error!("replication: journal: {e}");
        }
        self.shared
            .lock()
            .expect("replication poisoned")
            .entries
            .insert(entry.job.clone(), entry.clone());
    }

    fn folder_of(&self, job: &str) -> PathBuf {
        match job.strip_prefix("rolling:").and_then(|r| r.split_once('/')) {
            Some((camera, _)) => self.storage.index.camera_dir(camera),
            None => self
                .experiments_dir
                .join(job.strip_prefix("experiment:").unwrap_or(job)),
        }
    }
}

impl crate::experiment::Replica for Replicator {
    fn is_verified(&self, id: &str) -> bool {
        Replicator::is_verified(self, id)
    }

    fn archived(&self, _id: &str) {
        self.wake();
    }
}

/// A hostname as one key segment.
fn safe_segment(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.starts_with('.') {
        format!("host{cleaned}")
    } else {
        cleaned
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Minutes after local midnight of a wall time.
fn local_minute(wall_us: i64) -> u32 {
    let secs = (wall_us / 1_000_000) as libc::time_t;
    // SAFETY: localtime_r writes the struct we own; `secs` is a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return ((secs / 60) % 1440) as u32;
    }
    (tm.tm_hour * 60 + tm.tm_min) as u32
}

#[cfg(test)]
mod tests;
