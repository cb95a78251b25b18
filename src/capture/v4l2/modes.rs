//! What a V4L2 node is and offers: whether it can be streamed from as a camera, and every
//! mode (format, size, rate) it lists.

use std::os::fd::BorrowedFd;

use super::sys::Arg;
use super::{
    sys, COMMON_RATES, COMMON_SIZES, DEFAULT_FPS, HELPER_DRIVERS, LIBCAMERA_DRIVERS, MAX_ENUM_INDEX,
};
use crate::capture::{Mode, PixelFormat};

/// The capabilities of this node: `device_caps` when the driver fills it, since
/// `capabilities` describes the whole physical device (all of a UVC camera's nodes).
pub(super) fn node_caps(cap: &sys::Capability) -> u32 {
    if cap.capabilities & sys::CAP_DEVICE_CAPS != 0 {
        cap.device_caps
    } else {
        cap.capabilities
    }
}

/// Why a node cannot be streamed from as a camera, or `None` when it can.
pub(super) fn unusable_reason(caps: u32, driver: &str) -> Option<&'static str> {
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
pub(super) fn enumerate_modes(fd: BorrowedFd<'_>) -> (Vec<Mode>, Vec<(PixelFormat, u32)>) {
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

pub(super) fn frame_sizes(fd: BorrowedFd<'_>, fourcc: u32) -> Vec<(u32, u32)> {
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

pub(super) fn frame_rates(fd: BorrowedFd<'_>, fourcc: u32, width: u32, height: u32) -> Vec<u32> {
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
pub(super) fn sizes_within(range: &[u32; 6]) -> Vec<(u32, u32)> {
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
pub(super) fn rates_within(min: (u32, u32), max: (u32, u32)) -> Vec<u32> {
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
pub(super) fn fps_from_interval(num: u32, den: u32) -> Option<u32> {
    if num == 0 {
        return None;
    }
    let (num, den) = (u64::from(num), u64::from(den));
    let fps = (2 * den + num) / (2 * num);
    u32::try_from(fps).ok().filter(|&fps| fps > 0)
}

pub(super) fn pixel_format_from_fourcc(fourcc: u32) -> Option<PixelFormat> {
    match fourcc {
        sys::PIX_FMT_MJPEG | sys::PIX_FMT_JPEG => Some(PixelFormat::Mjpeg),
        sys::PIX_FMT_YUYV => Some(PixelFormat::Yuyv),
        sys::PIX_FMT_NV12 => Some(PixelFormat::Nv12),
        sys::PIX_FMT_YUV420 => Some(PixelFormat::I420),
        _ => None,
    }
}
