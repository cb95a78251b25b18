//! fMP4 scan (src/record/fmp4.rs): the bytes of a clip file, as crash recovery and the
//! index rebuild read them. Never a panic; the valid prefix lies inside the file, and
//! scanning just that prefix finds the same clip, untorn (what `repair` relies on).
#![no_main]

use std::io::Cursor;

use benchcam::record::fmp4::scan_reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let Ok(scan) = scan_reader(&mut Cursor::new(data), len) else {
        return;
    };
    assert_eq!(scan.file_len, len);
    assert!(scan.valid_len <= len, "{scan:?}");
    assert!(scan.has_init || scan.valid_len == 0, "{scan:?}");
    let _ = scan.duration_us();
    let prefix = &data[..scan.valid_len as usize];
    let again = scan_reader(&mut Cursor::new(prefix), scan.valid_len).expect("prefix scans");
    assert!(
        !again.is_torn(),
        "the valid prefix is torn again: {again:?}"
    );
    assert_eq!(
        (
            again.fragments,
            again.samples,
            again.first_decode_ticks,
            again.end_ticks
        ),
        (
            scan.fragments,
            scan.samples,
            scan.first_decode_ticks,
            scan.end_ticks
        ),
        "cutting back to the valid prefix changed the clip"
    );
});
