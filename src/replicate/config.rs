//! `[replication]`: where finished experiments go (an S3-compatible bucket), with which
//! key, how fast and when; validated at start with errors that name the key.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ByteSize, HumanDuration};
use crate::error::{Error, ErrorKind, Result};

/// What replication sends.
pub const SEND_EXPERIMENTS: &str = "experiments";
pub const SEND_ROLLING: &str = "rolling";

/// S3 requires parts of at least 5 MiB (but the last) and at most 10,000 of them.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_SIZE: u64 = 1024 * 1024 * 1024;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Off by default; on, `endpoint`, `bucket`, `access_key_id` and
    /// `secret_access_key_file` must be set.
    pub enabled: bool,
    /// The S3 endpoint, like "http://garage.lab:3900" or "https://s3.eu-west-1.amazonaws.com".
    pub endpoint: String,
    /// The region the signature names ("garage" for Garage's default).
    pub region: String,
    pub bucket: String,
    /// "path" (https://endpoint/bucket/key: Garage, MinIO, Ceph) or "virtual"
    /// (https://bucket.endpoint/key: AWS).
    pub url_style: String,
    /// Object key prefix; `{hostname}` and `{experiment_id}` are filled in, and it must
    /// name the experiment.
    pub prefix: String,
    pub access_key_id: String,
    /// A file holding only the secret access key, readable only by the service user.
    pub secret_access_key_file: PathBuf,
    /// `["experiments"]` (archived experiments, the default); add `"rolling"` to send
    /// every finished rolling clip too.
    pub send: Vec<String>,
    /// Upload bandwidth cap in bytes per second ("2MB"); 0 = no cap.
    pub max_rate: ByteSize,
    /// Only upload between these local times, like "22:00-06:00"; "" = always.
    pub window: String,
    /// Files larger than this go up in parts of this size (≥ 5 MiB).
    pub part_size: ByteSize,
    /// Health turns `degraded` when uploads have failed for this long.
    pub failing_after: HumanDuration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            enabled: false,
            endpoint: String::new(),
            region: "garage".into(),
            bucket: String::new(),
            url_style: "path".into(),
            prefix: "{hostname}/experiments/{experiment_id}/".into(),
            access_key_id: String::new(),
            secret_access_key_file: PathBuf::from("/etc/benchcam/s3-secret"),
            send: vec![SEND_EXPERIMENTS.into()],
            max_rate: ByteSize(0),
            window: String::new(),
            part_size: ByteSize(16 * 1024 * 1024),
            failing_after: HumanDuration(Duration::from_secs(30 * 60)),
        }
    }
}

fn invalid(key: &str, value: impl fmt::Display, allowed: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("config key `replication.{key}` = {value}: {allowed}"),
    )
}

/// An upload window in minutes after local midnight: [from, until), wrapping past
/// midnight when `until < from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from_min: u32,
    pub until_min: u32,
}

impl Window {
    pub fn parse(text: &str) -> Option<Window> {
        let (a, b) = text.trim().split_once('-')?;
        let minute = |t: &str| {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && !t.trim().starts_with('+')).then_some(h * 60 + m)
        };
        let (from_min, until_min) = (minute(a)?, minute(b)?);
        (from_min != until_min).then_some(Window {
            from_min,
            until_min,
        })
    }

    /// Whether `minute` (after local midnight) is inside.
    pub fn contains(&self, minute: u32) -> bool {
        if self.from_min < self.until_min {
            (self.from_min..self.until_min).contains(&minute)
        } else {
            minute >= self.from_min || minute < self.until_min
        }
    }
}

impl ReplicationConfig {
    pub fn sends_rolling(&self) -> bool {
        self.send.iter().any(|s| s == SEND_ROLLING)
    }

    pub fn sends_experiments(&self) -> bool {
        self.send.iter().any(|s| s == SEND_EXPERIMENTS)
    }

    pub fn window(&self) -> Option<Window> {
        Window::parse(&self.window)
    }

    pub fn validate(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let endpoint = self.endpoint.trim();
        let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !scheme_ok || url::Url::parse(endpoint).map_or(true, |u| u.host_str().is_none()) {
            return Err(invalid(
                "endpoint",
                format!("\"{}\"", self.endpoint),
                "must be an http:// or https:// URL with a host, like \"http://garage.lab:3900\"",
            ));
        }
        // S3 bucket names: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit.
        let b = &self.bucket;
        let bucket_ok = (3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
            && b.starts_with(|c: char| c.is_ascii_alphanumeric())
            && b.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(invalid(
                "bucket",
                format!("\"{b}\""),
                "must be an S3 bucket name: 3-63 of a-z 0-9 . - starting and ending with a letter or digit",
            ));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            return Err(invalid(
                "region",
                format!("\"{}\"", self.region),
                "must be a region name like \"garage\" or \"eu-west-1\"",
            ));
        }
        if !matches!(self.url_style.as_str(), "path" | "virtual") {
            return Err(invalid(
                "url_style",
                format!("\"{}\"", self.url_style),
                "allowed: path, virtual",
            ));
        }
        let p = &self.prefix;
        let filled = p.replace("{hostname}", "h").replace("{experiment_id}", "e");
        if !p.contains("{experiment_id}")
            || filled.contains(['{', '}', '\\'])
            || filled.starts_with('/')
            || filled.split('/').any(|seg| seg == "..")
            || p.len() > 512
        {
            return Err(invalid(
                "prefix",
                format!("\"{p}\""),
                "must contain {experiment_id} (and may contain {hostname}), no other braces, \
                 no leading '/' and no '..' segment",
            ));
        }
        if self.access_key_id.is_empty()
            || self.access_key_id.len() > 128
            || !self.access_key_id.bytes().all(|c| c.is_ascii_graphic())
        {
            return Err(invalid(
                "access_key_id",
                format!("\"{}\"", self.access_key_id),
                "must be the S3 access key id (printable, up to 128 characters)",
            ));
        }
        if !self.secret_access_key_file.is_absolute() {
            return Err(invalid(
                "secret_access_key_file",
                format!("\"{}\"", self.secret_access_key_file.display()),
                "must be an absolute path to a file holding the secret key",
            ));
        }
        if self.send.is_empty()
            || self
                .send
                .iter()
                .any(|s| s != SEND_EXPERIMENTS && s != SEND_ROLLING)
        {
            return Err(invalid(
                "send",
                format!("{:?}", self.send),
                "list one or both of \"experiments\", \"rolling\"",
            ));
        }
        if !self.window.trim().is_empty() && self.window().is_none() {
            return Err(invalid(
                "window",
                format!("\"{}\"", self.window),
                "must be \"\" (always) or local times like \"22:00-06:00\"",
            ));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size.0) {
            return Err(invalid(
                "part_size",
                format!("\"{}\"", self.part_size),
                "allowed: 5MiB to 1GiB (S3's smallest part is 5 MiB)",
            ));
        }
        if self.max_rate.0 != 0 && self.max_rate.0 < 10_000 {
            return Err(invalid(
                "max_rate",
                format!("\"{}\"", self.max_rate),
                "must be 0 (no cap) or at least 10kB (bytes per second)",
            ));
        }
        if self.failing_after.0 < Duration::from_secs(10) {
            return Err(invalid(
                "failing_after",
                format!("\"{}\"", self.failing_after),
                "must be at least 10s",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> ReplicationConfig {
        ReplicationConfig {
            enabled: true,
            endpoint: "http://127.0.0.1:3900".into(),
            bucket: "lab-archive".into(),
            access_key_id: "GK0123456789abcdef".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_off_and_valid() {
        assert!(ReplicationConfig::default().validate().is_ok());
        assert!(on().validate().is_ok());
    }

    type Change = Box<dyn Fn(&mut ReplicationConfig)>;

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(&str, Change)> = vec![
            ("endpoint", Box::new(|c| c.endpoint = "garage:3900".into())),
            ("bucket", Box::new(|c| c.bucket = "Lab_Archive".into())),
            ("prefix", Box::new(|c| c.prefix = "{hostname}/all/".into())),
            (
                "prefix",
                Box::new(|c| c.prefix = "../{experiment_id}/".into()),
            ),
            (
                "prefix",
                Box::new(|c| c.prefix = "{host}/{experiment_id}/".into()),
            ),
            (
                "access_key_id",
                Box::new(|c| c.access_key_id = String::new()),
            ),
            (
                "secret_access_key_file",
                Box::new(|c| c.secret_access_key_file = "secret".into()),
            ),
            ("send", Box::new(|c| c.send = vec!["everything".into()])),
            ("window", Box::new(|c| c.window = "22-6".into())),
            ("part_size", Box::new(|c| c.part_size = ByteSize(1 << 20))),
            ("url_style", Box::new(|c| c.url_style = "vhost".into())),
        ];
        for (key, change) in cases {
            let mut c = on();
            change(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("replication.{key}")), "{key}: {err}");
        }
    }

    #[test]
    fn windows_wrap_past_midnight() {
        let night = Window::parse("22:00-06:00").unwrap();
        assert!(night.contains(23 * 60) && night.contains(0) && night.contains(5 * 60 + 59));
        assert!(!night.contains(6 * 60) && !night.contains(12 * 60));
        let day = Window::parse("09:30-17:00").unwrap();
        assert!(day.contains(9 * 60 + 30) && !day.contains(17 * 60));
        for bad in ["", "22:00", "25:00-01:00", "10:00-10:00", "10:60-11:00"] {
            assert!(Window::parse(bad).is_none(), "{bad}");
        }
    }
}
