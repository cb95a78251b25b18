//! The upload of one job: each file sent whole or in parts, within the bandwidth cap, the
//! journal saved after every step so an interrupted upload resumes where the store's last
//! acknowledged reply left it, then verified with HEAD against the manifest's SHA-256.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::Replicator;
use crate::error::{Error, ErrorKind, Result};
use crate::replicate::journal::{Entry, FileEntry, JobState, Part};

/// The largest read of a body at a time: the bandwidth cap and progress move in these steps.
const CHUNK: usize = 64 * 1024;

impl Replicator {
    /// Uploads and verifies every file of a job; the journal is saved after each step.
    pub(super) fn run_job(&self, mut entry: Entry) -> Result<()> {
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
}

pub(super) struct Body<'a> {
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
pub(super) struct RateLimiter {
    rate: u64,
    state: Mutex<(Instant, f64)>,
}

impl RateLimiter {
    pub(super) fn new(rate: u64) -> RateLimiter {
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

pub(super) fn sha256_range(
    path: &Path,
    offset: u64,
    len: u64,
    stop: &AtomicBool,
) -> Result<[u8; 32]> {
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

pub(super) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) fn b64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}
