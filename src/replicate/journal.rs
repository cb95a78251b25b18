//! The upload journal: one small JSON file per job in `<data_dir>/replication/`, replaced
//! atomically (write, fsync, rename) after every acknowledged object and part, so a
//! reboot, a kill -9 or a network outage resumes where the upload stopped without
//! sending an acknowledged part again. A damaged or unreadable entry starts that job
//! over (nothing remote is ever deleted, so starting over only costs bytes).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::storage::write_atomic;

const VERSION: u32 = 1;

/// One file of a job, in upload order.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// The file's SHA-256, hex (the manifest's value).
    pub sha256: String,
    /// The object key.
    pub key: String,
    /// Acknowledged by the store and checked with HEAD.
    pub verified: bool,
    /// A multipart upload in progress: its id and the parts acknowledged so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// A part that was being sent when the journal was last written (resumed uploads
    /// ask the store whether it arrived).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u16>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Part {
    pub number: u16,
    pub etag: String,
    pub sha256_b64: String,
    pub size: u64,
}

/// What a job's upload has come to.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Uploading,
    Verified,
    Failed,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Uploading => "uploading",
            JobState::Verified => "verified",
            JobState::Failed => "failed",
        }
    }
}

/// One job: an archived experiment (or a rolling clip) and its files.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Entry {
    pub version: u32,
    /// `experiment:<id>` or `rolling:<camera>/<file>`.
    pub job: String,
    pub state: JobState,
    /// Where it goes: `s3://bucket/prefix`.
    pub destination: String,
    pub files: Vec<FileEntry>,
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Wall time (µs) of the first failure since the last success.
    #[serde(default)]
    pub failing_since_us: Option<i64>,
    #[serde(default)]
    pub verified_at_us: Option<i64>,
    /// Bytes sent, counting every try, and those of them that were sent before.
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub bytes_resent: u64,
}

impl Entry {
    pub fn new(job: String, destination: String, files: Vec<FileEntry>) -> Entry {
        Entry {
            version: VERSION,
            job,
            state: JobState::Pending,
            destination,
            files,
            attempts: 0,
            last_error: None,
            failing_since_us: None,
            verified_at_us: None,
            bytes_sent: 0,
            bytes_resent: 0,
        }
    }

    pub fn bytes_total(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Bytes the store has acknowledged (whole files and parts).
    pub fn bytes_done(&self) -> u64 {
        self.files
            .iter()
            .map(|f| {
                if f.verified {
                    f.size
                } else {
                    f.parts.iter().map(|p| p.size).sum()
                }
            })
            .sum()
    }
}

/// The journal's folder.
pub struct Journal {
    dir: PathBuf,
}

/// A job name as a file name: `experiment:run-7` → `experiment.run-7.json`; rolling
/// clips `rolling:cam0/2026....mp4` → `rolling.cam0.2026....mp4.json`.
fn file_name(job: &str) -> Option<String> {
    let name = job.replace([':', '/'], ".");
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| format!("{name}.json"))
}

impl Journal {
    pub fn open(data_dir: &Path) -> Result<Journal> {
        let dir = data_dir.join("replication");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(e, format!("creating {}", dir.display())))?;
        Ok(Journal { dir })
    }

    fn path(&self, job: &str) -> Result<PathBuf> {
        file_name(job)
            .map(|n| self.dir.join(n))
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("job name {job:?}")))
    }

    /// The entry of `job`; `None` when there is none or it cannot be read (logged).
    pub fn load(&self, job: &str) -> Option<Entry> {
        let path = self.path(job).ok()?;
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(e) if e.version == VERSION && e.job == job => Some(e),
            Ok(_) | Err(_) => {
                log::warn!(
                    "replication: journal entry {} unreadable; that upload starts over",
                    path.display()
                );
                None
            }
        }
    }

    pub fn save(&self, entry: &Entry) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(entry).expect("journal entries serialize");
        write_atomic(&self.path(&entry.job)?, &bytes)
    }

    /// Forgets a job (its clip is gone here).
    pub fn remove(&self, job: &str) {
        if let Ok(path) = self.path(job) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Every entry in the journal.
    pub fn all(&self) -> Vec<Entry> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with('.') || !name.ends_with(".json") {
                    return None;
                }
                let bytes = std::fs::read(e.path()).ok()?;
                serde_json::from_slice::<Entry>(&bytes).ok()
            })
            .filter(|e| e.version == VERSION)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen_and_damage_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let mut entry = Entry::new(
            "experiment:run-7".into(),
            "s3://lab/bench/experiments/run-7/".into(),
            vec![FileEntry {
                name: "a.mp4".into(),
                size: 20 << 20,
                sha256: "00".repeat(32),
                key: "bench/experiments/run-7/a.mp4".into(),
                upload_id: Some("u1".into()),
                parts: vec![Part {
                    number: 1,
                    etag: "\"e1\"".into(),
                    sha256_b64: "x".into(),
                    size: 16 << 20,
                }],
                ..Default::default()
            }],
        );
        entry.state = JobState::Uploading;
        journal.save(&entry).unwrap();
        let again = Journal::open(dir.path()).unwrap();
        assert_eq!(again.load("experiment:run-7"), Some(entry.clone()));
        assert_eq!(entry.bytes_done(), 16 << 20);
        assert_eq!(again.all().len(), 1);
        std::fs::write(
            dir.path().join("replication/experiment.run-7.json"),
            b"{\"ver",
        )
        .unwrap();
        assert_eq!(again.load("experiment:run-7"), None);
    }

    #[test]
    fn job_names_cannot_leave_the_folder() {
        assert_eq!(
            file_name("experiment:run-7").as_deref(),
            Some("experiment.run-7.json")
        );
        assert_eq!(
            file_name("rolling:cam0/20261201T101500.000Z.mp4").as_deref(),
            Some("rolling.cam0.20261201T101500.000Z.mp4.json")
        );
        for bad in ["", "../x", "a b", ":x", "x\\y"] {
            assert!(
                file_name(bad).is_none() || !file_name(bad).unwrap().contains(".."),
                "{bad}"
            );
        }
        assert!(file_name("../x").is_none());
    }
}
