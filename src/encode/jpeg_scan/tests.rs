use super::*;
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// A JPEG of a gradient from jpeg-encoder, with the sampling and restart interval given
/// (0: none).
fn encoded(w: u16, h: u16, sampling: SamplingFactor, restart_interval: u16) -> Vec<u8> {
    let mut rgb = Vec::new();
    for y in 0..h as u32 {
        for x in 0..w as u32 {
            rgb.extend_from_slice(&[(x * 3) as u8, (y * 5) as u8, ((x + y) * 7) as u8]);
        }
    }
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, 90);
    enc.set_sampling_factor(sampling);
    if restart_interval > 0 {
        enc.set_restart_interval(restart_interval);
    }
    enc.encode(&rgb, w, h, ColorType::Rgb).unwrap();
    out
}

/// A 4:2:0 JPEG of a gradient, with the restart interval given (0: none).
fn jpeg(w: u16, h: u16, restart_interval: u16) -> Vec<u8> {
    encoded(w, h, SamplingFactor::F_2_2, restart_interval)
}

/// Where the scan's data starts (after the SOS segment).
fn scan_start(j: &[u8]) -> usize {
    let sos = j.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    sos + 2 + u16::from_be_bytes([j[sos + 2], j[sos + 3]]) as usize
}

/// An 8·`mcus`×8 grey JPEG whose scan is `scan` (then EOI), with tables whose codes a
/// test can write by hand. DC: `0` → category 0, `10` → category 12 (out of range),
/// `11` → none. AC: `0` → EOB, `10` → ZRL, `110` → run 0 size 1, `111` → run 14 size 1.
fn hand_made(mcus: u16, scan: &[u8]) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    // SOF0: 8-bit, 8 high, 8·mcus wide, one component (id 1, 1×1, table 0).
    let w = (8 * mcus).to_be_bytes();
    j.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8, 0, 8, w[0], w[1], 1, 1, 0x11, 0]);
    let mut dc = [0u8; 16];
    dc[0] = 1;
    dc[1] = 1;
    let mut ac = [0u8; 16];
    ac[0] = 1;
    ac[1] = 1;
    ac[2] = 2;
    j.extend_from_slice(&[0xFF, 0xC4, 0, 2 + 17 + 2 + 17 + 4, 0x00]);
    j.extend_from_slice(&dc);
    j.extend_from_slice(&[0, 12]);
    j.push(0x10);
    j.extend_from_slice(&ac);
    j.extend_from_slice(&[0x00, 0xF0, 0x01, 0xE1]);
    // SOS: one component, tables 0/0, 0–63, 0.
    j.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 63, 0]);
    j.extend_from_slice(scan);
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
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
fn jpeg_encoder_output_passes_at_every_size_sampling_and_restart_interval() {
    let samplings = [
        SamplingFactor::F_1_1,
        SamplingFactor::F_2_1,
        SamplingFactor::F_1_2,
        SamplingFactor::F_2_2,
        SamplingFactor::F_4_1,
        SamplingFactor::F_4_2,
    ];
    for (w, h) in [(8, 8), (1, 1), (17, 9), (50, 34), (97, 61), (320, 240)] {
        for sampling in samplings {
            for ri in [0, 1, 3, 16] {
                let j = encoded(w, h, sampling, ri);
                assert_eq!(check(&j), Ok(()), "{w}x{h} {sampling:?} interval {ri}");
            }
        }
    }
    // One component (grey): each MCU is one block.
    let mut grey = Vec::new();
    let luma: Vec<u8> = (0..77 * 45).map(|i| (i * 7) as u8).collect();
    Encoder::new(&mut grey, 80)
        .encode(&luma, 77, 45, ColorType::Luma)
        .unwrap();
    assert_eq!(check(&grey), Ok(()));
}

#[test]
fn ffmpeg_output_passes() {
    // `ffmpeg -f lavfi -i testsrc=size=160x120 -frames 1 -q:v 5 -pix_fmt yuvj420p`, and
    // 158x98 at -q:v 3 in yuvj422p (a webcam's sampling): ffmpeg's optimal Huffman
    // tables, odd MCUs at the edges.
    for j in [
        &include_bytes!("../../../tests/fixtures/ffmpeg-testsrc-160x120-420.jpg")[..],
        &include_bytes!("../../../tests/fixtures/ffmpeg-testsrc-158x98-422.jpg")[..],
    ] {
        assert_eq!(check(j), Ok(()));
    }
}

#[test]
fn hand_made_codes_are_judged() {
    // DC 0, EOB, padding: the valid frame the others break.
    assert_eq!(check(&hand_made(1, &[0b0011_1111])), Ok(()));
    // Three ZRL and a coefficient reach 50; run 14 then lands on 64.
    let why = check(&hand_made(1, &[0b0101_0101, 0b1001_1111])).unwrap_err();
    assert_eq!(why, "AC run past coefficient 63 in MCU 0");
    // Three ZRL (49), run 14 + a coefficient: 63 is the last one, fine.
    assert_eq!(check(&hand_made(1, &[0b0101_0101, 0b1101_1111])), Ok(()));
    // Four ZRL: 65 coefficients.
    let why = check(&hand_made(1, &[0b0101_0101, 0b0111_1111])).unwrap_err();
    assert_eq!(why, "AC run past coefficient 63 in MCU 0");
    let why = check(&hand_made(2, &[0b0011_0000])).unwrap_err();
    assert_eq!(why, "no Huffman code for DC in MCU 1");
    let why = check(&hand_made(1, &[0b1011_1111])).unwrap_err();
    assert_eq!(why, "DC magnitude category above 11 in MCU 0");
}

#[test]
fn leftover_bytes_and_missing_mcus_are_damage() {
    // MAX_LEFTOVER whole bytes after the last code pass; more do not.
    let mut frame = vec![0b0011_1111];
    frame.extend_from_slice(&[0x12; MAX_LEFTOVER]);
    assert_eq!(check(&hand_made(1, &frame)), Ok(()));
    frame.push(0x12);
    let why = check(&hand_made(1, &frame)).unwrap_err();
    assert_eq!(why, "scan ends after 1 of 1 MCUs with 5 bytes left");

    let j = jpeg(320, 240, 0); // 300 MCUs
    let eoi = j.len() - 2;
    let mut padded = j[..eoi].to_vec();
    padded.extend_from_slice(&[0x12; 300]);
    padded.extend_from_slice(&j[eoi..]);
    let why = check(&padded).unwrap_err();
    assert_eq!(why, "scan ends after 300 of 300 MCUs with 300 bytes left");

    // The second half of the data lost, EOI still there (a short USB transfer).
    let mut short = j[..(scan_start(&j) + eoi) / 2].to_vec();
    short.extend_from_slice(&j[eoi..]);
    let why = check(&short).unwrap_err();
    assert!(
        why.starts_with("scan ends after ") && why.ends_with(" of 300 MCUs"),
        "{why}"
    );
    // Hand-made: one byte holds the codes of 4 MCUs (DC 0, EOB), 5 belong. Zeros read
    // past the data would decode as a 5th, so the check must know they are not data.
    let why = check(&hand_made(5, &[0b0000_0000])).unwrap_err();
    assert_eq!(why, "scan ends after 4 of 5 MCUs");
    assert_eq!(check(&hand_made(4, &[0b0000_0000])), Ok(()));
}

#[test]
fn a_restart_interval_short_of_data_is_damage() {
    // 20×15 MCUs; interval 10: 30 intervals. Half of interval 4 is lost.
    let j = jpeg(320, 240, 10);
    let rst: Vec<usize> = (scan_start(&j)..j.len() - 1)
        .filter(|&i| j[i] == 0xFF && (0xD0..=0xD7).contains(&j[i + 1]))
        .collect();
    let mut torn = j[..(rst[3] + rst[4]) / 2].to_vec();
    torn.extend_from_slice(&j[rst[4]..]);
    let why = check(&torn).unwrap_err();
    assert!(why.starts_with("restart interval 4 ends after 4"), "{why}");
}

#[test]
fn undefined_tables_and_broken_dht_are_damage() {
    // Selector 2 in a JPEG that defines only 0 and 1.
    let mut j = jpeg(32, 32, 0);
    let sos = j.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    j[sos + 6] = 0x22;
    assert!(check(&j).unwrap_err().contains("no DHT defines"));
    // No DHT at all (MJPEG in AVI): the standard tables, which jpeg-encoder uses.
    let j = jpeg(48, 32, 2);
    let mut without = j[..2].to_vec();
    let mut at = 2;
    while j[at + 1] != 0xDA {
        let len = u16::from_be_bytes([j[at + 2], j[at + 3]]) as usize;
        if j[at + 1] != 0xC4 {
            without.extend_from_slice(&j[at..at + 2 + len]);
        }
        at += 2 + len;
    }
    without.extend_from_slice(&j[at..]);
    assert!(without.len() < j.len());
    assert_eq!(check(&without), Ok(()));
    // A table with more codes of one bit than one bit holds.
    let mut over = hand_made(1, &[0b0011_1111]);
    let dht = over.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
    over[dht + 5] = 3;
    assert!(check(&over).is_err());
}

/// Thousands of single-byte changes and cuts of small JPEGs: an answer each, never a
/// panic or a hang.
#[test]
fn random_byte_flips_never_panic() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let frames = [
        jpeg(40, 24, 0),
        jpeg(40, 24, 2),
        encoded(33, 17, SamplingFactor::F_2_1, 1),
        include_bytes!("../../../tests/fixtures/ffmpeg-testsrc-160x120-420.jpg").to_vec(),
    ];
    let mut rejected = 0;
    let mut trials = 0;
    for frame in &frames {
        for _ in 0..2000 {
            let mut f = frame.clone();
            let at = next() as usize % f.len();
            f[at] = next() as u8;
            rejected += check(&f).is_err() as u32;
            let cut = next() as usize % f.len();
            let _ = check(&f[..cut]);
            trials += 1;
        }
    }
    // Most flips land in the scan and change a code.
    assert!(rejected * 3 > trials, "{rejected}/{trials}");
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
