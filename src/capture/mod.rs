//! Capture sources (the hardware boundary) and the types every backend shares.
//!
//! A backend is two small traits: [`CaptureDevice`] describes a camera and opens it,
//! [`CaptureSource`] is an open stream that lends one frame at a time. The capture loop
//! in `camera` copies each lent frame into the camera's preallocated ring.

#[cfg(feature = "libcamera")]
pub mod libcamera;
pub mod pattern;
pub mod v4l2;
pub mod worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Pixel layout of a frame as the source delivers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Planar YUV 4:2:0 (Y plane, then U, then V).
    I420,
    /// Semi-planar YUV 4:2:0 (Y plane, then interleaved UV).
    Nv12,
    /// Packed YUV 4:2:2 (Y0 U Y1 V), the usual uncompressed UVC format.
    Yuyv,
    /// Motion JPEG: each frame is a complete JPEG image.
    Mjpeg,
}

impl PixelFormat {
    pub const ALL: [PixelFormat; 4] = [
        PixelFormat::Mjpeg,
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
        PixelFormat::I420,
    ];

    /// Exact size of one raw frame, or `None` for compressed formats.
    pub fn raw_frame_bytes(self, width: u32, height: u32) -> Option<usize> {
        let (w, h) = (width as usize, height as usize);
        match self {
            PixelFormat::I420 | PixelFormat::Nv12 => {
                Some(w * h + 2 * (w.div_ceil(2) * h.div_ceil(2)))
            }
            PixelFormat::Yuyv => Some(w.div_ceil(2) * 4 * h),
            PixelFormat::Mjpeg => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::I420 => "i420",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Mjpeg => "mjpeg",
        }
    }

    pub fn parse(name: &str) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// One capture mode: size, nominal frame rate and pixel format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mode {
    pub width: u32,
    pub height: u32,
    /// Nominal frames per second; actual frame times come from the frames themselves.
    pub fps: u32,
    pub format: PixelFormat,
}

/// What the service asks a device for; the device picks the closest mode it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeRequest {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Formats in order of preference; the first one the device offers wins.
    pub formats: Vec<PixelFormat>,
}

/// A frame lent by a source for the duration of one `next_frame` call.
pub struct CapturedFrame<'a> {
    /// Frame bytes in the source's negotiated format (`used` bytes of the driver buffer).
    pub data: &'a [u8],
    /// Capture time on CLOCK_MONOTONIC, in microseconds (driver timestamp where the
    /// driver gives one, otherwise the time the frame was dequeued).
    pub timestamp_us: u64,
    /// The driver's frame sequence number; gaps mean the driver dropped frames.
    pub sequence: u64,
}

/// An open, streaming camera.
pub trait CaptureSource: Send {
    /// The mode actually negotiated with the device.
    fn mode(&self) -> Mode;

    /// Upper bound of one frame's size in bytes; ring slots are sized from it.
    fn max_frame_bytes(&self) -> usize;

    /// Waits at most `timeout` for the next frame and lends it to `sink`.
    ///
    /// Errors: `NoSignal` when no frame came in time, `Disconnected` when the device
    /// went away (the caller reopens with backoff).
    fn next_frame(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(CapturedFrame<'_>),
    ) -> Result<()>;

    /// Frames received since open but not lent because they were corrupt (torn or
    /// truncated JPEGs, buffers the driver flagged as bad).
    fn frames_skipped(&self) -> u64 {
        0
    }
}

/// A camera found by discovery, before it is opened.
#[derive(Clone, Debug, Serialize)]
pub struct CameraInfo {
    /// Device path (`/dev/video0`) or a backend-specific id (`pattern`).
    pub device: String,
    /// Human-readable name from the driver (`card` for V4L2).
    pub name: String,
    /// `v4l2`, `libcamera` or `pattern`.
    pub backend: &'static str,
    /// Every mode the device reports, for the API and `benchcam probe`.
    pub modes: Vec<Mode>,
}

/// A camera that can be described and opened; one per discovered device.
pub trait CaptureDevice: Send + Sync {
    fn info(&self) -> &CameraInfo;

    /// Opens the device in the mode closest to `request` and starts streaming.
    fn open(&self, request: &ModeRequest) -> Result<Box<dyn CaptureSource>>;
}

/// Picks the mode of `modes` that best fits `request`: preferred format first, then the
/// closest size (by pixel count), then the closest frame rate.
pub fn best_mode(modes: &[Mode], request: &ModeRequest) -> Option<Mode> {
    let format_rank = |f: PixelFormat| {
        request
            .formats
            .iter()
            .position(|&p| p == f)
            .unwrap_or(usize::MAX)
    };
    let want_px = request.width as i64 * request.height as i64;
    modes
        .iter()
        .filter(|m| format_rank(m.format) != usize::MAX)
        .min_by_key(|m| {
            let px = m.width as i64 * m.height as i64;
            (
                format_rank(m.format),
                (px - want_px).abs(),
                (m.fps as i64 - request.fps as i64).abs(),
            )
        })
        .copied()
}

/// Which mode `best_mode` picks for `request`, and why, in words for the log and the API:
/// an exact match says so; anything else names what the camera lacks and what is used
/// instead, so a requested mode the camera does not have is never a silent fallback.
pub fn explain_mode(modes: &[Mode], request: &ModeRequest) -> (Option<Mode>, String) {
    let wanted = format!(
        "{}x{} at {} fps in [{}]",
        request.width,
        request.height,
        request.fps,
        request
            .formats
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Some(mode) = best_mode(modes, request) else {
        let mut offered: Vec<&str> = modes.iter().map(|m| m.format.name()).collect();
        offered.dedup();
        return (
            None,
            format!(
                "asked for {wanted}; the camera offers none of these formats (it has [{}])",
                offered.join(", ")
            ),
        );
    };
    let chosen = format!(
        "{}x{} {} at {} fps",
        mode.width,
        mode.height,
        mode.format.name(),
        mode.fps
    );
    let mut lacks = Vec::new();
    if request.formats.first() != Some(&mode.format) {
        lacks.push(format!(
            "no {} mode",
            request.formats.first().map_or("", |f| f.name())
        ));
    }
    if (mode.width, mode.height) != (request.width, request.height) {
        lacks.push(format!(
            "no {}x{} in {}",
            request.width,
            request.height,
            mode.format.name()
        ));
    }
    if mode.fps != request.fps {
        lacks.push(format!("no {} fps at that size", request.fps));
    }
    let why = if lacks.is_empty() {
        format!("{chosen}, as asked")
    } else {
        format!(
            "asked for {wanted}; the camera has {}: using {chosen}, the closest it offers",
            lacks.join(", ")
        )
    };
    (Some(mode), why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_sizes() {
        assert_eq!(PixelFormat::I420.raw_frame_bytes(4, 2), Some(8 + 4));
        assert_eq!(
            PixelFormat::Yuyv.raw_frame_bytes(1280, 720),
            Some(1280 * 720 * 2)
        );
        assert_eq!(PixelFormat::Mjpeg.raw_frame_bytes(1280, 720), None);
    }

    #[test]
    fn best_mode_prefers_format_then_size_then_fps() {
        let m = |w, h, fps, format| Mode {
            width: w,
            height: h,
            fps,
            format,
        };
        let modes = [
            m(640, 480, 30, PixelFormat::Yuyv),
            m(1280, 720, 10, PixelFormat::Yuyv),
            m(1280, 720, 30, PixelFormat::Mjpeg),
            m(1920, 1080, 30, PixelFormat::Mjpeg),
        ];
        let req = |formats: Vec<PixelFormat>| ModeRequest {
            width: 1280,
            height: 720,
            fps: 30,
            formats,
        };
        assert_eq!(
            best_mode(&modes, &req(vec![PixelFormat::Mjpeg])),
            Some(modes[2])
        );
        assert_eq!(
            best_mode(&modes, &req(vec![PixelFormat::Yuyv, PixelFormat::Mjpeg])),
            Some(modes[1])
        );
        assert_eq!(best_mode(&modes, &req(vec![PixelFormat::Nv12])), None);

        let (mode, why) = explain_mode(&modes, &req(vec![PixelFormat::Mjpeg]));
        assert_eq!(mode, Some(modes[2]));
        assert_eq!(why, "1280x720 mjpeg at 30 fps, as asked");
        let (_, why) = explain_mode(&modes, &req(vec![PixelFormat::Yuyv]));
        assert!(
            why.contains("no 30 fps at that size") && why.contains("using 1280x720 yuyv at 10 fps"),
            "{why}"
        );
        let (_, why) = explain_mode(&modes, &req(vec![PixelFormat::Nv12, PixelFormat::Yuyv]));
        assert!(why.contains("no nv12 mode"), "{why}");
        let (mode, why) = explain_mode(&modes, &req(vec![PixelFormat::Nv12]));
        assert_eq!(mode, None);
        assert!(
            why.contains("none of these formats") && why.contains("[yuyv, mjpeg]"),
            "{why}"
        );
    }
}
