//! Typed configuration: built-in defaults, the TOML file, and validation that names the
//! key, the value and what is allowed (`validate.rs`). Sections follow the original
//! service's names; durations and sizes are written the human way (`units.rs`).

mod units;
mod validate;

pub use units::{ByteSize, HumanDuration};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::capture::PixelFormat;
use crate::error::{Error, ErrorKind, Result};

/// The whole configuration; every field has a built-in default.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub service: ServiceConfig,
    pub camera: CameraConfig,
    pub recording: RecordingConfig,
    pub streaming: StreamingConfig,
    pub auto_recording: AutoRecordingConfig,
    pub experiments: ExperimentsConfig,
    pub gpio: crate::gpio::GpioConfig,
    pub replication: crate::replicate::ReplicationConfig,
    pub fleet: crate::fleet::FleetConfig,
}

/// `[experiments]`: archive folders.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentsConfig {
    /// "never" (keep every experiment folder) or a duration after which archived
    /// experiments are deleted, like "90d".
    pub retention: String,
    /// Id prefix of experiments started by a trigger without one armed:
    /// `<prefix>-20261124T114000.123Z`.
    pub trigger_id_prefix: String,
    /// With replication on: delete an archived experiment here as soon as its upload
    /// was verified. (Retention never deletes one whose upload is not verified.)
    pub delete_after_upload: bool,
}

impl Default for ExperimentsConfig {
    fn default() -> Self {
        ExperimentsConfig {
            retention: "never".into(),
            trigger_id_prefix: "trigger".into(),
            delete_after_upload: false,
        }
    }
}

impl ExperimentsConfig {
    /// `None` for "never".
    pub fn retention(&self) -> Option<Duration> {
        (self.retention != "never")
            .then(|| HumanDuration::parse(&self.retention).map(|d| d.0))
            .flatten()
    }
}

/// Experiment ids: 1-64 of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn is_experiment_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Where clips, the index, experiments and settings live.
    pub data_dir: PathBuf,
    /// `LABEL=...` or `UUID=...`: the filesystem data_dir must be on (a USB drive, the
    /// image's data partition). Recording pauses while it is not mounted there, so clips
    /// never land on the root filesystem under an empty mount point. "" = no check.
    pub data_device: String,
    /// Address the web server binds.
    pub listen: String,
    /// error | warn | info | debug | trace
    pub log_level: String,
    /// When non-empty, state-changing requests need this token.
    pub access_token: String,
    /// Also require the token for reads (page, API GETs, streams).
    pub protect_reads: bool,
    /// Names the box is reached by besides its IP addresses, `localhost`, its hostname and
    /// `<hostname>.local` (a reverse proxy's name, a DNS alias). With a token set, requests
    /// for any other Host are refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            data_dir: PathBuf::from("./benchcam-data"),
            data_device: String::new(),
            listen: "0.0.0.0:8080".into(),
            log_level: "info".into(),
            access_token: String::new(),
            protect_reads: false,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Where frames come from (CAMERA_CONFIG).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CameraSource {
    /// V4L2 devices when any exist, otherwise one test-pattern camera.
    Auto,
    V4l2,
    Libcamera,
    Pattern,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    pub source: CameraSource,
    /// V4L2 device paths to use; empty means every capture device found.
    pub devices: Vec<String>,
    pub max_cameras: usize,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Pixel formats in order of preference.
    pub formats: Vec<String>,
    /// Frame slots preallocated per camera.
    pub ring_slots: usize,
    /// Format the test-pattern camera emits: "i420" or "mjpeg".
    pub pattern_format: String,
    /// How many test-pattern cameras `source = "pattern"` creates.
    pub pattern_cameras: usize,
    /// Timestamp jitter of the test pattern, modelled on real drivers (0 = a perfect
    /// cadence): each frame is stamped up to this much off its slot, and about one frame in
    /// 50 comes late by up to three frame intervals.
    pub pattern_jitter: HumanDuration,
    /// Grain over the test pattern's picture, new each frame (clips of real size).
    pub pattern_noise: bool,
    /// Exposure of libcamera cameras: automatic, or fixed in microseconds (a Global
    /// Shutter camera in external-trigger mode needs a fixed one).
    pub exposure: Exposure,
    /// Analogue gain of libcamera cameras; 0 = automatic.
    pub analogue_gain: f32,
    /// White-balance mode of libcamera cameras (one of [`AWB_MODES`]).
    pub awb_mode: String,
}

/// White-balance modes `camera.awb_mode` accepts (libcamera's AwbMode names).
pub const AWB_MODES: [&str; 7] = [
    "auto",
    "incandescent",
    "tungsten",
    "fluorescent",
    "indoor",
    "daylight",
    "cloudy",
];

/// `camera.exposure`: `"auto"` or a fixed exposure time in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    Auto,
    Micros(u32),
}

impl Serialize for Exposure {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Exposure::Auto => s.serialize_str("auto"),
            Exposure::Micros(us) => s.serialize_u32(*us),
        }
    }
}

impl<'de> Deserialize<'de> for Exposure {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Micros(i64),
        }
        let expected = "expected \"auto\" or an exposure time in microseconds (e.g. 10000)";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(expected))? {
            Raw::Text(t) if t == "auto" => Ok(Exposure::Auto),
            Raw::Micros(us) if us > 0 && us <= i64::from(u32::MAX) => {
                Ok(Exposure::Micros(us as u32))
            }
            _ => Err(serde::de::Error::custom(expected)),
        }
    }
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            source: CameraSource::Auto,
            devices: Vec::new(),
            max_cameras: 2,
            width: 1280,
            height: 720,
            fps: 30,
            formats: vec!["yuyv".into(), "nv12".into(), "i420".into(), "mjpeg".into()],
            ring_slots: 6,
            pattern_format: "i420".into(),
            pattern_cameras: 1,
            pattern_jitter: HumanDuration(Duration::ZERO),
            pattern_noise: false,
            exposure: Exposure::Auto,
            analogue_gain: 0.0,
            awb_mode: "auto".into(),
        }
    }
}

impl CameraConfig {
    pub fn pixel_formats(&self) -> Vec<PixelFormat> {
        self.formats
            .iter()
            .filter_map(|f| PixelFormat::parse(f))
            .collect()
    }
}

/// Video codec for clips.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// H.264 for every source (MJPEG cameras' frames are decoded first).
    Auto,
    H264,
    Mjpeg,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Length of one rolling clip; rotation happens at the first frame past it.
    pub clip_length: HumanDuration,
    /// Keep at most this many rolling clips per camera.
    pub rolling_clips_count: usize,
    /// Keep at most this many bytes of rolling clips per camera.
    pub max_rolling_size: ByteSize,
    /// Keep at least this much free on the data filesystem.
    pub min_free_space: ByteSize,
    /// Longest stretch of video a power cut may lose.
    pub fragment_duration: HumanDuration,
    pub codec: Codec,
    /// H.264 target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// The software H.264 encoder's in-loop deblocking filter: off by default (as libx264's
    /// `ultrafast`), ~10 % of each encode; on smooths block edges at low bitrates. The
    /// Raspberry Pi's hardware encoder decides this itself.
    pub deblocking: bool,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            clip_length: HumanDuration(Duration::from_secs(300)),
            rolling_clips_count: 48,
            max_rolling_size: ByteSize(8_000_000_000),
            min_free_space: ByteSize(512_000_000),
            fragment_duration: HumanDuration(Duration::from_secs(1)),
            codec: Codec::Auto,
            bitrate_kbps: 3000,
            deblocking: false,
        }
    }
}

/// One live-view quality level (LIVE_STREAMING_CONFIG quality presets).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QualityPreset {
    /// Longest edge is scaled down to fit width x height (never up).
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// JPEG quality 1-100.
    pub jpeg_quality: u8,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QualityPresets {
    pub low: QualityPreset,
    pub medium: QualityPreset,
    pub high: QualityPreset,
}

impl Default for QualityPresets {
    fn default() -> Self {
        let p = |width, height, fps, jpeg_quality| QualityPreset {
            width,
            height,
            fps,
            jpeg_quality,
        };
        QualityPresets {
            low: p(640, 360, 5, 50),
            medium: p(960, 540, 15, 70),
            high: p(1280, 720, 30, 80),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    pub enabled: bool,
    pub max_sessions: usize,
    /// low | medium | high
    pub default_quality: String,
    /// Per-session cap in kbit/s; frames are skipped to stay under it. 0 = no cap.
    pub max_bandwidth_kbps: u32,
    /// CPU use (percent of all cores) above which sessions step down a quality level.
    pub cpu_high_water: u32,
    pub quality: QualityPresets,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            enabled: true,
            max_sessions: 8,
            default_quality: "medium".into(),
            max_bandwidth_kbps: 8000,
            cpu_high_water: 85,
            quality: QualityPresets::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AutoRecordingConfig {
    pub enabled: bool,
    pub primary_camera: String,
    /// Start rolling recording on every camera when the service starts.
    pub start_on_boot: bool,
    pub pre_roll: HumanDuration,
    pub post_roll: HumanDuration,
}

impl Default for AutoRecordingConfig {
    fn default() -> Self {
        AutoRecordingConfig {
            enabled: true,
            primary_camera: "cam0".into(),
            start_on_boot: true,
            pre_roll: HumanDuration(Duration::from_secs(10)),
            post_roll: HumanDuration(Duration::from_secs(5)),
        }
    }
}

impl Config {
    /// Reads and validates a config file. Missing keys take their defaults.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(e, format!("reading config {}", path.display())))?;
        Config::parse(&text).map_err(|e| e.context(format!("config {}", path.display())))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let key = e.span().map(|s| key_at(text, s.start)).unwrap_or_default();
            let message = e.message().trim().to_string();
            let where_ = if key.is_empty() {
                String::new()
            } else {
                format!("config key `{key}`: ")
            };
            Error::new(ErrorKind::InvalidInput, format!("{where_}{message}"))
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.service
            .listen
            .parse()
            .expect("validated in Config::validate")
    }
}

/// `cam0` .. `cam99`.
pub fn is_camera_id(id: &str) -> bool {
    id.strip_prefix("cam")
        .is_some_and(|n| !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()))
}

pub fn log_level(name: &str) -> Option<log::LevelFilter> {
    match name {
        "error" => Some(log::LevelFilter::Error),
        "warn" => Some(log::LevelFilter::Warn),
        "info" => Some(log::LevelFilter::Info),
        "debug" => Some(log::LevelFilter::Debug),
        "trace" => Some(log::LevelFilter::Trace),
        _ => None,
    }
}

/// Best-effort dotted key (`recording.clip_length`) for the TOML byte offset of an error.
fn key_at(text: &str, offset: usize) -> String {
    let mut section = String::new();
    let mut key = String::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            key.clear();
        } else if let Some((k, _)) = trimmed.split_once('=') {
            if !trimmed.starts_with('#') {
                key = k.trim().to_string();
            }
        }
        pos += line.len();
        if pos > offset {
            break;
        }
    }
    match (section.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => section,
        (false, false) => format!("{section}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }
}

#[cfg(test)]
mod documented_defaults {
    use super::*;

    /// config/benchcam.toml documents every key with its default: it must parse and
    /// equal the built-in defaults, so the documentation cannot drift from the code.
    #[test]
    fn documented_config_equals_built_in_defaults() {
        let text = include_str!("../../config/benchcam.toml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
        let printed = toml::to_string(&Config::default()).unwrap();
        for section in [
            "[service]",
            "[camera]",
            "[recording]",
            "[streaming]",
            "[auto_recording]",
            "[experiments]",
        ] {
            assert!(
                text.contains(section) && printed.contains(section),
                "{section}"
            );
        }
        // Every key the code knows appears in the documented file.
        let table: toml::Table = toml::from_str(&printed).unwrap();
        fn keys(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in t {
                match v {
                    toml::Value::Table(sub) => keys(&format!("{prefix}{k}."), sub, out),
                    _ => out.push(format!("{prefix}{k}")),
                }
            }
        }
        let documented: toml::Table = toml::from_str(text).unwrap();
        let (mut want, mut have) = (Vec::new(), Vec::new());
        keys("", &table, &mut want);
        keys("", &documented, &mut have);
        want.sort();
        have.sort();
        assert_eq!(want, have);
    }
}
