//! Every config value checked against what the service can do; a refusal names the
//! key, the value and what is allowed.

use std::ops::RangeInclusive;

use super::*;

/// A config refusal: which key, what it was, what is allowed.
fn invalid(key: &str, value: impl fmt::Display, allowed: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("config key `{key}` = {value}: {allowed}"),
    )
}

/// `value` within `range`, or the error naming `key` and what is allowed.
fn within<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
    allowed: &str,
) -> Result<()> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(key, value, allowed))
    }
}

impl Config {
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
        within(
            "camera.max_cameras",
            c.max_cameras,
            1..=8,
            "allowed: 1 to 8",
        )?;
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
        within(
            "camera.ring_slots",
            c.ring_slots,
            3..=64,
            "allowed: 3 to 64",
        )?;
        if !matches!(c.pattern_format.as_str(), "i420" | "mjpeg") {
            return Err(invalid(
                "camera.pattern_format",
                format!("\"{}\"", c.pattern_format),
                "allowed: i420, mjpeg",
            ));
        }
        within(
            "camera.pattern_cameras",
            c.pattern_cameras,
            1..=c.max_cameras,
            "allowed: 1 to camera.max_cameras",
        )?;
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
        within(
            "recording.bitrate_kbps",
            r.bitrate_kbps,
            100..=50_000,
            "allowed: 100 to 50000",
        )?;

        let st = &self.streaming;
        within(
            "streaming.max_sessions",
            st.max_sessions,
            1..=64,
            "allowed: 1 to 64",
        )?;
        if !matches!(st.default_quality.as_str(), "low" | "medium" | "high") {
            return Err(invalid(
                "streaming.default_quality",
                format!("\"{}\"", st.default_quality),
                "allowed: low, medium, high",
            ));
        }
        within(
            "streaming.cpu_high_water",
            st.cpu_high_water,
            10..=100,
            "allowed: 10 to 100 (percent)",
        )?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
