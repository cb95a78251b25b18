//! The Replicator: one thread that uploads each archived experiment (and, when asked,
//! each finished rolling clip) to the object store, file by file in manifest order with
//! the manifest last, verifies every object with HEAD against the manifest's SHA-256, and
//! keeps the journal so an interrupted upload resumes. It reads archives; it never
//! changes them, and it never deletes anything, here or there.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::config::ReplicationConfig;
use super::journal::{Entry, FileEntry, JobState, Journal, Part};
use super::s3::ObjectStore;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};

/// Longest wait between tries after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the archive folders are looked at when nothing wakes the thread.
const SCAN_EVERY: Duration = Duration::from_secs(10);
const CHUNK: usize = 64 * 1024;

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

    /// Uploads and verifies every file of a job; the journal is saved after each step.
    fn run_job(&self, mut entry: Entry) -> Result<()> {
        entry.state = JobState::Uploading;
        entry.attempts += 1;
        self.save(&entry);
        let folder = self.folder_of(&entry.job);
        let result = self.upload_all(&mut entry, &folder);
        self.sending.store(0, Ordering::Relaxed);
        match result {
            Ok(()) => {
                entry.state = JobState::Verified;
                entry.verified_at_us = Some(self.clock.wall_us());
                entry.last_error = None;
                entry.failing_since_us = None;
                self.save(&entry);
                log::info!(
                    "replication: {} verified at {} ({} files, {} bytes)",
                    entry.job,
                    entry.destination,
                    entry.files.len(),
                    entry.bytes_total()
                );
                Ok(())
            }
            // Cut off by the service stopping: not a failure of the store; the next start
            // resumes from the journal.
            Err(e) if self.stopping() => {
                self.save(&entry);
                Err(e)
            }
            Err(e) => {
                let e = e.context(entry.job.clone());
                entry.state = JobState::Failed;
                entry.last_error = Some(e.to_string());
                entry.failing_since_us.get_or_insert(self.clock.wall_us());
                self.save(&entry);
                Err(e)
            }
        }
    }

    fn upload_all(&self, entry: &mut Entry, folder: &Path) -> Result<()> {
        for i in 0..entry.files.len() {
            if entry.files[i].verified {
                continue;
            }
            self.upload_file(entry, i, folder)?;
            self.verify_file(&entry.files[i])?;
            let f = &mut entry.files[i];
            f.verified = true;
            f.upload_id = None;
            f.parts.clear();
            f.in_flight = None;
            self.save(entry);
        }
        Ok(())
    }

    fn upload_file(&self, entry: &mut Entry, i: usize, folder: &Path) -> Result<()> {
        let file = entry.files[i].clone();
        let path = folder.join(&file.name);
        let local =
            std::fs::metadata(&path).map_err(|e| Error::io(e, format!("{}", path.display())))?;
        if local.len() != file.size {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} is {} bytes, its manifest says {}",
                    file.name,
                    local.len(),
                    file.size
                ),
            ));
        }
        // Already there (a crash after the store's reply, before the journal's)?
        if let Some(head) = self.store.head(&file.key)? {
            if head.size == file.size && head.sha256.as_deref() == Some(file.sha256.as_str()) {
                return Ok(());
            }
        }
        if file.size <= self.config.part_size.0 {
            let sha = b64(&sha256_range(&path, 0, file.size, &self.stop)?);
            let resend = entry.files[i].in_flight.is_some();
            entry.files[i].in_flight = Some(0);
            self.save(entry);
            let mut body = self.body(&path, 0, file.size)?;
            self.store
                .put(&file.key, &mut body, file.size, &sha, &file.sha256)?;
            self.count_sent(entry, file.size, resend);
            entry.files[i].in_flight = None;
            return Ok(());
        }
        self.upload_parts(entry, i, &path)
    }

    fn upload_parts(&self, entry: &mut Entry, i: usize, path: &Path) -> Result<()> {
        let part_size = self.config.part_size.0;
        let size = entry.files[i].size;
        let count = size.div_ceil(part_size);
        if count > 10_000 {
            return Err(Error::new(ErrorKind::InvalidInput, format!(
                "{} needs {count} parts of {part_size} bytes; S3 allows 10000 (raise replication.part_size)",
                entry.files[i].name
            )));
        }
        let key = entry.files[i].key.clone();
        let mut resend_part = None;
        match entry.files[i].upload_id.clone() {
            None => {
                let id = self.store.create_multipart(&key, &entry.files[i].sha256)?;
                entry.files[i].upload_id = Some(id);
                entry.files[i].parts.clear();
                self.save(entry);
            }
            Some(id) => {
                // Resumed: the store may hold a part whose reply never reached the journal.
                match self.store.list_parts(&key, &id) {
                    Ok(stored) => {
                        let in_flight = entry.files[i].in_flight.take();
                        for p in stored {
                            let offset = (p.number as u64 - 1) * part_size;
                            let expected = part_size.min(size.saturating_sub(offset));
                            let known = entry.files[i].parts.iter().any(|k| k.number == p.number);
                            if known || p.size != expected || p.number as u64 > count {
                                continue;
                            }
                            let sha = b64(&sha256_range(path, offset, expected, &self.stop)?);
                            entry.files[i].parts.push(Part {
                                number: p.number,
                                etag: p.etag,
                                sha256_b64: sha,
                                size: expected,
                            });
                        }
                        entry.files[i].parts.sort_by_key(|p| p.number);
                        resend_part = in_flight
                            .filter(|n| !entry.files[i].parts.iter().any(|p| p.number == *n));
                        self.save(entry);
                    }
                    Err(e) if e.kind == ErrorKind::NotFound => {
                        log::warn!(
                            "replication: the store forgot the upload of {key}; starting it again"
                        );
                        entry.files[i].upload_id = None;
                        entry.files[i].parts.clear();
                        entry.files[i].in_flight = None;
                        self.save(entry);
                        return self.upload_parts(entry, i, path);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let upload_id = entry.files[i].upload_id.clone().expect("upload started");
        for number in 1..=count as u16 {
            if entry.files[i].parts.iter().any(|p| p.number == number) {
                continue;
            }
            let offset = (number as u64 - 1) * part_size;
            let len = part_size.min(size - offset);
            let sha = b64(&sha256_range(path, offset, len, &self.stop)?);
            entry.files[i].in_flight = Some(number);
            self.save(entry);
            let mut body = self.body(path, offset, len)?;
            let etag = self
                .store
                .upload_part(&key, &upload_id, number, &mut body, len, &sha)?;
            self.count_sent(entry, len, resend_part == Some(number));
            let f = &mut entry.files[i];
            f.parts.push(Part {
                number,
                etag,
                sha256_b64: sha,
                size: len,
            });
            f.parts.sort_by_key(|p| p.number);
            f.in_flight = None;
            self.save(entry);
        }
        let parts: Vec<(u16, String, String)> = entry.files[i]
            .parts
            .iter()
            .map(|p| (p.number, p.etag.clone(), p.sha256_b64.clone()))
            .collect();
        self.store.complete(&key, &upload_id, &parts)
    }

    fn count_sent(&self, entry: &mut Entry, bytes: u64, resend: bool) {
        entry.bytes_sent += bytes;
        self.uploaded_total.fetch_add(bytes, Ordering::Relaxed);
        if resend {
            entry.bytes_resent += bytes;
            self.resent_total.fetch_add(bytes, Ordering::Relaxed);
        }
        self.sending.store(0, Ordering::Relaxed);
    }

    /// Checks an uploaded object: its size, the SHA-256 kept with it (the manifest's),
    /// and the store's own checksum where it reports one.
    fn verify_file(&self, file: &FileEntry) -> Result<()> {
        let bad = |why: String| {
            Error::new(
                ErrorKind::Io,
                format!("{} at {}: {why}", file.name, file.key),
            )
        };
        let head = self
            .store
            .head(&file.key)?
            .ok_or_else(|| bad("not found after its upload".into()))?;
        if head.size != file.size {
            return Err(bad(format!(
                "{} bytes there, {} here",
                head.size, file.size
            )));
        }
        if head.sha256.as_deref() != Some(file.sha256.as_str()) {
            return Err(bad(format!(
                "SHA-256 there {:?}, manifest {}",
                head.sha256, file.sha256
            )));
        }
        if let Some(checksum) = head.checksum {
            let expected = if file.parts.is_empty() {
                None // a single PUT: the server checked the body's SHA-256 on arrival
            } else {
                // A multipart object's checksum is the SHA-256 of its parts' digests.
                let mut all = Sha256::new();
                for p in &file.parts {
                    all.update(b64_decode(&p.sha256_b64).unwrap_or_default());
                }
                Some(format!("{}-{}", b64(&all.finalize()), file.parts.len()))
            };
            if let Some(expected) = expected.filter(|e| *e != checksum) {
                return Err(bad(format!(
                    "checksum there {checksum}, expected {expected}"
                )));
            }
        }
        Ok(())
    }

    /// A reader over `len` bytes of `path` from `offset` that keeps to the bandwidth cap,
    /// shows progress, and stops when the service stops.
    fn body<'a>(&'a self, path: &Path, offset: u64, len: u64) -> Result<Body<'a>> {
        let mut file = File::open(path).map_err(|e| Error::io(e, format!("{}", path.display())))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(e, format!("{}", path.display())))?;
        self.sending.store(0, Ordering::Relaxed);
        Ok(Body {
            file: file.take(len),
            owner: self,
        })
    }

    /// JSON for one experiment (`None`: replication off or never planned).
    pub fn experiment_status(&self, id: &str) -> Option<serde_json::Value> {
        let shared = self.shared.lock().expect("replication poisoned");
        let entry = shared.entries.get(&format!("experiment:{id}"))?;
        Some(self.entry_json(entry, &shared))
    }

    fn entry_json(&self, e: &Entry, shared: &Shared) -> serde_json::Value {
        let uploading = e.state == JobState::Uploading;
        let done = e.bytes_done()
            + if uploading {
                self.sending.load(Ordering::Relaxed)
            } else {
                0
            };
        let state = if e.state == JobState::Pending && shared.waiting_for_window {
            "pending"
        } else {
            e.state.name()
        };
        serde_json::json!({
            "state": state,
            "bytes_done": done.min(e.bytes_total()),
            "bytes_total": e.bytes_total(),
            "files_verified": e.files.iter().filter(|f| f.verified).count(),
            "files": e.files.len(),
            "destination": e.destination,
            "attempts": e.attempts,
            "error": e.last_error,
            "verified_at": e.verified_at_us.map(crate::clock::rfc3339_ms),
            "bytes_resent": e.bytes_resent,
        })
    }

    /// Whether an experiment's upload was verified (retention may delete it then).
    pub fn is_verified(&self, id: &str) -> bool {
        let shared = self.shared.lock().expect("replication poisoned");
        shared
            .entries
            .get(&format!("experiment:{id}"))
            .is_some_and(|e| e.state == JobState::Verified)
    }

    /// The summary for `GET /api/v1/replication`, health and /metrics.
    pub fn summary(&self) -> Summary {
        let shared = self.shared.lock().expect("replication poisoned");
        let mut counts = [0usize; 4];
        let mut failing_since = None::<i64>;
        let mut last_error = None;
        let mut clips = [0usize; 4];
        for e in shared.entries.values() {
            if e.job.starts_with("rolling:") {
                clips[e.state as usize] += 1;
            } else {
                counts[e.state as usize] += 1;
            }
            if e.state == JobState::Failed {
                if let Some(t) = e.failing_since_us {
                    failing_since = Some(failing_since.map_or(t, |f| f.min(t)));
                }
                last_error = e.last_error.clone();
            }
        }
        let now = self.clock.wall_us();
        Summary {
            pending: counts[JobState::Pending as usize],
            uploading: counts[JobState::Uploading as usize],
            verified: counts[JobState::Verified as usize],
            failed: counts[JobState::Failed as usize],
            clips_pending: clips[JobState::Pending as usize] + clips[JobState::Uploading as usize],
            clips_verified: clips[JobState::Verified as usize],
            clips_failed: clips[JobState::Failed as usize],
            failing_s: failing_since.map_or(0.0, |t| (now - t).max(0) as f64 / 1e6),
            last_error,
            problem: shared.problem.clone(),
            waiting_for_window: shared.waiting_for_window,
            uploaded_bytes: self.uploaded_total.load(Ordering::Relaxed),
            resent_bytes: self.resent_total.load(Ordering::Relaxed),
            failing_after_s: self.config.failing_after.0.as_secs_f64(),
            destination: format!(
                "{}{}",
                self.store.location(),
                self.config
                    .prefix
                    .replace("{hostname}", &safe_segment(&self.hostname))
            ),
            endpoint: self.config.endpoint.clone(),
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

/// Replication in numbers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub pending: usize,
    pub uploading: usize,
    pub verified: usize,
    pub failed: usize,
    /// Rolling clips (with `send = [.., "rolling"]`) waiting or uploading, verified, failed.
    pub clips_pending: usize,
    pub clips_verified: usize,
    pub clips_failed: usize,
    /// Seconds since uploads began failing (0: none failing).
    pub failing_s: f64,
    pub failing_after_s: f64,
    pub last_error: Option<String>,
    pub problem: Option<String>,
    pub waiting_for_window: bool,
    pub uploaded_bytes: u64,
    pub resent_bytes: u64,
    pub endpoint: String,
    pub destination: String,
}

impl Summary {
    /// A health problem, when there is one to report.
    pub fn health_problem(&self) -> Option<String> {
        if let Some(p) = &self.problem {
            return Some(format!("replication: {p}"));
        }
        (self.failing_s >= self.failing_after_s).then(|| {
            let for_ = if self.failing_s < 120.0 {
                format!("{:.0} s", self.failing_s)
            } else {
                format!("{:.0} min", self.failing_s / 60.0)
            };
            format!(
                "replication: uploads failing for {for_}: {}",
                self.last_error.as_deref().unwrap_or("unknown error")
            )
        })
    }
}

struct Body<'a> {
    file: std::io::Take<File>,
    owner: &'a Replicator,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.owner.stopping() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the service is stopping",
            ));
        }
        let want = buf.len().min(CHUNK);
        let n = self.file.read(&mut buf[..want])?;
        self.owner.limiter.take(n as u64);
        self.owner.sending.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A token bucket over all uploads: at most `rate` bytes per second, in bursts of at most
/// a quarter second's worth.
struct RateLimiter {
    rate: u64,
    state: Mutex<(Instant, f64)>,
}

impl RateLimiter {
    fn new(rate: u64) -> RateLimiter {
        RateLimiter {
            rate,
            state: Mutex::new((Instant::now(), 0.0)),
        }
    }

    fn take(&self, n: u64) {
        if self.rate == 0 {
            return;
        }
        let wait = {
            let mut s = self.state.lock().expect("rate limiter poisoned");
            let now = Instant::now();
            let burst = self.rate as f64 / 4.0;
            let tokens =
                (s.1 + now.duration_since(s.0).as_secs_f64() * self.rate as f64).min(burst);
            let left = tokens - n as f64;
            *s = (now, left);
            if left < 0.0 {
                Duration::from_secs_f64(-left / self.rate as f64)
            } else {
                Duration::ZERO
            }
        };
        std::thread::sleep(wait);
    }
}

fn sha256_range(path: &Path, offset: u64, len: u64, stop: &AtomicBool) -> Result<[u8; 32]> {
    let ctx = || format!("reading {}", path.display());
    let mut file = File::open(path).map_err(|e| Error::io(e, ctx()))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(e, ctx()))?;
    let mut take = file.take(len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Io, "the service is stopping"));
        }
        let n = take.read(&mut buf).map_err(|e| Error::io(e, ctx()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    if read != len {
        return Err(Error::new(
            ErrorKind::Io,
            format!("{}: shorter than expected", path.display()),
        ));
    }
    Ok(hasher.finalize().into())
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

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
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
#[path = "replicator_tests.rs"]
mod tests;
