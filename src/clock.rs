//! Time as the service sees it: a monotonic clock for frame times and a wall clock for
//! names and manifests, behind a trait so tests run hours of video without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Source of time for capture pacing, frame timestamps and file names.
pub trait Clock: Send + Sync {
    /// CLOCK_MONOTONIC in microseconds: the clock V4L2 stamps frames with.
    fn monotonic_us(&self) -> u64;

    /// Wall-clock time as microseconds since the Unix epoch (UTC).
    fn wall_us(&self) -> i64;

    /// Blocks until the monotonic clock reaches `deadline_us` (returns at once if past).
    fn sleep_until_us(&self, deadline_us: u64);

    /// Wall-clock time at which the monotonic instant `mono_us` happened, using the
    /// current offset between the two clocks.
    fn wall_at_us(&self, mono_us: u64) -> i64 {
        mono_us as i64 + self.offset_us()
    }

    /// The wall clock minus the monotonic clock now, in µs. Read as monotonic, wall,
    /// monotonic, keeping the pair read closest together: a thread preempted between two
    /// plain reads (tens of ms on a loaded Pi) would move the stamp made with them later
    /// by as long as it was away (a frame's wall time, a trigger's).
    fn offset_us(&self) -> i64 {
        let mut best: Option<(u64, i64)> = None;
        for _ in 0..OFFSET_READS {
            let before = self.monotonic_us();
            let wall = self.wall_us();
            let after = self.monotonic_us();
            let gap = after.saturating_sub(before);
            let offset = wall - (before + gap / 2) as i64;
            if best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, offset));
            }
            if gap <= OFFSET_GAP_US {
                break;
            }
        }
        best.expect("at least one read").1
    }
}

/// Reads of `offset_us` at most, and the gap between its two monotonic reads that ends
/// them early (reading the clocks takes well under a microsecond through the vDSO).
const OFFSET_READS: usize = 5;
const OFFSET_GAP_US: u64 = 20;

/// This kernel boot's id (`/proc/sys/kernel/random/boot_id`): monotonic times are
/// comparable only between stamps of the same boot. Read once; "" where there is none.
pub fn boot_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

/// Whether the system clock is synchronised (NTP), as the kernel tells it through
/// adjtimex(2), for manifests: a lab can then trust or correct the wall times.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockState {
    /// true / false; None when it cannot be known (adjtimex refused and no timesyncd).
    pub synchronized: Option<bool>,
    /// The kernel's maximum error estimate, µs (adjtimex `maxerror`).
    pub max_error_us: Option<i64>,
    /// `adjtimex`, or `timesyncd` (its flag file, where the sandbox refuses adjtimex),
    /// or `unknown`.
    pub source: String,
    pub wall_us: i64,
}

/// Reads the clock state now. adjtimex with no modes set changes nothing; where a
/// seccomp filter refuses it (systemd's ProtectClock=), systemd-timesyncd's
/// `/run/systemd/timesync/synchronized` flag answers instead.
pub fn clock_state(wall_us: i64) -> ClockState {
    // SAFETY: modes = 0 only reads; the kernel fills the zeroed struct we own.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state >= 0 {
        let unsync = state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0;
        return ClockState {
            synchronized: Some(!unsync),
            max_error_us: Some(tx.maxerror as i64),
            source: "adjtimex".into(),
            wall_us,
        };
    }
    let flag = std::path::Path::new("/run/systemd/timesync/synchronized");
    if std::path::Path::new("/run/systemd/timesync").is_dir() {
        return ClockState {
            synchronized: Some(flag.exists()),
            max_error_us: None,
            source: "timesyncd".into(),
            wall_us,
        };
    }
    ClockState {
        synchronized: None,
        max_error_us: None,
        source: "unknown".into(),
        wall_us,
    }
}

/// Notices wall-clock steps (NTP's first answer, `date -s`): the offset between the wall
/// and the monotonic clock changes at once, where slewing moves it by ≤ 0.5 ms/s.
#[derive(Debug, Default)]
pub struct StepWatch {
    offset_us: Option<i64>,
}

/// Offset changes smaller than this are slewing or read jitter, not steps.
pub const STEP_THRESHOLD_US: i64 = 500_000;

impl StepWatch {
    /// Returns the step (µs, negative = backwards) when the clock jumped since the last
    /// call.
    pub fn observe(&mut self, clock: &dyn Clock) -> Option<i64> {
        let offset = clock.offset_us();
        let step = self
            .offset_us
            .map(|before| offset - before)
            .filter(|d| d.abs() >= STEP_THRESHOLD_US);
        self.offset_us = Some(offset);
        step
    }
}

/// The real clocks of the machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// Reads CLOCK_MONOTONIC in microseconds (the clock of V4L2 and GPIO event timestamps).
pub fn monotonic_now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

impl Clock for SystemClock {
    fn monotonic_us(&self) -> u64 {
        monotonic_now_us()
    }

    fn wall_us(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_micros() as i64,
            Err(e) => -(e.duration().as_micros() as i64),
        }
    }

    fn sleep_until_us(&self, deadline_us: u64) {
        let now = self.monotonic_us();
        if deadline_us > now {
            std::thread::sleep(Duration::from_micros(deadline_us - now));
        }
    }
}

/// A simulated clock for tests. In `auto_advance` mode a sleep jumps time forward at
/// once, so a capture loop paced at 30 fps runs as fast as the CPU allows while every
/// frame still gets a realistic timestamp. Otherwise sleepers wait for `advance`.
#[derive(Debug)]
pub struct SimClock {
    mono_us: AtomicU64,
    wall_base_us: i64,
    auto_advance: bool,
    changed: (Mutex<()>, Condvar),
}

impl SimClock {
    /// A clock whose monotonic time starts at `mono_start_us` and whose wall clock
    /// reads `wall_start_us` at that moment.
    pub fn new(mono_start_us: u64, wall_start_us: i64, auto_advance: bool) -> Self {
        SimClock {
            mono_us: AtomicU64::new(mono_start_us),
            wall_base_us: wall_start_us - mono_start_us as i64,
            auto_advance,
            changed: (Mutex::new(()), Condvar::new()),
        }
    }

    /// Moves time forward by `by` and wakes sleepers.
    pub fn advance(&self, by: Duration) {
        self.mono_us
            .fetch_add(by.as_micros() as u64, Ordering::SeqCst);
        let _guard = self.changed.0.lock().expect("sim clock lock poisoned");
        self.changed.1.notify_all();
    }
}

impl Clock for SimClock {
    fn monotonic_us(&self) -> u64 {
        self.mono_us.load(Ordering::SeqCst)
    }

    fn wall_us(&self) -> i64 {
        self.wall_base_us + self.monotonic_us() as i64
    }

    fn sleep_until_us(&self, deadline_us: u64) {
        if self.auto_advance {
            self.mono_us.fetch_max(deadline_us, Ordering::SeqCst);
            std::thread::yield_now();
            return;
        }
        let mut guard = self.changed.0.lock().expect("sim clock lock poisoned");
        while self.monotonic_us() < deadline_us {
            // A timeout keeps a forgotten `advance` from hanging a test forever.
            guard = self
                .changed
                .1
                .wait_timeout(guard, Duration::from_millis(50))
                .expect("sim clock lock poisoned")
                .0;
        }
    }
}

/// Formats Unix microseconds as RFC 3339 UTC with milliseconds: `2026-11-24T11:40:00.123Z`.
pub fn rfc3339_ms(unix_us: i64) -> String {
    let (date, (h, m, s), ms) = split_unix_us(unix_us);
    format!(
        "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z",
        date.0, date.1, date.2
    )
}

/// Compact form for file names: `20261124T114000.123Z`.
pub fn compact_utc_ms(unix_us: i64) -> String {
    let (date, (h, m, s), ms) = split_unix_us(unix_us);
    format!(
        "{:04}{:02}{:02}T{h:02}{m:02}{s:02}.{ms:03}Z",
        date.0, date.1, date.2
    )
}

/// Parses the compact form back to Unix microseconds (millisecond precision).
pub fn parse_compact_utc_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s, ms) = (num(9..11)?, num(11..13)?, num(13..15)?, num(16..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) * 1000 + ms) * 1000)
}

/// Parses a time a person or a page sends: RFC 3339 (`2026-12-01T15:04:05Z`,
/// `2026-12-01T15:04:05.250+01:00`; fractions to the microsecond) or Unix seconds
/// (`1796135869`, `1796135869.5`). Returns Unix microseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(unix) = parse_unix_seconds(text) {
        return Some(unix);
    }
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&mo) || !(1..=month_days).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        // Any number of digits (RFC 3339 sets no limit); beyond microseconds they are cut.
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let six: String = frac[..digits]
            .chars()
            .chain("000000".chars())
            .take(6)
            .collect();
        micros = six.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                // A `+` in a URL's query arrives as a space when form-decoded.
                b'+' | b' ' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm = &rest[1..];
            let digits =
                |r: std::ops::Range<usize>| hm.as_bytes()[r].iter().all(u8::is_ascii_digit);
            if hm.len() != 5 || hm.as_bytes()[2] != b':' || !digits(0..2) || !digits(3..5) {
                return None;
            }
            let oh: i64 = hm[..2].parse().ok()?;
            let om: i64 = hm[3..].parse().ok()?;
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// `1796135869` or `1796135869.5` (no sign, no exponent) as Unix microseconds.
fn parse_unix_seconds(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || whole.len() > 12 || !whole.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let six: String = frac.chars().chain("000000".chars()).take(6).collect();
    Some(whole.parse::<i64>().ok()? * 1_000_000 + six.parse::<i64>().ok()?)
}

fn split_unix_us(unix_us: i64) -> ((i64, u32, u32), (i64, i64, i64), i64) {
    let ms_total = unix_us.div_euclid(1000);
    let secs = ms_total.div_euclid(1000);
    let ms = ms_total.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    (
        civil_from_days(days),
        (rem / 3600, rem % 3600 / 60, rem % 60),
        ms,
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, UTC).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clocks where the thread is "preempted" for 80 ms between the first monotonic read
    /// and the wall read of the first `preempted` reads.
    struct PreemptedClock {
        mono: AtomicU64,
        reads: AtomicU64,
        preempted: u64,
    }

    impl Clock for PreemptedClock {
        fn monotonic_us(&self) -> u64 {
            self.mono.fetch_add(1, Ordering::SeqCst)
        }
        fn wall_us(&self) -> i64 {
            // Wall = monotonic + 1e12 exactly, read after the (maybe) lost 80 ms.
            if self.reads.fetch_add(1, Ordering::SeqCst) < self.preempted {
                self.mono.fetch_add(80_000, Ordering::SeqCst);
            }
            self.mono.load(Ordering::SeqCst) as i64 + 1_000_000_000_000
        }
        fn sleep_until_us(&self, _deadline_us: u64) {}
    }

    #[test]
    fn a_preemption_between_the_reads_does_not_shift_wall_stamps() {
        for preempted in [0, 1, 3] {
            let clock = PreemptedClock {
                mono: AtomicU64::new(5_000_000),
                reads: AtomicU64::new(0),
                preempted,
            };
            let at = 4_000_000;
            let wall = clock.wall_at_us(at);
            // Exact but for the reads' own microseconds.
            assert!(
                (wall - (at as i64 + 1_000_000_000_000)).abs() <= 2,
                "{preempted} preempted reads: off by {} µs",
                wall - (at as i64 + 1_000_000_000_000)
            );
        }
    }

    #[test]
    fn times_parse_as_rfc3339_or_unix_seconds() {
        let t = 1_796_135_869_238_000;
        assert_eq!(parse_time("2026-12-01T14:37:49.238Z"), Some(t));
        assert_eq!(parse_time(&rfc3339_ms(t)), Some(t));
        assert_eq!(parse_time("2026-12-01T15:37:49.238+01:00"), Some(t));
        assert_eq!(parse_time("2026-12-01T14:37:49Z"), Some(t - 238_000));
        assert_eq!(parse_time("1796135869.238"), Some(t));
        assert_eq!(parse_time("1796135869"), Some(t - 238_000));
        assert_eq!(
            parse_time("2026-12-01T15:37:49.238 01:00"),
            Some(t),
            "form-decoded +"
        );
        assert_eq!(parse_time("2026-12-01T14:37:49.238000000001Z"), Some(t));
        assert!(parse_time("2028-02-29T00:00:00Z").is_some(), "a leap day");
        for bad in [
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-12-01T14:37:49++1:00",
            "2026-12-01T14:37:49+-1:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        for bad in [
            "",
            "now",
            "-5",
            "2026-13-01T00:00:00Z",
            "2026-12-01T14:37:49",
            "1e9",
            "2026-12-01T14:37:49.Z",
            "9999999999999",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_and_parses_utc() {
        // 2026-11-24T11:40:00.123Z
        let us = 1_795_520_400_123_456;
        assert_eq!(rfc3339_ms(us), "2026-11-24T11:40:00.123Z");
        assert_eq!(compact_utc_ms(us), "20261124T114000.123Z");
        assert_eq!(
            parse_compact_utc_ms("20261124T114000.123Z"),
            Some(1_795_520_400_123_000)
        );
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_compact_utc_ms("20261324T114000.123Z"), None);
        assert_eq!(parse_compact_utc_ms("garbage"), None);
    }

    #[test]
    fn sim_clock_auto_advances_on_sleep() {
        let clock = SimClock::new(1_000, 5_000_000, true);
        clock.sleep_until_us(34_333);
        assert_eq!(clock.monotonic_us(), 34_333);
        assert_eq!(clock.wall_us(), 5_000_000 + 33_333);
        assert_eq!(clock.wall_at_us(1_000), 5_000_000);
    }
}
