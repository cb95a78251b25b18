//! Software debounce of an input line: a new level counts only after it has held for
//! the debounce period, and the accepted edge keeps the time of the first transition.
//!
//! Why not the kernel's debounce: gpiolib-cdev stamps a debounced edge when its
//! debounce timer fires (the period after the last bounce, rounded up to the kernel
//! tick), so the transition time is lost. Raw edges are stamped in the interrupt
//! handler; debouncing them here keeps that stamp.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Edge, InputLine};
use crate::clock::Clock;
use crate::error::Result;

/// Shortest real-time wait while a candidate edge is pending, so a simulated clock
/// that stands still just short of the deadline does not make the loop spin.
const MIN_POLL: Duration = Duration::from_millis(1);

/// The debounce state machine, fed raw edges and polled with the current time.
///
/// A burst starts at the first raw edge away from the stable level and lasts while the
/// raw level keeps changing within less than `period` of its last change. When the raw
/// level then holds for `period`: if it differs from the stable level, the burst becomes
/// one accepted edge stamped with the burst's first transition; if it is back at the
/// stable level, the burst was a pulse shorter than the debounce and is dropped.
///
/// Caveat: a glitch less than one period before a real edge counts as bounce of that
/// edge, so the edge is stamped at the glitch.
#[derive(Clone, Debug)]
pub struct Debouncer {
    period_us: u64,
    /// The debounced level (true = active).
    stable: bool,
    /// The last raw level seen.
    raw: bool,
    /// Time of the first transition of the current burst, if one is in progress.
    burst_start_us: Option<u64>,
    /// Time of the last raw transition.
    last_change_us: u64,
}

impl Debouncer {
    pub fn new(initial_level: bool, period: Duration) -> Self {
        Debouncer {
            period_us: period.as_micros() as u64,
            stable: initial_level,
            raw: initial_level,
            burst_start_us: None,
            last_change_us: 0,
        }
    }

    /// Feeds one raw edge. Edges may be read late (several at once from the kernel's
    /// buffer), so the time up to this edge is settled first: a burst that had already
    /// held for the period is accepted (and returned) or dropped before this edge
    /// starts a new one. Repeats of the current raw level (a lost event in between)
    /// are ignored.
    pub fn on_edge(&mut self, edge: Edge) -> Option<Edge> {
        let settled = self.poll(edge.timestamp_us);
        if edge.rising != self.raw {
            self.raw = edge.rising;
            self.last_change_us = edge.timestamp_us;
            if self.burst_start_us.is_none() {
                self.burst_start_us = Some(edge.timestamp_us);
            }
        }
        settled
    }

    /// The accepted edge, once the raw level has held for the period at `now_us`.
    pub fn poll(&mut self, now_us: u64) -> Option<Edge> {
        let start = self.burst_start_us?;
        if now_us < self.last_change_us + self.period_us {
            return None;
        }
        self.burst_start_us = None;
        if self.raw == self.stable {
            return None;
        }
        self.stable = self.raw;
        Some(Edge {
            rising: self.stable,
            timestamp_us: start,
        })
    }

    /// When `poll` can next accept or drop the pending burst.
    pub fn deadline_us(&self) -> Option<u64> {
        self.burst_start_us
            .map(|_| self.last_change_us + self.period_us)
    }

    /// The debounced level.
    pub fn level(&self) -> bool {
        self.stable
    }
}

/// An input line debounced in software. `clock` must be the clock the raw line stamps
/// its edges with (the system clock for cdev, the injected clock for sim).
pub struct DebouncedInput<L> {
    raw: L,
    debouncer: Debouncer,
    clock: Arc<dyn Clock>,
}

impl<L: InputLine> DebouncedInput<L> {
    pub fn new(raw: L, period: Duration, clock: Arc<dyn Clock>) -> Result<Self> {
        let level = raw.level()?;
        Ok(DebouncedInput {
            raw,
            debouncer: Debouncer::new(level, period),
            clock,
        })
    }
}

impl<L: InputLine> InputLine for DebouncedInput<L> {
    fn wait_edge(&mut self, timeout: Duration) -> Result<Option<Edge>> {
        // Real time: bounds how long the caller is away, not what counts as stable.
        let give_up = Instant::now() + timeout;
        loop {
            // Read the clock before draining the edges already queued, so no edge
            // stamped before `now` is left unseen when `poll` judges stability at `now`.
            let now = self.clock.monotonic_us();
            while let Some(raw) = self.raw.wait_edge(Duration::ZERO)? {
                if let Some(edge) = self.debouncer.on_edge(raw) {
                    return Ok(Some(edge));
                }
            }
            if let Some(edge) = self.debouncer.poll(now) {
                return Ok(Some(edge));
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let wait = match self.debouncer.deadline_us() {
                Some(deadline) => {
                    left.min(Duration::from_micros(deadline.saturating_sub(now)).max(MIN_POLL))
                }
                None => left,
            };
            if let Some(raw) = self.raw.wait_edge(wait)? {
                if let Some(edge) = self.debouncer.on_edge(raw) {
                    return Ok(Some(edge));
                }
            }
        }
    }

    fn level(&self) -> Result<bool> {
        Ok(self.debouncer.level())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;

    const PERIOD: Duration = Duration::from_millis(20);

    fn edge(rising: bool, timestamp_us: u64) -> Edge {
        Edge {
            rising,
            timestamp_us,
        }
    }

    /// Feeds an edge stamped with the sim clock's current time.
    fn raw(d: &mut Debouncer, clock: &SimClock, rising: bool) {
        assert_eq!(d.on_edge(edge(rising, clock.monotonic_us())), None);
    }

    #[test]
    fn a_pulse_shorter_than_the_debounce_is_ignored() {
        let clock = SimClock::new(1_000_000, 0, false);
        let mut d = Debouncer::new(false, PERIOD);
        raw(&mut d, &clock, true);
        clock.advance(Duration::from_millis(15));
        assert_eq!(d.poll(clock.monotonic_us()), None);
        raw(&mut d, &clock, false);
        // Long after: nothing was accepted and the level never changed.
        for _ in 0..10 {
            clock.advance(Duration::from_millis(10));
            assert_eq!(d.poll(clock.monotonic_us()), None);
        }
        assert!(!d.level());
        assert_eq!(d.deadline_us(), None);
    }

    #[test]
    fn a_long_pulse_is_accepted_with_the_original_timestamps() {
        let clock = SimClock::new(1_000_000, 0, false);
        let mut d = Debouncer::new(false, PERIOD);
        raw(&mut d, &clock, true); // t = 1.000 s
        clock.advance(Duration::from_millis(19));
        assert_eq!(d.poll(clock.monotonic_us()), None, "not yet held 20 ms");
        clock.advance(Duration::from_millis(1));
        assert_eq!(d.poll(clock.monotonic_us()), Some(edge(true, 1_000_000)));
        assert!(d.level());
        assert_eq!(d.poll(clock.monotonic_us()), None, "accepted once");

        clock.advance(Duration::from_millis(480));
        raw(&mut d, &clock, false); // t = 1.500 s
        clock.advance(Duration::from_millis(25));
        assert_eq!(d.poll(clock.monotonic_us()), Some(edge(false, 1_500_000)));
        assert!(!d.level());
    }

    #[test]
    fn contact_bounce_is_one_edge_stamped_at_the_first_transition() {
        let clock = SimClock::new(0, 0, false);
        let mut d = Debouncer::new(false, PERIOD);
        for level in [true, false, true, false, true] {
            raw(&mut d, &clock, level);
            clock.advance(Duration::from_millis(2));
        }
        // Last bounce at 8 ms: held from there for 20 ms means accepted at 28 ms.
        assert_eq!(d.deadline_us(), Some(28_000));
        clock.advance(Duration::from_millis(17)); // 27 ms
        assert_eq!(d.poll(clock.monotonic_us()), None);
        clock.advance(Duration::from_millis(1)); // 28 ms
        assert_eq!(d.poll(clock.monotonic_us()), Some(edge(true, 0)));
    }

    #[test]
    fn zero_debounce_passes_every_change() {
        let mut d = Debouncer::new(false, Duration::ZERO);
        assert_eq!(d.on_edge(edge(true, 5)), None);
        assert_eq!(d.poll(5), Some(edge(true, 5)));
        assert_eq!(d.on_edge(edge(false, 6)), None);
        assert_eq!(d.on_edge(edge(true, 7)), Some(edge(false, 6)));
        assert_eq!(d.poll(7), Some(edge(true, 7)));
    }

    #[test]
    fn repeated_levels_are_ignored() {
        let mut d = Debouncer::new(true, PERIOD);
        assert_eq!(d.on_edge(edge(true, 100)), None);
        assert_eq!(d.deadline_us(), None);
        assert_eq!(d.poll(1_000_000), None);
    }

    #[test]
    fn edges_read_late_are_settled_in_their_own_time() {
        // All four edges come out of the kernel buffer at once, long after they happened.
        let mut d = Debouncer::new(false, PERIOD);
        assert_eq!(d.on_edge(edge(true, 1_000_000)), None); // 5 ms glitch
        assert_eq!(d.on_edge(edge(false, 1_005_000)), None);
        assert_eq!(d.on_edge(edge(true, 1_100_000)), None); // glitch dropped, real edge
        assert_eq!(
            d.on_edge(edge(false, 1_600_000)),
            Some(edge(true, 1_100_000)),
            "the edge at 1.1 s had held for 500 ms"
        );
        assert_eq!(d.poll(5_000_000), Some(edge(false, 1_600_000)));
    }

    /// A raw line that replays scripted edges, one per `wait_edge`.
    struct Script(std::collections::VecDeque<Edge>);

    impl InputLine for Script {
        fn wait_edge(&mut self, timeout: Duration) -> Result<Option<Edge>> {
            match self.0.pop_front() {
                Some(e) => Ok(Some(e)),
                None => {
                    std::thread::sleep(timeout.min(Duration::from_millis(2)));
                    Ok(None)
                }
            }
        }
        fn level(&self) -> Result<bool> {
            Ok(false)
        }
    }

    #[test]
    fn debounced_input_waits_for_the_clock() {
        let clock = Arc::new(SimClock::new(1_000_000, 0, false));
        let script = Script(
            [
                edge(true, 1_000_000),
                edge(false, 1_005_000),
                edge(true, 1_100_000),
            ]
            .into(),
        );
        let mut line = DebouncedInput::new(script, PERIOD, clock.clone()).unwrap();
        // The clock stands still: the pulse at 1.000 s is neither accepted nor dropped yet.
        assert_eq!(line.wait_edge(Duration::from_millis(30)).unwrap(), None);
        clock.advance(Duration::from_millis(110)); // 1.110 s: the edge at 1.100 s is pending
        assert_eq!(line.wait_edge(Duration::from_millis(30)).unwrap(), None);
        assert!(!line.level().unwrap());
        clock.advance(Duration::from_millis(10)); // 1.120 s
        assert_eq!(
            line.wait_edge(Duration::from_millis(30)).unwrap(),
            Some(edge(true, 1_100_000))
        );
        assert!(line.level().unwrap());
    }
}
