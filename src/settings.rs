//! Settings changed from the web page: a whitelisted part of the config, validated by the
//! same rules as the config file (`Config::validate`) and kept in `data_dir/settings.toml`,
//! which overrides the config file's values for the keys it holds.
//!
//! Only the keys a user changed from the page are stored, so a later edit of the config
//! file still takes effect for every other key.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::{ByteSize, Config, HumanDuration};
use crate::error::{Error, ErrorKind, Result};
use crate::storage::write_atomic;

pub const FILE_NAME: &str = "settings.toml";

/// Every changeable key as `(section, key)`.
pub const KEYS: [(&str, &str); 6] = [
    ("streaming", "enabled"),
    ("streaming", "default_quality"),
    ("recording", "clip_length"),
    ("recording", "rolling_clips_count"),
    ("recording", "max_rolling_size"),
    ("recording", "min_free_space"),
];

pub fn file_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The current values of every changeable key, as `{"section": {"key": value}}`.
pub fn current(config: &Config) -> Value {
    let s = &config.streaming;
    let r = &config.recording;
    serde_json::json!({
        "streaming": {
            "enabled": s.enabled,
            "default_quality": s.default_quality,
        },
        "recording": {
            "clip_length": r.clip_length.to_string(),
            "rolling_clips_count": r.rolling_clips_count,
            "max_rolling_size": r.max_rolling_size.to_string(),
            "min_free_space": r.min_free_space.to_string(),
        },
    })
}

fn bad(key: &str, message: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("setting `{key}`: {message}"),
    )
}

/// Checks a patch's shape against the whitelist: `{"section": {"key": value}}` with
/// only known sections and keys.
fn entries(patch: &Value) -> Result<Vec<(&'static str, &'static str, &Value)>> {
    let sections = patch.as_object().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            "settings must be a JSON object like {\"recording\": {\"clip_length\": \"5m\"}}",
        )
    })?;
    let mut out = Vec::new();
    for (section, keys) in sections {
        let keys = keys.as_object().ok_or_else(|| {
            bad(
                section,
                "must be an object of keys, like {\"clip_length\": \"5m\"}",
            )
        })?;
        // An unknown section is refused even with no keys in it (schemathesis sent
        // `{"x": {}}` and it was taken as an empty change).
        if keys.is_empty() && !KEYS.iter().any(|(s, _)| s == section) {
            let mut known: Vec<&str> = KEYS.iter().map(|(s, _)| *s).collect();
            known.dedup();
            return Err(bad(
                section,
                format!("no such section; sections: {}", known.join(", ")),
            ));
        }
        for (key, value) in keys {
            let known = KEYS
                .iter()
                .find(|(s, k)| s == section && k == key)
                .ok_or_else(|| {
                    let allowed: Vec<String> =
                        KEYS.iter().map(|(s, k)| format!("{s}.{k}")).collect();
                    bad(
                        &format!("{section}.{key}"),
                        format!("cannot be changed here; changeable: {}", allowed.join(", ")),
                    )
                })?;
            out.push((known.0, known.1, value));
        }
    }
    Ok(out)
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &Value) -> Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| bad(key, e))
}

/// Applies a patch to a copy of `config` and validates the result like a config file.
pub fn apply_patch(config: &Config, patch: &Value) -> Result<Config> {
    let mut next = config.clone();
    for (section, key, value) in entries(patch)? {
        let name = format!("{section}.{key}");
        match (section, key) {
            ("streaming", "enabled") => next.streaming.enabled = parse(&name, value)?,
            ("streaming", "default_quality") => {
                next.streaming.default_quality = parse(&name, value)?
            }
            ("recording", "clip_length") => {
                next.recording.clip_length = parse::<HumanDuration>(&name, value)?
            }
            ("recording", "rolling_clips_count") => {
                next.recording.rolling_clips_count = parse(&name, value)?
            }
            ("recording", "max_rolling_size") => {
                next.recording.max_rolling_size = parse::<ByteSize>(&name, value)?
            }
            ("recording", "min_free_space") => {
                next.recording.min_free_space = parse::<ByteSize>(&name, value)?
            }
            _ => unreachable!("entries() only yields whitelisted keys"),
        }
    }
    next.validate()?;
    Ok(next)
}

/// The stored settings (keys changed from the page), or an empty object.
pub fn load(data_dir: &Path) -> Result<Value> {
    let path = file_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Value::Object(Map::new())),
        Err(e) => return Err(Error::io(e, format!("reading {}", path.display()))),
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{}: {}", path.display(), e.message()),
        )
    })?;
    serde_json::to_value(table)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{}: {e}", path.display())))
}

/// Merges `patch` into the stored settings and writes them atomically. The values
/// written are the validated ones of `applied` (normalised, e.g. "300s" becomes "5m").
pub fn save(data_dir: &Path, patch: &Value, applied: &Config) -> Result<()> {
    let mut stored = load(data_dir).unwrap_or_else(|e| {
        log::warn!("settings: replacing unreadable stored settings: {e}");
        Value::Object(Map::new())
    });
    let now = current(applied);
    for (section, key, _) in entries(patch)? {
        let value = now[section][key].clone();
        let root = stored
            .as_object_mut()
            .expect("stored settings are an object");
        let table = root
            .entry(section)
            .or_insert_with(|| Value::Object(Map::new()));
        if !table.is_object() {
            *table = Value::Object(Map::new());
        }
        table
            .as_object_mut()
            .expect("made an object above")
            .insert(key.to_string(), value);
    }
    let text = toml::to_string(&stored)
        .map_err(|e| Error::new(ErrorKind::Io, format!("formatting settings: {e}")))?;
    let header = "# Settings changed from the benchcam web page; they override the config file.\n";
    write_atomic(&file_path(data_dir), format!("{header}{text}").as_bytes())
}

/// The config with the stored settings laid over it. A damaged or invalid settings file
/// is logged and ignored (the config file's values stay), never a reason not to start.
pub fn overlay_saved(config: Config) -> Config {
    let data_dir = config.service.data_dir.clone();
    let stored = match load(&data_dir) {
        Ok(v) => v,
        Err(e) => {
            log::error!("settings: ignoring {}: {e}", file_path(&data_dir).display());
            return config;
        }
    };
    if stored.as_object().is_some_and(|m| m.is_empty()) {
        return config;
    }
    match apply_patch(&config, &stored) {
        Ok(next) => {
            log::info!(
                "settings: applied {} over the config file",
                file_path(&data_dir).display()
            );
            next
        }
        Err(e) => {
            log::error!("settings: ignoring {}: {e}", file_path(&data_dir).display());
            config
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn patch_is_whitelisted_and_validated() {
        let config = Config::default();
        let next = apply_patch(
            &config,
            &serde_json::json!({"recording": {"clip_length": "30s", "max_rolling_size": 20_000_000},
                                "streaming": {"default_quality": "low", "enabled": false}}),
        )
        .unwrap();
        assert_eq!(next.recording.clip_length.0, Duration::from_secs(30));
        assert_eq!(next.recording.max_rolling_size.0, 20_000_000);
        assert_eq!(next.streaming.default_quality, "low");
        assert!(!next.streaming.enabled);

        let refused = |patch: Value| apply_patch(&config, &patch).unwrap_err().to_string();
        assert!(
            refused(serde_json::json!({"service": {"access_token": "x"}}))
                .contains("service.access_token")
        );
        assert!(
            refused(serde_json::json!({"recording": {"clip_length": "1s"}}))
                .contains("recording.clip_length")
        );
        assert!(
            refused(serde_json::json!({"recording": {"clip_length": "soon"}}))
                .contains("recording.clip_length")
        );
        assert!(
            refused(serde_json::json!({"streaming": {"default_quality": "ultra"}}))
                .contains("default_quality")
        );
        assert!(
            refused(serde_json::json!({"recording": {"rolling_clips_count": -1}}))
                .contains("rolling_clips_count")
        );
        assert!(refused(serde_json::json!([1])).contains("JSON object"));
        // Found by schemathesis: an unknown section with no keys passed as "no change".
        assert!(refused(serde_json::json!({"streaming": {}, "bogus": {}})).contains("bogus"));
        assert!(apply_patch(&config, &serde_json::json!({"streaming": {}})).is_ok());
    }

    #[test]
    fn saved_settings_overlay_only_changed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.service.data_dir = dir.path().to_path_buf();
        let patch = serde_json::json!({"recording": {"clip_length": "120s"}});
        let applied = apply_patch(&config, &patch).unwrap();
        save(dir.path(), &patch, &applied).unwrap();
        let patch2 = serde_json::json!({"streaming": {"enabled": false}});
        let applied2 = apply_patch(&applied, &patch2).unwrap();
        save(dir.path(), &patch2, &applied2).unwrap();

        let text = std::fs::read_to_string(file_path(dir.path())).unwrap();
        assert!(text.contains("clip_length = \"2m\""), "{text}");
        assert!(!text.contains("rolling_clips_count"), "{text}");

        config.recording.rolling_clips_count = 7;
        let loaded = overlay_saved(config);
        assert_eq!(loaded.recording.clip_length.0, Duration::from_secs(120));
        assert!(!loaded.streaming.enabled);
        assert_eq!(loaded.recording.rolling_clips_count, 7);
    }

    #[test]
    fn damaged_settings_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(file_path(dir.path()), "recording = [").unwrap();
        let mut config = Config::default();
        config.service.data_dir = dir.path().to_path_buf();
        assert_eq!(overlay_saved(config.clone()), config);
        std::fs::write(file_path(dir.path()), "[recording]\nclip_length = \"1s\"\n").unwrap();
        assert_eq!(overlay_saved(config.clone()), config);
    }
}
