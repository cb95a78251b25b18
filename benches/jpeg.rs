//! JPEG encode figures, printed by `cargo bench --bench jpeg`: ms of CPU per 1280x720 I420
//! frame for benchcam's encoder (`jpeg::encode_raw`, what live view and snapshots run)
//! beside libjpeg-turbo's `tjCompressFromYUVPlanes` and jpeg-encoder, on the same frames,
//! at the same quality, 4:2:0, baseline, standard Huffman tables; with output sizes.
//!
//! Frames: 30 of the moving test pattern with sensor grain (every coefficient busy: the
//! Huffman coder's worst case) and 30 without (smooth: the DCT's share shows). Quality 80
//! (the `high` preset) and 75/85 around it. Times are thread CPU time, the best of 7
//! passes, the encoders taking turns (one pass each per round).
//!
//! libjpeg-turbo is loaded at run time (`dlopen("libturbojpeg.so.0")`), so this bench
//! builds and runs on a machine without it and only the ratio is then missing
//! (Debian: `apt-get install libturbojpeg0`). Its TurboJPEG 2 API is used because the
//! `turbojpeg` crate 1.x needs libjpeg-turbo 3 (Debian bookworm and trixie ship 2.1.5).

use std::ffi::{c_char, c_int, c_uchar, c_ulong, c_void};

use benchcam::capture::pattern::sample_frames;
use benchcam::capture::PixelFormat;
use benchcam::encode::jpeg;
use benchcam::encode::yuv::I420;

const W: u32 = 1280;
const H: u32 = 720;
const FRAMES: usize = 30;

fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; the thread CPU clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Passes over the frames per encoder. The encoders take turns, one pass each per round,
/// so a burst of load on a shared machine falls on all of them alike, and the best pass
/// of each is kept.
const ROUNDS: usize = 7;

/// One encoder under test: returns the size of the JPEG it made of a frame.
type Encoder<'a> = Box<dyn FnMut(&[u8]) -> usize + 'a>;

/// For each encoder, ms of CPU per frame over every frame (the best of `ROUNDS` passes,
/// taken in turns) and the mean output size in bytes.
fn per_frame(frames: &[Vec<u8>], encoders: &mut [Encoder]) -> Vec<(f64, f64)> {
    let mut best = vec![(f64::INFINITY, 0.0); encoders.len()];
    for _ in 0..ROUNDS {
        for (encode, best) in encoders.iter_mut().zip(&mut best) {
            let mut bytes = 0usize;
            let t0 = thread_cpu_s();
            for frame in frames {
                bytes += encode(frame);
            }
            let ms = (thread_cpu_s() - t0) * 1000.0 / frames.len() as f64;
            if ms < best.0 {
                *best = (ms, bytes as f64 / frames.len() as f64);
            }
        }
    }
    best
}

fn pattern_frames(noise: bool) -> Vec<Vec<u8>> {
    sample_frames(W, H, PixelFormat::I420, noise, FRAMES).expect("pattern frames")
}

/// `tjCompressFromYUVPlanes(handle, planes, width, strides, height, subsamp, &jpeg,
/// &size, quality, flags)`.
type CompressFn = unsafe extern "C" fn(
    *mut c_void,
    *const *const c_uchar,
    c_int,
    *const c_int,
    c_int,
    c_int,
    *mut *mut c_uchar,
    *mut c_ulong,
    c_int,
    c_int,
) -> c_int;
/// `tjGetErrorStr2(handle)`.
type ErrorFn = unsafe extern "C" fn(*mut c_void) -> *mut c_char;

/// libjpeg-turbo's TurboJPEG 2 API, looked up in the system library at run time.
struct TurboJpeg {
    handle: *mut c_void,
    compress: CompressFn,
    error: ErrorFn,
    buffer: *mut c_uchar,
    capacity: c_ulong,
}

const TJSAMP_420: c_int = 2;
const TJFLAG_NOREALLOC: c_int = 1024;
const TJFLAG_FASTDCT: c_int = 2048;

impl TurboJpeg {
    fn load() -> Option<TurboJpeg> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to the
        // signature turbojpeg.h (2.0 and later) declares for it.
        unsafe {
            let lib = libc::dlopen(c"libturbojpeg.so.0".as_ptr(), libc::RTLD_NOW);
            if lib.is_null() {
                return None;
            }
            let sym = |name: &std::ffi::CStr| {
                let p = libc::dlsym(lib, name.as_ptr());
                (!p.is_null()).then_some(p)
            };
            let init: unsafe extern "C" fn() -> *mut c_void =
                std::mem::transmute(sym(c"tjInitCompress")?);
            let buf_size: unsafe extern "C" fn(c_int, c_int, c_int) -> c_ulong =
                std::mem::transmute(sym(c"tjBufSize")?);
            let alloc: unsafe extern "C" fn(c_int) -> *mut c_uchar =
                std::mem::transmute(sym(c"tjAlloc")?);
            let compress =
                std::mem::transmute::<*mut c_void, CompressFn>(sym(c"tjCompressFromYUVPlanes")?);
            let error = std::mem::transmute::<*mut c_void, ErrorFn>(sym(c"tjGetErrorStr2")?);
            let handle = init();
            let capacity = buf_size(W as c_int, H as c_int, TJSAMP_420);
            let buffer = alloc(capacity as c_int);
            if handle.is_null() || buffer.is_null() {
                return None;
            }
            Some(TurboJpeg {
                handle,
                compress,
                error,
                buffer,
                capacity,
            })
        }
    }

    /// Compresses one I420 picture; returns the JPEG's length (bytes in `self.buffer`).
    fn encode(&mut self, picture: &I420, quality: u8, flags: c_int) -> usize {
        let planes = [picture.y.as_ptr(), picture.u.as_ptr(), picture.v.as_ptr()];
        let cw = picture.width.div_ceil(2) as c_int;
        let strides = [picture.width as c_int, cw, cw];
        let mut out = self.buffer;
        let mut size = self.capacity;
        // SAFETY: the planes hold the picture; the buffer was sized by tjBufSize for
        // this size and NOREALLOC keeps libjpeg-turbo from replacing it.
        let rc = unsafe {
            (self.compress)(
                self.handle,
                planes.as_ptr(),
                picture.width as c_int,
                strides.as_ptr(),
                picture.height as c_int,
                TJSAMP_420,
                &mut out,
                &mut size,
                quality as c_int,
                flags | TJFLAG_NOREALLOC,
            )
        };
        if rc != 0 {
            // SAFETY: tjGetErrorStr2 returns a NUL-terminated static or per-handle string.
            let msg = unsafe { std::ffi::CStr::from_ptr((self.error)(self.handle)) };
            panic!("libjpeg-turbo: {}", msg.to_string_lossy());
        }
        size as usize
    }

    fn output(&self, len: usize) -> &[u8] {
        // SAFETY: the last `encode` wrote `len` bytes into the buffer.
        unsafe { std::slice::from_raw_parts(self.buffer, len) }
    }
}

/// jpeg-encoder fed from the planes row by row (luma copied, chroma doubled across:
/// jpeg-encoder takes full-width rows and subsamples itself): its best case for I420.
struct PlanarRows<'a>(I420<'a>);

impl jpeg_encoder::ImageBuffer for PlanarRows<'_> {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        jpeg_encoder::JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.0.width as u16
    }

    fn height(&self) -> u16 {
        self.0.height as u16
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let p = &self.0;
        let y = y as usize;
        let cw = p.width.div_ceil(2);
        buffers[0].extend_from_slice(&p.y[y * p.width..][..p.width]);
        for (plane, buffer) in [p.u, p.v].into_iter().zip(&mut buffers[1..3]) {
            let row = &plane[(y / 2) * cw..][..cw];
            buffer.extend(row.iter().flat_map(|&c| [c, c]).take(p.width));
        }
    }
}

fn jpeg_encoder_rows(picture: I420, quality: u8, out: &mut Vec<u8>) {
    out.clear();
    let mut encoder = jpeg_encoder::Encoder::new(&mut *out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    encoder.encode_image(PlanarRows(picture)).expect("encodes");
}

/// PSNR of a decoded picture's luma against the source's, in dB.
fn luma_psnr(jpeg: &[u8], source: &[u8]) -> f64 {
    let options = zune_jpeg::zune_core::options::DecoderOptions::default()
        .jpeg_set_out_colorspace(zune_jpeg::zune_core::colorspace::ColorSpace::YCbCr);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(
        zune_jpeg::zune_core::bytestream::ZCursor::new(jpeg),
        options,
    );
    let ycbcr = d.decode().expect("decodes");
    let n = (W * H) as usize;
    let se: f64 = ycbcr
        .chunks_exact(3)
        .zip(&source[..n])
        .map(|(p, &s)| (p[0] as f64 - s as f64).powi(2))
        .sum();
    10.0 * (255.0f64 * 255.0 / (se / n as f64)).log10()
}

fn main() {
    let mut turbo = TurboJpeg::load();
    if turbo.is_none() {
        println!(
            "libjpeg-turbo not found (libturbojpeg.so.0; Debian: apt-get install libturbojpeg0): \
             its column and the ratios are left out"
        );
    }
    println!(
        "JPEG encode, {W}x{H} I420 → 4:2:0 baseline, {FRAMES} pattern frames each; \
         ms of CPU per frame (best of {ROUNDS} passes, encoders in turns), mean KiB per frame, luma PSNR of frame 0"
    );
    let mut ratios = Vec::new();
    for (name, noise) in [("grain", true), ("smooth", false)] {
        let frames = pattern_frames(noise);
        for quality in [75u8, 80, 85] {
            // Each encoder writes into its own buffer; libjpeg-turbo's handle is shared by
            // its two variants.
            let (mut ours, mut theirs) = (Vec::with_capacity(1 << 20), Vec::with_capacity(1 << 20));
            let (mut scaled_a, mut scaled_b) =
                (Vec::with_capacity(1 << 20), Vec::with_capacity(1 << 20));
            let turbo_cell = turbo.as_mut().map(std::cell::RefCell::new);
            // (label, whether its JPEG is full size: those come first and get a PSNR)
            let mut labels: Vec<(&str, bool)> = vec![
                ("benchcam encode_raw", true),
                ("jpeg-encoder 0.7, rows", true),
            ];
            let mut encoders: Vec<Encoder> = vec![
                Box::new(|frame| {
                    jpeg::encode_i420(frame, W, H, quality, &mut ours).expect("encodes");
                    ours.len()
                }),
                Box::new(|frame| {
                    let picture = I420::from_packed(frame, W, H).expect("I420");
                    jpeg_encoder_rows(picture, quality, &mut theirs);
                    theirs.len()
                }),
            ];
            // Where libjpeg-turbo's own row is, the ratios' denominator.
            let turbo_at = turbo_cell.as_ref().map(|_| labels.len());
            if let Some(turbo) = &turbo_cell {
                for (label, flags) in [
                    ("libjpeg-turbo", 0),
                    ("libjpeg-turbo FASTDCT", TJFLAG_FASTDCT),
                ] {
                    labels.push((label, true));
                    encoders.push(Box::new(move |frame| {
                        let picture = I420::from_packed(frame, W, H).expect("I420");
                        turbo.borrow_mut().encode(&picture, quality, flags)
                    }));
                }
            }
            // Scaled presets have no libjpeg-turbo peer (it does not scale from planes).
            for (label, max, out) in [
                ("benchcam → 960x540", (960, 540), &mut scaled_a),
                ("benchcam → 640x360", (640, 360), &mut scaled_b),
            ] {
                labels.push((label, false));
                encoders.push(Box::new(move |frame| {
                    jpeg::encode_raw(PixelFormat::I420, frame, W, H, max, quality, out)
                        .expect("encodes");
                    out.len()
                }));
            }
            let timings = per_frame(&frames, &mut encoders);
            drop(encoders);

            // Quality of each full-size encoder's JPEG of frame 0.
            let mut psnr = Vec::new();
            jpeg::encode_i420(&frames[0], W, H, quality, &mut ours).expect("encodes");
            psnr.push(luma_psnr(&ours, &frames[0]));
            let picture = I420::from_packed(&frames[0], W, H).expect("I420");
            jpeg_encoder_rows(picture, quality, &mut theirs);
            psnr.push(luma_psnr(&theirs, &frames[0]));
            if let Some(turbo) = &turbo_cell {
                let mut turbo = turbo.borrow_mut();
                for flags in [0, TJFLAG_FASTDCT] {
                    let picture = I420::from_packed(&frames[0], W, H).expect("I420");
                    let len = turbo.encode(&picture, quality, flags);
                    psnr.push(luma_psnr(turbo.output(len), &frames[0]));
                }
            }
            let turbo_ms = turbo_at.map(|i| timings[i].0);
            let rows: Vec<(&str, f64, f64, f64)> = labels
                .iter()
                .zip(&timings)
                .enumerate()
                .map(|(i, ((label, full), (ms, bytes)))| {
                    (*label, *ms, *bytes, if *full { psnr[i] } else { f64::NAN })
                })
                .collect();
            println!("-- {name}, quality {quality}");
            for (label, ms, bytes, psnr) in rows {
                if psnr.is_nan() {
                    println!("{label:24} {ms:6.2} ms  {:6.1} KiB", bytes / 1024.0);
                    continue;
                }
                let ratio =
                    turbo_ms.map_or(String::new(), |t| format!("{:5.2}× libjpeg-turbo", ms / t));
                if let (Some(t), "benchcam encode_raw") = (turbo_ms, label) {
                    ratios.push((name, ms / t));
                }
                println!(
                    "{label:24} {ms:6.2} ms  {:6.1} KiB  {psnr:5.2} dB  {ratio}",
                    bytes / 1024.0
                );
            }
        }
    }
    for name in ["grain", "smooth"] {
        let r = ratios.iter().filter(|(n, _)| *n == name).map(|(_, r)| *r);
        let (lo, hi) = r.fold((f64::INFINITY, 0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
        if hi > 0.0 {
            println!("benchcam / libjpeg-turbo, 720p I420, {name}, quality 75-85: {lo:.2}-{hi:.2} (target ≤ 1.5)");
        }
    }
}
