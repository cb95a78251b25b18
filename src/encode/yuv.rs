//! Read-only views of raw frames and conversion of packed/semi-planar YUV to I420.

use crate::capture::PixelFormat;
use crate::error::{Error, ErrorKind, Result};

/// Borrowed planes of an I420 picture.
#[derive(Clone, Copy)]
pub struct I420<'a> {
    pub width: usize,
    pub height: usize,
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
}

impl<'a> I420<'a> {
    /// Splits a tightly packed I420 buffer into planes.
    pub fn from_packed(data: &'a [u8], width: u32, height: u32) -> Result<Self> {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        if data.len() < w * h + 2 * cw * ch {
            return Err(Error::new(
                ErrorKind::Codec,
                format!("I420 frame of {} bytes is short for {w}x{h}", data.len()),
            ));
        }
        let (y, rest) = data.split_at(w * h);
        let (u, rest) = rest.split_at(cw * ch);
        Ok(I420 {
            width: w,
            height: h,
            y,
            u,
            v: &rest[..cw * ch],
        })
    }
}

/// Converts a raw frame to packed I420 in `out` (cleared first; reuses its capacity).
/// I420 input is copied; MJPEG is refused (it needs a decoder, see `Codec::Auto`).
pub fn to_i420(
    format: PixelFormat,
    data: &[u8],
    width: u32,
    height: u32,
    out: &mut Vec<u8>,
) -> Result<()> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let need = format.raw_frame_bytes(width, height).ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            "MJPEG frames cannot be converted to I420",
        )
    })?;
    if data.len() < need {
        return Err(Error::new(
            ErrorKind::Codec,
            format!(
                "{} frame of {} bytes is short for {w}x{h}",
                format.name(),
                data.len()
            ),
        ));
    }
    out.clear();
    match format {
        PixelFormat::I420 => out.extend_from_slice(&data[..need]),
        PixelFormat::Nv12 => {
            out.extend_from_slice(&data[..w * h]);
            let uv = &data[w * h..];
            out.extend(uv.chunks_exact(2).take(cw * ch).map(|p| p[0]));
            out.extend(uv.chunks_exact(2).take(cw * ch).map(|p| p[1]));
        }
        PixelFormat::Yuyv => {
            let stride = cw * 4;
            for row in data.chunks_exact(stride).take(h) {
                out.extend(row.chunks_exact(2).take(w).map(|p| p[0]));
            }
            // Chroma of each even row (4:2:2 to 4:2:0 by dropping odd rows' chroma).
            for row in data.chunks_exact(stride).take(h).step_by(2) {
                out.extend(row.chunks_exact(4).map(|p| p[1]));
            }
            for row in data.chunks_exact(stride).take(h).step_by(2) {
                out.extend(row.chunks_exact(4).map(|p| p[3]));
            }
        }
        PixelFormat::Mjpeg => unreachable!("refused above"),
    }
    Ok(())
}

/// Samples one pixel's Y, Cb, Cr from a raw frame at (x, y). Used by the JPEG encoder
/// to read rows straight from the frame, scaling by nearest neighbour on the way.
#[inline]
pub fn sample(
    format: PixelFormat,
    data: &[u8],
    w: usize,
    h: usize,
    x: usize,
    y: usize,
) -> (u8, u8, u8) {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    match format {
        PixelFormat::I420 => {
            let c = (y / 2) * cw + x / 2;
            (data[y * w + x], data[w * h + c], data[w * h + cw * ch + c])
        }
        PixelFormat::Nv12 => {
            let c = w * h + (y / 2) * cw * 2 + (x / 2) * 2;
            (data[y * w + x], data[c], data[c + 1])
        }
        PixelFormat::Yuyv => {
            let base = y * cw * 4 + (x / 2) * 4;
            (data[base + (x & 1) * 2], data[base + 1], data[base + 3])
        }
        PixelFormat::Mjpeg => (0, 128, 128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_and_nv12_convert_to_i420() {
        // 2x2 picture: Y = 10,20,30,40; U = 100, V = 200.
        let yuyv = [10, 100, 20, 200, 30, 101, 40, 201];
        let mut out = Vec::with_capacity(6);
        to_i420(PixelFormat::Yuyv, &yuyv, 2, 2, &mut out).unwrap();
        assert_eq!(out, [10, 20, 30, 40, 100, 200]);
        let nv12 = [10, 20, 30, 40, 100, 200];
        to_i420(PixelFormat::Nv12, &nv12, 2, 2, &mut out).unwrap();
        assert_eq!(out, [10, 20, 30, 40, 100, 200]);
        assert_eq!(sample(PixelFormat::Yuyv, &yuyv, 2, 2, 1, 1), (40, 101, 201));
        assert_eq!(sample(PixelFormat::Nv12, &nv12, 2, 2, 1, 1), (40, 100, 200));
        assert!(to_i420(PixelFormat::Yuyv, &yuyv[..4], 2, 2, &mut out).is_err());
    }
}
