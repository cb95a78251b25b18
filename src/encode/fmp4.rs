//! Fragmented MP4 as benchcam writes it: the init segment (`ftyp` + `moov`, one video
//! track at 90 kHz) and `moof` + `mdat` fragments. The encoder stage wraps each H.264 frame
//! in a one-sample fragment for live viewers; the recorder gathers a fragment's worth of
//! samples per `moof` for clips (reading clips back is `record::fmp4`).

use mp4_atom::{
    Avc1, Avcc, Codec, Dinf, Dref, Encode, Ftyp, Hdlr, Jpeg, Mdhd, Mdia, Mfhd, Minf, Moof, Moov,
    Mvex, Mvhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, TrunSamples,
    Url, Visual, Vmhd,
};

use crate::error::{Error, ErrorKind, Result};

/// Media timescale: 90 kHz, the usual video clock; capture times are rounded to it.
pub const TIMESCALE: u32 = 90_000;

/// Converts a span in microseconds to timescale ticks.
pub fn us_to_ticks(us: u64) -> u64 {
    (us * TIMESCALE as u64 + 500_000) / 1_000_000
}

/// Converts timescale ticks to microseconds, saturating (ticks may come from a damaged file).
pub fn ticks_to_us(ticks: u64) -> u64 {
    u64::try_from(u128::from(ticks) * 1_000_000 / u128::from(TIMESCALE)).unwrap_or(u64::MAX)
}

/// What the clip's single video track carries.
#[derive(Debug, Clone)]
pub enum TrackCodec {
    H264 { sps: Vec<u8>, pps: Vec<u8> },
    Jpeg,
}

/// One sample as the fragment builder sees it.
#[derive(Debug, Clone, Copy)]
pub struct SampleInfo {
    pub size: u32,
    pub duration: u32,
    pub keyframe: bool,
}

const SYNC_FLAGS: u32 = 0x0200_0000;
const NON_SYNC_FLAGS: u32 = 0x0101_0000;

/// Writes `ftyp` + `moov` for a single-track fragmented clip into `out`.
pub fn init_segment(width: u32, height: u32, codec: &TrackCodec, out: &mut Vec<u8>) -> Result<()> {
    let visual = Visual {
        width: width as u16,
        height: height as u16,
        ..Visual::default()
    };
    let (entry, brands): (Codec, _) = match codec {
        TrackCodec::H264 { sps, pps } => {
            let avcc = Avcc::new(sps, pps).map_err(|e| mux_error("building avcC", e))?;
            (
                Avc1 {
                    visual,
                    avcc,
                    ..Default::default()
                }
                .into(),
                vec![
                    b"isom".into(),
                    b"iso6".into(),
                    b"avc1".into(),
                    b"mp41".into(),
                ],
            )
        }
        TrackCodec::Jpeg => (
            Jpeg {
                visual,
                ..Default::default()
            }
            .into(),
            vec![b"isom".into(), b"iso6".into(), b"mp41".into()],
        ),
    };
    let ftyp = Ftyp {
        major_brand: b"isom".into(),
        minor_version: 512,
        compatible_brands: brands,
    };
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            next_track_id: 2,
            ..Mvhd::default()
        },
        mvex: Some(Mvex {
            mehd: None,
            trex: vec![Trex {
                track_id: 1,
                default_sample_description_index: 1,
                ..Default::default()
            }],
        }),
        trak: vec![Trak {
            tkhd: Tkhd {
                track_id: 1,
                enabled: true,
                in_movie: true,
                width: (width as u16).into(),
                height: (height as u16).into(),
                matrix: Mvhd::default().matrix,
                ..Default::default()
            },
            mdia: Mdia {
                mdhd: Mdhd {
                    timescale: TIMESCALE,
                    language: "und".into(),
                    ..Default::default()
                },
                hdlr: Hdlr {
                    handler: b"vide".into(),
                    name: "benchcam video".into(),
                },
                minf: Minf {
                    vmhd: Some(Vmhd::default()),
                    dinf: Dinf {
                        dref: Dref {
                            entries: vec![Url::default().into()],
                        },
                    },
                    stbl: Stbl {
                        stsd: Stsd {
                            codecs: vec![entry],
                        },
                        stco: Some(Stco::default()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            },
            ..Default::default()
        }],
        ..Default::default()
    };
    ftyp.encode(out)
        .map_err(|e| mux_error("encoding ftyp", e))?;
    moov.encode(out)
        .map_err(|e| mux_error("encoding moov", e))?;
    Ok(())
}

fn mux_error(what: &str, e: mp4_atom::Error) -> Error {
    Error::new(ErrorKind::Codec, format!("{what}: {e}"))
}

/// Builds `moof` + `mdat` headers, reusing its buffers so steady state allocates nothing.
pub struct FragmentBuilder {
    moof: Moof,
    header: Vec<u8>,
}

impl FragmentBuilder {
    /// `max_samples` sizes the sample table once (frames per fragment at most).
    pub fn new(max_samples: usize) -> Self {
        let trun = Trun {
            data_offset: Some(0),
            samples: TrunSamples::Explicit(Vec::with_capacity(max_samples)),
        };
        FragmentBuilder {
            moof: Moof {
                mfhd: Mfhd { sequence_number: 0 },
                traf: vec![Traf {
                    tfhd: Tfhd {
                        track_id: 1,
                        default_base_is_moof: true,
                        ..Default::default()
                    },
                    tfdt: Some(Tfdt {
                        base_media_decode_time: 0,
                    }),
                    trun: vec![trun],
                    ..Default::default()
                }],
            },
            header: Vec::with_capacity(64 + max_samples * 12),
        }
    }

    /// Returns the bytes of `moof` followed by the 8-byte `mdat` header; the caller
    /// writes the samples' data right after them, in order.
    pub fn build(
        &mut self,
        sequence: u32,
        base_decode_time: u64,
        samples: &[SampleInfo],
    ) -> Result<&[u8]> {
        self.moof.mfhd.sequence_number = sequence;
        let traf = &mut self.moof.traf[0];
        traf.tfdt = Some(Tfdt {
            base_media_decode_time: base_decode_time,
        });
        let trun = &mut traf.trun[0];
        let TrunSamples::Explicit(entries) = &mut trun.samples else {
            unreachable!("built with explicit entries")
        };
        entries.clear();
        entries.extend(samples.iter().map(|s| TrunEntry {
            duration: Some(s.duration),
            size: Some(s.size),
            flags: Some(if s.keyframe {
                SYNC_FLAGS
            } else {
                NON_SYNC_FLAGS
            }),
            cts: None,
        }));
        // The data offset is fixed-size, so one trial encode gives the moof's length.
        self.header.clear();
        self.moof
            .encode(&mut self.header)
            .map_err(|e| mux_error("encoding moof", e))?;
        let moof_len = self.header.len();
        self.moof.traf[0].trun[0].data_offset = Some(moof_len as i32 + 8);
        self.header.clear();
        self.moof
            .encode(&mut self.header)
            .map_err(|e| mux_error("encoding moof", e))?;
        let mdat_len: u64 = 8 + samples.iter().map(|s| s.size as u64).sum::<u64>();
        let mdat_len = u32::try_from(mdat_len)
            .map_err(|_| Error::new(ErrorKind::Codec, "fragment larger than 4 GiB"))?;
        self.header.extend_from_slice(&mdat_len.to_be_bytes());
        self.header.extend_from_slice(b"mdat");
        Ok(&self.header)
    }
}
