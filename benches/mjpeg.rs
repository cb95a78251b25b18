//! MJPEG camera figures, printed by `cargo bench --bench mjpeg`:
//! - decoding a 1280x720 camera JPEG: zune-jpeg (to YCbCr, then I420: what the recorder
//!   uses) beside jpeg-decoder (to RGB, its only colour output), on the same frames;
//! - MJPEG → H.264, ms of CPU per frame: decode + openh264 encode, as the recorder does.
//!
//! Frames: 60 JPEGs of the moving test pattern (quality 85, like a webcam's). Times are
//! thread CPU time (the machine is noisy; CPU time ignores waiting), best of 3 runs.

use std::time::Duration;

use benchcam::capture::pattern::PatternDevice;
use benchcam::capture::{CaptureDevice, ModeRequest, PixelFormat};
use benchcam::clock::{Clock, SimClock};
use benchcam::encode::h264::H264Encoder;
use benchcam::encode::mjpeg::MjpegDecoder;
use benchcam::encode::yuv::I420;

const W: u32 = 1280;
const H: u32 = 720;
const FRAMES: usize = 60;

fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; the thread CPU clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// ms of CPU per frame for `f` over every frame, best of three runs.
fn per_frame_ms(frames: &[Vec<u8>], mut f: impl FnMut(&[u8])) -> f64 {
    (0..3)
        .map(|_| {
            let t0 = thread_cpu_s();
            for frame in frames {
                f(frame);
            }
            (thread_cpu_s() - t0) * 1000.0 / frames.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn camera_frames() -> Vec<Vec<u8>> {
    // A simulated clock that jumps ahead on every sleep: frames come as fast as they draw.
    let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(SimClock::new(0, 0, true));
    let device = PatternDevice::new(0, W, H, 30, clock).with_formats(&[PixelFormat::Mjpeg]);
    let mut source = device
        .open(&ModeRequest {
            width: W,
            height: H,
            fps: 30,
            formats: vec![PixelFormat::Mjpeg],
        })
        .expect("pattern opens");
    let mut frames = Vec::new();
    while frames.len() < FRAMES {
        source
            .next_frame(Duration::from_secs(1), &mut |f| {
                frames.push(f.data.to_vec())
            })
            .expect("pattern frame");
    }
    frames
}

fn main() {
    let frames = camera_frames();
    let mean_kb = frames.iter().map(Vec::len).sum::<usize>() as f64 / frames.len() as f64 / 1024.0;
    println!("MJPEG {W}x{H}: {FRAMES} test-pattern JPEGs, {mean_kb:.0} KiB each");

    let mut decoder = MjpegDecoder::new();
    let mut i420 = Vec::new();
    let zune = per_frame_ms(&frames, |jpeg| {
        decoder.decode_i420(jpeg, W, H, &mut i420).expect("decodes");
    });
    let jd = per_frame_ms(&frames, |jpeg| {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let rgb = d.decode().expect("decodes");
        assert_eq!(rgb.len(), (W * H * 3) as usize);
    });
    println!("decode zune-jpeg → I420      {zune:6.2} ms/frame");
    println!("decode jpeg-decoder → RGB    {jd:6.2} ms/frame (before any RGB → I420 conversion)");
    println!("zune-jpeg / jpeg-decoder     {:6.2}", zune / jd);

    let mut encoder = H264Encoder::new(30, 3000).expect("openh264 starts");
    let mut out = Vec::with_capacity(1 << 20);
    let mut n = 0u64;
    let transcode = per_frame_ms(&frames, |jpeg| {
        decoder.decode_i420(jpeg, W, H, &mut i420).expect("decodes");
        let picture = I420::from_packed(&i420, W, H).expect("I420");
        out.clear();
        encoder
            .encode(&picture, n.is_multiple_of(30), &mut out)
            .expect("encodes");
        n += 1;
    });
    println!(
        "MJPEG → H.264 (decode + encode) {transcode:6.2} ms/frame = {:.0} % of one core at 30 fps",
        transcode * 30.0 / 10.0
    );
}
