//! JPEG from raw frames, for live view, snapshots and the MJPEG fallback: I420 goes to
//! the encoder (`jpeg_planar`) straight from the frame; other formats are converted to
//! I420, and presets smaller than the frame are scaled by nearest neighbour, into a
//! buffer kept per thread and reused.

use std::cell::RefCell;

use super::jpeg_planar;
use super::yuv::{to_i420, I420};
use crate::capture::PixelFormat;
use crate::error::{Error, ErrorKind, Result};

thread_local! {
    /// Pictures converted to I420 (YUYV, NV12) and scaled to the preset, reused by the
    /// next frame on this thread: a live encoder thread allocates them once.
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Output size for a source of `w`x`h` fitted inside `max_w`x`max_h`, keeping the
/// aspect ratio, never scaling up, even dimensions.
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w <= max_w && h <= max_h {
        return (w, h);
    }
    let scale = f64::min(max_w as f64 / w as f64, max_h as f64 / h as f64);
    let even = |v: f64| ((v as u32) & !1).max(2);
    (even(w as f64 * scale), even(h as f64 * scale))
}

/// Encodes a raw frame as JPEG into `out` (cleared first), scaled to fit `max_w`x`max_h`.
pub fn encode_raw(
    format: PixelFormat,
    data: &[u8],
    width: u32,
    height: u32,
    max: (u32, u32),
    quality: u8,
    out: &mut Vec<u8>,
) -> Result<()> {
    let need = format.raw_frame_bytes(width, height).ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            "MJPEG frames are passed through, not re-encoded",
        )
    })?;
    if data.len() < need {
        return Err(Error::new(
            ErrorKind::Codec,
            format!("{} frame is short", format.name()),
        ));
    }
    let (dst_w, dst_h) = fit(width, height, max.0, max.1);
    if format == PixelFormat::I420 && (dst_w, dst_h) == (width, height) {
        return jpeg_planar::encode(&I420::from_packed(data, width, height)?, quality, out);
    }
    SCRATCH.with_borrow_mut(|(converted, scaled)| {
        let source = if format == PixelFormat::I420 {
            I420::from_packed(data, width, height)?
        } else {
            to_i420(format, data, width, height, converted)?;
            I420::from_packed(converted, width, height)?
        };
        if (dst_w, dst_h) == (width, height) {
            return jpeg_planar::encode(&source, quality, out);
        }
        let (dw, dh) = (dst_w as usize, dst_h as usize);
        let (dcw, dch) = (dw.div_ceil(2), dh.div_ceil(2));
        let (scw, sch) = (source.width.div_ceil(2), source.height.div_ceil(2));
        scaled.clear();
        scale_plane(source.y, source.width, source.height, dw, dh, scaled);
        scale_plane(source.u, scw, sch, dcw, dch, scaled);
        scale_plane(source.v, scw, sch, dcw, dch, scaled);
        jpeg_planar::encode(&I420::from_packed(scaled, dst_w, dst_h)?, quality, out)
    })
}

/// Appends `plane` (`sw`x`sh`, rows packed) scaled to `dw`x`dh` by nearest neighbour
/// (`dw` ≤ `sw`, `dh` ≤ `sh`) to `out`.
fn scale_plane(plane: &[u8], sw: usize, sh: usize, dw: usize, dh: usize, out: &mut Vec<u8>) {
    // 16.16 fixed-point steps: (d - 1) * step >> 16 < s, so no index leaves the plane.
    let step_x = (sw << 16) / dw;
    let step_y = (sh << 16) / dh;
    for y in 0..dh {
        let row = &plane[((y * step_y) >> 16) * sw..][..sw];
        out.extend((0..dw).map(|x| row[(x * step_x) >> 16]));
    }
}

/// Encodes a packed I420 picture at full size.
pub fn encode_i420(
    data: &[u8],
    width: u32,
    height: u32,
    quality: u8,
    out: &mut Vec<u8>,
) -> Result<()> {
    encode_raw(
        PixelFormat::I420,
        data,
        width,
        height,
        (width, height),
        quality,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_inside_without_upscaling() {
        assert_eq!(fit(1280, 720, 640, 360), (640, 360));
        assert_eq!(fit(1280, 720, 640, 640), (640, 360));
        assert_eq!(fit(320, 240, 640, 360), (320, 240));
        assert_eq!(fit(1280, 720, 427, 240), (426, 240));
    }

    #[test]
    fn encodes_a_decodable_jpeg() {
        let (w, h) = (64u32, 48u32);
        let frame = vec![128u8; (w * h * 3 / 2) as usize];
        let mut out = Vec::new();
        encode_raw(PixelFormat::I420, &frame, w, h, (32, 32), 80, &mut out).unwrap();
        assert_eq!(&out[..2], &[0xFF, 0xD8]);
        assert_eq!(&out[out.len() - 2..], &[0xFF, 0xD9]);
        // SOF0 carries height then width: 24x32 after fitting 64x48 into 32x32.
        let sof = out.windows(2).position(|p| p == [0xFF, 0xC0]).unwrap();
        assert_eq!(&out[sof + 5..sof + 9], &[0, 24, 0, 32]);
    }
}
