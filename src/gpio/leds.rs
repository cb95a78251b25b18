//! LED patterns: what the status, recording and error LEDs show for a service state at
//! a moment on the monotonic clock. Pure functions, so tests sample them at known times.

use serde::{Deserialize, Serialize};

/// Heartbeat of a healthy service: 100 ms on, 900 ms off.
const HEARTBEAT: Blink = Blink {
    period_us: 1_000_000,
    on_us: 100_000,
};
/// Degraded service: 4 Hz, even.
const FAST_BLINK: Blink = Blink {
    period_us: 250_000,
    on_us: 125_000,
};
/// Archiving: 2 Hz, even.
const ARCHIVE_BLINK: Blink = Blink {
    period_us: 500_000,
    on_us: 250_000,
};

/// Overall health as the LEDs show it.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Everything works: status LED heartbeat.
    #[default]
    Ok,
    /// Working with a problem (a camera lost, storage low): status LED fast blink.
    Degraded,
    /// Not doing its job (no camera, storage full): status LED solid on.
    Error,
}

/// What the service tells the LEDs, set through `Gpio::set_led_state`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct LedState {
    pub health: Health,
    /// Any camera is recording.
    pub recording: bool,
    /// An experiment archive is being written.
    pub archiving: bool,
}

/// Wanted levels of the three LEDs (true = lit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedLevels {
    pub status: bool,
    pub recording: bool,
    pub error: bool,
}

/// A periodic pattern phase-locked to the monotonic clock, so every LED using the same
/// pattern blinks together.
#[derive(Clone, Copy, Debug)]
struct Blink {
    period_us: u64,
    on_us: u64,
}

impl Blink {
    fn is_on(self, t_us: u64) -> bool {
        t_us % self.period_us < self.on_us
    }

    /// The next instant after `t_us` at which the level flips.
    fn next_change(self, t_us: u64) -> u64 {
        let phase = t_us % self.period_us;
        let start = t_us - phase;
        if phase < self.on_us {
            start + self.on_us
        } else {
            start + self.period_us
        }
    }
}

fn status_blink(health: Health) -> Option<Blink> {
    match health {
        Health::Ok => Some(HEARTBEAT),
        Health::Degraded => Some(FAST_BLINK),
        Health::Error => None,
    }
}

/// The LED levels for `state` at monotonic time `t_us`. `trigger_fault` is a GPIO input
/// that cannot be read; it lights the error LED like any other problem.
pub fn levels(state: &LedState, trigger_fault: bool, t_us: u64) -> LedLevels {
    LedLevels {
        status: status_blink(state.health).is_none_or(|b| b.is_on(t_us)),
        recording: if state.archiving {
            ARCHIVE_BLINK.is_on(t_us)
        } else {
            state.recording
        },
        error: state.health != Health::Ok || trigger_fault,
    }
}

/// When any LED next changes by itself (without a state change), after `t_us`.
pub fn next_change(state: &LedState, t_us: u64) -> Option<u64> {
    let status = status_blink(state.health).map(|b| b.next_change(t_us));
    let recording = state.archiving.then(|| ARCHIVE_BLINK.next_change(t_us));
    match (status, recording) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn state(health: Health, recording: bool, archiving: bool) -> LedState {
        LedState {
            health,
            recording,
            archiving,
        }
    }

    #[test]
    fn healthy_status_is_a_1hz_heartbeat() {
        let s = state(Health::Ok, false, false);
        let status = |t| levels(&s, false, t).status;
        // On for the first 100 ms of every second, off for the other 900 ms.
        for second in [0, 1, 7, 3600] {
            let base = second * 1_000_000;
            assert!(status(base), "{second}");
            assert!(status(base + 99 * MS));
            assert!(!status(base + 100 * MS));
            assert!(!status(base + 500 * MS));
            assert!(!status(base + 999 * MS));
        }
        assert!(!levels(&s, false, 0).error);
        assert!(!levels(&s, false, 0).recording);
        assert_eq!(next_change(&s, 0), Some(100 * MS));
        assert_eq!(next_change(&s, 100 * MS), Some(1000 * MS));
        assert_eq!(next_change(&s, 950 * MS), Some(1000 * MS));
    }

    #[test]
    fn degraded_blinks_fast_and_lights_the_error_led() {
        let s = state(Health::Degraded, false, false);
        let on: Vec<bool> = (0..8)
            .map(|i| levels(&s, false, i * 125 * MS).status)
            .collect();
        assert_eq!(on, [true, false, true, false, true, false, true, false]);
        assert!(levels(&s, false, 0).error);
        assert_eq!(next_change(&s, 130 * MS), Some(250 * MS));
    }

    #[test]
    fn error_holds_the_status_led_on() {
        let s = state(Health::Error, false, false);
        for t in [0, 150 * MS, 900 * MS] {
            assert!(levels(&s, false, t).status);
            assert!(levels(&s, false, t).error);
        }
        assert_eq!(next_change(&s, 0), None);
    }

    #[test]
    fn recording_is_solid_and_archiving_blinks_at_2hz() {
        let rec = state(Health::Error, true, false);
        assert!(levels(&rec, false, 123 * MS).recording);
        let arch = state(Health::Error, true, true);
        let on: Vec<bool> = (0..4)
            .map(|i| levels(&arch, false, i * 250 * MS).recording)
            .collect();
        assert_eq!(on, [true, false, true, false]);
        assert_eq!(next_change(&arch, 10 * MS), Some(250 * MS));
        // With a heartbeat too, the sooner change wins.
        let both = state(Health::Ok, false, true);
        assert_eq!(next_change(&both, 10 * MS), Some(100 * MS));
        assert_eq!(next_change(&both, 120 * MS), Some(250 * MS));
    }

    #[test]
    fn a_trigger_fault_lights_the_error_led() {
        let s = state(Health::Ok, false, false);
        assert!(levels(&s, true, 0).error);
        assert!(!levels(&s, false, 0).error);
    }
}
