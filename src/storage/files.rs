//! Writes that survive a power cut: atomic replacement, directory fsync, and the archive's
//! link-or-copy.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Result, ResultExt};

/// Writes `bytes` to `path` so that a reader sees the old or the new content, never a
/// torn mix: tmp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp).ctx(format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .ctx(format!("writing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).ctx(format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_dir(dir)
}

/// fsyncs a directory so a rename or create in it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(format!("syncing directory {}", dir.display()))
}

/// Hard-links `src` to `dst` (replacing `dst`); where linking is impossible (another
/// filesystem) copies with `copy_synced`. Returns true for a link. Archives use this:
/// a link costs nothing and the clip's bytes stay shared with the rolling folder.
pub fn link_or_copy(src: &Path, dst: &Path) -> Result<bool> {
    let _ = std::fs::remove_file(dst);
    match std::fs::hard_link(src, dst) {
        Ok(()) => Ok(true),
        Err(_) => copy_synced(src, dst).map(|_| false),
    }
}

/// Copies `src` to `dst` through a temporary name, fsynced before the rename, so `dst`
/// is either absent or complete.
pub fn copy_synced(src: &Path, dst: &Path) -> Result<()> {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dst.with_file_name(format!(".{name}.tmp"));
    std::fs::copy(src, &tmp).ctx(format!("copying {} to {}", src.display(), tmp.display()))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .ctx("syncing copy")?;
    std::fs::rename(&tmp, dst).ctx(format!("renaming {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("settings.toml");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
