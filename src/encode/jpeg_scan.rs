//! The structural check of a camera JPEG's entropy-coded scan, run before it is decoded.
//!
//! A decoder that meets garbage inside the scan often decodes it into a damaged picture
//! without an error (zune-jpeg let 2 of 36 such frames from the VM bench through). The
//! bytes themselves say more: inside a scan every 0xFF is followed by 0x00 (a stuffed
//! byte), 0xFF (fill), a restart marker RST0–RST7 in order, or EOI at the end. Random bytes
//! written over the scan, or the halves of two frames glued together (a torn USB transfer),
//! break that: another marker appears, the restart markers skip or repeat, or there are
//! too few or too many of them for the picture's MCUs when the camera sets a restart
//! interval (most UVC cameras do), or EOI comes before the end of the frame. Baseline and
//! extended sequential JPEGs with one interleaved scan are checked (what cameras send); a
//! progressive or multi-scan JPEG is left to the decoder.

/// What is wrong with a JPEG, in a few words for the log and the counter.
pub type Damage = String;

/// Checks the markers of `jpeg` up to and through its first scan.
pub fn check(jpeg: &[u8]) -> Result<(), Damage> {
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
        return Err("no SOI marker at the start".into());
    }
    let mut at = 2;
    let mut restart_interval = 0u32;
    let mut mcus = None;
    let mut frame_components = 0;
    // Header segments up to SOS: each is FF xx LEN(2, big-endian, counting itself).
    let scan_start = loop {
        while jpeg.get(at) == Some(&0xFF) && jpeg.get(at + 1) == Some(&0xFF) {
            at += 1; // fill bytes before a marker
        }
        let (Some(&0xFF), Some(&marker)) = (jpeg.get(at), jpeg.get(at + 1)) else {
            return Err(format!("no marker at byte {at} of the header"));
        };
        if marker == 0xD9 || (0xD0..=0xD7).contains(&marker) || marker == 0x00 {
            return Err(format!("marker 0xFF{marker:02X} before the scan"));
        }
        let len = match jpeg.get(at + 2..at + 4) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
            None => return Err("truncated in the header".into()),
        };
        let body = jpeg
            .get(at + 4..at + 2 + len)
            .filter(|_| len >= 2)
            .ok_or_else(|| format!("segment 0xFF{marker:02X} runs past the end"))?;
        match marker {
            // SOF0/1 (baseline, extended sequential): size and sampling → MCU count.
            0xC0 | 0xC1 => {
                mcus = Some(mcu_count(body)?);
                frame_components = body[5] as usize;
            }
            // Progressive or other processes: several scans, not a camera frame's shape.
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(()),
            0xDD if body.len() >= 2 => {
                restart_interval = u16::from_be_bytes([body[0], body[1]]) as u32
            }
            0xDA => {
                // A scan of fewer components than the frame: the frame has several scans
                // (non-interleaved), not a camera's shape; the decoder judges it.
                if body.first().map(|&n| n as usize) != Some(frame_components) {
                    return Ok(());
                }
                break at + 2 + len;
            }
            _ => {}
        }
        at += 2 + len;
    };
    let mcus = mcus.ok_or("no frame header (SOF) before the scan")?;

    // The scan: FF 00 stuffing, FF FF fill, RSTn in order, EOI ends it.
    let mut restarts = 0u32;
    let mut i = scan_start;
    loop {
        let Some(off) = memchr_ff(&jpeg[i..]) else {
            return Err("no EOI: the frame is truncated".into());
        };
        let p = i + off;
        let Some(&next) = jpeg.get(p + 1) else {
            return Err("no EOI: the frame is truncated".into());
        };
        match next {
            0x00 | 0xFF => i = p + 1,
            0xD0..=0xD7 => {
                let expected = 0xD0 + (restarts % 8) as u8;
                if next != expected {
                    return Err(format!(
                        "restart marker RST{} where RST{} belongs",
                        next - 0xD0,
                        expected - 0xD0
                    ));
                }
                restarts += 1;
                i = p + 2;
            }
            0xD9 => {
                // Cameras may pad a frame after EOI with zeros; anything else is more data.
                if jpeg[p + 2..].iter().any(|&b| b != 0) {
                    return Err(format!(
                        "EOI {} bytes before the end of the frame",
                        jpeg.len() - p - 2
                    ));
                }
                break;
            }
            other => return Err(format!("marker 0xFF{other:02X} inside the scan")),
        }
    }
    if restart_interval > 0 {
        let expected = mcus.div_ceil(restart_interval) - 1;
        if restarts != expected {
            return Err(format!(
                "{restarts} restart markers in the scan, {expected} belong to {mcus} MCUs"
            ));
        }
    }
    Ok(())
}

/// The number of MCUs of an interleaved scan from a SOF segment's body.
fn mcu_count(sof: &[u8]) -> Result<u32, Damage> {
    if sof.len() < 6 {
        return Err("frame header too short".into());
    }
    let height = u16::from_be_bytes([sof[1], sof[2]]) as u32;
    let width = u16::from_be_bytes([sof[3], sof[4]]) as u32;
    let components = sof[5] as usize;
    let specs = sof
        .get(6..6 + 3 * components)
        .filter(|_| components > 0)
        .ok_or("frame header's components run past it")?;
    let (mut h_max, mut v_max) = (1u32, 1u32);
    for c in specs.chunks_exact(3) {
        h_max = h_max.max((c[1] >> 4) as u32);
        v_max = v_max.max((c[1] & 0x0F) as u32);
    }
    if width == 0 || height == 0 {
        return Err("frame header gives no size".into());
    }
    // A single-component scan is not interleaved: its MCU is one 8×8 block.
    let (mw, mh) = if components == 1 {
        (8, 8)
    } else {
        (8 * h_max, 8 * v_max)
    };
    Ok(width.div_ceil(mw) * height.div_ceil(mh))
}

fn memchr_ff(b: &[u8]) -> Option<usize> {
    b.iter().position(|&x| x == 0xFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jpeg_encoder::{ColorType, Encoder};

    /// A 4:2:0 JPEG of a gradient, with the restart interval given (0: none).
    fn jpeg(w: u16, h: u16, restart_interval: u16) -> Vec<u8> {
        let mut rgb = Vec::new();
        for y in 0..h as u32 {
            for x in 0..w as u32 {
                rgb.extend_from_slice(&[(x * 3) as u8, (y * 5) as u8, ((x + y) * 7) as u8]);
            }
        }
        let mut out = Vec::new();
        let mut enc = Encoder::new(&mut out, 90);
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        if restart_interval > 0 {
            enc.set_restart_interval(restart_interval);
        }
        enc.encode(&rgb, w, h, ColorType::Rgb).unwrap();
        out
    }

    /// Where the scan's data starts (after the SOS segment).
    fn scan_start(j: &[u8]) -> usize {
        let sos = j.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        sos + 2 + u16::from_be_bytes([j[sos + 2], j[sos + 3]]) as usize
    }

    #[test]
    fn whole_camera_jpegs_pass() {
        for ri in [0, 1, 4, 7] {
            let j = jpeg(96, 64, ri);
            assert_eq!(check(&j), Ok(()), "restart interval {ri}");
        }
        // Odd sizes: partial MCUs at the right and bottom count as MCUs.
        assert_eq!(check(&jpeg(50, 34, 2)), Ok(()));
    }

    #[test]
    fn truncation_and_a_bad_start_are_damage() {
        let j = jpeg(96, 64, 0);
        for cut in [0, 1, 3, 10, j.len() / 2, j.len() - 2, j.len() - 1] {
            assert!(check(&j[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = j.clone();
        bad[1] = 0xD9;
        assert!(check(&bad).is_err());
    }

    #[test]
    fn a_foreign_marker_inside_the_scan_is_damage() {
        let mut j = jpeg(96, 64, 0);
        let at = scan_start(&j) + 20;
        j[at] = 0xFF;
        j[at + 1] = 0xC0;
        let why = check(&j).unwrap_err();
        assert!(why.contains("inside the scan"), "{why}");
    }

    #[test]
    fn an_eoi_before_the_end_is_damage_but_zero_padding_is_not() {
        let j = jpeg(96, 64, 0);
        let mut padded = j.clone();
        padded.extend_from_slice(&[0; 300]);
        assert_eq!(check(&padded), Ok(()));
        // Two frames glued together, or an EOI written into the middle of the data.
        let mut glued = j.clone();
        glued.extend_from_slice(&j);
        assert!(check(&glued).unwrap_err().contains("EOI"));
        let mut early = j.clone();
        let at = scan_start(&j) + 30;
        early[at] = 0xFF;
        early[at + 1] = 0xD9;
        assert!(check(&early).unwrap_err().contains("EOI"));
    }

    #[test]
    fn restart_markers_out_of_order_or_missing_are_damage() {
        // 12×8 MCUs of 16×16 at 192×128 = 96 MCUs; interval 8 → 11 RST markers.
        let j = jpeg(192, 128, 8);
        assert_eq!(check(&j), Ok(()));
        let rst: Vec<usize> = (scan_start(&j)..j.len() - 1)
            .filter(|&i| j[i] == 0xFF && (0xD0..=0xD7).contains(&j[i + 1]))
            .collect();
        assert_eq!(rst.len(), 11);
        // A torn frame: the data between the 3rd and the 6th restart is missing.
        let mut torn = j[..rst[2]].to_vec();
        torn.extend_from_slice(&j[rst[5]..]);
        assert!(
            check(&torn).unwrap_err().contains("RST"),
            "{:?}",
            check(&torn)
        );
        // Two intervals gone whose numbers line up again (8 apart): the count tells.
        let mut short = j[..rst[0]].to_vec();
        short.extend_from_slice(&j[rst[8]..]);
        let why = check(&short).unwrap_err();
        assert!(
            why.contains("restart markers") || why.contains("RST"),
            "{why}"
        );
    }

    #[test]
    fn progressive_or_multi_scan_is_left_to_the_decoder() {
        // A made-up header with SOF2: the check does not judge it.
        let j = [
            0xFF, 0xD8, 0xFF, 0xC2, 0x00, 0x08, 8, 0, 16, 0, 16, 0, 0xFF, 0xD9,
        ];
        assert_eq!(check(&j), Ok(()));
    }
}
