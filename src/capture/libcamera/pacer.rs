//! Pacing for pipelines that do not pace themselves (libcamera's `virtual` pipeline).

/// Keeps frames at the configured rate when the pipeline does not.
///
/// Real pipelines pace frames by the sensor (FrameDurationLimits). Some do not: libcamera's
/// `virtual` pipeline completes each request the moment it is queued, however fast, and
/// stamps it with the time it was queued. Two rules, which never trigger on a camera that
/// runs at the asked rate:
/// - a frame less than half a frame interval after the last delivered one is skipped
///   (requeued, not delivered, not counted as a drop);
/// - after three such frames in a row the pipeline is taken as unpaced: from then on
///   completed requests are held and queued on a fixed grid of one per frame interval, as
///   a sensor would expose them, one at a time (a pipeline that stamps frames when it
///   gets to them would otherwise stamp a backlog all at once after a stall). Frames of
///   requests queued before the switch are skipped. A grid slot missed entirely (a stall
///   longer than a frame) is a lost frame and counted as a drop.
pub(super) struct Pacer {
    pub(super) interval_ns: u64,
    last_delivered_ns: Option<u64>,
    fast_in_a_row: u32,
    pub(super) unpaced: bool,
    /// Monotonic time of the next grid slot.
    pub(super) next_queue_ns: u64,
}

impl Pacer {
    pub(super) fn new(fps: u32) -> Pacer {
        Pacer {
            interval_ns: 1_000_000_000 / u64::from(fps.max(1)),
            last_delivered_ns: None,
            fast_in_a_row: 0,
            unpaced: false,
            next_queue_ns: 0,
        }
    }

    /// Whether the frame captured at `ts_ns` is to be skipped.
    pub(super) fn skip(&mut self, ts_ns: u64, now_ns: u64) -> bool {
        if let Some(last) = self.last_delivered_ns {
            if !self.unpaced && ts_ns < last + self.interval_ns / 2 {
                self.fast_in_a_row += 1;
                if self.fast_in_a_row >= 3 {
                    self.unpaced = true;
                    self.next_queue_ns =
                        last.max(now_ns.saturating_sub(self.interval_ns)) + self.interval_ns;
                }
                return true;
            }
        }
        self.fast_in_a_row = 0;
        self.last_delivered_ns = Some(ts_ns);
        false
    }

    /// If the current grid slot has come, takes it and returns how many earlier slots were
    /// missed; `None` while the slot is still ahead.
    pub(super) fn take_slot(&mut self, now_ns: u64) -> Option<u64> {
        if now_ns < self.next_queue_ns {
            return None;
        }
        let missed = (now_ns - self.next_queue_ns) / self.interval_ns;
        self.next_queue_ns += (missed + 1) * self.interval_ns;
        Some(missed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_skips_bursts_and_turns_on_for_unpaced_pipelines() {
        let ms = 1_000_000;
        let mut p = Pacer::new(30);
        assert!(!p.skip(1000 * ms, 0));
        // A real camera at the asked rate: never skipped, never paced.
        for i in 1..10 {
            assert!(!p.skip(1000 * ms + i * 33 * ms, 0));
        }
        assert!(!p.unpaced);
        // A burst (virtual pipeline start): skipped; the third in a row turns pacing on.
        let t = 2000 * ms;
        assert!(!p.skip(t, t));
        assert!(p.skip(t + 10, t));
        assert!(p.skip(t + 20, t));
        assert!(!p.unpaced);
        assert!(p.skip(t + 30, t));
        assert!(p.unpaced);
        // Slots on a grid one interval apart, from the last delivered frame.
        let slot = p.next_queue_ns;
        assert_eq!(slot, t + p.interval_ns);
        assert_eq!(p.take_slot(slot - 1), None);
        assert_eq!(p.take_slot(slot + 5 * ms), Some(0));
        // A late slot does not move the grid.
        assert_eq!(p.next_queue_ns, slot + p.interval_ns);
        // Paced frames are never skipped, even when a late slot makes one interval short.
        assert!(!p.skip(slot + 5 * ms, slot + 5 * ms));
        assert!(!p.skip(slot + p.interval_ns + ms, slot + p.interval_ns + ms));
        // A stall over three slots: they are reported missed, the grid stays.
        let next = p.next_queue_ns;
        assert_eq!(p.take_slot(next + 3 * p.interval_ns + ms), Some(3));
        assert_eq!(p.next_queue_ns, next + 4 * p.interval_ns);
    }
}
