//! The timeline of the live H.264 stream: where each one-frame fragment a viewer appends
//! starts and how long it lasts.
//!
//! A viewer's buffer must have no holes: the browser stops playing at one (a stall, then
//! the page's jump to the live edge, which skips pictures and costs a decode from the
//! keyframe). Driver timestamps are not a perfect cadence (a frame 10 ms late, or one in
//! fifty a frame or more late), and when a fragment is sent its successor's time is not
//! known yet. So each sample starts where the previous one ended and lasts until one frame
//! interval after its own capture time: the timeline stays continuous, and its end keeps to
//! the capture times (a late frame lengthens its own sample, an early one shortens it, to
//! one tick at least). A gap longer than [`BRIDGE`] (the camera stalled) is left as it is:
//! the timeline starts afresh at the capture time, and the page jumps over the gap.
//!
//! Clips do not use this: the recorder sets each sample's duration from the next frame's
//! capture time (src/record/fmp4.rs).

use super::fmp4::TIMESCALE;

/// The longest gap in capture times bridged, in timescale ticks (250 ms).
pub const BRIDGE: u64 = TIMESCALE as u64 / 4;

/// The end of the last sample sent, in ticks; `None` before the first.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveTimeline {
    end: Option<u64>,
}

impl LiveTimeline {
    /// Start and duration (ticks) of the sample of a frame captured at `at` (ticks on the
    /// stream's timeline), `interval` the nominal frame interval.
    pub fn next(&mut self, at: u64, interval: u64) -> (u64, u32) {
        let start = match self.end {
            Some(end) if at <= end + BRIDGE => end,
            _ => at,
        };
        let duration = (at + interval).saturating_sub(start).max(1);
        let duration = u32::try_from(duration).unwrap_or(u32::MAX);
        self.end = Some(start + u64::from(duration));
        (start, duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u64 = 3000; // 1/30 s at 90 kHz

    /// The samples of frames captured at `times`.
    fn timeline(times: &[u64]) -> Vec<(u64, u32)> {
        let mut t = LiveTimeline::default();
        times.iter().map(|&at| t.next(at, FRAME)).collect()
    }

    #[test]
    fn a_perfect_cadence_is_the_capture_times() {
        let s = timeline(&[0, 3000, 6000, 9000]);
        assert_eq!(s, [(0, 3000), (3000, 3000), (6000, 3000), (9000, 3000)]);
    }

    #[test]
    fn jittered_and_late_frames_leave_no_hole_and_the_end_keeps_to_capture() {
        // 10 ms early, 10 ms late, then one frame two intervals late (a driver hiccup).
        let times = [0, 3000, 5100, 9900, 12000, 21000, 24000];
        let s = timeline(&times);
        for pair in s.windows(2) {
            assert_eq!(
                pair[0].0 + pair[0].1 as u64,
                pair[1].0,
                "a hole or overlap: {s:?}"
            );
        }
        for (&(start, duration), &at) in s.iter().zip(&times) {
            assert_eq!(
                start + duration as u64,
                (at + FRAME).max(start + 1),
                "{s:?}"
            );
        }
        // The late frame's own sample covers the wait.
        assert_eq!(s[5], (15000, 9000));
    }

    #[test]
    fn early_frames_shorten_to_one_tick_then_resync() {
        // An early frame's sample is shorter; frames stamped alike (a driver that repeats a
        // stamp) get one tick each, and the next frame on time resyncs.
        let s = timeline(&[0, 1000]);
        assert_eq!(s[1], (3000, 1000));
        let s = timeline(&[0, 0, 0, 9000]);
        assert_eq!(
            s[1],
            (3000, 1),
            "ends after its start even when captured before it"
        );
        assert_eq!(s[2], (3001, 1));
        assert_eq!(s[3], (3002, (9000 + FRAME - 3002) as u32));
    }

    #[test]
    fn a_stall_longer_than_the_bridge_starts_afresh() {
        let s = timeline(&[0, 3000, 3000 + FRAME + BRIDGE + 1]);
        assert_eq!(
            s[2],
            (3000 + FRAME + BRIDGE + 1, 3000),
            "the gap is left: {s:?}"
        );
        let s = timeline(&[0, 3000, 3000 + FRAME + BRIDGE]);
        assert_eq!(s[2].0, 6000, "bridged at exactly BRIDGE");
    }
}
