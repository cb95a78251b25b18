//! What the experiment list shows from each archived experiment's manifest (clips, bytes,
//! frames), kept between listings. The page asks for the list every 4–10 s per open
//! phone, and a long experiment's manifest runs to hundreds of kilobytes: parsing every
//! one on every request would cost a Pi's CPU and SD card in proportion to the archive.
//! A manifest is written once, atomically, when its archive completes, so its size and
//! modification time say whether the counts kept for it still hold.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

/// The counts the list shows for a complete archive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManifestCounts {
    pub clips: u64,
    pub size_bytes: u64,
    pub frames: u64,
}

impl ManifestCounts {
    fn of(manifest: &serde_json::Value) -> ManifestCounts {
        let sum = |list: &str, key: &str| {
            manifest[list]
                .as_array()
                .map_or(0, |a| a.iter().filter_map(|x| x[key].as_u64()).sum::<u64>())
        };
        ManifestCounts {
            clips: manifest["clips"].as_array().map_or(0, |a| a.len() as u64),
            size_bytes: sum("files", "size"),
            frames: sum("clips", "frame_count"),
        }
    }
}

/// The file's identity for the cache: a rewritten manifest changes one of them.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

#[derive(Default)]
pub struct Summaries {
    kept: Mutex<HashMap<String, (Stamp, ManifestCounts)>>,
}

impl Summaries {
    /// The counts of experiment `id`'s manifest at `path`; None while it has none (not
    /// archived yet) or it cannot be read as JSON.
    pub fn counts(&self, id: &str, path: &Path) -> Option<ManifestCounts> {
        let meta = std::fs::metadata(path).ok()?;
        let stamp = Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        if let Some((kept, counts)) = self.lock().get(id) {
            if *kept == stamp {
                return Some(*counts);
            }
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let counts = ManifestCounts::of(&manifest);
        self.lock().insert(id.to_string(), (stamp, counts));
        Some(counts)
    }

    /// Forgets experiments that are gone (retention, a user's delete): the cache holds at
    /// most what the last listing showed.
    pub fn keep_only<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        let ids: std::collections::HashSet<&str> = ids.collect();
        self.lock().retain(|id, _| ids.contains(id.as_str()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Stamp, ManifestCounts)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(clips: &[u64], sizes: &[u64]) -> Vec<u8> {
        let clips: Vec<_> = clips
            .iter()
            .map(|n| serde_json::json!({ "frame_count": n }))
            .collect();
        let files: Vec<_> = sizes
            .iter()
            .map(|n| serde_json::json!({ "size": n }))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "clips": clips, "files": files })).unwrap()
    }

    #[test]
    fn counts_come_from_the_manifest_and_follow_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let s = Summaries::default();
        assert_eq!(s.counts("e1", &path), None, "no manifest yet");
        std::fs::write(&path, manifest(&[300, 120], &[1000, 2000, 5])).unwrap();
        let first = ManifestCounts {
            clips: 2,
            size_bytes: 3005,
            frames: 420,
        };
        assert_eq!(s.counts("e1", &path), Some(first));
        // Rewritten with another size: read again.
        std::fs::write(&path, manifest(&[300, 120, 7], &[1000, 2000, 5, 9])).unwrap();
        assert_eq!(
            s.counts("e1", &path),
            Some(ManifestCounts {
                clips: 3,
                size_bytes: 3014,
                frames: 427,
            })
        );
    }

    #[test]
    fn an_unchanged_manifest_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let s = Summaries::default();
        let a = manifest(&[111], &[222]);
        std::fs::write(&path, &a).unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let counts = s.counts("e1", &path).unwrap();
        assert_eq!(counts.frames, 111);
        // Same length and modification time, other bytes: the kept counts answer, which
        // shows the file was not parsed again.
        let b = manifest(&[999], &[888]);
        assert_eq!(a.len(), b.len());
        std::fs::write(&path, &b).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        assert_eq!(s.counts("e1", &path), Some(counts));
        // Forgotten once the experiment is gone from a listing: read afresh.
        s.keep_only(["e2"].into_iter());
        assert_eq!(s.counts("e1", &path).unwrap().frames, 999);
    }

    #[test]
    fn a_torn_manifest_counts_as_none_and_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let s = Summaries::default();
        std::fs::write(&path, b"{\"clips\": [").unwrap();
        assert_eq!(s.counts("e1", &path), None);
        assert!(s.lock().is_empty());
    }
}
