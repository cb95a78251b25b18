//! H.264 clip encoders behind one trait, [`H264Encode`]: software (openh264, here) and the
//! Raspberry Pi ≤ 4's hardware encoder (`v4l2m2m`); [`open`] picks the hardware one when
//! the board has it. Output is AVCC samples (4-byte NAL lengths) ready for MP4, with
//! SPS/PPS kept apart for the `avcC` box.
//!
//! Every frame becomes a sample (frame skipping is off) so clip sample times stay the
//! capture times. openh264's intra period is not honoured exactly, so the recorder
//! forces an IDR at every clip and fragment start instead.

use super::openh264::{Openh264, Params};
use super::yuv::I420;
use crate::error::Result;

/// One encoded frame, appended to the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    pub keyframe: bool,
    /// Bytes appended to the output buffer.
    pub len: usize,
}

/// An H.264 encoder the recorder can use.
pub trait H264Encode: Send {
    /// `openh264` or `v4l2-m2m`, for logs and health.
    fn backend(&self) -> &'static str;

    /// Sequence and picture parameter sets (without start codes), known after the first
    /// keyframe.
    fn parameter_sets(&self) -> Option<(&[u8], &[u8])>;

    /// Encodes one picture and appends it to `out` as one AVCC sample; with
    /// `force_keyframe` the picture becomes an IDR.
    fn encode(
        &mut self,
        picture: &I420<'_>,
        force_keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<Encoded>;
}

/// The encoder for a recording: the hardware encoder when the board has one (found under
/// `/dev`) and it opens for this size, openh264 otherwise.
pub fn open(width: u32, height: u32, settings: Settings) -> Result<Box<dyn H264Encode>> {
    let Settings {
        fps, bitrate_kbps, ..
    } = settings;
    if let Some(path) = super::v4l2m2m::find_encoder(std::path::Path::new("/dev")) {
        match super::v4l2m2m::V4l2M2mEncoder::open(&path, width, height, fps, bitrate_kbps) {
            Ok(hw) => return Ok(Box::new(hw)),
            Err(e) => log::warn!("h264: hardware encoder unusable ({e}); using openh264"),
        }
    }
    Ok(Box::new(H264Encoder::opened(settings, width, height)?))
}

/// Appends the NAL units of an Annex B stream (start-code separated, as hardware encoders
/// and openh264 give them) to `out` as AVCC (4-byte big-endian lengths), keeping SPS and
/// PPS apart in `sps`/`pps` (they go into the `avcC` box, not the samples). Returns
/// whether the stream held an IDR slice.
pub fn append_annexb(
    stream: &[u8],
    sps: &mut Vec<u8>,
    pps: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> bool {
    let mut idr = false;
    for nal in annexb_nals(stream) {
        let Some(&header) = nal.first() else { continue };
        match header & 0x1F {
            7 => replace(sps, nal),
            8 => replace(pps, nal),
            // Access unit delimiters and filler carry nothing the MP4 needs.
            9 | 12 => {}
            kind => {
                idr |= kind == 5;
                out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                out.extend_from_slice(nal);
            }
        }
    }
    idr
}

/// The NAL units of an Annex B stream, without their start codes (`00 00 01` or
/// `00 00 00 01`); trailing zero bytes of a unit are not part of it. Allocates nothing
/// (it runs once per encoded frame).
fn annexb_nals(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    /// Index just past the next start code at or after `from`.
    fn next_start(stream: &[u8], from: usize) -> Option<usize> {
        stream
            .get(from..)?
            .windows(3)
            .position(|w| w == [0, 0, 1])
            .map(|i| from + i + 3)
    }
    let mut at = next_start(stream, 0);
    std::iter::from_fn(move || {
        let begin = at?;
        let next = next_start(stream, begin);
        let end = next.map_or(stream.len(), |n| n - 3);
        at = next;
        let mut nal = &stream[begin..end.max(begin)];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        Some(nal)
    })
}

/// The software encoder (openh264, `super::openh264`): opened at the first picture, at its
/// size, and opened again (starting with an IDR) if the size changes.
pub struct H264Encoder {
    settings: Settings,
    session: Option<Openh264>,
    /// Sequence and picture parameter sets from the first IDR, without start codes.
    sps: Vec<u8>,
    pps: Vec<u8>,
}

/// How the software encoder encodes: bitrate control at `bitrate_kbps`, every frame a
/// sample, one thread, low complexity, none of openh264's optional analyses (adaptive
/// quantisation, background and scene-change detection: 15–25 % of each encode, and PSNR and
/// SSIM on ffmpeg's `testsrc2` at 1 and 3 Mbit/s were as good or better without them; the
/// recorder forces an IDR at every fragment start anyway), and the deblocking filter only
/// when `deblocking` is set (README, "H.264 encoder settings").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub deblocking: bool,
}

impl H264Encoder {
    /// An encoder with the defaults of `[recording]` (no deblocking), opened at the first
    /// picture (so a size the library refuses is an error of that `encode`).
    pub fn new(fps: u32, bitrate_kbps: u32) -> Self {
        Self::with_settings(Settings {
            fps,
            bitrate_kbps,
            deblocking: false,
        })
    }

    pub fn with_settings(settings: Settings) -> Self {
        H264Encoder {
            settings,
            session: None,
            sps: Vec::with_capacity(64),
            pps: Vec::with_capacity(16),
        }
    }

    /// Opens the library now, at `width`x`height`, so that a size or rate it refuses is an
    /// error here rather than at the first frame.
    pub fn opened(settings: Settings, width: u32, height: u32) -> Result<Self> {
        let mut encoder = Self::with_settings(settings);
        encoder.session = Some(Openh264::open(encoder.params(width, height))?);
        Ok(encoder)
    }

    fn params(&self, width: u32, height: u32) -> Params {
        Params {
            width,
            height,
            fps: self.settings.fps,
            bitrate_kbps: self.settings.bitrate_kbps,
            deblocking: self.settings.deblocking,
        }
    }
}

impl H264Encode for H264Encoder {
    fn backend(&self) -> &'static str {
        "openh264"
    }

    fn parameter_sets(&self) -> Option<(&[u8], &[u8])> {
        (!self.sps.is_empty() && !self.pps.is_empty()).then_some((&self.sps, &self.pps))
    }

    fn encode(
        &mut self,
        picture: &I420<'_>,
        force_keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<Encoded> {
        let params = self.params(picture.width as u32, picture.height as u32);
        let session = match &mut self.session {
            Some(s) if s.params() == params => s,
            slot => slot.insert(Openh264::open(params)?),
        };
        let (sps, pps) = (&mut self.sps, &mut self.pps);
        let start = out.len();
        let keyframe = session.encode(picture, force_keyframe, |nal| {
            append_annexb(nal, sps, pps, out);
        })?;
        Ok(Encoded {
            keyframe,
            len: out.len() - start,
        })
    }
}

fn replace(dst: &mut Vec<u8>, src: &[u8]) {
    dst.clear();
    dst.extend_from_slice(src);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU and bytes per 720p pattern frame for each software encoder setting, in one run:
    /// `cargo test --release --lib h264_settings_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn h264_settings_cost() {
        use crate::capture::pattern::sample_frames;
        use crate::capture::PixelFormat;
        let (w, h) = (1280u32, 720u32);
        for noise in [false, true] {
            let frames = sample_frames(w, h, PixelFormat::I420, noise, 90).unwrap();
            let settings = |deblocking| Settings {
                fps: 30,
                bitrate_kbps: 4000,
                deblocking,
            };
            let variants = [
                ("today (no deblocking)", settings(false)),
                ("deblocking = true", settings(true)),
            ];
            let cpu = || {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: a valid timespec; the thread CPU clock exists on Linux.
                unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
                ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
            };
            let mut results = vec![(f64::INFINITY, 0usize); variants.len()];
            for _round in 0..3 {
                for (i, (_, c)) in variants.iter().enumerate() {
                    let mut enc = H264Encoder::with_settings(*c);
                    let mut out = Vec::new();
                    let t0 = cpu();
                    for (n, f) in frames.iter().enumerate() {
                        out.clear();
                        let pic = I420::from_packed(f, w, h).unwrap();
                        enc.encode(&pic, n % 30 == 0, &mut out).unwrap();
                        results[i].1 += out.len();
                    }
                    let ms = (cpu() - t0) * 1000.0 / frames.len() as f64;
                    results[i].0 = results[i].0.min(ms);
                }
            }
            println!("720p pattern{}:", if noise { " with grain" } else { "" });
            for ((name, _), (ms, bytes)) in variants.iter().zip(&results) {
                println!(
                    "  {name:34} {ms:6.2} ms/frame ({:.2}x today)  {:7.0} B/frame",
                    ms / results[0].0,
                    *bytes as f64 / (3 * frames.len()) as f64
                );
            }
        }
    }

    #[test]
    fn forced_keyframes_and_parameter_sets() {
        let (w, h) = (160usize, 96usize);
        let mut data = vec![128u8; w * h * 3 / 2];
        let mut enc = H264Encoder::new(30, 500);
        let mut out = Vec::new();
        let mut kinds = Vec::new();
        for i in 0..6 {
            data[..w * h]
                .iter_mut()
                .enumerate()
                .for_each(|(p, v)| *v = ((p + i * 3) % 200) as u8);
            let pic = I420::from_packed(&data, w as u32, h as u32).unwrap();
            out.clear();
            let e = enc.encode(&pic, i == 0 || i == 4, &mut out).unwrap();
            assert_eq!(e.len, out.len());
            // AVCC: the first 4 bytes are the first NAL's length.
            let first = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
            assert!(first + 4 <= out.len());
            kinds.push(e.keyframe);
        }
        assert_eq!(kinds, [true, false, false, false, true, false]);
        let (sps, pps) = enc.parameter_sets().unwrap();
        assert_eq!((sps[0] & 0x1F, pps[0] & 0x1F), (7, 8));
    }

    #[test]
    fn annex_b_streams_become_avcc_with_parameter_sets_apart() {
        // AUD, SPS, PPS (3-byte start code), IDR with trailing zeros, then a P slice: the
        // shape a hardware encoder's coded buffer has with REPEAT_SEQ_HEADER on.
        let stream = [
            &[0, 0, 0, 1, 0x09, 0xF0][..],
            &[0, 0, 0, 1, 0x67, 0x64, 0x00, 0x28],
            &[0, 0, 1, 0x68, 0xEE, 0x3C, 0x80],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x00],
            &[0, 0, 0, 1, 0x41, 0x9A, 0x02],
        ]
        .concat();
        let (mut sps, mut pps, mut out) = (Vec::new(), Vec::new(), Vec::new());
        assert!(append_annexb(&stream, &mut sps, &mut pps, &mut out));
        assert_eq!(sps, [0x67, 0x64, 0x00, 0x28]);
        assert_eq!(pps, [0x68, 0xEE, 0x3C, 0x80]);
        assert_eq!(
            out,
            [0, 0, 0, 3, 0x65, 0x88, 0x84, 0, 0, 0, 3, 0x41, 0x9A, 0x02]
        );
        let (mut s2, mut p2, mut o2) = (Vec::new(), Vec::new(), Vec::new());
        assert!(!append_annexb(
            &[0, 0, 1, 0x41, 1],
            &mut s2,
            &mut p2,
            &mut o2
        ));
        assert!(s2.is_empty() && o2 == [0, 0, 0, 2, 0x41, 1]);
    }

    /// A stand-in for the hardware encoder behind the same trait: passes every frame's
    /// luma sum through, so a test can see the recorder side of `H264Encode` work with any
    /// backend (keyframes forced when asked, parameter sets after the first).
    struct FakeEncoder {
        frames: u32,
        sps: Vec<u8>,
        pps: Vec<u8>,
    }

    impl H264Encode for FakeEncoder {
        fn backend(&self) -> &'static str {
            "fake"
        }
        fn parameter_sets(&self) -> Option<(&[u8], &[u8])> {
            (!self.sps.is_empty()).then_some((&self.sps, &self.pps))
        }
        fn encode(&mut self, p: &I420<'_>, key: bool, out: &mut Vec<u8>) -> Result<Encoded> {
            let sum = p.y.iter().map(|&v| v as u32).sum::<u32>().to_be_bytes();
            let nal_type = if key { 0x65 } else { 0x41 };
            let stream = [
                &[0, 0, 0, 1, 0x67, 1, 2][..],
                &[0, 0, 1, 0x68, 3],
                &[0, 0, 1, nal_type],
                &sum,
            ]
            .concat();
            let before = out.len();
            let idr = append_annexb(&stream, &mut self.sps, &mut self.pps, out);
            self.frames += 1;
            Ok(Encoded {
                keyframe: idr,
                len: out.len() - before,
            })
        }
    }

    #[test]
    fn any_backend_serves_through_the_trait() {
        let mut backends: Vec<Box<dyn H264Encode>> = vec![
            Box::new(FakeEncoder {
                frames: 0,
                sps: Vec::new(),
                pps: Vec::new(),
            }),
            Box::new(H264Encoder::new(30, 500)),
        ];
        let (w, h) = (64u32, 48u32);
        let data = vec![100u8; (w * h * 3 / 2) as usize];
        for enc in &mut backends {
            let pic = I420::from_packed(&data, w, h).unwrap();
            let mut out = Vec::new();
            assert!(enc.parameter_sets().is_none() || enc.backend() == "openh264");
            let first = enc.encode(&pic, true, &mut out).unwrap();
            assert!(first.keyframe, "{}", enc.backend());
            let second = enc.encode(&pic, false, &mut out).unwrap();
            assert!(!second.keyframe, "{}", enc.backend());
            assert_eq!(first.len + second.len, out.len());
            let (sps, pps) = enc.parameter_sets().unwrap();
            assert_eq!((sps[0] & 0x1F, pps[0] & 0x1F), (7, 8));
        }
    }
}
