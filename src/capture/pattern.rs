//! The synthetic test-pattern camera: a moving diagonal gradient and bar with the frame
//! number and capture time burned in, paced by a `Clock`. It stands in for a real camera
//! on machines without one and in every test, and can inject faults (stall, unplug).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{
    best_mode, CameraInfo, CaptureDevice, CaptureSource, CapturedFrame, Mode, ModeRequest,
    PixelFormat,
};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};

/// Faults a test can switch on while the pattern camera runs.
#[derive(Debug, Default)]
pub struct PatternFaults {
    /// No frames arrive (`next_frame` times out with `NoSignal`), like a covered sensor
    /// or a wedged driver.
    pub stall: AtomicBool,
    /// The camera is unplugged: streaming fails with `Disconnected`, opening with `NoDevice`.
    pub unplugged: AtomicBool,
}

/// A test-pattern camera. Offers I420 and MJPEG at the configured size and frame rate.
pub struct PatternDevice {
    info: CameraInfo,
    clock: Arc<dyn Clock>,
    faults: Arc<PatternFaults>,
    /// Timestamp jitter (see [`PatternDevice::with_jitter`]); zero for a perfect cadence.
    jitter: Duration,
    /// Seeds each open's jitter, so runs are repeatable and cameras differ.
    seed: u64,
    /// Sensor-like grain over the picture (see [`PatternDevice::with_noise`]).
    noise: bool,
    /// Recorded I420 pictures lent in turn instead of drawn ([`PatternDevice::replaying`]).
    replay: Option<Arc<Vec<Vec<u8>>>>,
}

impl PatternDevice {
    pub fn new(index: usize, width: u32, height: u32, fps: u32, clock: Arc<dyn Clock>) -> Self {
        let modes = [PixelFormat::I420, PixelFormat::Mjpeg]
            .into_iter()
            .map(|format| Mode {
                width,
                height,
                fps,
                format,
            })
            .collect();
        PatternDevice {
            info: CameraInfo {
                device: format!("pattern{index}"),
                name: format!("Test pattern {index}"),
                backend: "pattern",
                modes,
            },
            clock,
            faults: Arc::new(PatternFaults::default()),
            jitter: Duration::ZERO,
            seed: 0x9E37_79B9_7F4A_7C15 ^ index as u64,
            noise: false,
            replay: None,
        }
    }

    /// Lends these I420 pictures of the camera's size in turn, from the first, on the
    /// camera's cadence, instead of drawing: benchmarks feed the service exactly the frames
    /// they feed a peer (see [`sample_frames`]). The camera then offers only I420.
    pub fn replaying(mut self, frames: Arc<Vec<Vec<u8>>>) -> Self {
        self.info.modes.retain(|m| m.format == PixelFormat::I420);
        self.replay = Some(frames);
        self
    }

    /// Stamps frames like a real driver does, not on a perfect cadence: each frame up to
    /// `jitter` (at most half a frame interval) before or after its slot, and about one
    /// frame in 50 late by one to three frame intervals, after which the cadence goes on
    /// from there (a driver thread that was not scheduled in time; no frame is lost).
    /// vivid under emulation shows 23–200 ms intervals at a nominal 33 ms.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Adds grain to every pixel of luma, different each frame, as a sensor in dim light
    /// does: the encoder then spends its whole bitrate, and clips grow to real sizes.
    pub fn with_noise(mut self, noise: bool) -> Self {
        self.noise = noise;
        self
    }

    /// Restricts the formats the pattern offers (e.g. only MJPEG, like many webcams).
    pub fn with_formats(mut self, formats: &[PixelFormat]) -> Self {
        self.info.modes.retain(|m| formats.contains(&m.format));
        self
    }

    /// The switches for this camera's faults.
    pub fn faults(&self) -> Arc<PatternFaults> {
        Arc::clone(&self.faults)
    }
}

/// `count` frames of the pattern (`noise`: with sensor grain) at `width`x`height` in
/// `format`, drawn on a simulated clock as fast as they draw: the same frames for encoder
/// benchmarks and measurements.
pub fn sample_frames(
    width: u32,
    height: u32,
    format: super::PixelFormat,
    noise: bool,
    count: usize,
) -> Result<Vec<Vec<u8>>> {
    let clock: Arc<dyn Clock> = Arc::new(crate::clock::SimClock::new(0, 0, true));
    let device = PatternDevice::new(0, width, height, 30, clock)
        .with_formats(&[format])
        .with_noise(noise);
    let mut source = device.open(&super::ModeRequest {
        width,
        height,
        fps: 30,
        formats: vec![format],
    })?;
    let mut frames = Vec::with_capacity(count);
    while frames.len() < count {
        source.next_frame(Duration::from_secs(1), &mut |f| {
            frames.push(f.data.to_vec())
        })?;
    }
    Ok(frames)
}

impl CaptureDevice for PatternDevice {
    fn info(&self) -> &CameraInfo {
        &self.info
    }

    fn open(&self, request: &ModeRequest) -> Result<Box<dyn CaptureSource>> {
        if self.faults.unplugged.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::NoDevice,
                format!("{} is unplugged", self.info.device),
            ));
        }
        let mode = best_mode(&self.info.modes, request).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!("{} offers only i420 and mjpeg", self.info.device),
            )
        })?;
        let mut source =
            PatternSource::new(mode, Arc::clone(&self.clock), Arc::clone(&self.faults));
        let interval = Duration::from_micros(source.interval_us);
        source.jitter_us = self.jitter.min(interval / 2).as_micros() as u64;
        source.rng = self.seed | 1;
        source.noise = self.noise;
        if let Some(frames) = &self.replay {
            let size = source.picture.len();
            if frames.is_empty() || frames.iter().any(|f| f.len() != size) {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{}: replay frames must be {size}-byte I420 pictures",
                        self.info.device
                    ),
                ));
            }
            source.replay = Some(Arc::clone(frames));
        }
        Ok(Box::new(source))
    }
}

/// An open pattern stream. All buffers are allocated here, at open.
pub struct PatternSource {
    mode: Mode,
    clock: Arc<dyn Clock>,
    faults: Arc<PatternFaults>,
    interval_us: u64,
    next_due_us: u64,
    sequence: u64,
    /// Largest offset of a stamp from its slot, µs; 0 for a perfect cadence.
    jitter_us: u64,
    /// xorshift64 state for the jitter and the grain (never 0).
    rng: u64,
    noise: bool,
    /// The previous frame's stamp: stamps always increase, as a driver's do.
    last_timestamp_us: u64,
    /// The I420 picture; chroma is drawn once, luma every frame.
    picture: Vec<u8>,
    /// A luma ramp twice the width; each row copies a window of it (cheap motion).
    ramp: Vec<u8>,
    /// MJPEG output, reused.
    jpeg: Vec<u8>,
    /// Pictures lent in turn instead of `picture` (checked at open: I420 of this size).
    replay: Option<Arc<Vec<Vec<u8>>>>,
}

impl PatternSource {
    fn new(mode: Mode, clock: Arc<dyn Clock>, faults: Arc<PatternFaults>) -> Self {
        let (w, h) = (mode.width as usize, mode.height as usize);
        let size = PixelFormat::I420
            .raw_frame_bytes(mode.width, mode.height)
            .expect("raw format");
        let mut picture = vec![0u8; size];
        // Four chroma quadrants so colour conversion mistakes are visible.
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let (u_plane, v_plane) = picture[w * h..].split_at_mut(cw * ch);
        for y in 0..ch {
            for x in 0..cw {
                let (u, v) = match (x * 2 < cw, y * 2 < ch) {
                    (true, true) => (90, 240),
                    (false, true) => (54, 34),
                    (true, false) => (240, 110),
                    (false, false) => (128, 128),
                };
                u_plane[y * cw + x] = u;
                v_plane[y * cw + x] = v;
            }
        }
        let ramp = (0..w * 2)
            .map(|x| 16 + ((x * 219 / w.max(1)) % 220) as u8)
            .collect();
        let interval_us = 1_000_000 / mode.fps.max(1) as u64;
        let now = clock.monotonic_us();
        PatternSource {
            mode,
            clock,
            faults,
            interval_us,
            next_due_us: now + interval_us,
            sequence: 0,
            jitter_us: 0,
            noise: false,
            rng: 1,
            last_timestamp_us: 0,
            picture,
            ramp,
            jpeg: Vec::with_capacity(size / 4),
            replay: None,
        }
    }

    /// Largest JPEG the pattern can produce: raw size is a safe upper bound at q90.
    fn jpeg_bound(&self) -> usize {
        self.picture.len()
    }

    fn draw(&mut self, wall_us: i64) {
        let (w, h) = (self.mode.width as usize, self.mode.height as usize);
        let shift = (self.sequence as usize * 4) % w.max(1);
        let luma = &mut self.picture[..w * h];
        for (y, row) in luma.chunks_exact_mut(w).enumerate() {
            let start = (shift + y / 2) % w.max(1);
            row.copy_from_slice(&self.ramp[start..start + w]);
        }
        // A bright bar sweeping left to right once every two seconds at the nominal rate.
        let period = (self.mode.fps as usize * 2).max(1);
        let bar_x = (self.sequence as usize % period) * w / period;
        let bar_w = (w / 40).max(2);
        for row in luma.chunks_exact_mut(w) {
            let end = (bar_x + bar_w).min(w);
            row[bar_x..end].fill(235);
        }
        // 24 glyph cells of 6 units must fit the width.
        let scale = (w / 150).min(h / 60).max(1);
        let mut text = [b' '; 24];
        write_digits(&mut text[..8], self.sequence);
        let secs_of_day = wall_us.div_euclid(1_000_000).rem_euclid(86_400);
        let ms = wall_us.div_euclid(1000).rem_euclid(1000);
        let clock_text = [
            secs_of_day / 36_000,
            secs_of_day / 3600 % 10,
            -1,
            secs_of_day % 3600 / 600,
            secs_of_day % 600 / 60 % 10,
            -1,
            secs_of_day % 60 / 10,
            secs_of_day % 10,
            -2,
            ms / 100,
            ms / 10 % 10,
            ms % 10,
        ];
        for (i, d) in clock_text.iter().enumerate() {
            text[10 + i] = match d {
                -1 => b':',
                -2 => b'.',
                d => b'0' + *d as u8,
            };
        }
        draw_text(luma, w, h, scale, scale, scale, &text);
        if self.noise {
            let mut x = self.rng | 1;
            for px in luma.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                for (i, p) in px.iter_mut().enumerate() {
                    let grain = ((x >> (8 * i)) & 31) as i16 - 16;
                    *p = (*p as i16 + grain).clamp(16, 235) as u8;
                }
            }
            self.rng = x;
        }
    }
}

impl CaptureSource for PatternSource {
    fn mode(&self) -> Mode {
        self.mode
    }

    fn max_frame_bytes(&self) -> usize {
        match self.mode.format {
            PixelFormat::Mjpeg => self.jpeg_bound(),
            _ => self.picture.len(),
        }
    }

    fn next_frame(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(CapturedFrame<'_>),
    ) -> Result<()> {
        if self.faults.unplugged.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::Disconnected,
                "pattern camera unplugged",
            ));
        }
        if self.faults.stall.load(Ordering::Relaxed) {
            std::thread::sleep(timeout.min(Duration::from_millis(200)));
            return Err(Error::new(ErrorKind::NoSignal, "pattern camera stalled"));
        }
        self.clock.sleep_until_us(self.next_due_us);
        let now = self.clock.monotonic_us();
        // Like a sensor, the pattern keeps its own cadence: a frame is stamped with its
        // slot on that cadence (as a driver stamps exposure, not dequeue), and a late
        // reader skips the slots it missed.
        let behind = now.saturating_sub(self.next_due_us) / self.interval_us;
        let slot_us = self.next_due_us + behind * self.interval_us;
        self.sequence += behind;
        self.next_due_us = slot_us + self.interval_us;
        let timestamp_us = if self.jitter_us == 0 {
            slot_us
        } else {
            let stamp = self.jittered(slot_us).max(self.last_timestamp_us + 1);
            // A frame is never delivered before the time it carries.
            self.clock.sleep_until_us(stamp);
            stamp
        };
        self.last_timestamp_us = timestamp_us;
        if self.replay.is_none() {
            self.draw(self.clock.wall_at_us(timestamp_us));
        }
        let data: &[u8] = match (&self.replay, self.mode.format) {
            (Some(frames), _) => &frames[self.sequence as usize % frames.len()],
            (None, PixelFormat::Mjpeg) => {
                self.jpeg.clear();
                crate::encode::jpeg::encode_i420(
                    &self.picture,
                    self.mode.width,
                    self.mode.height,
                    85,
                    &mut self.jpeg,
                )?;
                &self.jpeg
            }
            _ => &self.picture,
        };
        sink(CapturedFrame {
            data,
            timestamp_us,
            sequence: self.sequence,
        });
        self.sequence += 1;
        Ok(())
    }
}

impl PatternSource {
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The stamp of the frame of `slot_us` (see [`PatternDevice::with_jitter`]); a late
    /// frame also moves the cadence on by the same amount.
    fn jittered(&mut self, slot_us: u64) -> u64 {
        let offset = self.random() % (2 * self.jitter_us + 1);
        let mut stamp = (slot_us + offset).saturating_sub(self.jitter_us);
        if self.random().is_multiple_of(50) {
            let late = self.interval_us + self.random() % (2 * self.interval_us);
            stamp += late;
            self.next_due_us += late;
        }
        stamp
    }
}

fn write_digits(out: &mut [u8], mut n: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// 5x7 glyphs for digits, ':' and '.', one byte per row, low 5 bits used.
fn glyph(c: u8) -> [u8; 7] {
    match c {
        b'0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        b'1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        b'2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        b'3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        b'4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        b'5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        b'6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        b'7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        b'8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        b'9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        b':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        b'.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        _ => [0; 7],
    }
}

/// Draws `text` in black-on-white cells into a luma plane, clipped to the picture.
fn draw_text(luma: &mut [u8], w: usize, h: usize, x0: usize, y0: usize, scale: usize, text: &[u8]) {
    let cell_w = 6 * scale;
    let box_h = 9 * scale;
    for y in y0..(y0 + box_h).min(h) {
        let end = (x0 + cell_w * text.len() + scale).min(w);
        luma[y * w + x0.min(w)..y * w + end].fill(235);
    }
    for (i, &c) in text.iter().enumerate() {
        let rows = glyph(c);
        for (gy, bits) in rows.iter().enumerate() {
            for gx in 0..5 {
                if bits & (0x10 >> gx) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    let y = y0 + scale + gy * scale + dy;
                    let x = x0 + scale + i * cell_w + gx * scale;
                    if y < h && x + scale <= w {
                        luma[y * w + x..y * w + x + scale].fill(16);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;

    fn request(format: PixelFormat) -> ModeRequest {
        ModeRequest {
            width: 320,
            height: 240,
            fps: 25,
            formats: vec![format],
        }
    }

    #[test]
    fn frames_are_paced_by_the_clock_and_change() {
        let clock = Arc::new(SimClock::new(1_000_000, 0, true));
        let device = PatternDevice::new(0, 320, 240, 25, clock.clone());
        let mut source = device.open(&request(PixelFormat::I420)).unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            source
                .next_frame(Duration::from_secs(1), &mut |f| {
                    seen.push((f.timestamp_us, f.sequence, f.data.to_vec()))
                })
                .unwrap();
        }
        assert_eq!(seen[1].0 - seen[0].0, 40_000);
        assert_eq!((seen[0].1, seen[2].1), (0, 2));
        assert_eq!(seen[0].2.len(), 320 * 240 * 3 / 2);
        assert_ne!(seen[0].2, seen[1].2, "consecutive frames must differ");
    }

    #[test]
    fn replaying_lends_the_given_frames_in_turn_on_the_cadence() {
        let clock = Arc::new(SimClock::new(1_000_000, 0, true));
        let size = 320 * 240 * 3 / 2;
        let frames: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i * 50; size]).collect();
        let device = PatternDevice::new(0, 320, 240, 25, clock).replaying(Arc::new(frames));
        assert!(device
            .info()
            .modes
            .iter()
            .all(|m| m.format == PixelFormat::I420));
        let mut source = device.open(&request(PixelFormat::I420)).unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            source
                .next_frame(Duration::from_secs(1), &mut |f| {
                    seen.push((f.timestamp_us, f.sequence, f.data[0], f.data.len()))
                })
                .unwrap();
        }
        assert_eq!(seen[1].0 - seen[0].0, 40_000);
        let firsts: Vec<u8> = seen.iter().map(|s| s.2).collect();
        assert_eq!(firsts, [0, 50, 100, 0], "in turn, from the first, wrapping");
        assert!(seen.iter().all(|s| s.3 == size));
        // Frames of another size are refused at open, naming the size wanted.
        let clock = Arc::new(SimClock::new(0, 0, true));
        let wrong =
            PatternDevice::new(0, 320, 240, 25, clock).replaying(Arc::new(vec![vec![0; 10]]));
        let err = wrong.open(&request(PixelFormat::I420)).err().unwrap();
        assert!(err.to_string().contains("115200-byte"), "{err}");
    }

    #[test]
    fn mjpeg_frames_are_jpeg() {
        let clock = Arc::new(SimClock::new(0, 0, true));
        let device = PatternDevice::new(0, 320, 240, 25, clock);
        let mut source = device.open(&request(PixelFormat::Mjpeg)).unwrap();
        source
            .next_frame(Duration::from_secs(1), &mut |f| {
                assert_eq!(&f.data[..2], &[0xFF, 0xD8]);
                assert_eq!(&f.data[f.data.len() - 2..], &[0xFF, 0xD9]);
            })
            .unwrap();
    }

    #[test]
    fn faults_stall_and_unplug() {
        let clock = Arc::new(SimClock::new(0, 0, true));
        let device = PatternDevice::new(0, 64, 48, 25, clock);
        let mut source = device.open(&request(PixelFormat::I420)).unwrap();
        let faults = device.faults();
        faults.stall.store(true, Ordering::Relaxed);
        let err = source
            .next_frame(Duration::from_millis(10), &mut |_| ())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::NoSignal);
        faults.stall.store(false, Ordering::Relaxed);
        faults.unplugged.store(true, Ordering::Relaxed);
        let err = source
            .next_frame(Duration::from_millis(10), &mut |_| ())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Disconnected);
        assert_eq!(
            device.open(&request(PixelFormat::I420)).err().unwrap().kind,
            ErrorKind::NoDevice
        );
        faults.unplugged.store(false, Ordering::Relaxed);
        assert!(device.open(&request(PixelFormat::I420)).is_ok());
    }
}
