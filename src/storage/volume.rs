//! Whether the data directory is on the filesystem it should be, and writable.
//!
//! A USB drive that is pulled out leaves an empty mount point behind; writing clips
//! there would fill the root filesystem (boxes have stopped booting that way). So the
//! data directory is checked before every clip opens and once a second by the
//! supervisor: it must exist, be on the configured filesystem (`service.data_device`,
//! by label or UUID through udev's `/dev/disk/by-*` links), or, with none configured,
//! on the same filesystem it was on when benchcam opened it, and not be read-only.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};

/// The filesystem `service.data_device` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataDevice {
    Label(String),
    Uuid(String),
}

impl DataDevice {
    /// Parses `LABEL=...` or `UUID=...` (as in fstab); "" means no check.
    pub fn parse(spec: &str) -> std::result::Result<Option<DataDevice>, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Ok(None);
        }
        let (kind, value) = spec
            .split_once('=')
            .ok_or_else(|| "must be LABEL=<label> or UUID=<uuid>".to_string())?;
        if value.is_empty() || value.len() > 64 || value.contains(['/', '\0']) {
            return Err("the label or UUID must be 1-64 characters without '/'".into());
        }
        match kind {
            "LABEL" => Ok(Some(DataDevice::Label(value.into()))),
            "UUID" => Ok(Some(DataDevice::Uuid(value.to_ascii_lowercase()))),
            _ => Err("must be LABEL=<label> or UUID=<uuid>".into()),
        }
    }

    /// udev's link for it under `disk_dir` (normally /dev/disk).
    pub fn link(&self, disk_dir: &Path) -> PathBuf {
        match self {
            DataDevice::Label(l) => disk_dir.join("by-label").join(udev_escape(l)),
            DataDevice::Uuid(u) => disk_dir.join("by-uuid").join(udev_escape(u)),
        }
    }
}

impl std::fmt::Display for DataDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataDevice::Label(l) => write!(f, "LABEL={l}"),
            DataDevice::Uuid(u) => write!(f, "UUID={u}"),
        }
    }
}

/// udev's encoding of a label in a link name: bytes outside `[0-9A-Za-z#+-.:=@_]`
/// become `\xNN`.
fn udev_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"#+-.:=@_".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Writable, on the right filesystem (its `st_dev`).
    Present { dev: u64 },
    /// Not there: unplugged, unmounted, or another filesystem under the mount point.
    Removed(String),
    /// There but read-only (remounted after errors, or mounted so).
    ReadOnly(String),
    /// There, but writes fail (EIO from a dying card or cable, or an emergency read-only
    /// remount that statvfs does not show): a write probe failed after a write error.
    Failing(String),
}

impl Presence {
    pub fn is_present(&self) -> bool {
        matches!(self, Presence::Present { .. })
    }

    /// `ok`, `removed`, `read_only` or `io_error`, for health.
    pub fn name(&self) -> &'static str {
        match self {
            Presence::Present { .. } => "ok",
            Presence::Removed(_) => "removed",
            Presence::ReadOnly(_) => "read_only",
            Presence::Failing(_) => "io_error",
        }
    }

    /// The error a write attempt gets while storage is not present.
    pub fn error(&self) -> Option<Error> {
        match self {
            Presence::Present { .. } => None,
            Presence::Removed(why) => Some(Error::new(
                ErrorKind::StorageRemoved,
                format!("storage removed: {why}"),
            )),
            Presence::ReadOnly(why) => Some(Error::new(
                ErrorKind::StorageRemoved,
                format!("storage read-only: {why}"),
            )),
            Presence::Failing(why) => Some(Error::new(
                ErrorKind::StorageRemoved,
                format!("storage failing: {why}"),
            )),
        }
    }
}

/// Checks the data directory. `expected_dev` is the filesystem it was on when it was
/// last found present (used when no device is configured); `disk_dir` is /dev/disk.
pub fn check(
    data_dir: &Path,
    device: Option<&DataDevice>,
    expected_dev: Option<u64>,
    disk_dir: &Path,
) -> Presence {
    let dir_dev = match std::fs::metadata(data_dir) {
        Ok(m) if m.is_dir() => m.dev(),
        Ok(_) => {
            return Presence::Removed(format!("{} is not a directory", data_dir.display()));
        }
        Err(e) => {
            return Presence::Removed(format!("{} is not there ({e})", data_dir.display()));
        }
    };
    match device {
        Some(device) => {
            let link = device.link(disk_dir);
            let rdev = match std::fs::metadata(&link) {
                Ok(m) => m.rdev(),
                Err(_) => return Presence::Removed(format!("{device} is not plugged in")),
            };
            if rdev != dir_dev {
                return Presence::Removed(format!(
                    "{device} is not mounted at {}",
                    data_dir.display()
                ));
            }
        }
        None => {
            // Without a named device, "the same filesystem" is the one it was on, or a
            // filesystem mounted there again that holds a benchcam index (a drive that
            // came back with another device number).
            if let Some(expected) = expected_dev.filter(|&d| d != dir_dev) {
                let mounted_again = data_dir
                    .parent()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .is_some_and(|p| p.dev() != dir_dev)
                    && data_dir.join("index").join("journal.bin").is_file();
                if !mounted_again {
                    return Presence::Removed(format!(
                        "{} is no longer on the filesystem it was on (device {dir_dev:#x}, was {expected:#x}): unmounted?",
                        data_dir.display()
                    ));
                }
            }
        }
    }
    if is_read_only(data_dir) {
        return Presence::ReadOnly(format!("{} is mounted read-only", data_dir.display()));
    }
    Presence::Present { dev: dir_dev }
}

/// Whether a small file can be created, written and synced in `dir` (and is removed
/// again): the check that tells a filesystem returning EIO from one that recovered.
pub fn probe_write(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(".benchcam-write-probe");
    let result = std::fs::File::create(&path).and_then(|mut f| {
        std::io::Write::write_all(&mut f, b"benchcam\n")?;
        f.sync_all()
    });
    let removed = std::fs::remove_file(&path);
    result.and(removed)
}

fn is_read_only(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs fills the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    st.f_flag & libc::ST_RDONLY != 0
}

/// Whether an I/O error means the disk went away or turned read-only (so the recorder
/// pauses for storage instead of counting a failed frame).
pub fn is_storage_error(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::StorageRemoved)
        || matches!(
            e.os_error(),
            Some(libc::EIO | libc::EROFS | libc::ENODEV | libc::ENXIO)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse_like_fstab() {
        assert_eq!(DataDevice::parse(""), Ok(None));
        assert_eq!(
            DataDevice::parse("LABEL=BENCHDATA"),
            Ok(Some(DataDevice::Label("BENCHDATA".into())))
        );
        assert_eq!(
            DataDevice::parse("UUID=0A1B-2C3D"),
            Ok(Some(DataDevice::Uuid("0a1b-2c3d".into())))
        );
        assert!(DataDevice::parse("/dev/sda1").is_err());
        assert!(DataDevice::parse("LABEL=").is_err());
        assert!(DataDevice::parse("LABEL=../../x").is_err());
        assert!(DataDevice::parse("PARTUUID=1").is_err());
    }

    #[test]
    fn labels_are_escaped_as_udev_does() {
        let d = DataDevice::Label("my data".into());
        assert_eq!(
            d.link(Path::new("/dev/disk")),
            Path::new("/dev/disk/by-label/my\\x20data")
        );
    }

    #[test]
    fn missing_directory_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("mnt");
        let p = check(&gone, None, None, Path::new("/dev/disk"));
        assert_eq!(p.name(), "removed", "{p:?}");
    }

    #[test]
    fn another_filesystem_under_the_mount_point_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = check(dir.path(), None, None, Path::new("/dev/disk"));
        let Presence::Present { dev } = p else {
            panic!("{p:?}")
        };
        assert!(check(dir.path(), None, Some(dev), Path::new("/dev/disk")).is_present());
        let p = check(dir.path(), None, Some(dev ^ 1), Path::new("/dev/disk"));
        assert_eq!(p.name(), "removed", "{p:?}");
    }

    #[test]
    fn a_named_device_must_be_plugged_in_and_mounted_there() {
        let dir = tempfile::tempdir().unwrap();
        let disk = tempfile::tempdir().unwrap();
        let device = DataDevice::Label("BENCHDATA".into());
        let p = check(dir.path(), Some(&device), None, disk.path());
        assert_eq!(
            p,
            Presence::Removed("LABEL=BENCHDATA is not plugged in".into())
        );
        // A link to a device node that is not the directory's filesystem (/dev/null's
        // st_rdev is 1:3; no filesystem has that device number).
        std::fs::create_dir(disk.path().join("by-label")).unwrap();
        std::os::unix::fs::symlink("/dev/null", disk.path().join("by-label/BENCHDATA")).unwrap();
        let p = check(dir.path(), Some(&device), None, disk.path());
        assert!(
            matches!(&p, Presence::Removed(why) if why.contains("is not mounted at")),
            "{p:?}"
        );
    }
}
