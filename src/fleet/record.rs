//! What one bench tells the others: its TXT record (name, version, state, cameras
//! recording, last experiment, free space, page path), encoded for mDNS and decoded from
//! whatever a LAN packet carries, every value bounded.

use serde::Serialize;

/// Version of the TXT layout (`v=`); a record of another version is still shown, with the
/// fields this one knows.
pub const TXT_VERSION: &str = "1";

/// Longest value kept from a peer's TXT entry, in bytes. RFC 6763 allows 255 per entry; the
/// fields here need far less, and a bounded value keeps a hostile packet from bloating the
/// peer table (256 peers x 8 fields x 64 bytes stays under 150 KiB).
pub const MAX_VALUE: usize = 64;

/// State of a bench as its health reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchState {
    Ok,
    Degraded,
    Error,
    /// A peer announced something this version does not know.
    Unknown,
}

impl BenchState {
    pub fn parse(s: &str) -> BenchState {
        match s {
            "ok" => BenchState::Ok,
            "degraded" => BenchState::Degraded,
            "error" => BenchState::Error,
            _ => BenchState::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BenchState::Ok => "ok",
            BenchState::Degraded => "degraded",
            BenchState::Error => "error",
            BenchState::Unknown => "unknown",
        }
    }
}

/// The last experiment of a bench: the running or armed one, else the newest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastExperiment {
    pub id: String,
    /// Its method, cut to [`MAX_VALUE`] bytes.
    pub method: String,
    /// armed | running | stopped | archived (as the bench says; not checked).
    pub state: String,
}

/// The facts a bench announces about itself. Built by the wiring from health and the
/// experiment service; decoded from peers' TXT records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BenchRecord {
    /// The name people know the bench by (`fleet.name`, default the hostname).
    pub name: String,
    /// benchcam version.
    pub version: String,
    pub state: BenchState,
    pub cameras: u32,
    pub cameras_recording: u32,
    pub last_experiment: Option<LastExperiment>,
    /// Free bytes on the data filesystem.
    pub free_bytes: Option<u64>,
    /// Seconds since the service started: changes on every refresh, so a browser sees each
    /// refresh as an update and knows the peer is alive.
    pub uptime_s: u64,
    /// Path of the web page on the announced port ("/").
    pub path: String,
}

/// `s` cut to at most `max` bytes at a character boundary, control characters dropped.
pub fn bounded(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

impl BenchRecord {
    /// The TXT entries to announce (key, value). Every value is within [`MAX_VALUE`].
    pub fn to_txt(&self) -> Vec<(&'static str, String)> {
        let mut txt = vec![
            ("v", TXT_VERSION.to_string()),
            ("name", bounded(&self.name, MAX_VALUE)),
            ("ver", bounded(&self.version, MAX_VALUE)),
            ("state", self.state.as_str().to_string()),
            ("cams", self.cameras.to_string()),
            ("rec", self.cameras_recording.to_string()),
            ("up", self.uptime_s.to_string()),
            ("path", bounded(&self.path, MAX_VALUE)),
        ];
        if let Some(free) = self.free_bytes {
            txt.push(("free", free.to_string()));
        }
        if let Some(e) = &self.last_experiment {
            txt.push(("exp", bounded(&e.id, MAX_VALUE)));
            txt.push(("expm", bounded(&e.method, MAX_VALUE)));
            txt.push(("exps", bounded(&e.state, MAX_VALUE)));
        }
        txt
    }

    /// Decodes a peer's TXT entries. Keys are matched case-insensitively (RFC 6763 §6.4);
    /// unknown keys are ignored, values are bounded, numbers that do not parse count as
    /// absent. `fallback_name` (the instance name) stands in for a missing `name`.
    pub fn from_txt<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
        fallback_name: &str,
    ) -> BenchRecord {
        let mut r = BenchRecord {
            name: String::new(),
            version: String::new(),
            state: BenchState::Unknown,
            cameras: 0,
            cameras_recording: 0,
            last_experiment: None,
            free_bytes: None,
            uptime_s: 0,
            path: "/".into(),
        };
        let (mut exp, mut expm, mut exps) = (None, String::new(), String::new());
        for (key, value) in entries {
            let value = bounded(value, MAX_VALUE);
            match key.to_ascii_lowercase().as_str() {
                "name" => r.name = value,
                "ver" => r.version = value,
                "state" => r.state = BenchState::parse(&value),
                "cams" => r.cameras = value.parse().unwrap_or(0),
                "rec" => r.cameras_recording = value.parse().unwrap_or(0),
                "up" => r.uptime_s = value.parse().unwrap_or(0),
                "free" => r.free_bytes = value.parse().ok(),
                // Only an absolute path: the page link is built from it.
                "path" if value.starts_with('/') && !value.contains("//") => r.path = value,
                "exp" if !value.is_empty() => exp = Some(value),
                "expm" => expm = value,
                "exps" => exps = value,
                _ => {}
            }
        }
        if r.name.is_empty() {
            r.name = bounded(fallback_name, MAX_VALUE);
        }
        r.last_experiment = exp.map(|id| LastExperiment {
            id,
            method: expm,
            state: exps,
        });
        r
    }

    /// Whether `other` differs enough from `self` to announce it before the periodic
    /// refresh: anything but uptime, and free space only by more than 1 % (a recording
    /// box's free space changes every second).
    pub fn differs_notably(&self, other: &BenchRecord) -> bool {
        let free_moved = match (self.free_bytes, other.free_bytes) {
            (Some(a), Some(b)) => a.abs_diff(b) > a.max(b) / 100,
            (a, b) => a != b,
        };
        free_moved
            || self.name != other.name
            || self.version != other.version
            || self.state != other.state
            || self.cameras != other.cameras
            || self.cameras_recording != other.cameras_recording
            || self.last_experiment != other.last_experiment
            || self.path != other.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> BenchRecord {
        BenchRecord {
            name: "bench-3".into(),
            version: "0.1.0".into(),
            state: BenchState::Degraded,
            cameras: 2,
            cameras_recording: 1,
            last_experiment: Some(LastExperiment {
                id: "run-42".into(),
                method: "drop test".into(),
                state: "running".into(),
            }),
            free_bytes: Some(12_345_678_901),
            uptime_s: 3600,
            path: "/".into(),
        }
    }

    fn decode(txt: &[(&'static str, String)]) -> BenchRecord {
        BenchRecord::from_txt(txt.iter().map(|(k, v)| (*k, v.as_str())), "fallback")
    }

    #[test]
    fn a_record_survives_its_txt_encoding() {
        let r = record();
        assert_eq!(decode(&r.to_txt()), r);
        let mut bare = record();
        bare.last_experiment = None;
        bare.free_bytes = None;
        assert_eq!(decode(&bare.to_txt()), bare);
    }

    #[test]
    fn every_encoded_entry_fits_a_txt_string() {
        let mut r = record();
        r.name = "n".repeat(1000);
        r.last_experiment.as_mut().unwrap().method = "é".repeat(500);
        for (k, v) in r.to_txt() {
            assert!(v.len() <= MAX_VALUE, "{k} is {} bytes", v.len());
            assert!(k.len() + 1 + v.len() <= 255);
        }
        // Cut at a character boundary, not inside "é".
        let method = &decode(&r.to_txt()).last_experiment.unwrap().method;
        assert_eq!(method.len(), MAX_VALUE);
        assert!(method.chars().all(|c| c == 'é'));
    }

    #[test]
    fn hostile_values_are_bounded_and_garbage_is_absent() {
        let long = "x".repeat(10_000);
        let txt = [
            ("NAME", long.as_str()),
            ("state", "on fire"),
            ("rec", "-3"),
            ("cams", "99999999999999999999"),
            ("free", "lots"),
            ("path", "//evil.example/"),
            ("exp", ""),
            ("ver", "1.0\n\u{7}"),
        ];
        let r = BenchRecord::from_txt(txt, "fallback");
        assert_eq!(r.name.len(), MAX_VALUE);
        assert_eq!(r.state, BenchState::Unknown);
        assert_eq!((r.cameras_recording, r.cameras), (0, 0));
        assert_eq!(r.free_bytes, None);
        assert_eq!(r.path, "/");
        assert_eq!(r.last_experiment, None);
        assert_eq!(r.version, "1.0");
    }

    #[test]
    fn a_record_without_a_name_takes_the_instance_name() {
        let r = BenchRecord::from_txt([("state", "ok")], "bench-7");
        assert_eq!(r.name, "bench-7");
        assert_eq!(r.state, BenchState::Ok);
    }

    #[test]
    fn only_real_changes_are_notable() {
        let a = record();
        let mut b = a.clone();
        b.uptime_s += 30;
        b.free_bytes = Some(a.free_bytes.unwrap() - 1_000_000);
        assert!(!a.differs_notably(&b), "uptime and 0.01 % of free space");
        b.free_bytes = Some(a.free_bytes.unwrap() / 2);
        assert!(a.differs_notably(&b));
        let mut c = a.clone();
        c.cameras_recording = 2;
        assert!(a.differs_notably(&c));
        let mut d = a.clone();
        d.last_experiment = None;
        assert!(a.differs_notably(&d));
    }
}
