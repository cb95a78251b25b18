//! Hardware H.264 through a V4L2 memory-to-memory stateful encoder: the Raspberry Pi ≤ 4's
//! `bcm2835-codec` (/dev/video11) on Raspberry Pi OS. Written from the kernel's
//! stateful-encoder documentation (Documentation/userspace-api/media/v4l/dev-encoder.rst)
//! and **never run on a Pi**: no such device exists on the development machines, and
//! Debian's kernel has no `bcm2835-codec` (the benchcam image uses openh264).
//!
//! The sequence, as the documentation and the Pi's driver want it:
//! 1. controls first — level before anything else (bcm2835-codec derives buffer sizes and
//!    checks the format against the level), then profile, bitrate, I-frame period, and
//!    `REPEAT_SEQ_HEADER` so SPS/PPS come in-stream with every IDR;
//! 2. the CAPTURE (coded, H.264) format, then the OUTPUT (raw, YU12) format and rate;
//! 3. MMAP buffers on both queues, mapped once here; every CAPTURE buffer queued;
//! 4. STREAMON both; then per frame: copy the I420 picture into a free OUTPUT buffer,
//!    queue it, wait for the coded CAPTURE buffer, convert its Annex B stream to AVCC.
//!
//! Frames are copied into the encoder's buffers (one memcpy of the picture): the ring's
//! slots are ordinary memory, which this driver can only take as DMABUF; importing them
//! would need the ring allocated from a DMA heap. IDR on request through
//! `FORCE_KEY_FRAME` before the frame is queued.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::h264::{append_annexb, Encoded, H264Encode};
use super::yuv::I420;
use crate::error::{Error, ErrorKind, Result};
use crate::v4l2::{self as sys, Arg, Mmap};

/// Drivers known to be stateful H.264 encoders worth using.
const ENCODER_DRIVERS: [&str; 1] = ["bcm2835-codec"];
/// Buffers per queue: one being encoded, one being filled, one spare.
const BUFFERS: u32 = 3;
/// Coded buffer size asked for: an IDR at 1080p and a high bitrate fits.
const CODED_BUFFER_BYTES: u32 = 1024 * 1024;
/// Longest wait for a coded frame (the Pi's codec takes ~10 ms at 1080p).
const ENCODE_TIMEOUT: Duration = Duration::from_secs(1);

/// The first V4L2 node under `dev` whose driver is a known stateful H.264 encoder.
pub fn find_encoder(dev: &Path) -> Option<PathBuf> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir(dev)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("video"))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().find(|path| {
        let Ok(file) = open(path) else { return false };
        let mut cap = sys::Capability::zeroed();
        if sys::ioctl(file.as_fd(), sys::VIDIOC_QUERYCAP, &mut cap).is_err() {
            return false;
        }
        let caps = if cap.capabilities & sys::CAP_DEVICE_CAPS != 0 {
            cap.device_caps
        } else {
            cap.capabilities
        };
        let driver = String::from_utf8_lossy(&cap.driver);
        let driver = driver.trim_end_matches('\0');
        caps & sys::CAP_VIDEO_M2M_MPLANE != 0 && ENCODER_DRIVERS.contains(&driver)
    })
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// One mapped buffer of a queue.
struct Mapped {
    map: Mmap,
    /// Bytes per row of the Y plane (OUTPUT only; chroma rows are half).
    bytesperline: usize,
}

/// An open hardware encoder, streaming. Dropping it stops both queues.
pub struct V4l2M2mEncoder {
    device: String,
    width: usize,
    height: usize,
    output: Vec<Mapped>,
    capture: Vec<Mapped>,
    /// OUTPUT buffers not queued to the driver (free to fill).
    free_output: Vec<u32>,
    sps: Vec<u8>,
    pps: Vec<u8>,
    /// Frames queued, for the timestamps the driver copies to the coded buffers.
    frames: u64,
    file: File,
}

/// A single-plane format request for `queue` (`sizeimage` 0: the driver decides).
fn mplane_format(
    queue: u32,
    width: u32,
    height: u32,
    fourcc: u32,
    sizeimage: u32,
) -> sys::FormatMplane {
    let mut f = sys::FormatMplane::zeroed();
    f.type_ = queue;
    f.fmt.pix_mp.width = width;
    f.fmt.pix_mp.height = height;
    f.fmt.pix_mp.pixelformat = fourcc;
    f.fmt.pix_mp.field = sys::FIELD_NONE;
    f.fmt.pix_mp.num_planes = 1;
    f.fmt.pix_mp.plane_fmt[0].sizeimage = sizeimage;
    f
}

/// An MMAP buffer request of `queue` describing `planes` (which must outlive the ioctl).
fn mplane_buffer(queue: u32, index: u32, planes: &mut [sys::Plane; 1]) -> sys::BufferMplane {
    let mut buf = sys::BufferMplane::zeroed();
    buf.index = index;
    buf.type_ = queue;
    buf.memory = sys::MEMORY_MMAP;
    buf.planes = planes.as_mut_ptr();
    buf.length = 1;
    buf
}

/// The H.264 level for a frame size and rate (macroblocks per second, H.264 Table A-1).
fn level_for(width: u32, height: u32, fps: u32) -> i32 {
    let mbs = width.div_ceil(16) as u64 * height.div_ceil(16) as u64 * fps.max(1) as u64;
    // 4.0 covers 1080p30; 4.2 (522,240 MB/s) is the most the Pi's codec is asked for.
    if mbs <= 245_760 {
        sys::H264_LEVEL_4_0
    } else {
        sys::H264_LEVEL_4_2
    }
}

impl V4l2M2mEncoder {
    /// Opens the encoder at `path` for `width`×`height` I420 at `fps`.
    pub fn open(path: &Path, width: u32, height: u32, fps: u32, bitrate_kbps: u32) -> Result<Self> {
        let device = path.display().to_string();
        let fail = |what: &str, e: io::Error| Error::io(e, format!("{device}: {what}"));
        let file = open(path).map_err(|e| fail("open", e))?;
        let fd = file.as_fd();

        // 1. Controls, level first.
        let mut controls = [
            (sys::CID_CODEC_H264_LEVEL, level_for(width, height, fps)),
            (sys::CID_CODEC_H264_PROFILE, sys::H264_PROFILE_HIGH),
            (sys::CID_CODEC_BITRATE_MODE, sys::BITRATE_MODE_VBR),
            (
                sys::CID_CODEC_BITRATE,
                (bitrate_kbps.saturating_mul(1000)).min(i32::MAX as u32) as i32,
            ),
            (sys::CID_CODEC_H264_I_PERIOD, fps.max(1) as i32),
            (sys::CID_CODEC_REPEAT_SEQ_HEADER, 1),
        ]
        .map(|(id, value)| sys::ExtControl {
            id,
            size: 0,
            reserved2: 0,
            value: value as i64,
        });
        let mut ext = sys::ExtControls::zeroed();
        ext.which = sys::CTRL_CLASS_CODEC;
        ext.count = controls.len() as u32;
        ext.controls = controls.as_mut_ptr();
        sys::ioctl(fd, sys::VIDIOC_S_EXT_CTRLS, &mut ext)
            .map_err(|e| fail("VIDIOC_S_EXT_CTRLS", e))?;

        // 2. Coded format, then raw format.
        let mut coded = mplane_format(
            sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE,
            width,
            height,
            sys::PIX_FMT_H264,
            CODED_BUFFER_BYTES,
        );
        sys::ioctl(fd, sys::VIDIOC_S_FMT_MPLANE, &mut coded)
            .map_err(|e| fail("S_FMT (H.264)", e))?;
        let mut raw = mplane_format(
            sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE,
            width,
            height,
            sys::PIX_FMT_YUV420,
            0,
        );
        sys::ioctl(fd, sys::VIDIOC_S_FMT_MPLANE, &mut raw).map_err(|e| fail("S_FMT (YU12)", e))?;
        let pix = raw.fmt.pix_mp;
        let (got_w, got_h, got_fourcc) = (pix.width, pix.height, pix.pixelformat);
        if (got_w, got_h, got_fourcc) != (width, height, sys::PIX_FMT_YUV420) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{device}: the encoder wants {got_w}x{got_h} instead of {width}x{height} YU12"
                ),
            ));
        }
        let plane = pix.plane_fmt[0];
        let bytesperline = (plane.bytesperline as usize).max(width as usize);
        let mut parm = sys::StreamParm::zeroed();
        parm.type_ = sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE;
        parm.capture.timeperframe = sys::Fract {
            numerator: 1,
            denominator: fps.max(1),
        };
        // Only a hint for rate control; drivers without it keep their default.
        let _ = sys::ioctl(fd, sys::VIDIOC_S_PARM, &mut parm);

        // 3. Buffers, mapped once.
        let mut encoder = V4l2M2mEncoder {
            device,
            width: width as usize,
            height: height as usize,
            output: Vec::new(),
            capture: Vec::new(),
            free_output: Vec::new(),
            sps: Vec::new(),
            pps: Vec::new(),
            frames: 0,
            file,
        };
        encoder.output = encoder.map_queue(sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE, bytesperline)?;
        encoder.capture = encoder.map_queue(sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE, 0)?;
        let y_rows = height as usize;
        let need = bytesperline * y_rows + 2 * (bytesperline / 2) * y_rows.div_ceil(2);
        if encoder.output.iter().any(|b| b.map.len < need) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{}: raw buffers smaller than a {width}x{height} frame",
                    encoder.device
                ),
            ));
        }
        encoder.free_output = (0..encoder.output.len() as u32).collect();
        for index in 0..encoder.capture.len() as u32 {
            encoder.queue(sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE, index, 0)?;
        }
        // 4. Stream.
        for queue in [
            sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE,
            sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE,
        ] {
            let mut t = queue as libc::c_int;
            sys::ioctl(encoder.file.as_fd(), sys::VIDIOC_STREAMON, &mut t)
                .map_err(|e| Error::io(e, format!("{}: STREAMON", encoder.device)))?;
        }
        log::info!(
            "h264: hardware encoder {} at {width}x{height} {fps} fps, {bitrate_kbps} kbit/s",
            encoder.device
        );
        Ok(encoder)
    }

    fn map_queue(&self, queue: u32, bytesperline: usize) -> Result<Vec<Mapped>> {
        let fd = self.file.as_fd();
        let mut request = sys::RequestBuffers::zeroed();
        request.count = BUFFERS;
        request.type_ = queue;
        request.memory = sys::MEMORY_MMAP;
        sys::ioctl(fd, sys::VIDIOC_REQBUFS, &mut request)
            .map_err(|e| Error::io(e, format!("{}: REQBUFS", self.device)))?;
        (0..request.count)
            .map(|index| {
                let mut planes = [sys::Plane::zeroed_plane(); 1];
                let mut buf = mplane_buffer(queue, index, &mut planes);
                sys::ioctl(fd, sys::VIDIOC_QUERYBUF_MPLANE, &mut buf)
                    .map_err(|e| Error::io(e, format!("{}: QUERYBUF", self.device)))?;
                // SAFETY: for MMAP buffers QUERYBUF fills `mem_offset` of each plane.
                let offset = unsafe { planes[0].m.mem_offset };
                let map = Mmap::new_rw(fd, planes[0].length as usize, offset)
                    .map_err(|e| Error::io(e, format!("{}: mmap", self.device)))?;
                Ok(Mapped { map, bytesperline })
            })
            .collect()
    }

    /// Queues buffer `index` of `queue`; `bytesused` for OUTPUT (0 for CAPTURE).
    fn queue(&self, queue: u32, index: u32, bytesused: u32) -> Result<()> {
        let mut planes = [sys::Plane::zeroed_plane(); 1];
        planes[0].bytesused = bytesused;
        let len = if queue == sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE {
            self.output[index as usize].map.len
        } else {
            self.capture[index as usize].map.len
        };
        planes[0].length = len as u32;
        let mut buf = mplane_buffer(queue, index, &mut planes);
        // The driver copies OUTPUT timestamps to the coded buffers: the frame count.
        buf.timestamp.tv_usec = (self.frames % 1_000_000) as libc::suseconds_t;
        buf.timestamp.tv_sec = (self.frames / 1_000_000) as libc::time_t;
        sys::ioctl(self.file.as_fd(), sys::VIDIOC_QBUF_MPLANE, &mut buf)
            .map_err(|e| Error::io(e, format!("{}: QBUF", self.device)))
    }

    /// Dequeues a buffer of `queue`, waiting up to `timeout`: (index, bytesused,
    /// data_offset, flags), or `None` on timeout.
    fn dequeue(&self, queue: u32, timeout: Duration) -> Result<Option<(u32, usize, usize, u32)>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut planes = [sys::Plane::zeroed_plane(); 1];
            let mut buf = mplane_buffer(queue, 0, &mut planes);
            match sys::ioctl(self.file.as_fd(), sys::VIDIOC_DQBUF_MPLANE, &mut buf) {
                Ok(()) => {
                    return Ok(Some((
                        buf.index,
                        planes[0].bytesused as usize,
                        planes[0].data_offset as usize,
                        buf.flags,
                    )))
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                Err(e) => return Err(Error::io(e, format!("{}: DQBUF", self.device))),
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let events = if queue == sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            let mut pollfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
            // SAFETY: one valid pollfd that outlives the call.
            unsafe { libc::poll(&mut pollfd, 1, ms) };
        }
    }

    /// Copies `picture` into OUTPUT buffer `index`, honouring the driver's row stride.
    fn fill(&mut self, index: u32, picture: &I420<'_>) -> usize {
        let (w, h) = (self.width, self.height);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let buf = &mut self.output[index as usize];
        let stride = buf.bytesperline;
        let cstride = stride / 2;
        let dst = buf.map.as_mut_slice();
        for row in 0..h {
            dst[row * stride..row * stride + w].copy_from_slice(&picture.y[row * w..(row + 1) * w]);
        }
        let u_base = stride * h;
        let v_base = u_base + cstride * ch;
        for row in 0..ch {
            let src = row * cw..(row + 1) * cw;
            dst[u_base + row * cstride..u_base + row * cstride + cw]
                .copy_from_slice(&picture.u[src.clone()]);
            dst[v_base + row * cstride..v_base + row * cstride + cw]
                .copy_from_slice(&picture.v[src]);
        }
        v_base + cstride * ch
    }
}

impl H264Encode for V4l2M2mEncoder {
    fn backend(&self) -> &'static str {
        "v4l2-m2m"
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
        if (picture.width, picture.height) != (self.width, self.height) {
            return Err(Error::new(
                ErrorKind::Codec,
                "picture size changed; reopen the encoder",
            ));
        }
        // A free raw buffer: reclaim the ones the driver has finished with.
        while let Some((index, ..)) =
            self.dequeue(sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE, Duration::ZERO)?
        {
            self.free_output.push(index);
        }
        let index = match self.free_output.pop() {
            Some(i) => i,
            None => match self.dequeue(sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE, ENCODE_TIMEOUT)? {
                Some((i, ..)) => i,
                None => {
                    return Err(Error::new(
                        ErrorKind::Codec,
                        format!("{}: encoder stalled", self.device),
                    ))
                }
            },
        };
        let used = self.fill(index, picture);
        if force_keyframe {
            let mut c = sys::Control {
                id: sys::CID_CODEC_FORCE_KEY_FRAME,
                value: 1,
            };
            sys::ioctl(self.file.as_fd(), sys::VIDIOC_S_CTRL, &mut c)
                .map_err(|e| Error::io(e, format!("{}: FORCE_KEY_FRAME", self.device)))?;
        }
        self.queue(sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE, index, used as u32)?;
        self.frames += 1;
        let Some((coded, bytes, offset, flags)) =
            self.dequeue(sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE, ENCODE_TIMEOUT)?
        else {
            return Err(Error::new(
                ErrorKind::Codec,
                format!("{}: no coded frame within 1 s", self.device),
            ));
        };
        let start = out.len();
        let stream = &self.capture[coded as usize].map.as_slice()[offset.min(bytes)..bytes];
        let idr = append_annexb(stream, &mut self.sps, &mut self.pps, out);
        self.queue(sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE, coded, 0)?;
        Ok(Encoded {
            keyframe: idr || flags & sys::BUF_FLAG_KEYFRAME != 0,
            len: out.len() - start,
        })
    }
}

impl Drop for V4l2M2mEncoder {
    fn drop(&mut self) {
        for queue in [
            sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE,
            sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE,
        ] {
            let mut t = queue as libc::c_int;
            let _ = sys::ioctl(self.file.as_fd(), sys::VIDIOC_STREAMOFF, &mut t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_macroblock_rate() {
        assert_eq!(level_for(1280, 720, 30), sys::H264_LEVEL_4_0);
        assert_eq!(level_for(1920, 1080, 30), sys::H264_LEVEL_4_0);
        assert_eq!(level_for(1920, 1080, 60), sys::H264_LEVEL_4_2);
    }

    #[test]
    fn no_encoder_where_there_is_none() {
        assert_eq!(find_encoder(Path::new("/nonexistent")), None);
        // This machine has video nodes at most from tests; none is a bcm2835-codec.
        assert_eq!(find_encoder(Path::new("/dev")), None);
    }
}
