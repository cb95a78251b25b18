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

    /// A picture with edges, gradients and flat areas (I420), like a bench camera's.
    fn picture(w: usize, h: usize) -> Vec<u8> {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut p = Vec::with_capacity(w * h + 2 * cw * ch);
        for y in 0..h {
            for x in 0..w {
                let bar = if (x / 24) % 3 == 0 { 60 } else { 0 };
                p.push((40 + (x * 120) / w + (y * 40) / h + bar) as u8);
            }
        }
        p.extend((0..cw * ch).map(|i| (100 + (i % cw) * 50 / cw) as u8));
        p.extend((0..cw * ch).map(|i| (160 - (i / cw) * 40 / ch) as u8));
        p
    }

    fn zune_ycbcr(jpeg: &[u8]) -> (usize, usize, Vec<u8>) {
        use zune_jpeg::zune_core::{
            bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions,
        };
        let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
        let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
        let pixels = d.decode().expect("zune-jpeg decodes it");
        let (w, h) = d.dimensions().expect("dimensions");
        (w, h, pixels)
    }

    /// PSNR in dB of the decoded luma against `luma`.
    fn luma_psnr(jpeg: &[u8], luma: &[u8]) -> f64 {
        let (_, _, ycbcr) = zune_ycbcr(jpeg);
        let se: f64 = ycbcr
            .chunks_exact(3)
            .zip(luma)
            .map(|(p, &s)| (p[0] as f64 - s as f64).powi(2))
            .sum();
        10.0 * (255.0f64.powi(2) / (se / luma.len() as f64).max(1e-9)).log10()
    }

    #[test]
    fn every_size_decodes_alike_in_both_decoders() {
        // Sizes around the 8x8 block and the 16x16 MCU, odd ones included.
        let sizes = [
            (1, 1),
            (2, 2),
            (7, 3),
            (8, 8),
            (9, 17),
            (15, 16),
            (16, 15),
            (33, 31),
        ];
        for (w, h) in sizes.into_iter().chain([(100, 50), (1280, 720)]) {
            let frame = picture(w, h);
            let mut out = Vec::new();
            encode_i420(&frame, w as u32, h as u32, 85, &mut out).unwrap();
            let (zw, zh, _) = zune_ycbcr(&out);
            assert_eq!((zw, zh), (w, h));
            let mut jd = jpeg_decoder::Decoder::new(&out[..]);
            let rgb = jd.decode().expect("jpeg-decoder decodes it");
            let info = jd.info().unwrap();
            assert_eq!((info.width as usize, info.height as usize), (w, h));
            let options = zune_jpeg::zune_core::options::DecoderOptions::default()
                .jpeg_set_out_colorspace(zune_jpeg::zune_core::colorspace::ColorSpace::RGB);
            let zune_rgb = zune_jpeg::JpegDecoder::new_with_options(
                zune_jpeg::zune_core::bytestream::ZCursor::new(&out),
                options,
            )
            .decode()
            .unwrap();
            assert_eq!(rgb.len(), zune_rgb.len());
            // The two decoders upsample chroma and round differently, nothing more.
            let diff = rgb
                .iter()
                .zip(&zune_rgb)
                .map(|(a, b)| a.abs_diff(*b) as u64);
            let (max, sum) = diff.fold((0, 0), |(m, s), d| (m.max(d), s + d));
            let mean = sum as f64 / rgb.len() as f64;
            assert!(
                max <= 40 && mean < 2.0,
                "{w}x{h}: max {max}, mean {mean:.2}"
            );
            if w * h >= 64 {
                let psnr = luma_psnr(&out, &frame[..w * h]);
                assert!(psnr > 38.0, "{w}x{h} at quality 85: {psnr:.1} dB");
            }
        }
    }

    #[test]
    fn quality_trades_size_for_fidelity() {
        let (w, h) = (320usize, 240usize);
        let mut frame = picture(w, h);
        // Grain over the luma, so every quality step shows in the size.
        let mut x = 0x2545_F491u32;
        for p in &mut frame[..w * h] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *p = p.saturating_add((x % 24) as u8);
        }
        let mut last = (0usize, 0f64);
        for quality in [10u8, 50, 75, 90, 100] {
            let mut out = Vec::new();
            encode_i420(&frame, w as u32, h as u32, quality, &mut out).unwrap();
            let psnr = luma_psnr(&out, &frame[..w * h]);
            assert!(out.len() > last.0 && psnr > last.1, "quality {quality}");
            last = (out.len(), psnr);
        }
        // Quality 100 (every step 1) is close to lossless; 75 is libjpeg's default.
        assert!(last.1 > 45.0, "quality 100: {:.1} dB", last.1);
    }

    #[test]
    fn scaled_presets_show_the_picture_smaller() {
        let (w, h) = (1280usize, 720usize);
        let frame = picture(w, h);
        for (max, want) in [((640, 360), (640, 360)), ((427, 240), (426, 240))] {
            let mut out = Vec::new();
            encode_raw(PixelFormat::I420, &frame, 1280, 720, max, 80, &mut out).unwrap();
            let (dw, dh, ycbcr) = zune_ycbcr(&out);
            assert_eq!((dw as u32, dh as u32), want);
            // Against the source sampled at the same points.
            let mut se = 0.0;
            for y in 0..dh {
                for x in 0..dw {
                    let s = frame[(y * h / dh) * w + x * w / dw] as f64;
                    se += (ycbcr[(y * dw + x) * 3] as f64 - s).powi(2);
                }
            }
            let psnr = 10.0 * (255.0f64.powi(2) / (se / (dw * dh) as f64)).log10();
            assert!(psnr > 30.0, "{dw}x{dh}: {psnr:.1} dB");
        }
    }

    #[test]
    fn yuyv_and_nv12_frames_give_the_i420_picture() {
        let (w, h) = (48usize, 32usize);
        let i420 = picture(w, h);
        let (y, chroma) = i420.split_at(w * h);
        let (u, v) = chroma.split_at(w * h / 4);
        let mut nv12 = y.to_vec();
        nv12.extend(u.iter().zip(v).flat_map(|(&u, &v)| [u, v]));
        let mut yuyv = Vec::new();
        for row in 0..h {
            for x in (0..w).step_by(2) {
                let c = (row / 2) * (w / 2) + x / 2;
                yuyv.extend([y[row * w + x], u[c], y[row * w + x + 1], v[c]]);
            }
        }
        let mut want = Vec::new();
        encode_i420(&i420, w as u32, h as u32, 80, &mut want).unwrap();
        for (format, data) in [(PixelFormat::Nv12, &nv12), (PixelFormat::Yuyv, &yuyv)] {
            let mut out = Vec::new();
            encode_raw(format, data, w as u32, h as u32, (64, 64), 80, &mut out).unwrap();
            assert!(out == want, "{}", format.name());
            encode_raw(format, data, w as u32, h as u32, (24, 24), 80, &mut out).unwrap();
            assert_eq!(zune_ycbcr(&out).0, 24);
        }
    }

    #[test]
    fn extreme_pictures_stay_inside_baseline_codes() {
        // Quality 100 (every step 1) on 0/255 checkerboards beside flat blocks: the
        // largest coefficients and DC steps 8-bit samples can give.
        let (w, h) = (64usize, 64usize);
        let mut frame = vec![128u8; w * h * 3 / 2];
        for y in 0..h {
            for x in 0..w {
                frame[y * w + x] = match (x / 8 + y / 8) % 3 {
                    0 => 0,
                    1 => 255,
                    _ => ((x + y) % 2 * 255) as u8,
                };
            }
        }
        let mut out = Vec::new();
        encode_i420(&frame, w as u32, h as u32, 100, &mut out).unwrap();
        assert!(luma_psnr(&out, &frame[..w * h]) > 40.0);
    }

    #[test]
    fn random_frames_and_sizes_never_panic() {
        let mut x = 0x9E37_79B9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut out = Vec::new();
        for _ in 0..300 {
            let (w, h) = (1 + next() % 70, 1 + next() % 70);
            let quality = (next() % 101) as u8;
            let format =
                [PixelFormat::I420, PixelFormat::Nv12, PixelFormat::Yuyv][next() as usize % 3];
            let max = (1 + next() % 80, 1 + next() % 80);
            let need = format.raw_frame_bytes(w, h).unwrap();
            let frame: Vec<u8> = (0..need).map(|_| next() as u8).collect();
            // Short frames are refused, never read past.
            assert!(encode_raw(format, &frame[..need - 1], w, h, max, quality, &mut out).is_err());
            encode_raw(format, &frame[..need], w, h, max, quality, &mut out).unwrap();
            let (dw, dh, _) = zune_ycbcr(&out);
            assert_eq!((dw as u32, dh as u32), fit(w, h, max.0, max.1));
        }
        assert!(encode_i420(&[], 0, 0, 80, &mut out).is_err());
    }
}
