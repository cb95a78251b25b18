//! The "no signal" picture: what an MJPEG viewer is sent about once a second while its
//! camera is gone or silent, so the stream shows why instead of hanging on the last frame.
//! Made once (a small dark frame with "NO SIGNAL" in block letters) and shared.

use std::sync::OnceLock;

use bytes::Bytes;

use super::jpeg;

const WIDTH: usize = 320;
const HEIGHT: usize = 180;
const TEXT: &[u8] = b"NO SIGNAL";

/// The placeholder JPEG (encoded on first use).
pub fn no_signal_jpeg() -> Bytes {
    static JPEG: OnceLock<Bytes> = OnceLock::new();
    JPEG.get_or_init(|| {
        let picture = picture();
        let mut out = Vec::new();
        jpeg::encode_i420(&picture, WIDTH as u32, HEIGHT as u32, 80, &mut out)
            .expect("a fixed-size I420 picture always encodes");
        Bytes::from(out)
    })
    .clone()
}

/// Dark grey I420 with the text in light grey, centred.
fn picture() -> Vec<u8> {
    let (cw, ch) = (WIDTH / 2, HEIGHT / 2);
    let mut p = vec![128u8; WIDTH * HEIGHT + 2 * cw * ch];
    p[..WIDTH * HEIGHT].fill(40);
    let scale = 4;
    let text_w = TEXT.len() * 6 * scale;
    let (x0, y0) = ((WIDTH - text_w) / 2, (HEIGHT - 7 * scale) / 2);
    for (i, &c) in TEXT.iter().enumerate() {
        for (gy, bits) in glyph(c).iter().enumerate() {
            for gx in 0..5 {
                if bits & (0x10 >> gx) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    let y = y0 + gy * scale + dy;
                    let x = x0 + (i * 6 + gx) * scale;
                    p[y * WIDTH + x..y * WIDTH + x + scale].fill(200);
                }
            }
        }
    }
    p
}

/// 5x7 glyphs of the letters used, one byte per row, low 5 bits.
fn glyph(c: u8) -> [u8; 7] {
    match c {
        b'N' => [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11],
        b'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        b'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        b'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        b'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        b'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        b'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        _ => [0; 7],
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_placeholder_is_a_jpeg_with_text_in_it() {
        let jpeg = super::no_signal_jpeg();
        assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]));
        let p = super::picture();
        let bright = p[..super::WIDTH * super::HEIGHT]
            .iter()
            .filter(|&&y| y == 200)
            .count();
        assert!(bright > 1000, "the text is drawn: {bright} bright pixels");
    }
}
