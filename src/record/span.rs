//! One playable fragmented MP4 made from the clips that cover a span of time
//! (`GET /api/v1/cameras/{cam}/recording.mp4?start=&end=`): one init segment, then the
//! clips' fragments in range, renumbered and put on one timeline. Nothing is re-encoded:
//! every fragment starts with a keyframe, so the span starts at the fragment holding
//! `start` (up to one fragment early) and ends with the last frame captured by `end`
//! (the last fragment is cut there).
//!
//! [`plan`] reads only the clips' boxes and frames files and knows the exact length up
//! front (a Content-Length: a phone shows download progress); [`Span::write`] then
//! streams the bytes, re-reading each fragment's header and copying its samples.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use mp4_atom::{Decode, Encode, Moof, Tfdt, TrunSamples};

use super::fmp4::{self, ticks_to_us, us_to_ticks, Fragment};
use super::index::{frames_file_name, read_frames_file, ClipIndex, ClipRecord, FrameLine};
use crate::error::{Error, ErrorKind, Result};

/// At most this many fragments in one span (6 h of 0.5 s fragments): bounds a plan's
/// memory (48 bytes a fragment).
pub const MAX_FRAGMENTS: usize = 43_200;

/// What will be sent for one span.
#[derive(Debug)]
pub struct Span {
    pub init: Vec<u8>,
    files: Vec<PathBuf>,
    pieces: Vec<Piece>,
    /// Total bytes (init segment + every fragment).
    pub len: u64,
    /// Capture (wall-clock) time of the first and the last frame sent.
    pub first_wall_us: i64,
    pub last_wall_us: i64,
    pub frames: u64,
    pub duration_us: u64,
    /// Why the span ends before `end` although more was recorded, if it does.
    pub cut_short: Option<String>,
}

/// One fragment of the output, as read from its clip.
#[derive(Debug, Clone, Copy)]
struct Piece {
    file: u32,
    moof_at: u64,
    moof_len: u32,
    data_at: u64,
    /// Samples kept (all of them but in the last fragment) and their bytes.
    samples: u32,
    data_len: u64,
    decode_ticks: u64,
    /// The rewritten `moof` plus the `mdat` header.
    header_len: u32,
}

/// Plans the span [from_us, to_us] (wall-clock µs, inclusive) of `camera`'s clips.
/// Errors: `NotFound` when nothing was recorded in it, `InvalidInput` when it needs more
/// than [`MAX_FRAGMENTS`] fragments.
pub fn plan(index: &ClipIndex, camera: &str, from_us: i64, to_us: i64) -> Result<Span> {
    let mut clips: Vec<ClipRecord> = index
        .list(Some(camera))
        .into_iter()
        // The clip being written has no end in the index yet: its file says.
        .filter(|c| c.started_us <= to_us && (!c.complete || c.ended_us() >= from_us))
        .collect();
    clips.sort_by_key(|c| c.seq);
    let mut span = Span {
        init: Vec::new(),
        files: Vec::new(),
        pieces: Vec::new(),
        len: 0,
        first_wall_us: 0,
        last_wall_us: 0,
        frames: 0,
        duration_us: 0,
        cut_short: None,
    };
    // The output timeline. `anchor`: the last clip with a known capture time (its boot,
    // its first kept frame's capture mono, where that frame is on the timeline); a clip of
    // the same boot is placed by the time since (gaps kept), others follow on at `out_end`,
    // the end of what is planned so far (ticks).
    let mut anchor: Option<(String, u64, u64)> = None;
    let mut out_end = 0u64;
    'clips: for clip in clips {
        let path = index.camera_dir(camera).join(&clip.file);
        let Ok((scan, fragments)) = fmp4::fragments(&path) else {
            continue; // deleted by retention meanwhile, or unreadable: not part of it
        };
        if !scan.has_init || fragments.is_empty() {
            continue;
        }
        let Ok(mut reader) = File::open(&path) else {
            continue; // deleted since it was scanned
        };
        let init = read_at(&mut reader, &path, 0, scan.init_len)?;
        if span.pieces.is_empty() {
            span.init = init;
        } else if init != span.init {
            span.cut_short = Some(format!(
                "the camera's format changed at {} (clip {}): a span holds one format",
                crate::clock::rfc3339_ms(clip.started_us),
                clip.file
            ));
            break;
        }
        let rows = read_frames_file(
            &path.with_file_name(frames_file_name(&clip.file)),
            scan.samples,
        )
        .unwrap_or_default();
        let times = SampleTimes {
            rows: &rows,
            clip: &clip,
            first_decode: scan.first_decode_ticks,
        };
        let mut file: Option<u32> = None;
        let mut clip_base: Option<(u64, u64)> = None; // (decode ticks in the clip, output ticks)
        let mut first_sample = 0u64;
        for (i, frag) in fragments.iter().enumerate() {
            let start_wall = times.wall(first_sample, frag.decode_ticks);
            let next_start_wall = match fragments.get(i + 1) {
                Some(next) => times.wall(first_sample + frag.samples, next.decode_ticks),
                None => times.wall_end(frag),
            };
            let this_first = first_sample;
            first_sample += frag.samples;
            if next_start_wall <= from_us {
                continue; // wholly before the span
            }
            if start_wall > to_us {
                break 'clips;
            }
            if span.pieces.len() >= MAX_FRAGMENTS {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "the span needs more than {MAX_FRAGMENTS} fragments: ask for a shorter one"
                    ),
                ));
            }
            let moof = decode_moof(&read_at(&mut reader, &path, frag.moof_at, frag.moof_len)?)?;
            // The last fragment: keep the frames captured by `to_us`.
            let keep = times.kept_by(&moof, this_first, start_wall, to_us)?;
            let out_decode = match clip_base {
                Some((decode, out)) => out + frag.decode_ticks.saturating_sub(decode),
                None => {
                    let mono = times.mono(this_first);
                    if span.pieces.is_empty() {
                        span.first_wall_us = start_wall;
                    }
                    let at = match (&anchor, mono) {
                        (Some((boot, first, out)), Some(m)) if *boot == clip.boot_id => {
                            (out + us_to_ticks(m.saturating_sub(*first))).max(out_end)
                        }
                        _ => out_end,
                    };
                    if let Some(m) = mono {
                        anchor = Some((clip.boot_id.clone(), m, at));
                    }
                    clip_base = Some((frag.decode_ticks, at));
                    at
                }
            };
            let sequence = span.pieces.len() as u32 + 1;
            let rewritten = rewrite(moof, sequence, out_decode, keep.samples)?;
            let file = *file.get_or_insert_with(|| {
                span.files.push(path.clone());
                span.files.len() as u32 - 1
            });
            span.pieces.push(Piece {
                file,
                moof_at: frag.moof_at,
                moof_len: frag.moof_len as u32,
                data_at: frag.data_at,
                samples: keep.samples,
                data_len: rewritten.data_len,
                decode_ticks: out_decode,
                header_len: rewritten.header.len() as u32,
            });
            span.len += rewritten.header.len() as u64 + rewritten.data_len;
            span.frames += u64::from(keep.samples);
            span.last_wall_us = keep.last_wall_us;
            out_end = out_decode + rewritten.duration_ticks;
            if u64::from(keep.samples) != frag.samples {
                break 'clips;
            }
        }
    }
    if span.pieces.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no recording of {camera} between {} and {}",
                crate::clock::rfc3339_ms(from_us),
                crate::clock::rfc3339_ms(to_us)
            ),
        ));
    }
    span.len += span.init.len() as u64;
    span.duration_us = ticks_to_us(out_end);
    Ok(span)
}

impl Span {
    /// Writes the whole span to `out`. Fails if a clip changed or vanished since `plan`
    /// (retention deleted it): the receiver then gets fewer bytes than announced.
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(&self.init)?;
        let mut open: Option<(u32, File)> = None;
        let mut buf = vec![0u8; 64 * 1024];
        for (i, piece) in self.pieces.iter().enumerate() {
            if open.as_ref().is_none_or(|(f, _)| *f != piece.file) {
                open = Some((piece.file, File::open(&self.files[piece.file as usize])?));
            }
            let (_, file) = open.as_mut().expect("just opened");
            let mut moof = vec![0u8; piece.moof_len as usize];
            file.seek(SeekFrom::Start(piece.moof_at))?;
            file.read_exact(&mut moof)?;
            let rewritten = decode_moof(&moof)
                .and_then(|m| rewrite(m, i as u32 + 1, piece.decode_ticks, piece.samples))
                .map_err(std::io::Error::other)?;
            if rewritten.header.len() != piece.header_len as usize
                || rewritten.data_len != piece.data_len
            {
                return Err(std::io::Error::other(
                    "a clip changed while it was being sent",
                ));
            }
            out.write_all(&rewritten.header)?;
            file.seek(SeekFrom::Start(piece.data_at))?;
            let mut left = piece.data_len;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                file.read_exact(&mut buf[..n])?;
                out.write_all(&buf[..n])?;
                left -= n as u64;
            }
        }
        Ok(())
    }
}

/// Sample capture times of one clip: from its frames file, else from the decode times.
struct SampleTimes<'a> {
    rows: &'a [FrameLine],
    clip: &'a ClipRecord,
    first_decode: u64,
}

impl SampleTimes<'_> {
    fn row(&self, sample: u64) -> Option<&FrameLine> {
        // Rows are in sample order; a torn one may be missing.
        let i = self.rows.partition_point(|r| r.sample_index < sample);
        self.rows.get(i).filter(|r| r.sample_index == sample)
    }

    fn wall(&self, sample: u64, decode_ticks: u64) -> i64 {
        match self.row(sample) {
            Some(r) => r.wall_us,
            None => {
                let since = ticks_to_us(decode_ticks.saturating_sub(self.first_decode));
                self.clip.started_us.saturating_add(since as i64)
            }
        }
    }

    fn wall_end(&self, frag: &Fragment) -> i64 {
        let since = ticks_to_us(
            (frag.decode_ticks + frag.duration_ticks).saturating_sub(self.first_decode),
        );
        self.clip.started_us.saturating_add(since as i64)
    }

    fn mono(&self, sample: u64) -> Option<u64> {
        self.row(sample)
            .map(|r| r.monotonic_us)
            .filter(|_| !self.clip.boot_id.is_empty())
    }

    /// How many samples of the fragment starting at `first` (captured from `start_wall`)
    /// were captured by `to_us` (at least one), and the last one's time.
    fn kept_by(&self, moof: &Moof, first: u64, start_wall: i64, to_us: i64) -> Result<Kept> {
        let traf = &moof.traf[0];
        let default = traf.tfhd.default_sample_duration.unwrap_or(0);
        let TrunSamples::Explicit(entries) = &traf.trun[0].samples else {
            return Err(not_ours("a trun without sample entries"));
        };
        let mut kept = Kept {
            samples: 0,
            last_wall_us: start_wall,
        };
        let mut offset_us = 0u64;
        for (k, entry) in entries.iter().enumerate() {
            let wall = match self.row(first + k as u64) {
                Some(r) => r.wall_us,
                None => start_wall.saturating_add(offset_us as i64),
            };
            if k > 0 && wall > to_us {
                break;
            }
            kept.samples += 1;
            kept.last_wall_us = wall;
            offset_us += ticks_to_us(u64::from(entry.duration.unwrap_or(default)));
        }
        Ok(kept)
    }
}

struct Kept {
    samples: u32,
    last_wall_us: i64,
}

struct Rewritten {
    /// `moof` + the `mdat` box header.
    header: Vec<u8>,
    data_len: u64,
    duration_ticks: u64,
}

fn not_ours(what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("not a fragment benchcam wrote: {what}"),
    )
}

fn decode_moof(bytes: &[u8]) -> Result<Moof> {
    if !crate::record::fmp4::written_by_us(bytes) {
        return Err(not_ours("a box the writer does not write"));
    }
    let moof = Moof::decode(&mut &bytes[..]).map_err(|e| not_ours(&format!("moof: {e}")))?;
    if moof.traf.len() != 1 || moof.traf[0].trun.len() != 1 {
        return Err(not_ours("one traf with one trun expected"));
    }
    Ok(moof)
}

/// The fragment's `moof` with a new sequence number and decode time, cut to `keep`
/// samples, followed by the header of an `mdat` holding those samples.
fn rewrite(mut moof: Moof, sequence: u32, decode_ticks: u64, keep: u32) -> Result<Rewritten> {
    moof.mfhd.sequence_number = sequence;
    let traf = &mut moof.traf[0];
    traf.tfdt = Some(Tfdt {
        base_media_decode_time: decode_ticks,
    });
    let default_size = u64::from(traf.tfhd.default_sample_size.unwrap_or(0));
    let default_duration = u64::from(traf.tfhd.default_sample_duration.unwrap_or(0));
    let TrunSamples::Explicit(entries) = &mut traf.trun[0].samples else {
        return Err(not_ours("a trun without sample entries"));
    };
    entries.truncate(keep as usize);
    let data_len = entries
        .iter()
        .map(|e| e.size.map_or(default_size, u64::from))
        .sum::<u64>();
    let duration_ticks = entries
        .iter()
        .map(|e| e.duration.map_or(default_duration, u64::from))
        .sum::<u64>();
    // The data offset counts from the moof's start (default-base-is-moof): encode once
    // to learn the moof's length, then again with the offset.
    let mut header = Vec::with_capacity(128 + 12 * keep as usize);
    moof.traf[0].trun[0].data_offset = Some(0);
    moof.encode(&mut header)
        .map_err(|e| not_ours(&format!("moof: {e}")))?;
    let moof_len = header.len();
    moof.traf[0].trun[0].data_offset = Some(moof_len as i32 + 8);
    header.clear();
    moof.encode(&mut header)
        .map_err(|e| not_ours(&format!("moof: {e}")))?;
    let mdat_len = u32::try_from(8 + data_len).map_err(|_| not_ours("an mdat over 4 GiB"))?;
    header.extend_from_slice(&mdat_len.to_be_bytes());
    header.extend_from_slice(b"mdat");
    Ok(Rewritten {
        header,
        data_len,
        duration_ticks,
    })
}

fn read_at(file: &mut File, path: &std::path::Path, at: u64, len: u64) -> Result<Vec<u8>> {
    let mut out = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(at))
        .and_then(|_| file.read_exact(&mut out))
        .map_err(|e| Error::io(e, format!("reading {}", path.display())))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fmp4::{init_segment, FragmentBuilder, SampleInfo, TrackCodec};
    use crate::record::index::RecordingType;

    const SECOND: i64 = 1_000_000;

    /// A clip of `fragments` × 3 samples at 10 fps, as rebuilt from its file (no boot id,
    /// no frames file): the case where only the decode times say when frames were.
    fn add_clip(index: &ClipIndex, seq: u64, started_us: i64, fragments: u32) {
        let mut out = Vec::new();
        init_segment(64, 48, &TrackCodec::Jpeg, &mut out).unwrap();
        let mut builder = FragmentBuilder::new(8);
        for f in 0..fragments {
            let samples = [SampleInfo {
                size: 10,
                duration: 9000,
                keyframe: true,
            }; 3];
            let header = builder
                .build(f + 1, u64::from(f) * 27_000, &samples)
                .unwrap();
            out.extend_from_slice(header);
            out.extend_from_slice(&[f as u8; 30]);
        }
        let file = format!("c{seq}.mp4");
        let dir = index.camera_dir("cam0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&file), &out).unwrap();
        index
            .upsert(ClipRecord {
                camera: "cam0".into(),
                file,
                recording_type: RecordingType::Rolling,
                started_us,
                first_mono_us: 0,
                first_frame: 0,
                last_frame: u64::from(fragments) * 3 - 1,
                frame_count: u64::from(fragments) * 3,
                duration_us: u64::from(fragments) * 300_000,
                size: out.len() as u64,
                complete: true,
                seq,
                boot_id: String::new(),
            })
            .unwrap();
    }

    #[test]
    fn clips_without_capture_times_follow_each_other_on_the_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = ClipIndex::open(dir.path()).unwrap();
        let t0 = 1_796_000_000 * SECOND;
        add_clip(&index, 1, t0, 4); // 1.2 s
        add_clip(&index, 2, t0 + 2 * SECOND, 4);
        let span = plan(&index, "cam0", t0, t0 + 10 * SECOND).unwrap();
        assert_eq!(span.frames, 24);
        let times: Vec<u64> = span.pieces.iter().map(|p| p.decode_ticks).collect();
        // Without capture times the second clip follows on at the first one's end.
        assert_eq!(
            times,
            [0, 27_000, 54_000, 81_000, 108_000, 135_000, 162_000, 189_000]
        );
        assert_eq!(span.first_wall_us, t0);
        assert_eq!(span.duration_us, 2_400_000);
        // The bytes written are the announced ones and scan as one clip.
        let mut bytes = Vec::new();
        span.write(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, span.len);
        let path = dir.path().join("span.mp4");
        std::fs::write(&path, &bytes).unwrap();
        let (scan, fragments) = fmp4::fragments(&path).unwrap();
        assert!(!scan.is_torn() && scan.samples == 24);
        let sequence: Vec<u64> = fragments.iter().map(|f| f.decode_ticks).collect();
        assert_eq!(sequence, times);
    }

    #[test]
    fn a_span_ends_with_the_last_frame_by_its_end_and_starts_at_a_fragment() {
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = ClipIndex::open(dir.path()).unwrap();
        let t0 = 1_796_000_000 * SECOND;
        add_clip(&index, 1, t0, 4);
        // From inside the second fragment (0.3-0.6 s) to 0.75 s: fragments 2 and 3, the
        // last cut after its second frame (0.6, 0.7 s).
        let span = plan(&index, "cam0", t0 + 400_000, t0 + 750_000).unwrap();
        assert_eq!(span.first_wall_us, t0 + 300_000);
        assert_eq!(span.last_wall_us, t0 + 700_000);
        assert_eq!(span.frames, 5);
        let err = plan(&index, "cam0", t0 + 5 * SECOND, t0 + 6 * SECOND).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
    }
}
