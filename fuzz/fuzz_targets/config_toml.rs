//! The config file (src/config.rs): TOML text → `Config` → `validate`, as `benchcam run`
//! and `benchcam check-config` read /etc/benchcam/benchcam.toml. Never a panic; a config
//! that is accepted prints (check-config prints it as TOML) and reads back the same.
#![no_main]

use benchcam::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = config.listen_addr();
    let _ = config.camera.pixel_formats();
    let _ = config.experiments.retention();
    let printed = toml::to_string(&config).expect("an accepted config prints as TOML");
    let reread = Config::parse(&printed)
        .unwrap_or_else(|e| panic!("the printed config is refused: {e}\n{printed}"));
    assert_eq!(reread, config, "printed:\n{printed}");
});
