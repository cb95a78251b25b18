//! What the replicator tells others: one experiment's upload as JSON (the API and the page),
//! whether it was verified (retention), and the summary for `GET /api/v1/replication`,
//! health and /metrics.

use std::sync::atomic::Ordering;

use super::{safe_segment, Replicator, Shared};
use crate::replicate::journal::{Entry, JobState};

impl Replicator {
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
