//! fMP4 repair (src/record/fmp4.rs) on a real file, as crash recovery runs it: the file
//! is cut to the scan's valid prefix, and a second repair finds nothing to do.
#![no_main]

use benchcam::record::fmp4::{repair, scan};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    // Under TMPDIR, which fuzz/run.sh points at a scratch dir in /dev/shm and removes after.
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let path = dir().path().join("clip.mp4");
    std::fs::write(&path, data).unwrap();
    let Ok(repaired) = repair(&path) else {
        return;
    };
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert_eq!(on_disk, repaired.valid_len, "{repaired:?}");
    assert_eq!(repaired.file_len, on_disk);
    let after = scan(&path).unwrap();
    assert!(!after.is_torn(), "{after:?}");
    assert_eq!(
        (after.fragments, after.samples, after.valid_len),
        (repaired.fragments, repaired.samples, repaired.valid_len)
    );
    let again = repair(&path).unwrap();
    assert_eq!(again, after, "a second repair changed the clip");
});
