//! A span of recording (an experiment's [start − pre_roll, stop + post_roll]) in terms
//! that survive wall-clock steps and reboots.
//!
//! The wall clock of a box without a real-time clock jumps when NTP first answers,
//! by hours or days, either way. So a clip is judged against a bound by monotonic time
//! when both are from the same kernel boot, by recording order (`ClipRecord::seq`) when
//! they are not, and by wall-clock time only for records that carry neither (older
//! experiments, clips rebuilt from their files).

use crate::record::index::{ClipRecord, FrameLine};

/// One end of a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The boot `mono_us` belongs to ("" = unknown).
    pub boot_id: String,
    pub mono_us: u64,
    pub wall_us: i64,
    /// `ClipIndex::next_seq()` when the bound was set: clips with a lower seq were
    /// recorded before it (0 = unknown).
    pub seq: u64,
}

impl Bound {
    fn same_boot(&self, boot_id: &str) -> bool {
        !self.boot_id.is_empty() && self.boot_id == boot_id
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub cameras: Vec<String>,
    pub from: Bound,
    /// None while the span is still open (a running experiment).
    pub to: Option<Bound>,
}

impl Window {
    /// Whether any part of `clip` lies inside the window.
    pub fn covers(&self, clip: &ClipRecord) -> bool {
        if !self.cameras.iter().any(|c| c == &clip.camera) {
            return false;
        }
        let mono_known = clip.first_mono_us > 0;
        let ends_after_from = if mono_known && self.from.same_boot(&clip.boot_id) {
            clip.first_mono_us + clip.duration_us >= self.from.mono_us
        } else if self.from.seq > 0 && clip.seq > 0 {
            clip.seq >= self.from.seq
        } else {
            clip.ended_us() >= self.from.wall_us
        };
        let starts_before_to = match &self.to {
            None => true,
            Some(to) if mono_known && to.same_boot(&clip.boot_id) => {
                clip.first_mono_us <= to.mono_us
            }
            Some(to) if to.seq > 0 && clip.seq > 0 => clip.seq < to.seq,
            Some(to) => clip.started_us <= to.wall_us,
        };
        ends_after_from && starts_before_to
    }

    /// Whether one frame of `clip` (a line of its frames file) was captured inside the
    /// window: by monotonic time within the window's boot, else by wall-clock time.
    pub fn contains_frame(&self, clip: &ClipRecord, line: &FrameLine) -> bool {
        let after = if self.from.same_boot(&clip.boot_id) {
            line.monotonic_us >= self.from.mono_us
        } else if self.from.seq > 0 && clip.seq > 0 {
            clip.seq >= self.from.seq
        } else {
            line.wall_us >= self.from.wall_us
        };
        let before = match &self.to {
            None => true,
            Some(to) if to.same_boot(&clip.boot_id) => line.monotonic_us <= to.mono_us,
            Some(to) if to.seq > 0 && clip.seq > 0 => clip.seq < to.seq,
            Some(to) => line.wall_us <= to.wall_us,
        };
        after && before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::index::RecordingType;

    const BOOT: &str = "b1";
    const HOUR: i64 = 3_600_000_000;

    fn clip(seq: u64, boot: &str, mono_s: u64, wall_s: i64) -> ClipRecord {
        ClipRecord {
            camera: "cam0".into(),
            file: format!("c{seq}.mp4"),
            recording_type: RecordingType::Rolling,
            started_us: wall_s * 1_000_000,
            first_mono_us: mono_s * 1_000_000,
            first_frame: 0,
            last_frame: 0,
            frame_count: 1,
            duration_us: 10_000_000,
            size: 1,
            complete: true,
            seq,
            boot_id: boot.into(),
        }
    }

    fn bound(boot: &str, mono_s: u64, wall_s: i64, seq: u64) -> Bound {
        Bound {
            boot_id: boot.into(),
            mono_us: mono_s * 1_000_000,
            wall_us: wall_s * 1_000_000,
            seq,
        }
    }

    fn window(from: Bound, to: Option<Bound>) -> Window {
        Window {
            cameras: vec!["cam0".into()],
            from,
            to,
        }
    }

    #[test]
    fn a_backwards_wall_clock_step_does_not_move_clips_out_of_the_window() {
        // Start at mono 100 s (wall 1_000_000 s); NTP then steps the clock back 5 hours.
        let w = window(bound(BOOT, 100, 1_000_000, 3), None);
        let after_step = clip(4, BOOT, 200, 1_000_100 - 5 * HOUR / 1_000_000);
        assert!(w.covers(&after_step), "same boot: monotonic time decides");
        let before_start = clip(1, BOOT, 50, 999_950);
        assert!(!w.covers(&before_start));
        let pre_roll = clip(2, BOOT, 95, 999_995);
        assert!(w.covers(&pre_roll), "ends at 105 s, after the start");
    }

    #[test]
    fn a_forward_step_does_not_pull_later_clips_in() {
        let w = window(
            bound(BOOT, 100, 1_000_000, 3),
            Some(bound(BOOT, 200, 1_000_100, 5)),
        );
        // Recorded after the stop, but the clock had been stepped back a day: its wall
        // time falls inside the window's wall span; monotonic says it is after.
        let later = clip(6, BOOT, 300, 1_000_050);
        assert!(!w.covers(&later));
        assert!(w.covers(&clip(4, BOOT, 150, 1_000_050)));
    }

    #[test]
    fn across_a_reboot_recording_order_decides() {
        // Started in boot 1, resumed and stopped in boot 2.
        let w = window(
            bound("b1", 100, 1_000_000, 3),
            Some(bound("b2", 40, 1_000_900, 9)),
        );
        assert!(
            w.covers(&clip(5, "b1", 500, 1_000_400)),
            "boot 1, after start"
        );
        assert!(
            w.covers(&clip(7, "b2", 20, 10)),
            "boot 2 before stop, clock unset"
        );
        assert!(!w.covers(&clip(10, "b3", 5, 1_000_500)), "a later boot");
        assert!(!w.covers(&clip(2, "b0", 5, 1_000_500)), "an earlier boot");
    }

    #[test]
    fn old_records_fall_back_to_wall_time() {
        let w = window(bound("", 0, 1_000_000, 0), Some(bound("", 0, 1_000_100, 0)));
        assert!(w.covers(&clip(0, "", 0, 1_000_050)));
        assert!(!w.covers(&clip(0, "", 0, 1_000_200)));
    }
}
