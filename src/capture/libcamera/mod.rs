//! Native libcamera capture (cargo feature `libcamera`): CSI camera modules on Raspberry Pi
//! OS, and any other camera libcamera drives. Every libcamera type and all of this
//! backend's unsafe code stay in this folder (`mod.rs`: the manager, discovery and modes;
//! `source.rs`: an open camera; `buffers.rs`: frame buffers and their mappings; `pacer.rs`);
//! the rest of benchcam sees only [`CaptureDevice`] and [`CaptureSource`].
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

use std::sync::{Mutex, MutexGuard, OnceLock};

use libcamera::camera::Camera;
use libcamera::camera_manager::CameraManager;
use libcamera::controls::ControlId;
use libcamera::geometry::Size;
use libcamera::pixel_format::PixelFormat as LcFormat;
use libcamera::properties;
use libcamera::stream::StreamRole;

use super::{best_mode, CameraInfo, CaptureDevice, CaptureSource, Mode, ModeRequest, PixelFormat};
use crate::config::{CameraConfig, Exposure};
use crate::error::{Error, ErrorKind, Result};

pub use self::source::LibcameraSource;

mod buffers;
mod pacer;
mod source;

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
