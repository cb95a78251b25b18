//! H.264 clip encoder. Software encoding with openh264; output is AVCC samples (4-byte
//! NAL lengths) ready for MP4, with SPS/PPS kept apart for the `avcC` box.
//!
//! Every frame becomes a sample (frame skipping is off) so clip sample times stay the
//! capture times. openh264's intra period is not honoured exactly, so the recorder
//! forces an IDR at every clip and fragment start instead.

use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, RateControlMode, UsageType,
};
use openh264::OpenH264API;

use super::yuv::I420;
use crate::error::{Error, ErrorKind, Result};

/// One encoded frame, appended to the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    pub keyframe: bool,
    /// Bytes appended to the output buffer.
    pub len: usize,
}

pub struct H264Encoder {
    encoder: Encoder,
    /// Sequence and picture parameter sets from the first IDR, without start codes.
    sps: Vec<u8>,
    pps: Vec<u8>,
}

impl H264Encoder {
    pub fn new(fps: u32, bitrate_kbps: u32) -> Result<Self> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(bitrate_kbps * 1000))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            .usage_type(UsageType::CameraVideoRealTime)
            .complexity(Complexity::Low)
            .skip_frames(false)
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| Error::new(ErrorKind::Codec, format!("starting H.264 encoder: {e}")))?;
        Ok(H264Encoder {
            encoder,
            sps: Vec::with_capacity(64),
            pps: Vec::with_capacity(16),
        })
    }

    /// Parameter sets, available after the first keyframe.
    pub fn parameter_sets(&self) -> Option<(&[u8], &[u8])> {
        (!self.sps.is_empty() && !self.pps.is_empty()).then_some((&self.sps, &self.pps))
    }

    /// Encodes one picture and appends it to `out` as an AVCC sample.
    pub fn encode(
        &mut self,
        picture: &I420<'_>,
        force_keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<Encoded> {
        if force_keyframe {
            self.encoder.force_intra_frame();
        }
        let stream = self
            .encoder
            .encode(picture)
            .map_err(|e| Error::new(ErrorKind::Codec, format!("H.264 encode: {e}")))?;
        let keyframe = matches!(stream.frame_type(), FrameType::IDR);
        let start = out.len();
        for l in 0..stream.num_layers() {
            let layer = stream.layer(l).expect("layer index below num_layers");
            for n in 0..layer.nal_count() {
                let nal = strip_start_code(layer.nal_unit(n).expect("nal index below nal_count"));
                let Some(&header) = nal.first() else { continue };
                match header & 0x1F {
                    7 => replace(&mut self.sps, nal),
                    8 => replace(&mut self.pps, nal),
                    _ => {
                        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                        out.extend_from_slice(nal);
                    }
                }
            }
        }
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

/// Removes an Annex B start code (`00 00 01` or `00 00 00 01`).
fn strip_start_code(nal: &[u8]) -> &[u8] {
    match nal {
        [0, 0, 0, 1, rest @ ..] | [0, 0, 1, rest @ ..] => rest,
        _ => nal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_keyframes_and_parameter_sets() {
        let (w, h) = (160usize, 96usize);
        let mut data = vec![128u8; w * h * 3 / 2];
        let mut enc = H264Encoder::new(30, 500).unwrap();
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
}
