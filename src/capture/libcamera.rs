//! Native libcamera capture (cargo feature `libcamera`): CSI camera modules on Raspberry Pi
//! OS, and any other camera libcamera drives. Every libcamera type and all of this
//! backend's unsafe code stay in this file; the rest of benchcam sees only
//! [`CaptureDevice`] and [`CaptureSource`].
//!
//! Lifecycle:
//! - One process-wide `CameraManager`, started on first use and never stopped (libcamera
//!   allows one per process; cameras borrow from it for as long as they live).
//! - `open` acquires and configures the camera (one stream, NV12 or YUV420), allocates its
//!   frame buffers once — libcamera's allocator (dma-buf heaps, as on Raspberry Pi OS), or
//!   memfd buffers imported when the machine has no dma-buf provider (the `virtual`
//!   pipeline on a PC) — maps each buffer once, and queues one request per buffer.
//! - libcamera completes requests on its own thread. The completion callback only moves
//!   the request into a bounded channel whose capacity is the number of requests, so it
//!   never blocks and never fails. `next_frame` takes it from there, lends the frame
//!   (repacked if the rows are padded), and requeues the same request (`reuse`): steady
//!   state allocates nothing.
//! - Capture time is the request's `SensorTimestamp` (CLOCK_MONOTONIC, ns, the clock GPIO
//!   edge events use); the frame's sequence number carries the pipeline's drops.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TrySendError};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use libcamera::camera::{ActiveCamera, Camera};
use libcamera::camera_manager::CameraManager;
use libcamera::control::ControlList;
use libcamera::controls::{self, ControlId};
use libcamera::framebuffer::{
    AsFrameBuffer, FrameBufferPlane, FrameMetadataStatus, OwnedFrameBuffer,
};
use libcamera::framebuffer_allocator::{FrameBuffer, FrameBufferAllocator};
use libcamera::geometry::Size;
use libcamera::pixel_format::PixelFormat as LcFormat;
use libcamera::properties;
use libcamera::request::{Request, RequestStatus, ReuseFlag};
use libcamera::stream::{Stream, StreamRole};

use super::{
    best_mode, CameraInfo, CaptureDevice, CaptureSource, CapturedFrame, Mode, ModeRequest,
    PixelFormat,
};
use crate::config::{CameraConfig, Exposure};
use crate::error::{Error, ErrorKind, Result};

/// libcamera's YUV420 (planar, `YU12`) and NV12 pixel formats, the two benchcam takes.
const LC_YUV420: LcFormat = LcFormat::new(u32::from_le_bytes(*b"YU12"), 0);
const LC_NV12: LcFormat = LcFormat::new(u32::from_le_bytes(*b"NV12"), 0);

/// Sizes offered when a camera reports a continuous size range (an ISP that scales)
/// instead of a list.
const COMMON_SIZES: [(u32, u32); 6] = [
    (640, 480),
    (1280, 720),
    (1280, 960),
    (1456, 1088),
    (1920, 1080),
    (2304, 1296),
];

/// The sensor controls from `[camera]` that libcamera cameras apply at start.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorControls {
    pub exposure: Exposure,
    /// 0 = automatic.
    pub analogue_gain: f32,
    /// One of `config::AWB_MODES`.
    pub awb_mode: String,
}

impl SensorControls {
    pub fn from_config(camera: &CameraConfig) -> SensorControls {
        SensorControls {
            exposure: camera.exposure,
            analogue_gain: camera.analogue_gain,
            awb_mode: camera.awb_mode.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The camera manager

/// The process's one libcamera `CameraManager`.
struct Manager(CameraManager);

// SAFETY: libcamera's CameraManager may be used from any thread (it locks its camera list
// itself); benchcam reaches it only through the mutex in `MANAGER` and never drops it.
unsafe impl Send for Manager {}

static MANAGER: OnceLock<std::result::Result<Mutex<Manager>, String>> = OnceLock::new();

fn manager() -> Result<MutexGuard<'static, Manager>> {
    let manager = MANAGER.get_or_init(|| {
        CameraManager::new()
            .map(|m| Mutex::new(Manager(m)))
            .map_err(|e| e.to_string())
    });
    match manager {
        Ok(m) => Ok(m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())),
        Err(e) => Err(Error::new(
            ErrorKind::NoDevice,
            format!("libcamera: cannot start the camera manager: {e}"),
        )),
    }
}

/// The camera with libcamera id `id`, if it is (still) there. `'static` is sound because
/// the manager it borrows from is never dropped.
fn camera(id: &str) -> Result<Camera<'static>> {
    manager()?.0.get(id).ok_or_else(|| {
        Error::new(
            ErrorKind::NoDevice,
            format!("libcamera camera {id} is not present"),
        )
    })
}

// ---------------------------------------------------------------------------------------
// Discovery

/// A libcamera camera found by discovery.
pub struct LibcameraDevice {
    info: CameraInfo,
    /// Device numbers (dev_t) of the kernel nodes libcamera uses for this camera, so
    /// discovery can tell a UVC camera V4L2 already lists from a CSI one.
    system_devices: Vec<u64>,
    controls: SensorControls,
}

/// Every camera libcamera knows, with its modes. Never fails: a machine without libcamera
/// cameras (or whose manager does not start) simply has none.
pub fn discover(controls: &SensorControls) -> Vec<LibcameraDevice> {
    let ids: Vec<String> = match manager() {
        Ok(manager) => {
            let list = manager.0.cameras();
            (0..list.len())
                .filter_map(|i| list.get(i).map(|c| c.id().to_owned()))
                .collect()
        }
        Err(e) => {
            log::warn!("{e}");
            return Vec::new();
        }
    };
    ids.iter()
        .filter_map(|id| match LibcameraDevice::probe(id, controls) {
            Ok(device) => Some(device),
            Err(e) => {
                log::warn!("libcamera: skipping camera {id}: {e}");
                None
            }
        })
        .collect()
}

impl LibcameraDevice {
    /// Describes camera `id`: model, stream modes (each checked by libcamera's validate),
    /// and the sensor's own modes (logged).
    pub fn probe(id: &str, controls: &SensorControls) -> Result<LibcameraDevice> {
        let cam = camera(id)?;
        let props = cam.properties();
        let model = props
            .get::<properties::Model>()
            .map(|m| m.0)
            .unwrap_or_else(|_| id.to_owned());
        let system_devices = props
            .get::<properties::SystemDevices>()
            .map(|d| d.0.into_iter().map(|n| n as u64).collect())
            .unwrap_or_default();
        let modes = stream_modes(&cam);
        if modes.is_empty() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "offers neither NV12 nor YUV420",
            ));
        }
        let sensor = sensor_modes(&cam);
        if !sensor.is_empty() {
            log::info!(
                "libcamera: {id} ({model}) sensor modes: {}",
                sensor.join(", ")
            );
        }
        Ok(LibcameraDevice {
            info: CameraInfo {
                device: id.to_owned(),
                name: model,
                backend: "libcamera",
                modes,
            },
            system_devices,
            controls: controls.clone(),
        })
    }

    /// Device numbers of the kernel nodes behind this camera (libcamera's SystemDevices).
    pub fn system_devices(&self) -> &[u64] {
        &self.system_devices
    }
}

impl CaptureDevice for LibcameraDevice {
    fn info(&self) -> &CameraInfo {
        &self.info
    }

    fn open(&self, request: &ModeRequest) -> Result<Box<dyn CaptureSource>> {
        let mut mode = best_mode(&self.info.modes, request).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "libcamera camera {} offers none of the formats {:?}",
                    self.info.device, request.formats
                ),
            )
        })?;
        // A mode's fps is the camera's maximum; run at the requested rate below it.
        mode.fps = request.fps.clamp(1, mode.fps.max(1));
        let source = LibcameraSource::open(&self.info.device, mode, &self.controls)?;
        Ok(Box::new(source))
    }
}

fn to_benchcam(format: LcFormat) -> Option<PixelFormat> {
    if format == LC_NV12 {
        Some(PixelFormat::Nv12)
    } else if format == LC_YUV420 {
        Some(PixelFormat::I420)
    } else {
        None
    }
}

fn to_libcamera(format: PixelFormat) -> Option<LcFormat> {
    match format {
        PixelFormat::Nv12 => Some(LC_NV12),
        PixelFormat::I420 => Some(LC_YUV420),
        PixelFormat::Yuyv | PixelFormat::Mjpeg => None,
    }
}

/// The highest frame rate FrameDurationLimits allows (its minimum duration), if listed.
fn max_fps(cam: &Camera<'_>) -> Option<u32> {
    let info = cam
        .controls()
        .find(ControlId::FrameDurationLimits as u32)
        .ok()?;
    let min_us = i64::try_from(info.min()).ok()?;
    (min_us > 0).then(|| (1_000_000 / min_us).clamp(1, 240) as u32)
}

/// NV12 and YUV420 modes of the camera's video stream. Sizes come from the stream formats
/// (or common sizes inside a continuous range) and each is kept only if libcamera's
/// validate accepts it unchanged: pipelines list sizes they then adjust (`virtual` does).
fn stream_modes(cam: &Camera<'_>) -> Vec<Mode> {
    let fps = max_fps(cam).unwrap_or(30);
    let Some(config) = cam.generate_configuration(&[StreamRole::VideoRecording]) else {
        return Vec::new();
    };
    let Some(stream) = config.get(0) else {
        return Vec::new();
    };
    let formats = stream.formats();
    let mut modes = Vec::new();
    for lc_format in formats.pixel_formats().into_iter() {
        let Some(format) = to_benchcam(lc_format) else {
            continue;
        };
        let mut sizes = formats.sizes(lc_format);
        if sizes.is_empty() {
            let range = formats.range(lc_format);
            sizes = COMMON_SIZES
                .iter()
                .map(|&(width, height)| Size { width, height })
                .filter(|s| range.contains(*s))
                .collect();
            sizes.push(range.max);
        }
        for size in sizes {
            let duplicate = modes.iter().any(|m: &Mode| {
                m.format == format && m.width == size.width && m.height == size.height
            });
            if !duplicate && size.width % 2 == 0 && validates_unchanged(cam, lc_format, size) {
                modes.push(Mode {
                    width: size.width,
                    height: size.height,
                    fps,
                    format,
                });
            }
        }
    }
    modes
}

fn validates_unchanged(cam: &Camera<'_>, format: LcFormat, size: Size) -> bool {
    let Some(mut config) = cam.generate_configuration(&[StreamRole::VideoRecording]) else {
        return false;
    };
    if let Some(mut stream) = config.get_mut(0) {
        stream.set_pixel_format(format);
        stream.set_size(size);
    }
    if config.validate().is_invalid() {
        return false;
    }
    config.get(0).is_some_and(|s| {
        let got = s.get_size();
        s.get_pixel_format() == format && (got.width, got.height) == (size.width, size.height)
    })
}

/// The sensor's own modes (its raw stream's formats and sizes), for `benchcam probe`.
fn sensor_modes(cam: &Camera<'_>) -> Vec<String> {
    let Some(config) = cam.generate_configuration(&[StreamRole::Raw]) else {
        return Vec::new();
    };
    let Some(stream) = config.get(0) else {
        return Vec::new();
    };
    let formats = stream.formats();
    let mut out = Vec::new();
    for format in formats.pixel_formats().into_iter() {
        for size in formats.sizes(format) {
            out.push(format!("{}x{} {format:?}", size.width, size.height));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Capture

/// What the libcamera thread hands to the capture thread.
enum Event {
    Completed(Request),
    Disconnected,
}

/// One of our frame buffers before it is attached to its request.
enum Buffer {
    /// Exported by the pipeline (FrameBufferAllocator; dma-buf heaps).
    Allocated(FrameBuffer),
    /// A memfd of ours, imported (machines without a dma-buf provider).
    Imported(OwnedFrameBuffer),
}

impl Buffer {
    fn as_frame_buffer(&self) -> &dyn AsFrameBuffer {
        match self {
            Buffer::Allocated(b) => b,
            Buffer::Imported(b) => b,
        }
    }
}

/// One plane of a format: bytes per packed row, rows, bytes per row in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PlaneShape {
    row_bytes: usize,
    rows: usize,
    stride: usize,
}

/// The planes of `format` at `width`x`height` with a luma stride of `stride` bytes
/// (libcamera's convention: YUV420's chroma rows are half the luma stride, NV12's
/// interleaved chroma rows the full stride).
fn plane_shapes(
    format: PixelFormat,
    width: usize,
    height: usize,
    stride: usize,
) -> Vec<PlaneShape> {
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let luma = PlaneShape {
        row_bytes: width,
        rows: height,
        stride,
    };
    match format {
        PixelFormat::Nv12 => vec![
            luma,
            PlaneShape {
                row_bytes: cw * 2,
                rows: ch,
                stride,
            },
        ],
        PixelFormat::I420 => {
            let chroma = PlaneShape {
                row_bytes: cw,
                rows: ch,
                stride: stride.div_ceil(2),
            };
            vec![luma, chroma, chroma]
        }
        PixelFormat::Yuyv | PixelFormat::Mjpeg => unreachable!("not a libcamera format here"),
    }
}

/// Bytes of a plane in a buffer: every row but the last at full stride.
fn plane_bytes(shape: &PlaneShape) -> usize {
    if shape.rows == 0 {
        0
    } else {
        (shape.rows - 1) * shape.stride + shape.row_bytes
    }
}

/// One read-only shared mapping of a buffer's file; unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: i32, len: usize) -> std::io::Result<Mapping> {
        // SAFETY: mapping `len` bytes of a file we hold open; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned a non-null address"),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped, once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A frame buffer as we read it: its mappings and where each plane starts in them.
struct MappedFrame {
    _maps: Vec<Mapping>,
    /// Start of each plane (Y, then chroma) inside `_maps`, with its readable length.
    planes: Vec<(NonNull<u8>, usize)>,
}

impl MappedFrame {
    /// Maps `buffer`'s planes once per underlying file (planes often share one buffer at
    /// different offsets). Formats with more planes than the buffer lists are taken as
    /// contiguous after the last listed plane, as single-plane buffers lay them out.
    fn map(buffer: &dyn AsFrameBuffer, shapes: &[PlaneShape]) -> Result<MappedFrame> {
        let planes = buffer.planes();
        let listed: Vec<(i32, usize, usize)> = planes
            .into_iter()
            .map(|p| (p.fd(), p.offset().unwrap_or(0), p.len()))
            .collect();
        if listed.is_empty() {
            return Err(Error::new(ErrorKind::Io, "libcamera buffer has no planes"));
        }
        // One mapping per (device, inode): dup'd fds of one memfd or dma-buf share it.
        let mut files: Vec<((u64, u64), i32, usize)> = Vec::new();
        for &(fd, offset, len) in &listed {
            let key = file_key(fd).map_err(|e| Error::io(e, "fstat of a libcamera buffer"))?;
            match files.iter_mut().find(|f| f.0 == key) {
                Some(f) => f.2 = f.2.max(offset + len),
                None => files.push((key, fd, offset + len)),
            }
        }
        let mut maps = Vec::with_capacity(files.len());
        for &(_, fd, len) in &files {
            maps.push(
                Mapping::new(fd, len).map_err(|e| Error::io(e, "mmap of a libcamera buffer"))?,
            );
        }
        let mut out = Vec::with_capacity(shapes.len());
        for (i, shape) in shapes.iter().enumerate() {
            let (ptr, available) = match listed.get(i) {
                Some(&(fd, offset, len)) => {
                    let key = file_key(fd).map_err(|e| Error::io(e, "fstat"))?;
                    let m = files.iter().position(|f| f.0 == key).expect("mapped above");
                    // SAFETY: offset + len <= the mapping's length by construction.
                    (unsafe { maps[m].ptr.add(offset) }, len)
                }
                None => {
                    let &(prev_ptr, prev_len): &(NonNull<u8>, usize) =
                        out.last().expect("plane 0 is always listed");
                    let prev_shape = &shapes[i - 1];
                    let used = prev_shape.stride * prev_shape.rows;
                    if prev_len < used {
                        return Err(Error::new(
                            ErrorKind::Unsupported,
                            format!("libcamera buffer plane {} too small for its format", i - 1),
                        ));
                    }
                    // SAFETY: stays inside the previous plane's range, checked above.
                    (unsafe { prev_ptr.add(used) }, prev_len - used)
                }
            };
            if available < plane_bytes(shape) {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "libcamera buffer plane {i} has {available} bytes, the format needs {}",
                        plane_bytes(shape)
                    ),
                ));
            }
            out.push((ptr, available));
        }
        Ok(MappedFrame {
            _maps: maps,
            planes: out,
        })
    }

    /// The whole frame as one packed slice, when the buffer already holds it that way
    /// (no row padding, planes back to back).
    fn packed(&self, shapes: &[PlaneShape]) -> Option<&[u8]> {
        let base = self.planes[0].0.as_ptr() as usize;
        let mut offset = 0;
        for (shape, &(ptr, _)) in shapes.iter().zip(&self.planes) {
            if shape.stride != shape.row_bytes || ptr.as_ptr() as usize != base + offset {
                return None;
            }
            offset += shape.row_bytes * shape.rows;
        }
        // SAFETY: each plane's rows were checked to lie inside its mapping, and the planes
        // are contiguous in one mapping, so [base, base + offset) is mapped.
        Some(unsafe { std::slice::from_raw_parts(self.planes[0].0.as_ptr(), offset) })
    }

    /// Copies the frame's rows, without padding, into `out` (the packed frame size).
    fn repack(&self, shapes: &[PlaneShape], out: &mut [u8]) {
        let mut dst = 0;
        for (shape, &(ptr, len)) in shapes.iter().zip(&self.planes) {
            // SAFETY: `len` readable bytes start at `ptr` (checked in `map`).
            let src = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) };
            for row in 0..shape.rows {
                let s = row * shape.stride;
                out[dst..dst + shape.row_bytes].copy_from_slice(&src[s..s + shape.row_bytes]);
                dst += shape.row_bytes;
            }
        }
    }
}

fn file_key(fd: i32) -> std::io::Result<(u64, u64)> {
    // SAFETY: fstat writes into the zeroed struct; the result is checked.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((st.st_dev, st.st_ino))
    }
}

fn memfd(bytes: usize) -> std::io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name and flags; the fd is checked and then owned.
    unsafe {
        let fd = libc::memfd_create(c"benchcam-libcamera".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        if libc::ftruncate(fd.as_raw_fd(), bytes as libc::off_t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// A memfd frame buffer holding the planes back to back (each at the configured stride).
fn import_buffer(shapes: &[PlaneShape], cookie: u64) -> Result<Buffer> {
    let sizes: Vec<usize> = shapes.iter().map(|s| s.stride * s.rows).collect();
    let total: usize = sizes.iter().sum();
    let fd = memfd(total).map_err(|e| Error::io(e, "memfd for a libcamera buffer"))?;
    let mut planes = Vec::with_capacity(shapes.len());
    let mut offset = 0;
    for size in sizes {
        let plane_fd = fd.try_clone().map_err(|e| Error::io(e, "dup of a memfd"))?;
        planes.push(FrameBufferPlane {
            fd: plane_fd,
            offset: offset as u32,
            length: size as u32,
        });
        offset += size;
    }
    let buffer = OwnedFrameBuffer::new(planes, Some(cookie))
        .map_err(|e| Error::io(e, "importing a memfd buffer into libcamera"))?;
    Ok(Buffer::Imported(buffer))
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Keeps frames at the configured rate when the pipeline does not.
///
/// Real pipelines pace frames by the sensor (FrameDurationLimits). Some do not: libcamera's
/// `virtual` pipeline completes each request the moment it is queued, however fast, and
/// stamps it with the time it was queued. Two rules, which never trigger on a camera that
/// runs at the asked rate:
/// - a frame less than half a frame interval after the last delivered one is skipped
///   (requeued, not delivered, not counted as a drop);
/// - after three such frames in a row the pipeline is taken as unpaced: from then on
///   completed requests are held and queued on a fixed grid of one per frame interval, as
///   a sensor would expose them, one at a time (a pipeline that stamps frames when it
///   gets to them would otherwise stamp a backlog all at once after a stall). Frames of
///   requests queued before the switch are skipped. A grid slot missed entirely (a stall
///   longer than a frame) is a lost frame and counted as a drop.
struct Pacer {
    interval_ns: u64,
    last_delivered_ns: Option<u64>,
    fast_in_a_row: u32,
    unpaced: bool,
    /// Monotonic time of the next grid slot.
    next_queue_ns: u64,
}

impl Pacer {
    fn new(fps: u32) -> Pacer {
        Pacer {
            interval_ns: 1_000_000_000 / u64::from(fps.max(1)),
            last_delivered_ns: None,
            fast_in_a_row: 0,
            unpaced: false,
            next_queue_ns: 0,
        }
    }

    /// Whether the frame captured at `ts_ns` is to be skipped.
    fn skip(&mut self, ts_ns: u64, now_ns: u64) -> bool {
        if let Some(last) = self.last_delivered_ns {
            if !self.unpaced && ts_ns < last + self.interval_ns / 2 {
                self.fast_in_a_row += 1;
                if self.fast_in_a_row >= 3 {
                    self.unpaced = true;
                    self.next_queue_ns =
                        last.max(now_ns.saturating_sub(self.interval_ns)) + self.interval_ns;
                }
                return true;
            }
        }
        self.fast_in_a_row = 0;
        self.last_delivered_ns = Some(ts_ns);
        false
    }

    /// If the current grid slot has come, takes it and returns how many earlier slots were
    /// missed; `None` while the slot is still ahead.
    fn take_slot(&mut self, now_ns: u64) -> Option<u64> {
        if now_ns < self.next_queue_ns {
            return None;
        }
        let missed = (now_ns - self.next_queue_ns) / self.interval_ns;
        self.next_queue_ns += (missed + 1) * self.interval_ns;
        Some(missed)
    }
}

/// An open, streaming libcamera camera.
pub struct LibcameraSource {
    id: String,
    camera: ActiveCamera<'static>,
    stream: Stream,
    mode: Mode,
    events: Receiver<Event>,
    /// Mapped frame buffers, indexed by the cookie of the request that carries each.
    frames: Vec<MappedFrame>,
    shapes: Vec<PlaneShape>,
    packed_bytes: usize,
    /// One packed frame, allocated at open, used only when the buffers pad their rows.
    scratch: Vec<u8>,
    /// Completed requests waiting to be queued again (only while pacing an unpaced
    /// pipeline), and requests libcamera refused (kept to be freed in order on drop).
    held: VecDeque<Request>,
    refused: Vec<Request>,
    pacer: Pacer,
    /// Requests queued and not yet back.
    in_flight: usize,
    /// Per request cookie: queued by the pacer (only those count once it paces).
    paced: Vec<bool>,
    /// Sequence numbers: the pipeline's 32-bit counter extended to 64 bits, minus the
    /// frames the pacer skipped on purpose (not drops), plus grid slots it missed (drops).
    last_raw_sequence: Option<u32>,
    sequence: u64,
    skipped: u64,
    missed: u64,
}

// SAFETY: libcamera's Camera, Request and FrameBuffer may be used from any thread as long
// as calls do not race; a source is owned and used by one capture thread at a time. The
// raw pointers in `frames` point into mappings owned by the same source.
unsafe impl Send for LibcameraSource {}

impl LibcameraSource {
    fn open(id: &str, mode: Mode, controls: &SensorControls) -> Result<LibcameraSource> {
        let lc_format = to_libcamera(mode.format).expect("modes hold only NV12 and YUV420");
        let cam = camera(id)?;
        let mut active = cam.acquire().map_err(|e| {
            let kind = if e.raw_os_error() == Some(libc::ENODEV) {
                ErrorKind::NoDevice
            } else {
                ErrorKind::Io
            };
            Error::new(
                kind,
                format!("acquiring libcamera camera {id}: {e} (in use by another program?)"),
            )
        })?;
        let mut config = active
            .generate_configuration(&[StreamRole::VideoRecording])
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unsupported,
                    format!("libcamera camera {id} has no video stream"),
                )
            })?;
        {
            let mut stream = config
                .get_mut(0)
                .expect("one role asked, one stream configuration");
            stream.set_pixel_format(lc_format);
            stream.set_size(Size {
                width: mode.width,
                height: mode.height,
            });
        }
        if config.validate().is_invalid() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "libcamera camera {id} refuses {}x{} {}",
                    mode.width,
                    mode.height,
                    mode.format.name()
                ),
            ));
        }
        let (stride, got_format, got_size) = {
            let s = config
                .get(0)
                .expect("validated configuration has its stream");
            (s.get_stride() as usize, s.get_pixel_format(), s.get_size())
        };
        if got_format != lc_format || got_size.width != mode.width || got_size.height != mode.height
        {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "libcamera camera {id} adjusted {}x{} {} to {}x{} {got_format:?}",
                    mode.width,
                    mode.height,
                    mode.format.name(),
                    got_size.width,
                    got_size.height
                ),
            ));
        }
        active
            .configure(&mut config)
            .map_err(|e| Error::io(e, format!("configuring libcamera camera {id}")))?;
        let stream_config = config.get(0).expect("configured stream");
        let stream = stream_config
            .stream()
            .ok_or_else(|| Error::new(ErrorKind::Io, "configured stream has no Stream"))?;
        let buffer_count = (stream_config.get_buffer_count() as usize).clamp(2, 16);
        let (width, height) = (mode.width as usize, mode.height as usize);
        let shapes = plane_shapes(mode.format, width, height, stride.max(width));
        let packed_bytes = mode
            .format
            .raw_frame_bytes(mode.width, mode.height)
            .expect("raw format");

        // Frame buffers, once: exported by the pipeline where it can, else imported memfds.
        let mut buffers: Vec<Buffer> = match FrameBufferAllocator::new(&active).alloc(&stream) {
            Ok(list) if !list.is_empty() => list.into_iter().map(Buffer::Allocated).collect(),
            Ok(_) => Vec::new(),
            Err(e) => {
                log::info!("libcamera: {id}: no exported buffers ({e}); importing memfd buffers");
                Vec::new()
            }
        };
        if buffers.is_empty() {
            for i in 0..buffer_count {
                buffers.push(import_buffer(&shapes, i as u64)?);
            }
        }
        let mut frames = Vec::with_capacity(buffers.len());
        let mut requests = Vec::with_capacity(buffers.len());
        for (i, buffer) in buffers.into_iter().enumerate() {
            frames.push(MappedFrame::map(buffer.as_frame_buffer(), &shapes)?);
            let mut request = active
                .create_request(Some(i as u64))
                .ok_or_else(|| Error::new(ErrorKind::Io, "libcamera cannot create a request"))?;
            match buffer {
                Buffer::Allocated(b) => request.add_buffer(&stream, b),
                Buffer::Imported(b) => request.add_buffer(&stream, b),
            }
            .map_err(|e| Error::io(e, "attaching a buffer to a libcamera request"))?;
            requests.push(request);
        }
        let packed = frames.iter().all(|f| f.packed(&shapes).is_some());
        let scratch = if packed {
            Vec::new()
        } else {
            vec![0; packed_bytes]
        };

        // Capacity = requests + one disconnect: the callback's try_send never meets a full
        // channel, so it never blocks libcamera's thread and never drops a request there.
        let (tx, events) = mpsc::sync_channel::<Event>(requests.len() + 1);
        let disconnect_tx = tx.clone();
        active.on_request_completed(move |request| {
            if let Err(e) = tx.try_send(Event::Completed(request)) {
                // Unreachable (see the capacity above) unless the source is being torn
                // down; destroying a request inside libcamera's completion would be unsound,
                // so it is leaked instead.
                let (TrySendError::Full(event) | TrySendError::Disconnected(event)) = e;
                std::mem::forget(event);
            }
        });
        active.on_disconnected(move || {
            let _ = disconnect_tx.try_send(Event::Disconnected);
        });

        let start_controls = start_controls(&active, id, mode.fps, controls);
        active
            .start(Some(&start_controls))
            .map_err(|e| Error::io(e, format!("starting libcamera camera {id}")))?;
        let mut source = LibcameraSource {
            id: id.to_owned(),
            camera: active,
            stream,
            mode,
            events,
            frames,
            shapes,
            packed_bytes,
            scratch,
            held: VecDeque::with_capacity(requests.len()),
            refused: Vec::with_capacity(requests.len()),
            pacer: Pacer::new(mode.fps),
            in_flight: 0,
            paced: vec![false; requests.len()],
            last_raw_sequence: None,
            sequence: 0,
            skipped: 0,
            missed: 0,
        };
        for request in requests {
            source.queue(request)?;
        }
        log::info!(
            "libcamera: {id} streaming {}x{} {} at {} fps, stride {stride}, {} buffers ({})",
            mode.width,
            mode.height,
            mode.format.name(),
            mode.fps,
            source.frames.len(),
            if packed { "lent in place" } else { "repacked" },
        );
        Ok(source)
    }

    fn queue(&mut self, request: Request) -> Result<()> {
        let cookie = request.cookie() as usize;
        self.paced[cookie] = self.pacer.unpaced;
        match self.camera.queue_request(request) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err((request, e)) => {
                // ENODEV after an unplug, EACCES when stopped behind our back: reopen.
                self.refused.push(request);
                Err(Error::new(
                    ErrorKind::Disconnected,
                    format!("libcamera camera {} refused a request: {e}", self.id),
                ))
            }
        }
    }

    /// Gives a finished request back: queued again at once, or held for the pacer.
    fn recycle(&mut self, mut request: Request) -> Result<()> {
        request.reuse(ReuseFlag::REUSE_BUFFERS);
        if self.pacer.unpaced {
            self.held.push_back(request);
            Ok(())
        } else {
            self.queue(request)
        }
    }

    /// Queues the held request whose slot has come (pacing only).
    fn queue_due(&mut self) -> Result<()> {
        if self.held.is_empty() || self.in_flight > 0 {
            return Ok(());
        }
        if let Some(missed) = self.pacer.take_slot(monotonic_ns()) {
            self.missed += missed;
            let request = self.held.pop_front().expect("checked non-empty");
            self.queue(request)?;
        }
        Ok(())
    }

    /// Handles one completed request; `Ok(true)` when a frame went to `sink`.
    fn complete(
        &mut self,
        request: Request,
        sink: &mut dyn FnMut(CapturedFrame<'_>),
    ) -> Result<bool> {
        if request.status() == RequestStatus::Cancelled {
            self.recycle(request)?;
            return Ok(false);
        }
        let buffer: &dyn AsFrameBuffer = match request.buffer::<FrameBuffer>(&self.stream) {
            Some(b) => b,
            None => request
                .buffer::<OwnedFrameBuffer>(&self.stream)
                .expect("every request carries one of our buffers"),
        };
        let (status, raw_sequence, buffer_ts) = match buffer.metadata() {
            Some(m) => (m.status(), m.sequence(), m.timestamp()),
            None => (FrameMetadataStatus::Error, 0, 0),
        };
        if status != FrameMetadataStatus::Success {
            // A failed frame: not delivered; the gap in sequence numbers counts it.
            self.recycle(request)?;
            return Ok(false);
        }
        let ts_ns = request
            .metadata()
            .get::<controls::SensorTimestamp>()
            .map(|t| t.0 as u64)
            .unwrap_or(buffer_ts);
        match self.last_raw_sequence {
            Some(last) => self.sequence += u64::from(raw_sequence.wrapping_sub(last)),
            None => self.sequence = u64::from(raw_sequence),
        }
        self.last_raw_sequence = Some(raw_sequence);
        let was_unpaced = self.pacer.unpaced;
        let stale = was_unpaced && !self.paced[request.cookie() as usize];
        if stale || self.pacer.skip(ts_ns, monotonic_ns()) {
            self.skipped += 1;
            if self.pacer.unpaced && !was_unpaced {
                log::info!(
                    "libcamera: {} delivers frames faster than {} fps (its pipeline ignores FrameDurationLimits); pacing requests",
                    self.id, self.mode.fps
                );
            }
            self.recycle(request)?;
            return Ok(false);
        }
        let index = request.cookie() as usize;
        let frame = &self.frames[index];
        let data: &[u8] = if self.scratch.is_empty() {
            frame.packed(&self.shapes).expect("checked packed at open")
        } else {
            frame.repack(&self.shapes, &mut self.scratch);
            &self.scratch
        };
        sink(CapturedFrame {
            data,
            timestamp_us: ts_ns / 1000,
            sequence: (self.sequence + self.missed).saturating_sub(self.skipped),
        });
        self.recycle(request)?;
        Ok(true)
    }
}

impl CaptureSource for LibcameraSource {
    fn mode(&self) -> Mode {
        self.mode
    }

    fn max_frame_bytes(&self) -> usize {
        self.packed_bytes
    }

    fn next_frame(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(CapturedFrame<'_>),
    ) -> Result<()> {
        let deadline = monotonic_ns() + timeout.as_nanos() as u64;
        loop {
            self.queue_due()?;
            let now = monotonic_ns();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::NoSignal,
                    format!("no frame from libcamera camera {} in {timeout:?}", self.id),
                ));
            }
            let mut wake = deadline;
            if !self.held.is_empty() && self.in_flight == 0 {
                wake = wake.min(self.pacer.next_queue_ns.max(now));
            }
            match self.events.recv_timeout(Duration::from_nanos(wake - now)) {
                Ok(Event::Completed(request)) => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    if self.complete(request, sink)? {
                        return Ok(());
                    }
                }
                Ok(Event::Disconnected) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        format!("libcamera camera {} disconnected", self.id),
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl Drop for LibcameraSource {
    fn drop(&mut self) {
        if let Err(e) = self.camera.stop() {
            log::debug!("libcamera: stopping {}: {e}", self.id);
        }
        // stop() hands every queued request back through the callback; free them here, on
        // this thread, before the camera is released (field drop order does the rest:
        // camera, then the buffer mappings).
        while let Ok(event) = self.events.try_recv() {
            drop(event);
        }
        self.held.clear();
        self.refused.clear();
    }
}

/// Controls applied once when the camera starts (libcamera keeps them for every later
/// request): frame rate, exposure, gain, white balance. A control the camera does not
/// list is skipped, with a log line when the user asked for something else than auto.
fn start_controls(
    cam: &ActiveCamera<'_>,
    id: &str,
    fps: u32,
    wanted: &SensorControls,
) -> libcamera::utils::UniquePtr<ControlList> {
    let info = cam.controls();
    let has = |c: ControlId| info.find(c as u32).is_ok();
    let mut list = ControlList::new();
    let mut ignored = Vec::new();
    let set = |result: std::result::Result<(), libcamera::control::ControlError>| {
        if let Err(e) = result {
            log::warn!("libcamera: {id}: cannot set a control: {e}");
        }
    };

    if let Ok(limits) = info.find(ControlId::FrameDurationLimits as u32) {
        let mut frame_us = 1_000_000 / i64::from(fps.max(1));
        if let (Ok(min), Ok(max)) = (i64::try_from(limits.min()), i64::try_from(limits.max())) {
            if min > 0 && max >= min {
                frame_us = frame_us.clamp(min, max);
            }
        }
        set(list.set(controls::FrameDurationLimits([frame_us, frame_us])));
    }

    match wanted.exposure {
        Exposure::Auto => {
            if has(ControlId::ExposureTimeMode) {
                set(list.set(controls::ExposureTimeMode::Auto));
            }
        }
        Exposure::Micros(us) => {
            if has(ControlId::ExposureTime) {
                if has(ControlId::ExposureTimeMode) {
                    set(list.set(controls::ExposureTimeMode::Manual));
                } else if has(ControlId::AeEnable) {
                    set(list.set(controls::AeEnable(false)));
                }
                set(list.set(controls::ExposureTime(us.min(i32::MAX as u32) as i32)));
            } else {
                ignored.push(format!("camera.exposure = {us} (no ExposureTime control)"));
            }
        }
    }

    if wanted.analogue_gain > 0.0 {
        if has(ControlId::AnalogueGain) {
            if has(ControlId::AnalogueGainMode) {
                set(list.set(controls::AnalogueGainMode::Manual));
            }
            set(list.set(controls::AnalogueGain(wanted.analogue_gain)));
        } else {
            ignored.push(format!(
                "camera.analogue_gain = {} (no AnalogueGain control)",
                wanted.analogue_gain
            ));
        }
    } else if has(ControlId::AnalogueGainMode) {
        set(list.set(controls::AnalogueGainMode::Auto));
    }

    let awb = match wanted.awb_mode.as_str() {
        "incandescent" => controls::AwbMode::AwbIncandescent,
        "tungsten" => controls::AwbMode::AwbTungsten,
        "fluorescent" => controls::AwbMode::AwbFluorescent,
        "indoor" => controls::AwbMode::AwbIndoor,
        "daylight" => controls::AwbMode::AwbDaylight,
        "cloudy" => controls::AwbMode::AwbCloudy,
        _ => controls::AwbMode::AwbAuto,
    };
    if has(ControlId::AwbMode) {
        if has(ControlId::AwbEnable) {
            set(list.set(controls::AwbEnable(true)));
        }
        set(list.set(awb));
    } else if awb != controls::AwbMode::AwbAuto {
        ignored.push(format!(
            "camera.awb_mode = \"{}\" (no AwbMode control)",
            wanted.awb_mode
        ));
    }

    if !ignored.is_empty() {
        log::warn!("libcamera: {id} ignores {}", ignored.join(", "));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plane_shapes_follow_libcamera_strides() {
        let nv12 = plane_shapes(PixelFormat::Nv12, 6, 4, 8);
        assert_eq!(nv12.len(), 2);
        assert_eq!(
            nv12[1],
            PlaneShape {
                row_bytes: 6,
                rows: 2,
                stride: 8
            }
        );
        let i420 = plane_shapes(PixelFormat::I420, 6, 4, 8);
        assert_eq!(
            i420[1],
            PlaneShape {
                row_bytes: 3,
                rows: 2,
                stride: 4
            }
        );
        assert_eq!(plane_bytes(&i420[0]), 3 * 8 + 6);
    }

    #[test]
    fn pacer_skips_bursts_and_turns_on_for_unpaced_pipelines() {
        let ms = 1_000_000;
        let mut p = Pacer::new(30);
        assert!(!p.skip(1000 * ms, 0));
        // A real camera at the asked rate: never skipped, never paced.
        for i in 1..10 {
            assert!(!p.skip(1000 * ms + i * 33 * ms, 0));
        }
        assert!(!p.unpaced);
        // A burst (virtual pipeline start): skipped; the third in a row turns pacing on.
        let t = 2000 * ms;
        assert!(!p.skip(t, t));
        assert!(p.skip(t + 10, t));
        assert!(p.skip(t + 20, t));
        assert!(!p.unpaced);
        assert!(p.skip(t + 30, t));
        assert!(p.unpaced);
        // Slots on a grid one interval apart, from the last delivered frame.
        let slot = p.next_queue_ns;
        assert_eq!(slot, t + p.interval_ns);
        assert_eq!(p.take_slot(slot - 1), None);
        assert_eq!(p.take_slot(slot + 5 * ms), Some(0));
        // A late slot does not move the grid.
        assert_eq!(p.next_queue_ns, slot + p.interval_ns);
        // Paced frames are never skipped, even when a late slot makes one interval short.
        assert!(!p.skip(slot + 5 * ms, slot + 5 * ms));
        assert!(!p.skip(slot + p.interval_ns + ms, slot + p.interval_ns + ms));
        // A stall over three slots: they are reported missed, the grid stays.
        let next = p.next_queue_ns;
        assert_eq!(p.take_slot(next + 3 * p.interval_ns + ms), Some(3));
        assert_eq!(p.next_queue_ns, next + 4 * p.interval_ns);
    }
}
