//! Baseline JPEG encoder for planar 4:2:0 pictures (I420): the file's markers and the
//! MCU loop that reads 8x8 blocks straight from the Y, U and V planes. Standard tables
//! (T.81 Annex K), no restart markers, one interleaved scan. The DCT and quantiser are
//! in `jpeg_fdct`, the Huffman coder in `jpeg_huffman`.
//!
//! The DCT vectorises with the target's baseline vector unit (SSE2 on x86-64, NEON on
//! aarch64). A copy compiled for AVX2 and picked at run time measured no faster
//! (`cargo bench --bench jpeg`: 1.28-1.37x libjpeg-turbo with SSE2 alone, 1.25-1.41x
//! with AVX2), so there is none.

use super::jpeg_fdct::{nonzero_zigzag, Quantizer, CHROMA_QUANT, LUMA_QUANT, ZIGZAG};
use super::jpeg_huffman::{BitWriter, HuffmanTable, CHROMA_AC, CHROMA_DC, LUMA_AC, LUMA_DC};
use super::yuv::I420;
use crate::error::{Error, ErrorKind, Result};

/// Encodes `picture` as a baseline JPEG at `quality` (1..=100, libjpeg's scale) into
/// `out` (cleared first; its capacity is reused, so a warm buffer allocates nothing).
pub fn encode(picture: &I420, quality: u8, out: &mut Vec<u8>) -> Result<()> {
    let (w, h) = (picture.width, picture.height);
    if w == 0 || h == 0 || w > u16::MAX as usize || h > u16::MAX as usize {
        return Err(Error::new(
            ErrorKind::Codec,
            format!("a JPEG cannot be {w}x{h}"),
        ));
    }
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    if picture.y.len() < w * h || picture.u.len() < cw * ch || picture.v.len() < cw * ch {
        return Err(Error::new(
            ErrorKind::Codec,
            format!("I420 planes are short for {w}x{h}"),
        ));
    }
    let luma = Quantizer::new(&LUMA_QUANT, quality);
    let chroma = Quantizer::new(&CHROMA_QUANT, quality);
    out.clear();
    write_headers(out, w as u16, h as u16, &luma, &chroma);
    scan(picture, &luma, &chroma, out);
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(())
}

/// One component's plane, its quantiser and tables, and its DC predictor.
struct Component<'a> {
    plane: &'a [u8],
    width: usize,
    height: usize,
    quantizer: &'a Quantizer,
    dc: &'static HuffmanTable,
    ac: &'static HuffmanTable,
    dc_pred: i32,
}

impl Component<'_> {
    /// Codes the block whose top-left pixel is (x, y); blocks over the picture's right or
    /// bottom edge repeat its last column and row, as libjpeg pads them.
    #[inline(always)]
    fn block(&mut self, x: usize, y: usize, bits: &mut BitWriter) {
        let mut coefs = [0i32; 64];
        if x + 8 <= self.width && y + 8 <= self.height {
            self.quantizer
                .block(self.plane, y * self.width + x, self.width, &mut coefs);
        } else {
            let mut padded = [0u8; 64];
            for (r, row) in padded.chunks_exact_mut(8).enumerate() {
                let sy = (y + r).min(self.height - 1);
                for (c, p) in row.iter_mut().enumerate() {
                    let sx = (x + c).min(self.width - 1);
                    *p = self.plane[sy * self.width + sx];
                }
            }
            self.quantizer.block(&padded, 0, 8, &mut coefs);
        }
        let nonzero = nonzero_zigzag(&coefs);
        bits.block(
            &coefs,
            &ZIGZAG,
            nonzero,
            &mut self.dc_pred,
            self.dc,
            self.ac,
        );
    }
}

/// The entropy-coded scan: MCUs of four luma blocks (16x16) then one Cb and one Cr.
fn scan(picture: &I420, luma: &Quantizer, chroma: &Quantizer, out: &mut Vec<u8>) {
    let (w, h) = (picture.width, picture.height);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    // Compressed sizes stay well under this for natural pictures; a bigger one grows `out`.
    out.reserve(w * h / 2);
    let component = |plane, width, height, quantizer, dc, ac| Component {
        plane,
        width,
        height,
        quantizer,
        dc,
        ac,
        dc_pred: 0,
    };
    let mut y = component(picture.y, w, h, luma, &LUMA_DC, &LUMA_AC);
    let mut u = component(picture.u, cw, ch, chroma, &CHROMA_DC, &CHROMA_AC);
    let mut v = component(picture.v, cw, ch, chroma, &CHROMA_DC, &CHROMA_AC);
    let mut bits = BitWriter::new(out);
    for my in 0..h.div_ceil(16) {
        for mx in 0..w.div_ceil(16) {
            let (px, py) = (mx * 16, my * 16);
            y.block(px, py, &mut bits);
            y.block(px + 8, py, &mut bits);
            y.block(px, py + 8, &mut bits);
            y.block(px + 8, py + 8, &mut bits);
            u.block(mx * 8, my * 8, &mut bits);
            v.block(mx * 8, my * 8, &mut bits);
        }
    }
    bits.finish();
}

fn write_headers(out: &mut Vec<u8>, w: u16, h: u16, luma: &Quantizer, chroma: &Quantizer) {
    // A marker segment whose body is `parts` one after the other.
    let segment = |out: &mut Vec<u8>, marker: u8, parts: &[&[u8]]| {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&(len as u16 + 2).to_be_bytes());
        for part in parts {
            out.extend_from_slice(part);
        }
    };
    out.extend_from_slice(&[0xFF, 0xD8]);
    // JFIF 1.01, no density (aspect 1:1), no thumbnail.
    segment(out, 0xE0, &[b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00"]);
    for (id, q) in [(0u8, luma), (1, chroma)] {
        segment(out, 0xDB, &[&[id], &q.zigzag]);
    }
    let [hh, hl] = h.to_be_bytes();
    let [wh, wl] = w.to_be_bytes();
    // 8-bit, three components: Y sampled 2x2 with table 0, Cb and Cr 1x1 with table 1.
    segment(
        out,
        0xC0,
        &[&[8, hh, hl, wh, wl, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]],
    );
    for (class_id, table) in [
        (0x00, &LUMA_DC),
        (0x10, &LUMA_AC),
        (0x01, &CHROMA_DC),
        (0x11, &CHROMA_AC),
    ] {
        segment(out, 0xC4, &[&[class_id], table.bits, table.values]);
    }
    segment(out, 0xDA, &[&[3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]]);
}
