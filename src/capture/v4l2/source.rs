//! An open V4L2 stream: format and buffers set up at open, frames dequeued, lent to the
//! sink and queued back, and the stream stopped when it drops.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use libc::c_int;

use super::layout::{RawFrames, RawLayout};
use super::modes::fps_from_interval;
use super::sys::{self, Arg, Mmap};
use super::{open_node, setup_error, FourCc, BUFFER_COUNT, GONE_CHECK, MIN_BUFFERS};
use crate::capture::{CaptureSource, CapturedFrame, Mode};
use crate::clock::monotonic_now_us;
use crate::error::{Error, ErrorKind, Result};

/// An open V4L2 stream. Dropping it stops the stream, unmaps the buffers and closes the device.
pub struct V4l2Source {
    /// Device path, for errors and log lines.
    device: String,
    /// The mode the driver accepted, which may differ in size and rate from the one asked for.
    mode: Mode,
    /// Driver buffers mapped read-only, indexed by the driver's buffer index. Dropped before
    /// `file` (fields drop in declaration order).
    buffers: Vec<Mmap>,
    /// Largest driver buffer; every lent frame is at most this long.
    max_frame_bytes: usize,
    /// Layout of raw frames and their repack scratch; `None` for MJPEG.
    raw: Option<RawFrames>,
    /// Set once STREAMON succeeded, so that drop knows to stop the stream.
    streaming: bool,
    /// Frames dequeued but not lent since open (corrupt, truncated); drives rate-limited logs.
    skipped_frames: u64,
    /// The device; closed last, after the stream is off and the buffers are unmapped.
    file: File,
}

impl V4l2Source {
    pub(super) fn start(path: &Path, device: &str, mode: Mode, fourcc: u32) -> Result<V4l2Source> {
        let file = open_node(path)?;
        let fd = file.as_fd();

        let mut format = sys::Format::zeroed();
        format.type_ = sys::BUF_TYPE_VIDEO_CAPTURE;
        format.fmt.pix.width = mode.width;
        format.fmt.pix.height = mode.height;
        format.fmt.pix.pixelformat = fourcc;
        format.fmt.pix.field = sys::FIELD_NONE;
        sys::ioctl(fd, sys::VIDIOC_S_FMT, &mut format)
            .map_err(|e| setup_error(e, "VIDIOC_S_FMT"))?;
        let pix = format.fmt.pix;
        if pix.pixelformat != fourcc {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the driver answered {} to a request for {}",
                    FourCc(pix.pixelformat),
                    FourCc(fourcc)
                ),
            ));
        }
        if (pix.width, pix.height) != (mode.width, mode.height) {
            log::info!(
                "v4l2: {device}: driver adjusted {}x{} to {}x{}",
                mode.width,
                mode.height,
                pix.width,
                pix.height
            );
        }
        let mut mode = Mode {
            width: pix.width,
            height: pix.height,
            ..mode
        };
        if let Some(fps) = set_frame_rate(fd, device, mode.fps) {
            mode.fps = fps;
        }

        let mut request = sys::RequestBuffers::zeroed();
        request.count = BUFFER_COUNT;
        request.type_ = sys::BUF_TYPE_VIDEO_CAPTURE;
        request.memory = sys::MEMORY_MMAP;
        sys::ioctl(fd, sys::VIDIOC_REQBUFS, &mut request)
            .map_err(|e| setup_error(e, "VIDIOC_REQBUFS"))?;
        if request.count < MIN_BUFFERS {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "the driver granted {} buffer(s), need {MIN_BUFFERS}",
                    request.count
                ),
            ));
        }

        let raw = RawLayout::new(mode.format, mode.width, mode.height, pix.bytesperline)
            .map(RawFrames::new);
        let mut source = V4l2Source {
            device: device.to_owned(),
            mode,
            buffers: Vec::with_capacity(request.count as usize),
            max_frame_bytes: 0,
            raw,
            streaming: false,
            skipped_frames: 0,
            file,
        };
        for index in 0..request.count {
            let mut buf = sys::Buffer::for_index(index);
            sys::ioctl(source.file.as_fd(), sys::VIDIOC_QUERYBUF, &mut buf)
                .map_err(|e| setup_error(e, format!("VIDIOC_QUERYBUF {index}")))?;
            // SAFETY: for MMAP buffers QUERYBUF fills the `offset` member of the union.
            let offset = unsafe { buf.m.offset };
            let map = Mmap::new(source.file.as_fd(), buf.length as usize, offset)
                .map_err(|e| Error::io(e, format!("mmap of buffer {index}")))?;
            if let Some(raw) = &source.raw {
                if map.len < raw.source_bytes {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "driver buffer of {} bytes cannot hold a {}x{} {} frame",
                            map.len,
                            mode.width,
                            mode.height,
                            mode.format.name()
                        ),
                    ));
                }
            }
            source.max_frame_bytes = source.max_frame_bytes.max(map.len);
            source.buffers.push(map);
            queue_buffer(source.file.as_fd(), index).map_err(|e| setup_error(e, "VIDIOC_QBUF"))?;
        }

        let mut buf_type = sys::BUF_TYPE_VIDEO_CAPTURE as c_int;
        sys::ioctl(source.file.as_fd(), sys::VIDIOC_STREAMON, &mut buf_type)
            .map_err(|e| setup_error(e, "VIDIOC_STREAMON"))?;
        source.streaming = true;
        log::info!(
            "v4l2: {device}: streaming {}x{} {} at {} fps, {} buffers of up to {} bytes",
            mode.width,
            mode.height,
            mode.format.name(),
            mode.fps,
            source.buffers.len(),
            source.max_frame_bytes
        );
        Ok(source)
    }

    /// Waits until a buffer can be dequeued; `false` when `deadline` passed first.
    ///
    /// Waits in slices of at most [`GONE_CHECK`]: not every driver wakes a poller when its
    /// device goes away (vivid unbound from its driver does not), so between slices the
    /// node is checked for still being there.
    fn wait_readable(&self, deadline: Option<Instant>) -> Result<bool> {
        loop {
            let remaining = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => GONE_CHECK,
            };
            let slice = remaining.min(GONE_CHECK);
            let timeout_ms = poll_timeout_ms(slice);
            let mut pollfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd that outlives the call.
            let ready = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(self.stream_error(err, "poll"));
            }
            if ready == 0 {
                if self.node_gone() {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        format!("{}: the device node went away (unplugged?)", self.device),
                    ));
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
                continue;
            }
            // videobuf2 reports POLLERR once the queue has failed, which is how an unplugged
            // UVC camera shows up before its node disappears.
            if pollfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                return Err(Error::new(
                    ErrorKind::Disconnected,
                    format!("{}: the device reported an error (unplugged?)", self.device),
                ));
            }
            return Ok(true);
        }
    }

    /// Whether the node we hold open was removed (its inode has no links left, or the path
    /// now names another inode): the device was unplugged or its driver unbound.
    fn node_gone(&self) -> bool {
        let held = match self.file.metadata() {
            Ok(m) => m,
            Err(_) => return true,
        };
        if std::os::unix::fs::MetadataExt::nlink(&held) == 0 {
            return true;
        }
        match fs::metadata(&self.device) {
            Ok(now) => {
                use std::os::unix::fs::MetadataExt;
                (now.dev(), now.ino()) != (held.dev(), held.ino())
            }
            Err(_) => true,
        }
    }

    /// Takes the next filled buffer from the driver; `None` when none is ready yet.
    fn dequeue(&self) -> Result<Option<sys::Buffer>> {
        let mut buf = sys::Buffer::for_index(0);
        match sys::ioctl(self.file.as_fd(), sys::VIDIOC_DQBUF, &mut buf) {
            Ok(()) => Ok(Some(buf)),
            Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
            Err(err) => Err(self.stream_error(err, "VIDIOC_DQBUF")),
        }
    }

    /// Lends one dequeued buffer to `sink`, or says why it was not fit to lend.
    fn lend(
        &mut self,
        buf: &sys::Buffer,
        sink: &mut dyn FnMut(CapturedFrame<'_>),
    ) -> std::result::Result<(), &'static str> {
        let Some(map) = self.buffers.get(buf.index as usize) else {
            return Err("the driver returned an unknown buffer index");
        };
        if buf.flags & sys::BUF_FLAG_ERROR != 0 {
            return Err("the driver flagged the frame as corrupt");
        }
        let used = &map.as_slice()[..(buf.bytesused as usize).min(map.len)];
        let data = match &mut self.raw {
            None if looks_like_jpeg(used) => used,
            None => return Err("MJPEG frame empty or not starting with a JPEG marker"),
            Some(raw) => raw.frame(used).ok_or("raw frame shorter than its format")?,
        };
        sink(CapturedFrame {
            data,
            timestamp_us: frame_timestamp_us(buf.flags, &buf.timestamp, monotonic_now_us),
            sequence: u64::from(buf.sequence),
        });
        Ok(())
    }

    fn note_skipped(&mut self, reason: &str) {
        self.skipped_frames += 1;
        let n = self.skipped_frames;
        // The 1st, 10th, 100th, ...: a camera that keeps sending bad frames must not flood
        // the journal, yet the count stays visible.
        if n == 10u64.pow(n.ilog10()) {
            log::warn!(
                "v4l2: {}: skipped {n} frame(s) since open, latest: {reason}",
                self.device
            );
        }
    }

    /// Errors while streaming: a vanished or failed device means reopen, anything else is I/O.
    fn stream_error(&self, err: io::Error, what: &str) -> Error {
        let kind = match err.raw_os_error() {
            Some(libc::ENODEV | libc::ENXIO | libc::EIO) => ErrorKind::Disconnected,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{}: {what}: {err}", self.device))
    }
}

impl CaptureSource for V4l2Source {
    fn mode(&self) -> Mode {
        self.mode
    }

    fn frames_skipped(&self) -> u64 {
        self.skipped_frames
    }

    fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    fn next_frame(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(CapturedFrame<'_>),
    ) -> Result<()> {
        // `None` for a timeout too long to add to now, which can only mean "wait forever".
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if !self.wait_readable(deadline)? {
                return Err(Error::new(
                    ErrorKind::NoSignal,
                    format!(
                        "{}: no frame within {} ms",
                        self.device,
                        timeout.as_millis()
                    ),
                ));
            }
            // A wakeup without a finished buffer happens (another reader, a spurious event).
            let Some(buf) = self.dequeue()? else {
                continue;
            };
            let lent = self.lend(&buf, sink);
            queue_buffer(self.file.as_fd(), buf.index)
                .map_err(|e| self.stream_error(e, "VIDIOC_QBUF"))?;
            match lent {
                Ok(()) => return Ok(()),
                // Skipped frames (UVC sends empty and torn MJPEG frames, especially right
                // after STREAMON) are retried until the deadline instead of reported.
                Err(reason) => self.note_skipped(reason),
            }
        }
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        if self.streaming {
            let mut buf_type = sys::BUF_TYPE_VIDEO_CAPTURE as c_int;
            if let Err(err) = sys::ioctl(self.file.as_fd(), sys::VIDIOC_STREAMOFF, &mut buf_type) {
                // An unplugged device cannot be stopped and needs no stopping.
                log::debug!("v4l2: {}: VIDIOC_STREAMOFF: {err}", self.device);
            }
        }
        if self.skipped_frames > 0 {
            log::info!(
                "v4l2: {}: {} frame(s) skipped while open",
                self.device,
                self.skipped_frames
            );
        }
    }
}

pub(super) fn queue_buffer(fd: BorrowedFd<'_>, index: u32) -> io::Result<()> {
    let mut buf = sys::Buffer::for_index(index);
    sys::ioctl(fd, sys::VIDIOC_QBUF, &mut buf)
}

/// Asks for `fps` and returns the rate the driver settled on, if it says.
pub(super) fn set_frame_rate(fd: BorrowedFd<'_>, device: &str, fps: u32) -> Option<u32> {
    if fps == 0 {
        return None;
    }
    let mut parm = sys::StreamParm::zeroed();
    parm.type_ = sys::BUF_TYPE_VIDEO_CAPTURE;
    parm.capture.timeperframe = sys::Fract {
        numerator: 1,
        denominator: fps,
    };
    if let Err(err) = sys::ioctl(fd, sys::VIDIOC_S_PARM, &mut parm) {
        // Some drivers have a fixed rate; the frames still carry their own times.
        log::debug!("v4l2: {device}: VIDIOC_S_PARM {fps} fps: {err}");
        return None;
    }
    if parm.capture.capability & sys::CAP_TIMEPERFRAME == 0 {
        return None;
    }
    let interval = parm.capture.timeperframe;
    fps_from_interval(interval.numerator, interval.denominator)
}

/// Whether an MJPEG buffer holds something that can be a whole JPEG image: it starts with
/// SOI and has an EOI near its end (cameras pad some frames after EOI). UVC cameras deliver
/// empty buffers and frames cut short by USB errors, which decoders downstream choke on;
/// damage inside a frame is found by the decoder, which counts it too.
pub(super) fn looks_like_jpeg(data: &[u8]) -> bool {
    const EOI_WITHIN: usize = 1024;
    let tail = &data[data.len().saturating_sub(EOI_WITHIN)..];
    data.len() >= 4 && data.starts_with(&[0xFF, 0xD8]) && tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The frame's capture time in µs on CLOCK_MONOTONIC: the driver's timestamp when the buffer
/// flags say it is on that clock, otherwise `now()` (the dequeue time).
pub(super) fn frame_timestamp_us(flags: u32, tv: &libc::timeval, now: impl FnOnce() -> u64) -> u64 {
    let driver_time = (flags & sys::BUF_FLAG_TIMESTAMP_MASK == sys::BUF_FLAG_TIMESTAMP_MONOTONIC)
        .then(|| {
            let secs = u64::try_from(tv.tv_sec).ok()?;
            let micros = u64::try_from(tv.tv_usec).ok()?;
            secs.checked_mul(1_000_000)?.checked_add(micros)
        })
        .flatten()
        // Zero is "not filled in", never a real capture time.
        .filter(|&us| us != 0);
    driver_time.unwrap_or_else(now)
}

/// A poll timeout in whole milliseconds, rounded up so that a sub-millisecond remainder
/// waits instead of spinning, and clamped to what poll accepts.
pub(super) fn poll_timeout_ms(remaining: Duration) -> c_int {
    let ms = remaining.as_nanos().div_ceil(1_000_000);
    c_int::try_from(ms).unwrap_or(c_int::MAX)
}
