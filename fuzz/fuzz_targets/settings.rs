//! Settings (src/settings.rs): the JSON patch of `PATCH /api/v1/settings`, and the
//! `settings.toml` the service lays over its config at start. Never a panic; an accepted
//! patch, once saved, is what the next start reads back; a damaged or hostile
//! settings.toml is ignored or applied, never a half-valid config.
#![no_main]

use benchcam::config::Config;
use benchcam::settings::{apply_patch, file_path, overlay_saved, save};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.service.data_dir = dir.path().to_path_buf();

    // Input starting with '{' or '[': a patch; anything else: a settings.toml.
    if matches!(data.first(), Some(b'{' | b'[')) {
        let Ok(patch) = serde_json::from_slice::<serde_json::Value>(data) else {
            return;
        };
        let Ok(applied) = apply_patch(&config, &patch) else {
            return;
        };
        applied.validate().expect("an applied patch is valid");
        save(dir.path(), &patch, &applied).expect("an accepted patch saves");
        let restarted = overlay_saved(config.clone());
        assert_eq!(
            restarted,
            applied,
            "saved settings read back differently: {}",
            std::fs::read_to_string(file_path(dir.path())).unwrap_or_default()
        );
    } else {
        std::fs::write(file_path(dir.path()), data).unwrap();
        let loaded = overlay_saved(config.clone());
        loaded
            .validate()
            .expect("settings.toml never makes an invalid config");
    }
});
