//! Typed configuration: built-in defaults, the TOML file, and validation that names the
//! key, the value and what is allowed. Sections follow the original service's names.

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

/// A duration written as "500ms", "30s", "5m", "2h" or "1d".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(text: &str) -> Option<HumanDuration> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (num, unit) = text.split_at(split);
        let value: f64 = num.parse().ok()?;
        let unit_s = match unit.trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return None,
        };
        let secs = value * unit_s;
        (secs.is_finite() && (0.0..1e10).contains(&secs))
            .then(|| HumanDuration(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            _ if ms.is_multiple_of(86_400_000) && ms > 0 => write!(f, "{}d", ms / 86_400_000),
            _ if ms.is_multiple_of(3_600_000) && ms > 0 => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) && ms > 0 => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1000) => write!(f, "{}s", ms / 1000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HumanDuration::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "\"{text}\" is not a duration: use a number with ms, s, m, h or d, like \"30s\" or \"5m\""
            ))
        })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A size written as "512MB", "8GB", "1.5GiB" or a plain number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Option<ByteSize> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (num, unit) = text.split_at(split);
        let value: f64 = num.parse().ok()?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "tib" => 1024.0f64.powi(4),
            _ => return None,
        };
        let bytes = value * mult;
        (bytes.is_finite() && (0.0..1.8e19).contains(&bytes)).then_some(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, size) in [("GB", 1_000_000_000u64), ("MB", 1_000_000), ("kB", 1000)] {
            if b >= size && b.is_multiple_of(size) {
                return write!(f, "{}{unit}", b / size);
            }
        }
        if b >= 1 << 30 && b.is_multiple_of(1 << 20) {
            return write!(f, "{}MiB", b >> 20);
        }
        write!(f, "{b}")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(text) => ByteSize::parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "\"{text}\" is not a size: use a number with B, kB, MB, GB, TB, KiB, MiB or GiB, like \"512MB\""
                ))
            }),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A config refusal: which key, what it was, what is allowed.
fn invalid(key: &str, value: impl fmt::Display, allowed: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("config key `{key}` = {value}: {allowed}"),
    )
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

    /// Checks every value against what the service can do. Returns the first problem.
    pub fn validate(&self) -> Result<()> {
        let s = &self.service;
        if s.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "service.data_dir",
                "\"\"",
                "must be a directory path",
            ));
        }
        if let Err(why) = crate::storage::DataDevice::parse(&s.data_device) {
            return Err(invalid(
                "service.data_device",
                format!("\"{}\"", s.data_device),
                &why,
            ));
        }
        if s.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "service.listen",
                format!("\"{}\"", s.listen),
                "must be an address and port like \"0.0.0.0:8080\" or \"[::]:8080\"",
            ));
        }
        if log_level(&s.log_level).is_none() {
            return Err(invalid(
                "service.log_level",
                format!("\"{}\"", s.log_level),
                "allowed: error, warn, info, debug, trace",
            ));
        }
        if !s.access_token.is_empty() && s.access_token.len() < 8 {
            return Err(invalid(
                "service.access_token",
                "(hidden)",
                "must be empty (no protection) or at least 8 characters",
            ));
        }
        if let Some(bad) = s.allowed_hosts.iter().find(|h| {
            h.is_empty()
                || h.len() > 253
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        }) {
            return Err(invalid(
                "service.allowed_hosts",
                format!("\"{bad}\""),
                "host names of letters, digits, '.' and '-' (no ports, no schemes)",
            ));
        }
        if s.protect_reads && s.access_token.is_empty() {
            return Err(invalid(
                "service.protect_reads",
                "true",
                "needs service.access_token to be set",
            ));
        }

        let c = &self.camera;
        if !(1..=8).contains(&c.max_cameras) {
            return Err(invalid(
                "camera.max_cameras",
                c.max_cameras,
                "allowed: 1 to 8",
            ));
        }
        if !(16..=3840).contains(&c.width) || !c.width.is_multiple_of(2) {
            return Err(invalid(
                "camera.width",
                c.width,
                "allowed: an even number from 16 to 3840",
            ));
        }
        if !(16..=2160).contains(&c.height) || !c.height.is_multiple_of(2) {
            return Err(invalid(
                "camera.height",
                c.height,
                "allowed: an even number from 16 to 2160",
            ));
        }
        if !(1..=120).contains(&c.fps) {
            return Err(invalid("camera.fps", c.fps, "allowed: 1 to 120"));
        }
        if c.formats.is_empty() {
            return Err(invalid(
                "camera.formats",
                "[]",
                "list at least one of mjpeg, yuyv, nv12, i420",
            ));
        }
        for f in &c.formats {
            if PixelFormat::parse(f).is_none() {
                return Err(invalid(
                    "camera.formats",
                    format!("\"{f}\""),
                    "allowed: mjpeg, yuyv, nv12, i420",
                ));
            }
        }
        if !(3..=64).contains(&c.ring_slots) {
            return Err(invalid(
                "camera.ring_slots",
                c.ring_slots,
                "allowed: 3 to 64",
            ));
        }
        if !matches!(c.pattern_format.as_str(), "i420" | "mjpeg") {
            return Err(invalid(
                "camera.pattern_format",
                format!("\"{}\"", c.pattern_format),
                "allowed: i420, mjpeg",
            ));
        }
        if !(1..=c.max_cameras).contains(&c.pattern_cameras) {
            return Err(invalid(
                "camera.pattern_cameras",
                c.pattern_cameras,
                "allowed: 1 to camera.max_cameras",
            ));
        }
        if c.pattern_jitter.0 * 2 > Duration::from_micros(1_000_000 / c.fps.max(1) as u64) {
            return Err(invalid(
                "camera.pattern_jitter",
                format!("\"{}\"", c.pattern_jitter),
                "allowed: 0 to half a frame interval (1 / camera.fps / 2)",
            ));
        }
        if let Exposure::Micros(us) = c.exposure {
            if us > 60_000_000 {
                return Err(invalid(
                    "camera.exposure",
                    us,
                    "allowed: \"auto\" or 1 to 60000000 microseconds",
                ));
            }
        }
        if !(c.analogue_gain == 0.0 || (1.0..=64.0).contains(&c.analogue_gain)) {
            return Err(invalid(
                "camera.analogue_gain",
                c.analogue_gain,
                "allowed: 0 (automatic) or 1.0 to 64.0",
            ));
        }
        if !AWB_MODES.contains(&c.awb_mode.as_str()) {
            return Err(invalid(
                "camera.awb_mode",
                format!("\"{}\"", c.awb_mode),
                &format!("allowed: {}", AWB_MODES.join(", ")),
            ));
        }
        if c.source == CameraSource::Libcamera && !cfg!(feature = "libcamera") {
            return Err(invalid(
                "camera.source",
                "\"libcamera\"",
                "this build has no libcamera support (build with --features libcamera); allowed: auto, v4l2, pattern",
            ));
        }

        let r = &self.recording;
        if r.clip_length.0 < Duration::from_secs(2)
            || r.clip_length.0 > Duration::from_secs(4 * 3600)
        {
            return Err(invalid(
                "recording.clip_length",
                format!("\"{}\"", r.clip_length),
                "allowed: 2s to 4h",
            ));
        }
        if r.fragment_duration.0 < Duration::from_millis(100)
            || r.fragment_duration.0 > Duration::from_secs(10)
        {
            return Err(invalid(
                "recording.fragment_duration",
                format!("\"{}\"", r.fragment_duration),
                "allowed: 100ms to 10s",
            ));
        }
        if r.fragment_duration.0 > r.clip_length.0 {
            return Err(invalid(
                "recording.fragment_duration",
                format!("\"{}\"", r.fragment_duration),
                "must not be longer than recording.clip_length",
            ));
        }
        if r.rolling_clips_count < 2 {
            return Err(invalid(
                "recording.rolling_clips_count",
                r.rolling_clips_count,
                "allowed: 2 or more",
            ));
        }
        if r.max_rolling_size.0 < 10_000_000 {
            return Err(invalid(
                "recording.max_rolling_size",
                format!("\"{}\"", r.max_rolling_size),
                "allowed: 10MB or more",
            ));
        }
        if !(100..=50_000).contains(&r.bitrate_kbps) {
            return Err(invalid(
                "recording.bitrate_kbps",
                r.bitrate_kbps,
                "allowed: 100 to 50000",
            ));
        }

        let st = &self.streaming;
        if !(1..=64).contains(&st.max_sessions) {
            return Err(invalid(
                "streaming.max_sessions",
                st.max_sessions,
                "allowed: 1 to 64",
            ));
        }
        if !matches!(st.default_quality.as_str(), "low" | "medium" | "high") {
            return Err(invalid(
                "streaming.default_quality",
                format!("\"{}\"", st.default_quality),
                "allowed: low, medium, high",
            ));
        }
        if !(10..=100).contains(&st.cpu_high_water) {
            return Err(invalid(
                "streaming.cpu_high_water",
                st.cpu_high_water,
                "allowed: 10 to 100 (percent)",
            ));
        }
        for (name, p) in [
            ("low", &st.quality.low),
            ("medium", &st.quality.medium),
            ("high", &st.quality.high),
        ] {
            if !(16..=3840).contains(&p.width) || !(16..=2160).contains(&p.height) {
                return Err(invalid(
                    &format!("streaming.quality.{name}.width/height"),
                    format!("{}x{}", p.width, p.height),
                    "allowed: 16x16 to 3840x2160",
                ));
            }
            if !(1..=60).contains(&p.fps) {
                return Err(invalid(
                    &format!("streaming.quality.{name}.fps"),
                    p.fps,
                    "allowed: 1 to 60",
                ));
            }
            if !(1..=100).contains(&p.jpeg_quality) {
                return Err(invalid(
                    &format!("streaming.quality.{name}.jpeg_quality"),
                    p.jpeg_quality,
                    "allowed: 1 to 100",
                ));
            }
        }

        let e = &self.experiments;
        if e.retention != "never"
            && HumanDuration::parse(&e.retention).is_none_or(|d| d.0 < Duration::from_secs(3600))
        {
            return Err(invalid(
                "experiments.retention",
                format!("\"{}\"", e.retention),
                "allowed: \"never\" or a duration of at least 1h, like \"90d\"",
            ));
        }
        if !is_experiment_id(&e.trigger_id_prefix) || e.trigger_id_prefix.len() > 32 {
            return Err(invalid(
                "experiments.trigger_id_prefix",
                format!("\"{}\"", e.trigger_id_prefix),
                "allowed: 1-32 of A-Z a-z 0-9 . _ - not starting with a dot",
            ));
        }

        self.gpio.validate()?;
        self.replication.validate()?;
        if e.delete_after_upload && !self.replication.enabled {
            return Err(invalid(
                "experiments.delete_after_upload",
                "true",
                "needs [replication] enabled = true (nothing is deleted before it is uploaded)",
            ));
        }
        self.fleet.validate()?;

        let a = &self.auto_recording;
        if !is_camera_id(&a.primary_camera) {
            return Err(invalid(
                "auto_recording.primary_camera",
                format!("\"{}\"", a.primary_camera),
                "must be a camera id like \"cam0\"",
            ));
        }
        if a.pre_roll.0 > Duration::from_secs(3600) {
            return Err(invalid(
                "auto_recording.pre_roll",
                format!("\"{}\"", a.pre_roll),
                "allowed: 0s to 1h",
            ));
        }
        if a.post_roll.0 > Duration::from_secs(3600) {
            return Err(invalid(
                "auto_recording.post_roll",
                format!("\"{}\"", a.post_roll),
                "allowed: 0s to 1h",
            ));
        }
        Ok(())
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

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(
            HumanDuration::parse("5m"),
            Some(HumanDuration(Duration::from_secs(300)))
        );
        assert_eq!(
            HumanDuration::parse("500ms"),
            Some(HumanDuration(Duration::from_millis(500)))
        );
        assert_eq!(
            HumanDuration::parse("1.5s"),
            Some(HumanDuration(Duration::from_millis(1500)))
        );
        assert_eq!(HumanDuration::parse("5"), None);
        assert_eq!(HumanDuration::parse("5x"), None);
        assert_eq!(ByteSize::parse("512MB"), Some(ByteSize(512_000_000)));
        assert_eq!(ByteSize::parse("1GiB"), Some(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("12"), Some(ByteSize(12)));
        assert_eq!(ByteSize::parse("12 parsecs"), None);
        assert_eq!(HumanDuration(Duration::from_secs(300)).to_string(), "5m");
        assert_eq!(ByteSize(512_000_000).to_string(), "512MB");
    }

    fn refusal(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn refusals_name_key_value_and_allowed() {
        let m = refusal("[recording]\nclip_length = \"5x\"\n");
        assert!(
            m.contains("recording.clip_length") && m.contains("5x") && m.contains("30s"),
            "{m}"
        );
        let m = refusal("[camera]\nfps = 0\n");
        assert!(
            m.contains("camera.fps") && m.contains("= 0") && m.contains("1 to 120"),
            "{m}"
        );
        let m = refusal("[camera]\nformats = [\"rgb\"]\n");
        assert!(
            m.contains("camera.formats") && m.contains("rgb") && m.contains("yuyv"),
            "{m}"
        );
        let m = refusal("[recording]\nclip_lenght = \"5m\"\n");
        assert!(
            m.contains("clip_lenght") && m.contains("clip_length"),
            "{m}"
        );
        let m = refusal("[service]\nlisten = \"nowhere\"\n");
        assert!(m.contains("service.listen") && m.contains("nowhere"), "{m}");
        let m = refusal("[camera]\nfps = \"fast\"\n");
        assert!(m.contains("camera.fps") && m.contains("fast"), "{m}");
        let m = refusal("[camera]\nexposure = \"long\"\n");
        assert!(m.contains("camera.exposure") && m.contains("auto"), "{m}");
        let m = refusal("[camera]\nexposure = 0\n");
        assert!(
            m.contains("camera.exposure") && m.contains("microseconds"),
            "{m}"
        );
        let m = refusal("[camera]\nanalogue_gain = 0.5\n");
        assert!(
            m.contains("camera.analogue_gain") && m.contains("0.5"),
            "{m}"
        );
        let m = refusal("[camera]\nawb_mode = \"sunny\"\n");
        assert!(
            m.contains("camera.awb_mode") && m.contains("daylight"),
            "{m}"
        );
        let c = Config::parse("[camera]\nexposure = 10000\nanalogue_gain = 2.0\n").unwrap();
        assert_eq!(c.camera.exposure, Exposure::Micros(10000));
        let m = refusal("[streaming]\ndefault_quality = \"ultra\"\n");
        assert!(
            m.contains("streaming.default_quality") && m.contains("low, medium, high"),
            "{m}"
        );
    }
}

#[cfg(test)]
mod documented_defaults {
    use super::*;

    /// config/benchcam.toml documents every key with its default: it must parse and
    /// equal the built-in defaults, so the documentation cannot drift from the code.
    #[test]
    fn documented_config_equals_built_in_defaults() {
        let text = include_str!("../config/benchcam.toml");
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
