//! Fragmented MP4 clips on disk: the scanner that finds where a torn file stops being
//! valid, and repair. The boxes themselves are written by `encode::fmp4` (re-exported
//! here for the clip side).
//!
//! A clip on disk is always `init, (moof mdat)*, [torn tail]`. Each fragment is written
//! whole and fsynced, so a power cut tears at most the fragment being written; recovery
//! cuts the file back to the end of the last complete `mdat` (a tear inside `moof` makes
//! FFmpeg reject the whole file, one inside `mdat` fails a full decode).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use mp4_atom::{Decode, Moof, Moov, TrunSamples};

pub use crate::encode::fmp4::{
    init_segment, ticks_to_us, us_to_ticks, FragmentBuilder, SampleInfo, TrackCodec, TIMESCALE,
};
use crate::error::{Error, Result};

/// Whether one whole `moov` or `moof` box (header included) holds only the boxes this
/// writer writes, each within its parent. Checked before mp4-atom decodes a box read from
/// disk: mp4-atom 0.17 decodes any box it knows wherever it appears, and some (`sgpd` with
/// a large entry count and empty entries) loop without reading, until memory runs out
/// (found by the fmp4_scan and fmp4_repair fuzz targets). A clip benchcam did not write
/// is not one it needs to read.
pub fn written_by_us(atom: &[u8]) -> bool {
    fn walk(mut b: &[u8], depth: u32) -> bool {
        while !b.is_empty() {
            if b.len() < 8 {
                return false;
            }
            let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let kind: [u8; 4] = [b[4], b[5], b[6], b[7]];
            // Our writer never uses 64-bit or to-the-end sizes inside moov/moof.
            if size < 8 || size > b.len() {
                return false;
            }
            let body = &b[8..size];
            let fine = match &kind {
                b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"stbl" | b"mvex" | b"moof"
                | b"traf" => depth < 6 && walk(body, depth + 1),
                b"mvhd" | b"tkhd" | b"mdhd" | b"hdlr" | b"vmhd" | b"dref" | b"stsd" | b"stts"
                | b"stsc" | b"stsz" | b"stco" | b"trex" | b"mehd" | b"mfhd" | b"tfhd" | b"tfdt"
                | b"trun" => true,
                _ => false,
            };
            if !fine {
                return false;
            }
            b = &b[size..];
        }
        true
    }
    walk(atom, 0)
}

/// What a scan of a clip file found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClipScan {
    /// Bytes from the start that form a valid clip (init + complete fragments).
    pub valid_len: u64,
    /// The file's length on disk.
    pub file_len: u64,
    pub fragments: u32,
    pub samples: u64,
    /// Decode time of the first sample and end of the last, in timescale ticks.
    pub first_decode_ticks: u64,
    pub end_ticks: u64,
    /// Whether the init segment (`ftyp` + `moov`) is complete.
    pub has_init: bool,
    /// Where the init segment ends (the first `moof` starts), when complete.
    pub init_len: u64,
    /// Track size from the init segment.
    pub width: u32,
    pub height: u32,
}

impl ClipScan {
    pub fn duration_us(&self) -> u64 {
        ticks_to_us(self.end_ticks.saturating_sub(self.first_decode_ticks))
    }

    pub fn is_torn(&self) -> bool {
        self.valid_len != self.file_len
    }
}

/// Reads the top-level boxes of a clip and reports the valid prefix. Never trusts sizes
/// beyond the file: a box that runs past the end is a torn tail.
pub fn scan(path: &Path) -> Result<ClipScan> {
    let (mut file, file_len) = open_clip(path)?;
    scan_reader(&mut file, file_len)
}

fn open_clip(path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).map_err(|e| Error::io(e, format!("opening {}", path.display())))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(e, format!("reading {}", path.display())))?
        .len();
    Ok((file, len))
}

/// One complete `moof` + `mdat` pair of a clip file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    pub moof_at: u64,
    pub moof_len: u64,
    /// The samples' bytes: the `mdat` box's payload.
    pub data_at: u64,
    pub data_len: u64,
    pub samples: u64,
    pub decode_ticks: u64,
    pub duration_ticks: u64,
}

/// [`scan`] over any seekable reader holding `file_len` bytes (the fuzz target's way in).
pub fn scan_reader<R: Read + Seek>(file: &mut R, file_len: u64) -> Result<ClipScan> {
    scan_fragments(file, file_len, |_| {})
}

/// The complete fragments of a clip file, in order, and its scan.
pub fn fragments(path: &Path) -> Result<(ClipScan, Vec<Fragment>)> {
    let (mut file, file_len) = open_clip(path)?;
    let mut list = Vec::new();
    let scan = scan_fragments(&mut file, file_len, |f| list.push(f))?;
    Ok((scan, list))
}

/// [`scan_reader`], calling `on_fragment` for each complete `moof` + `mdat` pair.
pub fn scan_fragments<R: Read + Seek>(
    file: &mut R,
    file_len: u64,
    mut on_fragment: impl FnMut(Fragment),
) -> Result<ClipScan> {
    let mut scan = ClipScan {
        file_len,
        ..Default::default()
    };
    let mut pos = 0u64;
    // (samples, decode time, duration, moof offset, moof size)
    let mut pending_moof: Option<(u64, u64, u64, u64, u64)> = None;
    let mut seen_ftyp = false;
    let mut seen_moov = false;
    let mut body = Vec::new();
    while pos + 8 <= file_len {
        let mut head = [0u8; 16];
        file.seek(SeekFrom::Start(pos))
            .map_err(|e| Error::io(e, "seeking clip"))?;
        file.read_exact(&mut head[..8])
            .map_err(|e| Error::io(e, "reading clip"))?;
        let mut size = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as u64;
        let kind = [head[4], head[5], head[6], head[7]];
        let mut header_len = 8;
        if size == 1 {
            if pos + 16 > file_len {
                break;
            }
            file.read_exact(&mut head[8..16])
                .map_err(|e| Error::io(e, "reading clip"))?;
            size = u64::from_be_bytes(head[8..16].try_into().expect("8 bytes"));
            header_len = 16;
        }
        // `pos + 8 <= file_len` here, so this cannot overflow (a 64-bit size near
        // u64::MAX once wrapped `pos + size` round and looped or allocated forever).
        if size < header_len || size > file_len - pos {
            break;
        }
        match &kind {
            b"ftyp" => seen_ftyp = true,
            b"moov" if seen_ftyp => {
                body.resize((size - header_len) as usize, 0);
                file.read_exact(&mut body)
                    .map_err(|e| Error::io(e, "reading moov"))?;
                let mut whole = Vec::with_capacity(size as usize);
                whole.extend_from_slice(&head[..header_len as usize]);
                whole.extend_from_slice(&body);
                let decoded = written_by_us(&whole)
                    .then(|| Moov::decode(&mut whole.as_slice()).ok())
                    .flatten();
                if let Some(moov) = decoded {
                    if let Some(trak) = moov.trak.first() {
                        scan.width = trak.tkhd.width.integer() as u32;
                        scan.height = trak.tkhd.height.integer() as u32;
                    }
                    seen_moov = true;
                    scan.has_init = true;
                    scan.valid_len = pos + size;
                    scan.init_len = pos + size;
                } else {
                    break;
                }
            }
            b"moof" if seen_moov => {
                body.resize((size - header_len) as usize, 0);
                file.read_exact(&mut body)
                    .map_err(|e| Error::io(e, "reading moof"))?;
                let mut whole = Vec::with_capacity(size as usize);
                whole.extend_from_slice(&head[..header_len as usize]);
                whole.extend_from_slice(&body);
                if !written_by_us(&whole) {
                    break;
                }
                let Ok(moof) = Moof::decode(&mut whole.as_slice()) else {
                    break;
                };
                let Some(traf) = moof.traf.first() else { break };
                let decode = traf
                    .tfdt
                    .as_ref()
                    .map(|t| t.base_media_decode_time)
                    .unwrap_or(scan.end_ticks);
                let default_duration = u64::from(traf.tfhd.default_sample_duration.unwrap_or(0));
                let mut samples = 0u64;
                let mut duration = 0u64;
                for trun in &traf.trun {
                    match &trun.samples {
                        // A count without entries: up to 4 G samples in 20 bytes, counted
                        // rather than walked one by one.
                        TrunSamples::Inherited { count, .. } => {
                            samples = samples.saturating_add(u64::from(*count));
                            duration = duration
                                .saturating_add(u64::from(*count).saturating_mul(default_duration));
                        }
                        TrunSamples::Explicit(entries) => {
                            for entry in entries {
                                samples = samples.saturating_add(1);
                                duration = duration.saturating_add(
                                    entry.duration.map_or(default_duration, u64::from),
                                );
                            }
                        }
                    }
                }
                pending_moof = Some((samples, decode, duration, pos, size));
            }
            b"mdat" => {
                if let Some((samples, decode, duration, moof_at, moof_len)) = pending_moof.take() {
                    if scan.fragments == 0 {
                        scan.first_decode_ticks = decode;
                    }
                    on_fragment(Fragment {
                        moof_at,
                        moof_len,
                        data_at: pos + header_len,
                        data_len: size - header_len,
                        samples,
                        decode_ticks: decode,
                        duration_ticks: duration,
                    });
                    scan.fragments = scan.fragments.saturating_add(1);
                    scan.samples = scan.samples.saturating_add(samples);
                    // Times come from the file: garbage saturates, never overflows.
                    scan.end_ticks = decode.saturating_add(duration);
                    scan.valid_len = pos + size;
                }
            }
            _ => {}
        }
        pos += size;
    }
    Ok(scan)
}

/// Cuts a torn clip back to its valid prefix and fsyncs it. Returns the scan after repair.
pub fn repair(path: &Path) -> Result<ClipScan> {
    let mut scan = scan(path)?;
    if scan.is_torn() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(e, format!("opening {} for repair", path.display())))?;
        file.set_len(scan.valid_len)
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(e, format!("truncating {}", path.display())))?;
        scan.file_len = scan.valid_len;
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4_atom::{Encode, Mfhd, Tfdt, Tfhd, Traf, Trun};
    use std::io::Write;

    fn write_clip(path: &Path, fragments: u32) -> Vec<u64> {
        let mut out = Vec::new();
        init_segment(64, 48, &TrackCodec::Jpeg, &mut out).unwrap();
        let mut ends = vec![out.len() as u64];
        let mut builder = FragmentBuilder::new(8);
        for f in 0..fragments {
            let samples = [SampleInfo {
                size: 10,
                duration: 3000,
                keyframe: true,
            }; 3];
            let header = builder
                .build(f + 1, f as u64 * 9000, &samples)
                .unwrap()
                .to_vec();
            out.extend_from_slice(&header);
            out.extend_from_slice(&[0xAB; 30]);
            ends.push(out.len() as u64);
        }
        File::create(path).unwrap().write_all(&out).unwrap();
        ends
    }

    #[test]
    fn boxes_the_writer_never_writes_are_refused_before_decoding() {
        // The fuzzers' out-of-memory case: an `sgpd` in moov, version 0, 2^32-1 entries of
        // an unknown grouping type that mp4-atom decodes without reading a byte.
        let sgpd = [
            &[0, 0, 0, 20][..],
            b"sgpd",
            &[0, 0, 0, 0],
            b"zzzz",
            &[0xff, 0xff, 0xff, 0xff],
        ]
        .concat();
        let moov = [&(8 + sgpd.len() as u32).to_be_bytes()[..], b"moov", &sgpd].concat();
        assert!(!written_by_us(&moov));
        // What the writer writes passes, for both codecs; the same init with the sgpd
        // put inside its moov is refused by the scan (no init, nothing valid).
        for codec in [
            TrackCodec::H264 {
                sps: vec![0x67, 0x42, 0, 0x1f],
                pps: vec![0x68, 0xce],
            },
            TrackCodec::Jpeg,
        ] {
            let mut init = Vec::new();
            init_segment(64, 48, &codec, &mut init).unwrap();
            let at = init.windows(4).position(|w| w == b"moov").unwrap() - 4;
            assert!(written_by_us(&init[at..]), "our own moov");
            let scan = scan_reader(&mut std::io::Cursor::new(&init), init.len() as u64).unwrap();
            assert!(scan.has_init);
            let mut bad = init[..at].to_vec();
            let moov_len = u32::from_be_bytes(init[at..at + 4].try_into().unwrap());
            bad.extend_from_slice(&(moov_len + sgpd.len() as u32).to_be_bytes());
            bad.extend_from_slice(&init[at + 4..]);
            bad.extend_from_slice(&sgpd);
            let scan = scan_reader(&mut std::io::Cursor::new(&bad), bad.len() as u64).unwrap();
            assert!(!scan.has_init && scan.valid_len == 0, "{scan:?}");
        }
    }

    #[test]
    fn scan_counts_fragments_and_samples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mp4");
        let ends = write_clip(&path, 3);
        let s = scan(&path).unwrap();
        assert!(s.has_init && !s.is_torn());
        assert_eq!((s.fragments, s.samples, s.valid_len), (3, 9, ends[3]));
        assert_eq!((s.first_decode_ticks, s.end_ticks), (0, 27_000));
        assert_eq!(s.duration_us(), 300_000);
        assert_eq!((s.width, s.height), (64, 48));
    }

    #[test]
    fn repair_cuts_every_kind_of_tear_back_to_the_last_mdat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mp4");
        let ends = write_clip(&path, 3);
        let full = std::fs::read(&path).unwrap();
        // Tear inside the third fragment's moof, inside its mdat, and right after it.
        for cut in [ends[2] + 20, ends[3] - 5, ends[2] + 3] {
            std::fs::write(&path, &full[..cut as usize]).unwrap();
            let s = repair(&path).unwrap();
            assert_eq!(
                (s.fragments, s.samples, s.valid_len),
                (2, 6, ends[2]),
                "cut at {cut}"
            );
            assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[2]);
        }
        // A tear inside the init segment leaves nothing valid.
        std::fs::write(&path, &full[..30]).unwrap();
        let s = repair(&path).unwrap();
        assert!(!s.has_init);
        assert_eq!(s.valid_len, 0);
    }

    #[test]
    fn a_64_bit_box_size_past_the_end_is_a_torn_tail() {
        // Found by fuzz/fuzz_targets/fmp4_scan.rs: `pos + size` overflowed (a panic in
        // debug builds; in release it wrapped round and the scan looped or allocated).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mp4");
        let ends = write_clip(&path, 1);
        for largesize in [u64::MAX, u64::MAX - 7, 1 << 63] {
            let mut bytes = std::fs::read(&path).unwrap()[..ends[1] as usize].to_vec();
            bytes.extend_from_slice(&1u32.to_be_bytes());
            bytes.extend_from_slice(b"free");
            bytes.extend_from_slice(&largesize.to_be_bytes());
            bytes.extend_from_slice(&[0; 16]);
            let len = bytes.len() as u64;
            let s = scan_reader(&mut std::io::Cursor::new(bytes), len).unwrap();
            assert_eq!(
                (s.valid_len, s.fragments),
                (ends[1], 1),
                "largesize {largesize}"
            );
        }
    }

    #[test]
    fn inherited_sample_counts_are_counted_not_walked_and_times_saturate() {
        // A trun with a sample count and no entries can claim 4 G samples in a few bytes:
        // two of them overflowed the u32 count, and walking them took seconds per moof.
        let mut out = Vec::new();
        init_segment(64, 48, &TrackCodec::Jpeg, &mut out).unwrap();
        let trun = Trun {
            data_offset: None,
            samples: TrunSamples::Inherited {
                count: u32::MAX,
                first_flags: None,
            },
        };
        let moof = Moof {
            mfhd: Mfhd { sequence_number: 1 },
            traf: vec![Traf {
                tfhd: Tfhd {
                    track_id: 1,
                    default_sample_duration: Some(u32::MAX),
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: u64::MAX - 5,
                }),
                trun: vec![trun.clone(), trun],
                ..Default::default()
            }],
        };
        moof.encode(&mut out).unwrap();
        out.extend_from_slice(&8u32.to_be_bytes());
        out.extend_from_slice(b"mdat");
        let len = out.len() as u64;
        let started = std::time::Instant::now();
        let s = scan_reader(&mut std::io::Cursor::new(out), len).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!((s.fragments, s.samples), (1, 2 * u64::from(u32::MAX)));
        assert_eq!(s.end_ticks, u64::MAX);
        assert_eq!(ticks_to_us(u64::MAX), u64::MAX, "saturates");
        assert_eq!(ticks_to_us(90_000), 1_000_000);
        let _ = s.duration_us();
    }
}
