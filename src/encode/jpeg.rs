//! Live-view JPEG: reads YUV rows straight from a raw frame (no RGB round trip),
//! scaling down by nearest neighbour, into a reused output buffer.

use jpeg_encoder::{Encoder, ImageBuffer, JpegColorType};

use super::yuv::sample;
use crate::capture::PixelFormat;
use crate::error::{Error, ErrorKind, Result};

struct ScaledYuv<'a> {
    format: PixelFormat,
    data: &'a [u8],
    src_w: usize,
    src_h: usize,
    dst_w: u16,
    dst_h: u16,
}

impl ImageBuffer for ScaledYuv<'_> {
    fn get_jpeg_color_type(&self) -> JpegColorType {
        JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.dst_w
    }

    fn height(&self) -> u16 {
        self.dst_h
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let sy = y as usize * self.src_h / self.dst_h as usize;
        for x in 0..self.dst_w as usize {
            let sx = x * self.src_w / self.dst_w as usize;
            let (yy, cb, cr) = sample(self.format, self.data, self.src_w, self.src_h, sx, sy);
            buffers[0].push(yy);
            buffers[1].push(cb);
            buffers[2].push(cr);
        }
    }
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
    let image = ScaledYuv {
        format,
        data,
        src_w: width as usize,
        src_h: height as usize,
        dst_w: dst_w as u16,
        dst_h: dst_h as u16,
    };
    out.clear();
    Encoder::new(&mut *out, quality)
        .encode_image(image)
        .map_err(|e| Error::new(ErrorKind::Codec, format!("JPEG encode: {e}")))
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
