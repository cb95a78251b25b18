//! Storage over the last 24 hours (a sample every 5 minutes, kept in memory) and the rate
//! recording fills it, for the page's plot and its "hours of recording left".

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Time between samples, and how many are kept (24 h).
pub const INTERVAL_US: u64 = 300_000_000;
pub const SAMPLES: usize = 288;
/// The shortest stretch a write rate is computed over (shorter ones are noise).
const MIN_RATE_SPAN_US: u64 = 60_000_000;
const HOUR_US: u64 = 3_600_000_000;

/// The data filesystem at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub t_us: i64,
    /// CLOCK_MONOTONIC µs: intervals and rates by it, so a wall-clock step changes nothing.
    #[serde(skip)]
    pub mono_us: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Bytes the recorders had written since the service started.
    #[serde(skip)]
    pub written_bytes: u64,
}

#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    pub fn new() -> History {
        History {
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
        }
    }

    /// Whether a sample is due at `mono_us` (none yet, or the last is 5 minutes old).
    pub fn due(&self, mono_us: u64) -> bool {
        let samples = self.samples.lock().expect("history poisoned");
        samples
            .back()
            .is_none_or(|last| mono_us.saturating_sub(last.mono_us) >= INTERVAL_US)
    }

    /// Keeps `sample`, dropping the oldest beyond 24 hours.
    pub fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().expect("history poisoned");
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .expect("history poisoned")
            .iter()
            .copied()
            .collect()
    }

    /// Bytes recorded per hour up to `now`, over the last hour (or since the first sample
    /// when that is younger): None until a minute of it exists.
    pub fn bytes_per_hour(&self, now: &Sample) -> Option<f64> {
        let samples = self.samples.lock().expect("history poisoned");
        let since = samples
            .iter()
            .find(|s| now.mono_us.saturating_sub(s.mono_us) <= HOUR_US)?;
        let span = now.mono_us.checked_sub(since.mono_us)?;
        if span < MIN_RATE_SPAN_US || now.written_bytes < since.written_bytes {
            return None;
        }
        Some((now.written_bytes - since.written_bytes) as f64 * HOUR_US as f64 / span as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: u64, written_mb: u64) -> Sample {
        Sample {
            t_us: (min * 60_000_000) as i64,
            mono_us: min * 60_000_000,
            used_bytes: 0,
            free_bytes: 0,
            total_bytes: 0,
            written_bytes: written_mb * 1_000_000,
        }
    }

    #[test]
    fn keeps_a_day_and_measures_the_last_hour() {
        let h = History::new();
        assert!(h.due(0));
        h.push(at(0, 0));
        assert!(!h.due(4 * 60_000_000) && h.due(5 * 60_000_000));
        assert_eq!(h.bytes_per_hour(&at(0, 0)), None, "no time has passed");
        // 30 s in: too short to call it a rate.
        let early = Sample {
            mono_us: 30_000_000,
            ..at(0, 10)
        };
        assert_eq!(h.bytes_per_hour(&early), None);
        // 10 MB in 10 min = 60 MB/h.
        assert_eq!(h.bytes_per_hour(&at(10, 10)), Some(60_000_000.0));
        for m in (5..=24 * 60 + 30).step_by(5) {
            h.push(at(m, m)); // 1 MB a minute from here on
        }
        let samples = h.samples();
        assert_eq!(samples.len(), SAMPLES, "24 h, oldest dropped");
        assert_eq!(samples[0].mono_us, (24 * 60 + 30 - 287 * 5) * 60_000_000);
        let rate = h.bytes_per_hour(&at(24 * 60 + 30, 24 * 60 + 30)).unwrap();
        assert!((rate - 60_000_000.0).abs() < 1.0, "{rate}");
    }
}
