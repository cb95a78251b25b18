//! StorageManager: the data directory's free space and retention of rolling clips (count,
//! bytes, free space; oldest first, never a protected clip), and whether the data
//! filesystem is there at all (`volume`, seen through `probe`). `files` holds the writes
//! that survive a power cut; `history` the free-space samples; `window` an experiment's
//! span of recording in terms that survive clock steps and reboots.

mod files;
pub mod history;
mod probe;
pub mod volume;
pub mod window;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::record::index::{ClipIndex, ClipRecord};
pub use files::{copy_synced, link_or_copy, sync_dir, write_atomic};
pub use probe::{SimSpace, SpaceProbe, Statvfs};
pub use volume::{DataDevice, Presence};
pub use window::{Bound, Window};

/// Retention limits, per camera (copied from `[recording]`, changeable at run time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_clips: usize,
    pub max_bytes: u64,
    pub min_free: u64,
}

/// A span whose clips must not be deleted, e.g. a running experiment's window with its
/// pre-roll (`window.to = None` while it is still open).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protection {
    pub owner: String,
    pub window: Window,
}

impl Protection {
    fn covers(&self, clip: &ClipRecord) -> bool {
        self.window.covers(clip)
    }
}

/// Owns the data directory layout and decides what may be deleted.
pub struct Storage {
    data_dir: PathBuf,
    pub index: ClipIndex,
    probe: Box<dyn SpaceProbe>,
    limits: Mutex<Limits>,
    protections: Mutex<Vec<Protection>>,
    /// Set while free space is below the reserve and nothing more can be deleted.
    full: AtomicBool,
    /// Deleted by retention since start, for health and metrics.
    pub deleted_clips: AtomicU64,
    /// `service.data_device`: the filesystem the data directory must be on.
    device: Option<DataDevice>,
    /// Held by `refresh` for the whole check, which probes the disk (and reloads the
    /// index when the drive is back): seconds on a dying card.
    volume: Mutex<VolumeState>,
    /// What the last check found; written only under `volume`, read without it (health
    /// and the page must not wait for a check in progress).
    seen: Mutex<Presence>,
    /// Mirrors `seen.is_present()` for the hot paths.
    present: AtomicBool,
    /// Times the data filesystem came back after it was removed.
    pub reattached: AtomicU64,
    /// The last write that failed with EIO/EROFS, until a write probe succeeds.
    write_error: Mutex<Option<WriteFault>>,
    /// Bytes the clip writers put on the disk since start (the recording rate).
    pub bytes_written: AtomicU64,
    history: history::History,
}

/// A write failed with EIO/EROFS: what it was, and the last write probe since.
struct WriteFault {
    first: String,
    /// When the probe last ran and what it found (None = it failed, with why).
    probed: Option<(std::time::Instant, std::result::Result<(), String>)>,
}

struct VolumeState {
    /// The filesystem the data directory was on when last present.
    dev: Option<u64>,
}

/// Disk figures for health.
#[derive(Clone, Debug, PartialEq)]
pub struct SpaceReport {
    pub free: u64,
    pub total: u64,
    pub writable: bool,
    pub rolling_bytes: u64,
    pub full: bool,
    pub presence: Presence,
}

impl Storage {
    /// Opens (and reconciles) the data directory. With `device` set, the directory must
    /// be on that filesystem: if it is not (the drive is not plugged in), nothing is
    /// created or read, and the index attaches when it appears (`refresh`).
    pub fn open(
        data_dir: &Path,
        device: Option<DataDevice>,
        limits: Limits,
        probe: Box<dyn SpaceProbe>,
    ) -> Result<Arc<Storage>> {
        if device.is_none() {
            std::fs::create_dir_all(data_dir)
                .ctx(format!("creating data directory {}", data_dir.display()))?;
        }
        let presence = probe.presence(data_dir, device.as_ref(), None);
        let storage = Arc::new(Storage {
            data_dir: data_dir.to_path_buf(),
            index: ClipIndex::detached(data_dir),
            probe,
            limits: Mutex::new(limits),
            protections: Mutex::new(Vec::new()),
            full: AtomicBool::new(false),
            deleted_clips: AtomicU64::new(0),
            device,
            seen: Mutex::new(Presence::Removed("not checked yet".into())),
            volume: Mutex::new(VolumeState { dev: None }),
            present: AtomicBool::new(false),
            reattached: AtomicU64::new(0),
            write_error: Mutex::new(None),
            bytes_written: AtomicU64::new(0),
            history: history::History::new(),
        });
        match presence {
            Presence::Present { dev } => {
                storage.attach()?;
                let mut v = storage.volume.lock().expect("volume poisoned");
                v.dev = Some(dev);
                storage.present.store(true, Ordering::Relaxed);
                *storage.seen.lock().expect("volume poisoned") = Presence::Present { dev };
            }
            absent => {
                log::error!(
                    "storage: {}; recording waits until it is there",
                    absent.error().expect("absent")
                );
                *storage.seen.lock().expect("volume poisoned") = absent;
            }
        }
        Ok(storage)
    }

    /// Reads the index from disk (reconciling and repairing it).
    fn attach(&self) -> Result<()> {
        let report = self.index.reload()?;
        if report.journal_damaged || !report.repaired.is_empty() || report.added_from_files > 0 {
            log::warn!(
                "storage: index reconciled: {} journal records, damaged={}, {} clips added from files, {} repaired ({}), {} missing dropped, {} empty removed",
                report.journal_records,
                report.journal_damaged,
                report.added_from_files,
                report.repaired.len(),
                report.repaired.join(", "),
                report.dropped_missing,
                report.removed_empty
            );
        }
        std::fs::create_dir_all(self.data_dir.join("experiments"))
            .ctx("creating experiments directory")
    }

    /// Checks the data filesystem now (the supervisor calls this once a second, the
    /// recorder before each clip): on removal the index lets go of its journal; when the
    /// same filesystem is back it is reloaded. Returns what it found.
    pub fn refresh(&self) -> Presence {
        let mut v = self.volume.lock().expect("volume poisoned");
        let mut now = self
            .probe
            .presence(&self.data_dir, self.device.as_ref(), v.dev);
        if now.is_present() {
            now = self.recheck_writes(now);
        }
        let before = self.presence();
        match (&before, &now) {
            (Presence::Present { .. }, Presence::Present { .. }) => {}
            (Presence::Present { .. }, absent) => {
                self.index.detach();
                log::error!(
                    "{}; recording paused until it is back",
                    absent.error().expect("absent")
                );
            }
            (_, Presence::Present { dev }) => match self.attach() {
                Ok(()) => {
                    v.dev = Some(*dev);
                    self.reattached.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "storage: {} is back; index reloaded, recording resumes",
                        self.data_dir.display()
                    );
                }
                Err(e) => {
                    self.index.detach();
                    now = Presence::Removed(format!("back but unusable: {e}"));
                }
            },
            (old, new) if old != new => log::error!("{}", new.error().expect("absent")),
            _ => {}
        }
        self.present.store(now.is_present(), Ordering::Relaxed);
        *self.seen.lock().expect("volume poisoned") = now.clone();
        now
    }

    /// A write under the data directory failed with an error that means the disk, not the
    /// data (`volume::is_storage_error`): storage counts as failing until a write probe
    /// succeeds again (checked by `refresh`, once a second).
    pub fn report_write_error(&self, e: &Error) {
        if volume::is_storage_error(e) && e.kind != ErrorKind::StorageRemoved {
            let mut fault = self.write_error.lock().expect("storage poisoned");
            if fault.is_none() {
                *fault = Some(WriteFault {
                    first: e.to_string(),
                    probed: None,
                });
            }
            self.present.store(false, Ordering::Relaxed);
        }
    }

    /// After a reported write error: probe; still failing → `Failing`, else clear it.
    fn recheck_writes(&self, present: Presence) -> Presence {
        let mut reported = self.write_error.lock().expect("storage poisoned");
        let Some(fault) = reported.as_mut() else {
            return present;
        };
        // At most one probe a second, however often storage is checked (every request
        // that writes, every clip): a dying card is slow to fail.
        let result = match &fault.probed {
            Some((at, result)) if at.elapsed() < std::time::Duration::from_secs(1) => {
                result.clone()
            }
            _ => {
                let result = self
                    .probe
                    .probe_write(&self.data_dir)
                    .map_err(|e| e.to_string());
                fault.probed = Some((std::time::Instant::now(), result.clone()));
                result
            }
        };
        match result {
            Ok(()) => {
                log::info!("storage: writes to {} work again", self.data_dir.display());
                *reported = None;
                present
            }
            Err(e) => Presence::Failing(format!(
                "{} does not take writes ({e}); first failure: {}",
                self.data_dir.display(),
                fault.first
            )),
        }
    }

    /// `service.data_device`, if set.
    pub fn device(&self) -> Option<&DataDevice> {
        self.device.as_ref()
    }

    /// What the last check found.
    /// What the last check found (never waits for one in progress).
    pub fn presence(&self) -> Presence {
        self.seen.lock().expect("volume poisoned").clone()
    }

    /// Checks now; an error (kind `StorageRemoved`) unless the data filesystem is there
    /// and writable. Call before creating anything under the data directory.
    pub fn require_present(&self) -> Result<()> {
        match self.refresh().error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether the last check found the data filesystem (no I/O).
    pub fn is_present(&self) -> bool {
        self.present.load(Ordering::Relaxed)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn limits(&self) -> Limits {
        *self.limits.lock().expect("limits poisoned")
    }

    pub fn set_limits(&self, limits: Limits) {
        *self.limits.lock().expect("limits poisoned") = limits;
    }

    pub fn protect(&self, protection: Protection) {
        let mut p = self.protections.lock().expect("protections poisoned");
        p.retain(|x| x.owner != protection.owner);
        p.push(protection);
    }

    pub fn unprotect(&self, owner: &str) {
        self.protections
            .lock()
            .expect("protections poisoned")
            .retain(|x| x.owner != owner);
    }

    pub fn is_protected(&self, clip: &ClipRecord) -> bool {
        self.protections
            .lock()
            .expect("protections poisoned")
            .iter()
            .any(|p| p.covers(clip))
    }

    pub fn free_space(&self) -> Result<(u64, u64)> {
        self.probe.space(&self.data_dir)
    }

    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> SpaceReport {
        let (free, total, ok) = match self.free_space() {
            Ok((f, t)) => (f, t, true),
            Err(_) => (0, 0, false),
        };
        SpaceReport {
            free,
            total,
            writable: ok && is_writable(&self.data_dir),
            rolling_bytes: self.index.total_bytes(None),
            full: self.is_full(),
            presence: self.presence(),
        }
    }

    /// The filesystem now, as a history sample (None when it cannot be read).
    fn sample(&self, wall_us: i64, mono_us: u64) -> Option<history::Sample> {
        let (free, total) = self.free_space().ok()?;
        Some(history::Sample {
            t_us: wall_us,
            mono_us,
            used_bytes: total.saturating_sub(free),
            free_bytes: free,
            total_bytes: total,
            written_bytes: self.bytes_written.load(Ordering::Relaxed),
        })
    }

    /// Takes a history sample when one is due (every 5 minutes; the supervisor asks
    /// once a second).
    pub fn sample_history(&self, wall_us: i64, mono_us: u64) {
        // Without the drive statvfs would measure the empty mount point's filesystem.
        if self.is_present() && self.history.due(mono_us) {
            if let Some(sample) = self.sample(wall_us, mono_us) {
                self.history.push(sample);
            }
        }
    }

    /// `GET /api/v1/storage/history`: the last 24 hours and now, the recording rate over
    /// the last hour and how many hours of it fit before retention starts deleting the
    /// oldest clips (free space above `min_free_space`).
    pub fn history_report(&self, wall_us: i64, mono_us: u64) -> serde_json::Value {
        let now = self
            .is_present()
            .then(|| self.sample(wall_us, mono_us))
            .flatten();
        let mut samples = self.history.samples();
        samples.extend(now);
        let rate = now.and_then(|n| self.history.bytes_per_hour(&n));
        let room = now.map(|n| n.free_bytes.saturating_sub(self.limits().min_free));
        let hours_left = match (rate, room) {
            (Some(r), Some(room)) if r > 0.0 => Some(room as f64 / r),
            _ => None,
        };
        serde_json::json!({
            "interval_s": history::INTERVAL_US / 1_000_000,
            "samples": samples.iter().map(|s| serde_json::json!({
                "t": crate::clock::rfc3339_ms(s.t_us),
                "t_us": s.t_us,
                "used_bytes": s.used_bytes,
                "free_bytes": s.free_bytes,
                "total_bytes": s.total_bytes,
            })).collect::<Vec<_>>(),
            "recording_bytes_per_hour": rate,
            "hours_left": hours_left,
        })
    }

    /// Applies retention to `camera`: deletes its oldest complete, unprotected clips
    /// until it is within the count and size limits and the disk has its reserve.
    /// Returns the clips deleted.
    pub fn enforce_retention(&self, camera: &str) -> Vec<ClipRecord> {
        if !self.is_present() {
            return Vec::new();
        }
        let limits = self.limits();
        let clips = self.index.complete_oldest_first(camera);
        let mut count = clips.len();
        let mut bytes: u64 = clips.iter().map(|c| c.size).sum();
        let mut free = self.free_space().map(|(f, _)| f).unwrap_or(u64::MAX);
        let mut deleted = Vec::new();
        for clip in clips {
            let over =
                count > limits.max_clips || bytes > limits.max_bytes || free < limits.min_free;
            if !over {
                break;
            }
            if self.is_protected(&clip) {
                continue;
            }
            match self.index.delete(&clip.camera, &clip.file) {
                Ok(size) => {
                    log::info!(
                        "storage: retention deleted {}/{} ({} bytes)",
                        clip.camera,
                        clip.file,
                        size
                    );
                    count -= 1;
                    bytes = bytes.saturating_sub(clip.size);
                    free = self.free_space().map(|(f, _)| f).unwrap_or(u64::MAX);
                    self.deleted_clips.fetch_add(1, Ordering::Relaxed);
                    deleted.push(clip);
                }
                Err(e) => log::warn!("storage: cannot delete {}/{}: {e}", clip.camera, clip.file),
            }
        }
        deleted
    }

    /// Whether a recorder may write: checks the data filesystem is there, runs retention over every camera first, then
    /// checks the free-space reserve. Updates the `full` flag that health reports.
    pub fn ensure_room(&self, camera: &str) -> Result<()> {
        self.require_present()?;
        let limits = self.limits();
        let free = |s: &Storage| s.free_space().map(|(f, _)| f);
        if free(self)? < limits.min_free {
            self.enforce_retention(camera);
            for other in self.index.cameras() {
                if free(self)? >= limits.min_free {
                    break;
                }
                if other != camera {
                    self.enforce_retention(&other);
                }
            }
        }
        let now_free = free(self)?;
        let full = now_free < limits.min_free;
        let was_full = self.full.swap(full, Ordering::Relaxed);
        if full {
            if !was_full {
                log::error!(
                    "storage: only {now_free} bytes free on {}, below min_free_space {}; recording paused until space returns",
                    self.data_dir.display(),
                    limits.min_free
                );
            }
            return Err(Error::new(
                ErrorKind::StorageFull,
                format!(
                    "{now_free} bytes free, below the {} byte reserve",
                    limits.min_free
                ),
            ));
        }
        if was_full {
            log::info!("storage: {now_free} bytes free again; recording resumes");
        }
        Ok(())
    }
}

fn is_writable(dir: &Path) -> bool {
    let c = match CString::new(dir.as_os_str().as_bytes()) {
        Ok(c) => c,
        Err(_) => return false,
    };
    // SAFETY: access(2) only reads the path string.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(test)]
mod tests;
