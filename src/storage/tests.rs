//! Retention and free space against a simulated disk.
use super::*;
use crate::record::index::RecordingType;

fn clip(camera: &str, n: i64, size: u64) -> ClipRecord {
    ClipRecord {
        camera: camera.into(),
        file: crate::record::index::clip_file_name(
            1_795_520_400_000_000 + n * 10_000_000,
            camera,
            n as u64 * 300,
        ),
        recording_type: RecordingType::Rolling,
        started_us: 1_795_520_400_000_000 + n * 10_000_000,
        first_mono_us: 0,
        first_frame: n as u64 * 300,
        last_frame: n as u64 * 300 + 299,
        frame_count: 300,
        duration_us: 10_000_000,
        seq: n as u64 + 1,
        boot_id: String::new(),
        size,
        complete: true,
    }
}

fn storage_with(
    clips: &[ClipRecord],
    limits: Limits,
    free: u64,
) -> (tempfile::TempDir, Arc<Storage>, Arc<SimSpace>) {
    let dir = tempfile::tempdir().unwrap();
    let space = Arc::new(SimSpace::default());
    space.free.store(free, Ordering::Relaxed);
    let storage = Storage::open(dir.path(), None, limits, Box::new(space.clone())).unwrap();
    for c in clips {
        let d = storage.index.camera_dir(&c.camera);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(&c.file), vec![0u8; c.size as usize]).unwrap();
        storage.index.upsert(c.clone()).unwrap();
    }
    (dir, storage, space)
}

#[test]
fn retention_deletes_oldest_first_within_count_and_bytes() {
    let clips: Vec<_> = (0..5).map(|n| clip("cam0", n, 100)).collect();
    let limits = Limits {
        max_clips: 3,
        max_bytes: 250,
        min_free: 0,
    };
    let (_d, storage, _s) = storage_with(&clips, limits, 1 << 40);
    let deleted = storage.enforce_retention("cam0");
    // Count allows 3, bytes allow 2: the three oldest go.
    assert_eq!(
        deleted.iter().map(|c| c.first_frame).collect::<Vec<_>>(),
        [0, 300, 600]
    );
    let left = storage.index.list(Some("cam0"));
    assert_eq!(
        left.iter().map(|c| c.first_frame).collect::<Vec<_>>(),
        [1200, 900]
    );
    assert!(!storage
        .index
        .camera_dir("cam0")
        .join(&clips[0].file)
        .exists());
}

#[test]
fn retention_never_deletes_protected_clips() {
    let clips: Vec<_> = (0..5).map(|n| clip("cam0", n, 100)).collect();
    let limits = Limits {
        max_clips: 3,
        max_bytes: 1 << 30,
        min_free: 0,
    };
    let (_d, storage, _s) = storage_with(&clips, limits, 1 << 40);
    // Protect the span of clips 0 and 1 (an experiment with pre-roll).
    let wall = |us: i64| Bound {
        boot_id: String::new(),
        mono_us: 0,
        wall_us: us,
        seq: 0,
    };
    storage.protect(Protection {
        owner: "exp".into(),
        window: Window {
            cameras: vec!["cam0".into()],
            from: wall(clips[0].started_us + 1),
            to: Some(wall(clips[1].started_us + 5)),
        },
    });
    let deleted = storage.enforce_retention("cam0");
    assert_eq!(
        deleted.iter().map(|c| c.first_frame).collect::<Vec<_>>(),
        [600, 900]
    );
    storage.unprotect("exp");
    storage.set_limits(Limits {
        max_clips: 2,
        ..limits
    });
    let deleted = storage.enforce_retention("cam0");
    assert_eq!(
        deleted.iter().map(|c| c.first_frame).collect::<Vec<_>>(),
        [0]
    );
}

#[test]
fn full_disk_is_reported_and_clears_when_space_returns() {
    let clips: Vec<_> = (0..2).map(|n| clip("cam0", n, 100)).collect();
    let limits = Limits {
        max_clips: 10,
        max_bytes: 1 << 30,
        min_free: 1000,
    };
    let (_d, storage, space) = storage_with(&clips, limits, 10);
    let err = storage.ensure_room("cam0").unwrap_err();
    assert_eq!(err.kind, ErrorKind::StorageFull);
    assert!(storage.is_full());
    // Retention deleted what it could (the sim disk does not grow when files go).
    assert!(storage.index.list(Some("cam0")).is_empty());
    space.free.store(5000, Ordering::Relaxed);
    storage.ensure_room("cam0").unwrap();
    assert!(!storage.is_full());
}
