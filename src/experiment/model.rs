//! What an experiment is, as `experiment.json` stores it: its phase, the moments it
//! was armed, started and stopped (on both clocks), its events, and where recording
//! stood (boot, clip order) at its ends.

use serde::{Deserialize, Serialize};

use crate::clock::ClockState;

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
    /// `marker` events: the short label a person gave it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
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
