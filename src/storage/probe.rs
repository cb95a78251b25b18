//! The data filesystem seen from outside: free and total bytes, whether it is there, and
//! whether a write reaches it (`SpaceProbe`); statvfs for the real disk, `SimSpace` for tests.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::volume::{self, DataDevice, Presence};
use crate::error::{Error, ErrorKind, Result};

/// Free and total bytes of the filesystem holding a path, and whether it is there.
pub trait SpaceProbe: Send + Sync {
    fn space(&self, path: &Path) -> Result<(u64, u64)>;

    /// `volume::check` against the real /dev/disk unless a test overrides it.
    fn presence(
        &self,
        data_dir: &Path,
        device: Option<&DataDevice>,
        expected_dev: Option<u64>,
    ) -> Presence {
        volume::check(data_dir, device, expected_dev, Path::new("/dev/disk"))
    }

    /// `volume::probe_write` unless a test overrides it.
    fn probe_write(&self, data_dir: &Path) -> std::io::Result<()> {
        volume::probe_write(data_dir)
    }
}

impl<T: SpaceProbe + ?Sized> SpaceProbe for Arc<T> {
    fn space(&self, path: &Path) -> Result<(u64, u64)> {
        (**self).space(path)
    }

    fn presence(
        &self,
        data_dir: &Path,
        device: Option<&DataDevice>,
        expected_dev: Option<u64>,
    ) -> Presence {
        (**self).presence(data_dir, device, expected_dev)
    }

    fn probe_write(&self, data_dir: &Path) -> std::io::Result<()> {
        (**self).probe_write(data_dir)
    }
}

/// The real filesystem, through statvfs(2).
pub struct Statvfs;

impl SpaceProbe for Statvfs {
    fn space(&self, path: &Path) -> Result<(u64, u64)> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::new(ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: statvfs fills the zeroed struct we own; `c` is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(Error::io(
                std::io::Error::last_os_error(),
                format!("statvfs {}", path.display()),
            ));
        }
        let frsize = st.f_frsize as u64;
        Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
    }
}

/// A simulated disk for tests: free space is whatever the test sets, `removed` pulls it
/// out, `writes_fail` makes the write probe get EIO (a dying card), and `hung` makes
/// every check and write probe wait until it is cleared (a card busy for seconds);
/// `waiting` counts the callers waiting on it now.
#[derive(Default)]
pub struct SimSpace {
    pub free: AtomicU64,
    pub total: AtomicU64,
    pub removed: AtomicBool,
    pub writes_fail: AtomicBool,
    pub hung: AtomicBool,
    pub waiting: AtomicU64,
}

impl SimSpace {
    fn wait_while_hung(&self) {
        if self.hung.load(Ordering::Relaxed) {
            self.waiting.fetch_add(1, Ordering::Relaxed);
            while self.hung.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl SpaceProbe for SimSpace {
    fn space(&self, _path: &Path) -> Result<(u64, u64)> {
        Ok((
            self.free.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        ))
    }

    fn presence(
        &self,
        data_dir: &Path,
        device: Option<&DataDevice>,
        expected_dev: Option<u64>,
    ) -> Presence {
        self.wait_while_hung();
        if self.removed.load(Ordering::Relaxed) {
            return Presence::Removed("the simulated drive was pulled out".into());
        }
        volume::check(data_dir, device, expected_dev, Path::new("/dev/disk"))
    }

    fn probe_write(&self, data_dir: &Path) -> std::io::Result<()> {
        self.wait_while_hung();
        if self.writes_fail.load(Ordering::Relaxed) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        volume::probe_write(data_dir)
    }
}
