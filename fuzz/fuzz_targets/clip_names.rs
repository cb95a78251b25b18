//! Clip and frames file names (src/record/index.rs, src/clock.rs): names found in a
//! camera's clip folder at start, and the `.frames.csv` beside each clip. Never a panic;
//! a name that parses is one the recorder could have written (it parses back the same).
#![no_main]

use benchcam::clock::{compact_utc_ms, parse_compact_utc_ms, rfc3339_ms};
use benchcam::config::is_camera_id;
use benchcam::record::index::{
    clip_file_name, frames_file_name, parse_clip_file_name, read_frames_file,
};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
}

fuzz_target!(|data: &[u8]| {
    // First line: a file name; the rest: a frames file.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (name, rest) = data.split_at(split);
    if let Ok(name) = std::str::from_utf8(name) {
        if let Some((started_us, camera, first_frame)) = parse_clip_file_name(name) {
            assert!(is_camera_id(&camera), "{camera:?}");
            let _ = rfc3339_ms(started_us);
            let written = clip_file_name(started_us, &camera, first_frame);
            assert_eq!(
                parse_clip_file_name(&written),
                Some((started_us, camera.clone(), first_frame)),
                "{name:?} parsed, but the name made from it ({written:?}) does not parse back"
            );
            let frames = frames_file_name(name);
            assert!(frames.ends_with(".frames.csv") && !frames.contains('/'));
        }
        if let Some(us) = parse_compact_utc_ms(name) {
            let _ = compact_utc_ms(us);
        }
    }
    let path = dir().path().join("clip.frames.csv");
    std::fs::write(&path, rest).unwrap();
    let samples = u64::from(rest.first().copied().unwrap_or(0));
    if let Ok(lines) = read_frames_file(&path, samples) {
        assert!(lines.iter().all(|l| l.sample_index < samples));
    }
});
