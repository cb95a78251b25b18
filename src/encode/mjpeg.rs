//! MJPEG decoding for H.264 recording: a camera's JPEG frame → packed I420.
//!
//! zune-jpeg (pure Rust, SIMD on x86 and ARM) was chosen by measurement over jpeg-decoder
//! (`cargo bench --bench mjpeg`; README, "Figures"). It decodes to full-resolution
//! interleaved YCbCr (no colour conversion), which is then subsampled 2×2 into I420: the
//! chroma of a 4:2:0 or 4:2:2 camera JPEG is upsampled by the decoder and averaged back
//! here, which costs little next to the decode.
//!
//! A torn or truncated JPEG (real UVC cameras send them) is an error of kind `Corrupt`
//! (the recorder counts and skips the frame); it never panics. The scan's markers and
//! Huffman codes are checked first (`jpeg_scan`): garbage that a decoder would turn into a
//! damaged picture without complaint breaks them.

use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::encode::jpeg_scan;
use crate::error::{Error, ErrorKind, Result};

/// Decodes camera JPEGs of one size. The YCbCr scratch is allocated on the first frame
/// and reused; zune-jpeg itself allocates its tables per frame.
pub struct MjpegDecoder {
    options: DecoderOptions,
    ycbcr: Vec<u8>,
}

impl Default for MjpegDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl MjpegDecoder {
    pub fn new() -> Self {
        MjpegDecoder {
            options: DecoderOptions::default()
                .jpeg_set_out_colorspace(ColorSpace::YCbCr)
                // Camera frames are small; a header claiming more is damage, not a picture.
                .set_max_width(8192)
                .set_max_height(8192)
                .set_strict_mode(true),
            ycbcr: Vec::new(),
        }
    }

    /// Checks that `jpeg` is a whole `width`×`height` picture by decoding it (the result is
    /// dropped): what MJPEG passthrough recording does so a damaged camera JPEG never
    /// reaches a clip (a frame with garbage inside passes any structural check).
    pub fn check(&mut self, jpeg: &[u8], width: u32, height: u32) -> Result<()> {
        self.decode_ycbcr(jpeg, width, height).map(|_| ())
    }

    /// Decodes `jpeg`, which must be `width`×`height`, into packed I420 in `out` (cleared
    /// first; its capacity is reused).
    pub fn decode_i420(
        &mut self,
        jpeg: &[u8],
        width: u32,
        height: u32,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let (w, h) = self.decode_ycbcr(jpeg, width, height)?;
        ycbcr_to_i420(&self.ycbcr, w, h, out);
        Ok(())
    }

    /// Checks the scan's markers, then decodes into the YCbCr scratch; returns the
    /// picture's size.
    fn decode_ycbcr(&mut self, jpeg: &[u8], width: u32, height: u32) -> Result<(usize, usize)> {
        jpeg_scan::check(jpeg).map_err(corrupt)?;
        self.decode_without_scan_check(jpeg, width, height)
    }

    fn decode_without_scan_check(
        &mut self,
        jpeg: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(usize, usize)> {
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(jpeg), self.options);
        decoder
            .decode_headers()
            .map_err(|e| corrupt(format!("{e:?}")))?;
        let (w, h) = decoder
            .dimensions()
            .ok_or_else(|| corrupt("no frame header".into()))?;
        if (w as u32, h as u32) != (width, height) {
            return Err(corrupt(format!(
                "{w}x{h}, but the camera streams {width}x{height}"
            )));
        }
        let components = decoder.info().map_or(0, |info| info.components as usize);
        if components != 3 {
            return Err(corrupt(format!(
                "{components} colour component(s); only YCbCr camera JPEGs are recorded"
            )));
        }
        let size = decoder
            .output_buffer_size()
            .ok_or_else(|| corrupt("no output size".into()))?;
        self.ycbcr.resize(size, 0);
        decoder
            .decode_into(&mut self.ycbcr)
            .map_err(|e| corrupt(format!("{e:?}")))?;
        Ok((w, h))
    }
}

fn corrupt(what: String) -> Error {
    Error::new(ErrorKind::Corrupt, format!("MJPEG frame: {what}"))
}

/// Interleaved full-resolution YCbCr → packed I420 (chroma averaged over 2×2 blocks; an
/// odd last row or column uses the pixels there are).
fn ycbcr_to_i420(src: &[u8], w: usize, h: usize, out: &mut Vec<u8>) {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    out.clear();
    out.resize(w * h + 2 * cw * ch, 0);
    let (y_plane, chroma) = out.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
    for (y_row, src_row) in y_plane.chunks_exact_mut(w).zip(src.chunks_exact(w * 3)) {
        for (y, px) in y_row.iter_mut().zip(src_row.chunks_exact(3)) {
            *y = px[0];
        }
    }
    let row = |r: usize| &src[r * w * 3..(r + 1) * w * 3];
    let pairs = u_plane
        .chunks_exact_mut(cw)
        .zip(v_plane.chunks_exact_mut(cw))
        .enumerate();
    for (cy, (u_row, v_row)) in pairs {
        let top = row(cy * 2);
        let bottom = row((cy * 2 + 1).min(h - 1));
        for cx in 0..cw {
            let a = cx * 6;
            // The right neighbour, or the same pixel at an odd last column.
            let b = if cx * 2 + 1 < w { a + 3 } else { a };
            let sum = |k: usize| {
                top[a + k] as u32 + top[b + k] as u32 + bottom[a + k] as u32 + bottom[b + k] as u32
            };
            u_row[cx] = ((sum(1) + 2) / 4) as u8;
            v_row[cx] = ((sum(2) + 2) / 4) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::jpeg;

    /// An I420 picture with four chroma quadrants and a luma ramp.
    fn picture(w: usize, h: usize) -> Vec<u8> {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut p = vec![0u8; w * h + 2 * cw * ch];
        for y in 0..h {
            for x in 0..w {
                p[y * w + x] = (16 + (x + y) % 200) as u8;
            }
        }
        for y in 0..ch {
            for x in 0..cw {
                p[w * h + y * cw + x] = if x < cw / 2 { 90 } else { 200 };
                p[w * h + cw * ch + y * cw + x] = if y < ch / 2 { 60 } else { 180 };
            }
        }
        p
    }

    fn max_diff(a: &[u8], b: &[u8]) -> u8 {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn decodes_a_camera_jpeg_back_to_its_picture() {
        let (w, h) = (64, 48);
        let original = picture(w, h);
        let mut encoded = Vec::new();
        jpeg::encode_i420(&original, w as u32, h as u32, 95, &mut encoded).unwrap();
        let mut decoder = MjpegDecoder::new();
        let mut out = Vec::new();
        decoder
            .decode_i420(&encoded, w as u32, h as u32, &mut out)
            .unwrap();
        assert_eq!(out.len(), original.len());
        // Lossy, but close: luma within a few levels, flat chroma quadrants kept.
        assert!(max_diff(&out[..w * h], &original[..w * h]) < 12);
        let cw = w / 2;
        let u = &out[w * h..w * h + cw * (h / 2)];
        assert!(u[cw * 4 + 2].abs_diff(90) < 6 && u[cw * 4 + cw - 3].abs_diff(200) < 6);
    }

    #[test]
    fn torn_truncated_or_wrong_sized_frames_are_corrupt_not_panics() {
        let (w, h) = (64, 48);
        let mut encoded = Vec::new();
        jpeg::encode_i420(&picture(w, h), w as u32, h as u32, 90, &mut encoded).unwrap();
        let mut decoder = MjpegDecoder::new();
        let mut out = Vec::new();
        let mut check = |data: &[u8], width: u32| {
            let err = decoder
                .decode_i420(data, width, h as u32, &mut out)
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
        };
        check(&encoded[..encoded.len() / 2], w as u32);
        check(&encoded[..20], w as u32);
        check(&[], w as u32);
        check(&encoded, 32);
        let mut garbage = encoded.clone();
        // (Near the end: half of this small JPEG is its tables.)
        let at = garbage.len() - 100;
        garbage[at..at + 40].fill(0xFF);
        // 0xFF fill running into entropy-coded data: not a marker, so damage.
        let err = decoder
            .decode_i420(&garbage, w as u32, h as u32, &mut out)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
    }

    /// The VM bench's damage (512 random bytes over the middle of a 640x480 camera JPEG),
    /// 200 times with different bytes: what the decoder alone and the decoder after the
    /// scan check reject. `cargo test --release --lib garbage_inside -- --nocapture`
    /// prints both rates.
    #[test]
    fn garbage_inside_a_frame_is_caught_by_the_scan_check() {
        let (w, h) = (640, 480);
        let mut encoded = Vec::new();
        jpeg::encode_i420(&picture(w, h), w as u32, h as u32, 85, &mut encoded).unwrap();
        let mut decoder = MjpegDecoder::new();
        let mut out = Vec::new();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut by_decoder, mut by_both) = (0, 0);
        let trials = 200;
        for _ in 0..trials {
            let mut damaged = encoded.clone();
            let mid = damaged.len() / 2;
            for b in &mut damaged[mid..mid + 512] {
                *b = next() as u8;
            }
            by_decoder += decoder
                .decode_without_scan_check(&damaged, w as u32, h as u32)
                .is_err() as u32;
            by_both += decoder.check(&damaged, w as u32, h as u32).is_err() as u32;
        }
        println!("damaged frames rejected: decoder alone {by_decoder}/{trials}, scan check + decoder {by_both}/{trials}");
        // Garbage holding an 0xFF (about 5 in 6 here) breaks the scan's markers; the rest
        // breaks its Huffman codes (200/200 when measured, as ffmpeg).
        assert!(by_both > by_decoder, "{by_both} vs {by_decoder}");
        assert!(by_both * 100 >= trials * 98, "{by_both}/{trials}");
        decoder
            .decode_i420(&encoded, w as u32, h as u32, &mut out)
            .unwrap();
    }
}
