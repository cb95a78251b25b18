//! The clip index at start (src/record/index.rs): the journal (postcard records with CRC-32
//! framing, maybe torn or damaged) and the clip files found in `rolling/`. Input: a file
//! name on the first line (created in its camera's folder holding a real recorded clip,
//! as a file the journal may not know), the journal after it. Never a panic; every
//! replayed record can be shown by the API; `ClipIndex::open` over both (clip files also
//! made for the names the journal holds) writes a compacted journal that replays
//! undamaged to the same clips.
#![no_main]

use benchcam::record::index::{
    frames_file_name, parse_clip_file_name, replay, ClipIndex, OpenReport,
};
use libfuzzer_sys::fuzz_target;

/// A clip the release binary recorded from the test pattern (64x48 H.264, 2 fragments).
const CLIP: &[u8] = include_bytes!("../seeds/fmp4_scan/h264-clip-whole.mp4");

fn put_clip(dir: &std::path::Path, camera: &str, file: &str) {
    let cam_dir = dir.join("rolling").join(camera);
    std::fs::create_dir_all(&cam_dir).unwrap();
    std::fs::write(cam_dir.join(file), CLIP).unwrap();
}

fuzz_target!(|input: &[u8]| {
    let split = input
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(input.len());
    let (name, data) = (&input[..split], input.get(split + 1..).unwrap_or(&[]));
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("index");
    std::fs::create_dir_all(&index_dir).unwrap();
    let journal = index_dir.join("journal.bin");
    std::fs::write(&journal, data).unwrap();

    let mut report = OpenReport::default();
    let clips = replay(&journal, &mut report).expect("a readable journal replays");
    for (camera, files) in &clips {
        for (file, record) in files {
            assert_eq!((&record.camera, &record.file), (camera, file));
            let _ = record.to_json().to_string();
            let _ = record.ended_us();
            let _ = frames_file_name(file);
            // A name the index would keep: give it a clip file for `open` to reconcile.
            if let Some((_, cam, _)) = parse_clip_file_name(file) {
                if &cam == camera {
                    put_clip(dir.path(), camera, file);
                }
            }
        }
    }

    if let Some((_, camera, _)) = std::str::from_utf8(name)
        .ok()
        .and_then(parse_clip_file_name)
    {
        put_clip(dir.path(), &camera, std::str::from_utf8(name).unwrap());
    }

    let (index, opened) = ClipIndex::open(dir.path()).expect("open");
    assert_eq!(opened.journal_records, report.journal_records);
    let listed = index.list(None);
    for c in &listed {
        let _ = c.to_json().to_string();
    }
    let _ = index.total_bytes(None);
    drop(index);
    let mut again = OpenReport::default();
    let replayed = replay(&journal, &mut again).unwrap();
    assert!(!again.journal_damaged, "the compacted journal is damaged");
    let mut relisted: Vec<_> = replayed
        .values()
        .flat_map(|m| m.values().cloned())
        .collect();
    let mut listed = listed;
    listed.sort_by(|a, b| (&a.camera, &a.file).cmp(&(&b.camera, &b.file)));
    relisted.sort_by(|a, b| (&a.camera, &a.file).cmp(&(&b.camera, &b.file)));
    assert_eq!(
        listed, relisted,
        "the compacted journal replays to other clips"
    );
});
