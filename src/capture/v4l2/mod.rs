//! V4L2 capture backend: finds USB (UVC) and CSI capture nodes and streams their frames
//! through MMAP buffers, over a small ioctl layer of its own (no bindgen, no C headers at
//! build time).
//!
//! Frame lifecycle: the driver fills one of [`BUFFER_COUNT`] kernel buffers that are mapped
//! into our address space at open; `next_frame` dequeues a filled buffer, lends its bytes to
//! the sink (the capture loop copies them into its ring) and queues the buffer back before it
//! returns. Nothing is allocated per frame: the mappings, and the repack scratch for drivers
//! that pad their rows, are set up when the device opens.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::capture::{
    best_mode, CameraInfo, CaptureDevice, CaptureSource, ModeRequest, PixelFormat,
};
use crate::error::{Error, ErrorKind, Result, ResultExt};

use self::modes::{enumerate_modes, node_caps, unusable_reason};
pub use self::source::V4l2Source;
use crate::v4l2 as sys;
use sys::Arg;

mod layout;
mod modes;
mod source;

/// Driver buffers asked for per stream: one being filled, one lent to the sink, and slack so
/// that a capture loop that is briefly late does not make the driver drop frames. The driver
/// may grant a different number; whatever it grants is mapped.
const BUFFER_COUNT: u32 = 4;

/// Longest wait for a frame between checks that the device node is still there.
const GONE_CHECK: Duration = Duration::from_millis(200);

/// Fewest buffers worth streaming with: with one, the driver has nowhere to write while the
/// sink reads, and drops every other frame.
const MIN_BUFFERS: u32 = 2;

/// Upper bound on ENUM_* indices, so a driver that never answers EINVAL cannot hang discovery.
const MAX_ENUM_INDEX: u32 = 256;

/// Frame rate recorded for a size whose driver does not enumerate frame intervals. `Mode::fps`
/// is nominal only (frame times come from the frames), and 30 is the UVC default rate.
const DEFAULT_FPS: u32 = 30;

/// Sizes offered for drivers that describe a range (stepwise or continuous) instead of a list,
/// such as the legacy Raspberry Pi camera driver (`bcm2835 mmal`).
const COMMON_SIZES: [(u32, u32); 9] = [
    (320, 240),
    (640, 480),
    (800, 600),
    (1024, 768),
    (1280, 720),
    (1280, 960),
    (1920, 1080),
    (2560, 1440),
    (3840, 2160),
];

/// Frame rates offered for drivers that describe an interval range instead of a list.
const COMMON_RATES: [u32; 10] = [5, 10, 15, 20, 25, 30, 50, 60, 90, 120];

/// Drivers whose single-planar capture nodes are halves of memory-to-memory helpers (ISPs,
/// codecs): they produce frames only when another program feeds them, so they are not
/// cameras. On a Raspberry Pi they sit at /dev/video10 and up next to the real cameras.
const HELPER_DRIVERS: [&str; 3] = ["bcm2835-isp", "bcm2835-codec", "pispbe"];

/// CSI receivers of the Raspberry Pi 4 (`unicam`) and 5 (`rp1-cfe`) under the
/// media-controller camera stack: they list YUV formats, but streaming fails until libcamera
/// has configured the sensor and the links, so their cameras belong to the libcamera backend.
const LIBCAMERA_DRIVERS: [&str; 2] = ["unicam", "rp1-cfe"];

/// Finds every V4L2 camera under /dev, in device-number order (`video2` before `video10`).
///
/// Nodes that are not usable capture nodes (UVC metadata nodes, ISP and codec nodes, devices
/// without a supported format) are skipped and logged at debug level; an unreadable node is
/// logged as a warning. Never fails: no cameras is an empty list.
pub fn discover() -> Vec<V4l2Device> {
    discover_in(Path::new("/dev"))
}

fn discover_in(dir: &Path) -> Vec<V4l2Device> {
    video_nodes(dir)
        .into_iter()
        .filter_map(|path| match V4l2Device::probe(&path) {
            Ok(device) => {
                log::debug!(
                    "v4l2: {} \"{}\": {} modes",
                    device.info.device,
                    device.info.name,
                    device.info.modes.len()
                );
                Some(device)
            }
            Err(err) if err.kind == ErrorKind::Unsupported => {
                log::debug!("v4l2: skipping {err}");
                None
            }
            Err(err) => {
                log::warn!("v4l2: cannot probe {err}");
                None
            }
        })
        .collect()
}

/// The `videoN` entries of `dir`, sorted by N.
fn video_nodes(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut nodes: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| Some((video_index(entry.file_name().to_str()?)?, entry.path())))
        .collect();
    nodes.sort_by_key(|(index, _)| *index);
    nodes.into_iter().map(|(_, path)| path).collect()
}

/// N of a `videoN` device name; `None` for anything else (`video`, `videoX`, `vbi0`).
fn video_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("video")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A V4L2 capture node, described by [`discover`] or [`V4l2Device::probe`] and opened by
/// [`CaptureDevice::open`]. Holds no file descriptor between opens.
pub struct V4l2Device {
    info: CameraInfo,
    /// Where the camera was last seen. A replugged USB camera may come back at another
    /// `/dev/videoN`; [`V4l2Device::locate`] finds it by `identity` and updates this.
    path: Mutex<PathBuf>,
    /// What makes this camera this camera, across unplugs; `None` only for devices made up
    /// by tests, which are opened at their path as they are.
    identity: Option<Identity>,
    /// The directory whose `videoN` nodes are searched for the camera (`/dev`).
    dev_dir: PathBuf,
    /// The `videoN` nodes seen by the last search, so that a search repeats only when the
    /// nodes changed (a lost camera is looked for every few hundred ms).
    last_search: Mutex<Vec<PathBuf>>,
    /// The fourcc the driver listed for each format in `info.modes`: MJPEG comes as `MJPG` or
    /// `JPEG` depending on the driver, and S_FMT must be given back the code it offered.
    fourccs: Vec<(PixelFormat, u32)>,
}

/// Who a capture node belongs to: the same camera after an unplug has the same identity,
/// whatever node number it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    driver: String,
    card: String,
    /// Where the device sits (`usb-0000:01:00.0-1.2`, `platform:vivid-000`).
    bus_info: String,
    /// The USB serial number from sysfs, when the camera has one.
    serial: Option<String>,
}

impl Identity {
    /// Reads the identity of the node at `path`; `None` when it cannot be opened or queried.
    fn read(path: &Path) -> Option<Identity> {
        let file = open_node(path).ok()?;
        let mut cap = sys::Capability::zeroed();
        sys::ioctl(file.as_fd(), sys::VIDIOC_QUERYCAP, &mut cap).ok()?;
        Some(Identity::from_cap(&cap, path))
    }

    fn from_cap(cap: &sys::Capability, path: &Path) -> Identity {
        Identity {
            driver: c_string(&cap.driver),
            card: c_string(&cap.card),
            bus_info: c_string(&cap.bus_info),
            serial: usb_serial(path),
        }
    }

    /// The same camera: same driver and name, and the same serial number where both have
    /// one, otherwise the same place on the bus (two identical webcams without serials are
    /// told apart by their ports).
    fn same_camera(&self, other: &Identity) -> bool {
        self.driver == other.driver
            && self.card == other.card
            && match (&self.serial, &other.serial) {
                (Some(a), Some(b)) => a == b,
                _ => self.bus_info == other.bus_info,
            }
    }
}

/// The USB serial number of the camera behind a `videoN` node, from sysfs (the node's
/// device is a USB interface; its parent, the USB device, has `serial`).
fn usb_serial(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let serial =
        fs::read_to_string(format!("/sys/class/video4linux/{name}/device/../serial")).ok()?;
    let serial = serial.trim();
    (!serial.is_empty()).then(|| serial.to_owned())
}

impl V4l2Device {
    /// Queries one device node and lists its modes.
    ///
    /// Errors: `NoDevice` when the node does not exist, `Unsupported` when it is not a
    /// streaming single-planar capture node with at least one MJPEG, YUYV, NV12 or I420 mode.
    pub fn probe(path: &Path) -> Result<V4l2Device> {
        let device = path.display().to_string();
        let file = open_node(path).ctx(&device)?;
        let mut cap = sys::Capability::zeroed();
        sys::ioctl(file.as_fd(), sys::VIDIOC_QUERYCAP, &mut cap)
            .map_err(|e| setup_error(e, "VIDIOC_QUERYCAP"))
            .ctx(&device)?;
        let driver = c_string(&cap.driver);
        if let Some(reason) = unusable_reason(node_caps(&cap), &driver) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{device} (driver {driver}): {reason}"),
            ));
        }
        let (modes, fourccs) = enumerate_modes(file.as_fd());
        if modes.is_empty() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{device} (driver {driver}): offers no MJPEG, YUYV, NV12 or I420 mode"),
            ));
        }
        let identity = Identity::from_cap(&cap, path);
        Ok(V4l2Device {
            info: CameraInfo {
                device,
                name: identity.card.clone(),
                backend: "v4l2",
                modes,
            },
            path: Mutex::new(path.to_owned()),
            identity: Some(identity),
            dev_dir: path.parent().unwrap_or(Path::new("/dev")).to_owned(),
            last_search: Mutex::new(Vec::new()),
            fourccs,
        })
    }

    fn fourcc(&self, format: PixelFormat) -> Option<u32> {
        self.fourccs
            .iter()
            .find(|(f, _)| *f == format)
            .map(|&(_, code)| code)
    }

    /// The node this camera is at now: where it was last seen if it is still there,
    /// otherwise whichever `videoN` node has its identity (a replug at another number).
    ///
    /// Errors: `NoDevice` while the camera is not plugged in.
    fn locate(&self) -> Result<PathBuf> {
        let current = self.path.lock().expect("path poisoned").clone();
        let Some(identity) = &self.identity else {
            return Ok(current);
        };
        if Identity::read(&current).is_some_and(|id| id.same_camera(identity)) {
            return Ok(current);
        }
        let nodes = video_nodes(&self.dev_dir);
        let mut last = self.last_search.lock().expect("search poisoned");
        if *last != nodes {
            *last = nodes.clone();
            drop(last);
            for node in nodes.iter().filter(|n| **n != current) {
                if Identity::read(node).is_some_and(|id| id.same_camera(identity)) {
                    log::info!(
                        "v4l2: \"{}\" ({}) is now at {}",
                        identity.card,
                        identity.bus_info,
                        node.display()
                    );
                    *self.path.lock().expect("path poisoned") = node.clone();
                    return Ok(node.clone());
                }
            }
        }
        Err(Error::new(
            ErrorKind::NoDevice,
            format!(
                "\"{}\" ({}) is not plugged in (last seen at {})",
                identity.card,
                identity.bus_info,
                current.display()
            ),
        ))
    }
}

impl CaptureDevice for V4l2Device {
    fn info(&self) -> &CameraInfo {
        &self.info
    }

    fn open(&self, request: &ModeRequest) -> Result<Box<dyn CaptureSource>> {
        let device = &self.info.device;
        let Some((mode, fourcc)) = best_mode(&self.info.modes, request)
            .and_then(|mode| Some((mode, self.fourcc(mode.format)?)))
        else {
            let offered: Vec<&str> = self.fourccs.iter().map(|(f, _)| f.name()).collect();
            let wanted: Vec<&str> = request.formats.iter().map(|f| f.name()).collect();
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{device}: none of the formats [{}] is offered (the camera has [{}])",
                    wanted.join(", "),
                    offered.join(", ")
                ),
            ));
        };
        let path = self.locate()?;
        let node = path.display().to_string();
        let source = V4l2Source::start(&path, &node, mode, fourcc).ctx(&node)?;
        Ok(Box::new(source))
    }
}

/// Opens a device node for capture. std adds O_CLOEXEC; O_NONBLOCK makes DQBUF return EAGAIN
/// instead of blocking, so that every wait goes through poll with a timeout.
fn open_node(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| {
            let hint = match err.raw_os_error() {
                Some(libc::EACCES) => " (is the service user in the `video` group?)",
                _ => "",
            };
            Error::io(err, format!("open{hint}"))
        })
}

/// Errors while setting a device up: a request the driver does not implement or rejects is
/// `Unsupported`; a device that went away is `Disconnected`; a busy one is transient I/O.
/// ENOSYS is what qemu-user answers for ioctls it cannot translate, which is how the aarch64
/// tests run off the board.
fn setup_error(err: io::Error, what: impl fmt::Display) -> Error {
    match err.raw_os_error() {
        Some(libc::ENOTTY | libc::EINVAL | libc::ENOSYS) => {
            Error::new(ErrorKind::Unsupported, format!("{what}: {err}"))
        }
        Some(libc::ENODEV | libc::ENXIO | libc::EIO) => {
            Error::new(ErrorKind::Disconnected, format!("{what}: {err}"))
        }
        Some(libc::EBUSY) => Error::new(
            ErrorKind::Io,
            format!("{what}: {err} (is another program using the camera?)"),
        ),
        _ => Error::io(err, what.to_string()),
    }
}

/// A NUL-padded string field of a kernel struct.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_owned()
}

/// A fourcc printed as its four characters (`MJPG`), for messages.
struct FourCc(u32);

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.to_le_bytes() {
            let c = if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            };
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
