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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libc::c_int;

use crate::capture::{
    best_mode, CameraInfo, CaptureDevice, CaptureSource, CapturedFrame, Mode, ModeRequest,
    PixelFormat,
};
use crate::error::{Error, ErrorKind, Result, ResultExt};

use self::layout::{RawFrames, RawLayout};
use crate::v4l2 as sys;
use sys::{Arg, Mmap};

mod layout;

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

/// An open V4L2 stream. Dropping it stops the stream, unmaps the buffers and closes the device.
pub struct V4l2Source {
    /// Device path, for errors and log lines.
    device: String,
    /// The mode the driver accepted, which may differ in size and rate from the one asked for.
    mode: Mode,
    /// Driver buffers mapped read-only, indexed by the driver's buffer index. Dropped before
    /// `file` (fields drop in declaration order).
    buffers: Vec<Mmap>,
    /// Largest driver buffer; every lent frame is at most this long.
    max_frame_bytes: usize,
    /// Layout of raw frames and their repack scratch; `None` for MJPEG.
    raw: Option<RawFrames>,
    /// Set once STREAMON succeeded, so that drop knows to stop the stream.
    streaming: bool,
    /// Frames dequeued but not lent since open (corrupt, truncated); drives rate-limited logs.
    skipped_frames: u64,
    /// The device; closed last, after the stream is off and the buffers are unmapped.
    file: File,
}

impl V4l2Source {
    fn start(path: &Path, device: &str, mode: Mode, fourcc: u32) -> Result<V4l2Source> {
        let file = open_node(path)?;
        let fd = file.as_fd();

        let mut format = sys::Format::zeroed();
        format.type_ = sys::BUF_TYPE_VIDEO_CAPTURE;
        format.fmt.pix.width = mode.width;
        format.fmt.pix.height = mode.height;
        format.fmt.pix.pixelformat = fourcc;
        format.fmt.pix.field = sys::FIELD_NONE;
        sys::ioctl(fd, sys::VIDIOC_S_FMT, &mut format)
            .map_err(|e| setup_error(e, "VIDIOC_S_FMT"))?;
        let pix = format.fmt.pix;
        if pix.pixelformat != fourcc {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the driver answered {} to a request for {}",
                    FourCc(pix.pixelformat),
                    FourCc(fourcc)
                ),
            ));
        }
        if (pix.width, pix.height) != (mode.width, mode.height) {
            log::info!(
                "v4l2: {device}: driver adjusted {}x{} to {}x{}",
                mode.width,
                mode.height,
                pix.width,
                pix.height
            );
        }
        let mut mode = Mode {
            width: pix.width,
            height: pix.height,
            ..mode
        };
        if let Some(fps) = set_frame_rate(fd, device, mode.fps) {
            mode.fps = fps;
        }

        let mut request = sys::RequestBuffers::zeroed();
        request.count = BUFFER_COUNT;
        request.type_ = sys::BUF_TYPE_VIDEO_CAPTURE;
        request.memory = sys::MEMORY_MMAP;
        sys::ioctl(fd, sys::VIDIOC_REQBUFS, &mut request)
            .map_err(|e| setup_error(e, "VIDIOC_REQBUFS"))?;
        if request.count < MIN_BUFFERS {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "the driver granted {} buffer(s), need {MIN_BUFFERS}",
                    request.count
                ),
            ));
        }

        let raw = RawLayout::new(mode.format, mode.width, mode.height, pix.bytesperline)
            .map(RawFrames::new);
        let mut source = V4l2Source {
            device: device.to_owned(),
            mode,
            buffers: Vec::with_capacity(request.count as usize),
            max_frame_bytes: 0,
            raw,
            streaming: false,
            skipped_frames: 0,
            file,
        };
        for index in 0..request.count {
            let mut buf = sys::Buffer::for_index(index);
            sys::ioctl(source.file.as_fd(), sys::VIDIOC_QUERYBUF, &mut buf)
                .map_err(|e| setup_error(e, format!("VIDIOC_QUERYBUF {index}")))?;
            // SAFETY: for MMAP buffers QUERYBUF fills the `offset` member of the union.
            let offset = unsafe { buf.m.offset };
            let map = Mmap::new(source.file.as_fd(), buf.length as usize, offset)
                .map_err(|e| Error::io(e, format!("mmap of buffer {index}")))?;
            if let Some(raw) = &source.raw {
                if map.len < raw.source_bytes {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "driver buffer of {} bytes cannot hold a {}x{} {} frame",
                            map.len,
                            mode.width,
                            mode.height,
                            mode.format.name()
                        ),
                    ));
                }
            }
            source.max_frame_bytes = source.max_frame_bytes.max(map.len);
            source.buffers.push(map);
            queue_buffer(source.file.as_fd(), index).map_err(|e| setup_error(e, "VIDIOC_QBUF"))?;
        }

        let mut buf_type = sys::BUF_TYPE_VIDEO_CAPTURE as c_int;
        sys::ioctl(source.file.as_fd(), sys::VIDIOC_STREAMON, &mut buf_type)
            .map_err(|e| setup_error(e, "VIDIOC_STREAMON"))?;
        source.streaming = true;
        log::info!(
            "v4l2: {device}: streaming {}x{} {} at {} fps, {} buffers of up to {} bytes",
            mode.width,
            mode.height,
            mode.format.name(),
            mode.fps,
            source.buffers.len(),
            source.max_frame_bytes
        );
        Ok(source)
    }

    /// Waits until a buffer can be dequeued; `false` when `deadline` passed first.
    ///
    /// Waits in slices of at most [`GONE_CHECK`]: not every driver wakes a poller when its
    /// device goes away (vivid unbound from its driver does not), so between slices the
    /// node is checked for still being there.
    fn wait_readable(&self, deadline: Option<Instant>) -> Result<bool> {
        loop {
            let remaining = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => GONE_CHECK,
            };
            let slice = remaining.min(GONE_CHECK);
            let timeout_ms = poll_timeout_ms(slice);
            let mut pollfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd that outlives the call.
            let ready = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(self.stream_error(err, "poll"));
            }
            if ready == 0 {
                if self.node_gone() {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        format!("{}: the device node went away (unplugged?)", self.device),
                    ));
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
                continue;
            }
            // videobuf2 reports POLLERR once the queue has failed, which is how an unplugged
            // UVC camera shows up before its node disappears.
            if pollfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                return Err(Error::new(
                    ErrorKind::Disconnected,
                    format!("{}: the device reported an error (unplugged?)", self.device),
                ));
            }
            return Ok(true);
        }
    }

    /// Whether the node we hold open was removed (its inode has no links left, or the path
    /// now names another inode): the device was unplugged or its driver unbound.
    fn node_gone(&self) -> bool {
        let held = match self.file.metadata() {
            Ok(m) => m,
            Err(_) => return true,
        };
        if std::os::unix::fs::MetadataExt::nlink(&held) == 0 {
            return true;
        }
        match fs::metadata(&self.device) {
            Ok(now) => {
                use std::os::unix::fs::MetadataExt;
                (now.dev(), now.ino()) != (held.dev(), held.ino())
            }
            Err(_) => true,
        }
    }

    /// Takes the next filled buffer from the driver; `None` when none is ready yet.
    fn dequeue(&self) -> Result<Option<sys::Buffer>> {
        let mut buf = sys::Buffer::for_index(0);
        match sys::ioctl(self.file.as_fd(), sys::VIDIOC_DQBUF, &mut buf) {
            Ok(()) => Ok(Some(buf)),
            Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
            Err(err) => Err(self.stream_error(err, "VIDIOC_DQBUF")),
        }
    }

    /// Lends one dequeued buffer to `sink`, or says why it was not fit to lend.
    fn lend(
        &mut self,
        buf: &sys::Buffer,
        sink: &mut dyn FnMut(CapturedFrame<'_>),
    ) -> std::result::Result<(), &'static str> {
        let Some(map) = self.buffers.get(buf.index as usize) else {
            return Err("the driver returned an unknown buffer index");
        };
        if buf.flags & sys::BUF_FLAG_ERROR != 0 {
            return Err("the driver flagged the frame as corrupt");
        }
        let used = &map.as_slice()[..(buf.bytesused as usize).min(map.len)];
        let data = match &mut self.raw {
            None if looks_like_jpeg(used) => used,
            None => return Err("MJPEG frame empty or not starting with a JPEG marker"),
            Some(raw) => raw.frame(used).ok_or("raw frame shorter than its format")?,
        };
        sink(CapturedFrame {
            data,
            timestamp_us: frame_timestamp_us(buf.flags, &buf.timestamp, monotonic_now_us),
            sequence: u64::from(buf.sequence),
        });
        Ok(())
    }

    fn note_skipped(&mut self, reason: &str) {
        self.skipped_frames += 1;
        let n = self.skipped_frames;
        // The 1st, 10th, 100th, ...: a camera that keeps sending bad frames must not flood
        // the journal, yet the count stays visible.
        if n == 10u64.pow(n.ilog10()) {
            log::warn!(
                "v4l2: {}: skipped {n} frame(s) since open, latest: {reason}",
                self.device
            );
        }
    }

    /// Errors while streaming: a vanished or failed device means reopen, anything else is I/O.
    fn stream_error(&self, err: io::Error, what: &str) -> Error {
        let kind = match err.raw_os_error() {
            Some(libc::ENODEV | libc::ENXIO | libc::EIO) => ErrorKind::Disconnected,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{}: {what}: {err}", self.device))
    }
}

impl CaptureSource for V4l2Source {
    fn mode(&self) -> Mode {
        self.mode
    }

    fn frames_skipped(&self) -> u64 {
        self.skipped_frames
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    fn next_frame(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(CapturedFrame<'_>),
    ) -> Result<()> {
        // `None` for a timeout too long to add to now, which can only mean "wait forever".
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if !self.wait_readable(deadline)? {
                return Err(Error::new(
                    ErrorKind::NoSignal,
                    format!(
                        "{}: no frame within {} ms",
                        self.device,
                        timeout.as_millis()
                    ),
                ));
            }
            // A wakeup without a finished buffer happens (another reader, a spurious event).
            let Some(buf) = self.dequeue()? else {
                continue;
            };
            let lent = self.lend(&buf, sink);
            queue_buffer(self.file.as_fd(), buf.index)
                .map_err(|e| self.stream_error(e, "VIDIOC_QBUF"))?;
            match lent {
                Ok(()) => return Ok(()),
                // Skipped frames (UVC sends empty and torn MJPEG frames, especially right
                // after STREAMON) are retried until the deadline instead of reported.
                Err(reason) => self.note_skipped(reason),
            }
        }
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        if self.streaming {
            let mut buf_type = sys::BUF_TYPE_VIDEO_CAPTURE as c_int;
            if let Err(err) = sys::ioctl(self.file.as_fd(), sys::VIDIOC_STREAMOFF, &mut buf_type) {
                // An unplugged device cannot be stopped and needs no stopping.
                log::debug!("v4l2: {}: VIDIOC_STREAMOFF: {err}", self.device);
            }
        }
        if self.skipped_frames > 0 {
            log::info!(
                "v4l2: {}: {} frame(s) skipped while open",
                self.device,
                self.skipped_frames
            );
        }
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

fn queue_buffer(fd: BorrowedFd<'_>, index: u32) -> io::Result<()> {
    let mut buf = sys::Buffer::for_index(index);
    sys::ioctl(fd, sys::VIDIOC_QBUF, &mut buf)
}

/// Asks for `fps` and returns the rate the driver settled on, if it says.
fn set_frame_rate(fd: BorrowedFd<'_>, device: &str, fps: u32) -> Option<u32> {
    if fps == 0 {
        return None;
    }
    let mut parm = sys::StreamParm::zeroed();
    parm.type_ = sys::BUF_TYPE_VIDEO_CAPTURE;
    parm.capture.timeperframe = sys::Fract {
        numerator: 1,
        denominator: fps,
    };
    if let Err(err) = sys::ioctl(fd, sys::VIDIOC_S_PARM, &mut parm) {
        // Some drivers have a fixed rate; the frames still carry their own times.
        log::debug!("v4l2: {device}: VIDIOC_S_PARM {fps} fps: {err}");
        return None;
    }
    if parm.capture.capability & sys::CAP_TIMEPERFRAME == 0 {
        return None;
    }
    let interval = parm.capture.timeperframe;
    fps_from_interval(interval.numerator, interval.denominator)
}

/// The capabilities of this node: `device_caps` when the driver fills it, since
/// `capabilities` describes the whole physical device (all of a UVC camera's nodes).
fn node_caps(cap: &sys::Capability) -> u32 {
    if cap.capabilities & sys::CAP_DEVICE_CAPS != 0 {
        cap.device_caps
    } else {
        cap.capabilities
    }
}

/// Why a node cannot be streamed from as a camera, or `None` when it can.
fn unusable_reason(caps: u32, driver: &str) -> Option<&'static str> {
    if caps & (sys::CAP_VIDEO_M2M | sys::CAP_VIDEO_M2M_MPLANE) != 0 {
        return Some("memory-to-memory device (codec or scaler), not a camera");
    }
    if caps & sys::CAP_VIDEO_CAPTURE == 0 {
        return Some("not a single-planar video capture node (metadata, output or multi-planar)");
    }
    if caps & sys::CAP_STREAMING == 0 {
        return Some("no streaming I/O");
    }
    if HELPER_DRIVERS.contains(&driver) {
        return Some("ISP or codec helper node, not a camera");
    }
    if LIBCAMERA_DRIVERS.contains(&driver) {
        return Some("CSI receiver driven by libcamera (use the libcamera source)");
    }
    None
}

/// Every mode the node offers in a supported format, and the fourcc behind each format.
fn enumerate_modes(fd: BorrowedFd<'_>) -> (Vec<Mode>, Vec<(PixelFormat, u32)>) {
    let mut modes = Vec::new();
    let mut fourccs: Vec<(PixelFormat, u32)> = Vec::new();
    for index in 0..MAX_ENUM_INDEX {
        let mut desc = sys::FmtDesc::zeroed();
        desc.index = index;
        desc.type_ = sys::BUF_TYPE_VIDEO_CAPTURE;
        // EINVAL past the last format ends the list.
        if sys::ioctl(fd, sys::VIDIOC_ENUM_FMT, &mut desc).is_err() {
            break;
        }
        let Some(format) = pixel_format_from_fourcc(desc.pixelformat) else {
            continue;
        };
        // A driver listing both MJPG and JPEG gets the one it listed first.
        if fourccs.iter().any(|(f, _)| *f == format) {
            continue;
        }
        fourccs.push((format, desc.pixelformat));
        for (width, height) in frame_sizes(fd, desc.pixelformat) {
            for fps in frame_rates(fd, desc.pixelformat, width, height) {
                let mode = Mode {
                    width,
                    height,
                    fps,
                    format,
                };
                if !modes.contains(&mode) {
                    modes.push(mode);
                }
            }
        }
    }
    fourccs.retain(|(format, _)| modes.iter().any(|m| m.format == *format));
    (modes, fourccs)
}

fn frame_sizes(fd: BorrowedFd<'_>, fourcc: u32) -> Vec<(u32, u32)> {
    let mut sizes = Vec::new();
    for index in 0..MAX_ENUM_INDEX {
        let mut size = sys::FrmSizeEnum::zeroed();
        size.index = index;
        size.pixel_format = fourcc;
        if sys::ioctl(fd, sys::VIDIOC_ENUM_FRAMESIZES, &mut size).is_err() {
            break;
        }
        match size.type_ {
            sys::FRMSIZE_TYPE_DISCRETE => {
                let wh = (size.size[0], size.size[1]);
                if wh.0 > 0 && wh.1 > 0 && !sizes.contains(&wh) {
                    sizes.push(wh);
                }
            }
            // A range is described once, at index 0.
            sys::FRMSIZE_TYPE_CONTINUOUS | sys::FRMSIZE_TYPE_STEPWISE => {
                sizes.extend(sizes_within(&size.size));
                break;
            }
            _ => break,
        }
    }
    sizes
}

fn frame_rates(fd: BorrowedFd<'_>, fourcc: u32, width: u32, height: u32) -> Vec<u32> {
    let mut rates = Vec::new();
    for index in 0..MAX_ENUM_INDEX {
        let mut ival = sys::FrmIvalEnum::zeroed();
        ival.index = index;
        ival.pixel_format = fourcc;
        ival.width = width;
        ival.height = height;
        if sys::ioctl(fd, sys::VIDIOC_ENUM_FRAMEINTERVALS, &mut ival).is_err() {
            break;
        }
        match ival.type_ {
            sys::FRMIVAL_TYPE_DISCRETE => {
                if let Some(fps) = fps_from_interval(ival.ival[0], ival.ival[1]) {
                    if !rates.contains(&fps) {
                        rates.push(fps);
                    }
                }
            }
            sys::FRMIVAL_TYPE_CONTINUOUS | sys::FRMIVAL_TYPE_STEPWISE => {
                let [min_num, min_den, max_num, max_den, ..] = ival.ival;
                rates.extend(rates_within((min_num, min_den), (max_num, max_den)));
                break;
            }
            _ => break,
        }
    }
    if rates.is_empty() {
        rates.push(DEFAULT_FPS);
    }
    rates
}

/// The common sizes inside a stepwise range `[min_w, max_w, step_w, min_h, max_h, step_h]`
/// (the layout of `struct v4l2_frmsize_stepwise`); the largest size when none fits.
fn sizes_within(range: &[u32; 6]) -> Vec<(u32, u32)> {
    let [min_w, max_w, step_w, min_h, max_h, step_h] = *range;
    let fits = |v: u32, min: u32, max: u32, step: u32| {
        (min..=max).contains(&v) && (step <= 1 || (v - min).is_multiple_of(step))
    };
    let mut sizes: Vec<(u32, u32)> = COMMON_SIZES
        .into_iter()
        .filter(|&(w, h)| fits(w, min_w, max_w, step_w) && fits(h, min_h, max_h, step_h))
        .collect();
    if sizes.is_empty() && max_w > 0 && max_h > 0 {
        sizes.push((max_w, max_h));
    }
    sizes
}

/// The common rates whose frame interval lies between `min` and `max` (each a
/// numerator/denominator in seconds); the fastest rate when none does.
fn rates_within(min: (u32, u32), max: (u32, u32)) -> Vec<u32> {
    let (min_num, min_den) = (u64::from(min.0), u64::from(min.1));
    let (max_num, max_den) = (u64::from(max.0), u64::from(max.1));
    // 1/fps within [min_num/min_den, max_num/max_den], cross-multiplied to stay in integers.
    let mut rates: Vec<u32> = COMMON_RATES
        .into_iter()
        .filter(|&fps| {
            let fps = u64::from(fps);
            min_num * fps <= min_den && max_den <= max_num * fps
        })
        .collect();
    if rates.is_empty() {
        rates.extend(fps_from_interval(min.0, min.1));
    }
    rates
}

/// Frames per second for a frame interval of `num/den` seconds, rounded to the nearest
/// integer (30000/1001 s⁻¹ is 30); `None` when it rounds to 0 or the interval is invalid.
fn fps_from_interval(num: u32, den: u32) -> Option<u32> {
    if num == 0 {
        return None;
    }
    let (num, den) = (u64::from(num), u64::from(den));
    let fps = (2 * den + num) / (2 * num);
    u32::try_from(fps).ok().filter(|&fps| fps > 0)
}

fn pixel_format_from_fourcc(fourcc: u32) -> Option<PixelFormat> {
    match fourcc {
        sys::PIX_FMT_MJPEG | sys::PIX_FMT_JPEG => Some(PixelFormat::Mjpeg),
        sys::PIX_FMT_YUYV => Some(PixelFormat::Yuyv),
        sys::PIX_FMT_NV12 => Some(PixelFormat::Nv12),
        sys::PIX_FMT_YUV420 => Some(PixelFormat::I420),
        _ => None,
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

/// Whether an MJPEG buffer holds something that can be a whole JPEG image: it starts with
/// SOI and has an EOI near its end (cameras pad some frames after EOI). UVC cameras deliver
/// empty buffers and frames cut short by USB errors, which decoders downstream choke on;
/// damage inside a frame is found by the decoder, which counts it too.
fn looks_like_jpeg(data: &[u8]) -> bool {
    const EOI_WITHIN: usize = 1024;
    let tail = &data[data.len().saturating_sub(EOI_WITHIN)..];
    data.len() >= 4 && data.starts_with(&[0xFF, 0xD8]) && tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The frame's capture time in µs on CLOCK_MONOTONIC: the driver's timestamp when the buffer
/// flags say it is on that clock, otherwise `now()` (the dequeue time).
fn frame_timestamp_us(flags: u32, tv: &libc::timeval, now: impl FnOnce() -> u64) -> u64 {
    let driver_time = (flags & sys::BUF_FLAG_TIMESTAMP_MASK == sys::BUF_FLAG_TIMESTAMP_MONOTONIC)
        .then(|| {
            let secs = u64::try_from(tv.tv_sec).ok()?;
            let micros = u64::try_from(tv.tv_usec).ok()?;
            secs.checked_mul(1_000_000)?.checked_add(micros)
        })
        .flatten()
        // Zero is "not filled in", never a real capture time.
        .filter(|&us| us != 0);
    driver_time.unwrap_or_else(now)
}

fn monotonic_now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000 + nanos / 1_000
}

/// A poll timeout in whole milliseconds, rounded up so that a sub-millisecond remainder
/// waits instead of spinning, and clamped to what poll accepts.
fn poll_timeout_ms(remaining: Duration) -> c_int {
    let ms = remaining.as_nanos().div_ceil(1_000_000);
    c_int::try_from(ms).unwrap_or(c_int::MAX)
}

#[cfg(test)]
mod tests;
