//! Live view: [`LiveHub`] (`hub.rs`) turns each camera's newest frame into a JPEG once
//! per quality level, only while someone watches, and hands the shared JPEG to every
//! viewer; [`LiveStreamingService`] (`sessions.rs`) admits viewer sessions (capacity,
//! quality, bandwidth, CPU) and keeps their stats for `/api/v1/streaming/sessions` and
//! `/metrics`.

mod hub;
mod sessions;

pub use hub::{EncoderCounters, EncoderStats, FpsPacer, LiveFrame, LiveHub, Viewer};
pub use sessions::{
    next_cpu_step, parse_cpu_ticks, process_cpu_seconds, resident_bytes, Bandwidth,
    LiveStreamingService, LiveTotals, Refused, Session, SessionInfo, SessionKind, SessionStats,
};

use serde::Serialize;

use crate::config::{QualityPreset, QualityPresets};

/// A live-view quality level (the `[streaming.quality]` presets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Low,
    Medium,
    High,
}

impl Quality {
    pub const ALL: [Quality; 3] = [Quality::Low, Quality::Medium, Quality::High];

    pub fn parse(name: &str) -> Option<Quality> {
        Quality::ALL.into_iter().find(|q| q.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Quality::Low => "low",
            Quality::Medium => "medium",
            Quality::High => "high",
        }
    }

    /// This level lowered by `steps` (never below `Low`).
    pub fn step_down(self, steps: u8) -> Quality {
        let index = (self as u8).saturating_sub(steps);
        Quality::ALL[index as usize]
    }

    pub fn preset(self, presets: &QualityPresets) -> &QualityPreset {
        match self {
            Quality::Low => &presets.low,
            Quality::Medium => &presets.medium,
            Quality::High => &presets.high,
        }
    }

    fn from_index(index: u8) -> Quality {
        Quality::ALL[(index as usize).min(2)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_names_and_steps() {
        assert_eq!(Quality::parse("medium"), Some(Quality::Medium));
        assert_eq!(Quality::parse("ultra"), None);
        assert_eq!(Quality::High.step_down(1), Quality::Medium);
        assert_eq!(Quality::High.step_down(5), Quality::Low);
        assert_eq!(Quality::Low.step_down(0), Quality::Low);
    }
}
