//! MJPEG camera figures, printed by `cargo bench --bench mjpeg`:
//! - decoding a 1280x720 camera JPEG: zune-jpeg (to YCbCr, then I420: what the recorder
//!   uses) beside jpeg-decoder (to RGB, its only colour output), on the same frames;
//! - the scan check alone (`jpeg_scan::check`, run before every decode), beside the decode;
//! - MJPEG → H.264, ms of CPU per frame: decode + openh264 encode, as the recorder does.
//!
//! Frames: 60 JPEGs of the moving test pattern (quality 85, like a webcam's). Times are
//! thread CPU time (the machine is noisy; CPU time ignores waiting), best of 3 runs.

use benchcam::capture::pattern::sample_frames;
use benchcam::capture::PixelFormat;
use benchcam::encode::h264::{H264Encode, H264Encoder};
use benchcam::encode::jpeg_scan;
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
    sample_frames(W, H, PixelFormat::Mjpeg, false, FRAMES).expect("pattern frames")
}

/// BT.601 limited-range RGB → I420, the conversion jpeg-decoder's output would need.
fn rgb_to_i420(rgb: &[u8], w: usize, h: usize, out: &mut [u8]) {
    let (cw, ch) = (w / 2, h / 2);
    let (y_plane, chroma) = out.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        let (r, g, b) = (px[0] as i32, px[1] as i32, px[2] as i32);
        y_plane[i] = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
    }
    for cy in 0..ch {
        for cx in 0..cw {
            let p = &rgb[((cy * 2) * w + cx * 2) * 3..][..3];
            let (r, g, b) = (p[0] as i32, p[1] as i32, p[2] as i32);
            u_plane[cy * cw + cx] = (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8;
            v_plane[cy * cw + cx] = (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8;
        }
    }
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
    let options = zune_jpeg::zune_core::options::DecoderOptions::default()
        .jpeg_set_out_colorspace(zune_jpeg::zune_core::colorspace::ColorSpace::YCbCr);
    let mut ycbcr = vec![0u8; (W * H * 3) as usize];
    let zune_only = per_frame_ms(&frames, |jpeg| {
        let mut d = zune_jpeg::JpegDecoder::new_with_options(
            zune_jpeg::zune_core::bytestream::ZCursor::new(jpeg),
            options,
        );
        d.decode_into(&mut ycbcr).expect("decodes");
    });
    let scan_check = per_frame_ms(&frames, |jpeg| {
        jpeg_scan::check(jpeg).expect("a whole frame");
    });
    let mut rgb_i420 = vec![0u8; (W * H * 3 / 2) as usize];
    let jd_i420 = per_frame_ms(&frames, |jpeg| {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let rgb = d.decode().expect("decodes");
        rgb_to_i420(&rgb, W as usize, H as usize, &mut rgb_i420);
    });
    println!("zune-jpeg → YCbCr             {zune_only:6.2} ms/frame (decode only)");
    println!("zune-jpeg → I420              {zune:6.2} ms/frame (what the recorder runs)");
    println!(
        "jpeg_scan::check              {scan_check:6.2} ms/frame = {:.0} % of the zune-jpeg decode (markers and Huffman codes; part of the line above)",
        100.0 * scan_check / zune_only
    );
    println!("jpeg-decoder → RGB            {jd:6.2} ms/frame (decode only; RGB is its only colour output)");
    println!("jpeg-decoder → RGB → I420     {jd_i420:6.2} ms/frame");
    println!(
        "zune-jpeg / jpeg-decoder, each to I420: {:.2}",
        zune / jd_i420
    );

    let mut encoder = H264Encoder::new(30, 3000);
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
