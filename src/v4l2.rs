//! The Linux V4L2 kernel interface, as much of `linux/videodev2.h` as benchcam uses: the
//! camera backend (`capture::v4l2`) and the hardware H.264 encoder (`encode::v4l2m2m`)
//! share it. Raw kernel access only; what the calls mean lives with their users.
//!
//! Struct layouts follow the header and are checked at compile time for 64-bit targets
//! (x86_64, aarch64), where they must match exactly. Ioctl numbers are computed from their
//! argument types, as the header's `_IOR`/`_IOW`/`_IOWR` do, so a struct and its request
//! cannot disagree on the size.

// The structs mirror the kernel's whole; not every field is read on this side.
#![allow(dead_code)]

use std::io;
use std::marker::PhantomData;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::{self, NonNull};

use libc::{c_int, c_ulong, timeval};

pub const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
pub const MEMORY_MMAP: u32 = 1;
pub const FIELD_NONE: u32 = 1;

pub const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
pub const CAP_VIDEO_OUTPUT: u32 = 0x0000_0002;
pub const CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
pub const CAP_VIDEO_M2M: u32 = 0x0000_8000;
pub const CAP_META_CAPTURE: u32 = 0x0080_0000;
pub const CAP_STREAMING: u32 = 0x0400_0000;
pub const CAP_DEVICE_CAPS: u32 = 0x8000_0000;
/// In `CaptureParm::capability`: the driver honours `timeperframe`.
pub const CAP_TIMEPERFRAME: u32 = 0x1000;

pub const BUF_FLAG_ERROR: u32 = 0x0000_0040;
pub const BUF_FLAG_TIMESTAMP_MASK: u32 = 0x0000_e000;
pub const BUF_FLAG_TIMESTAMP_MONOTONIC: u32 = 0x0000_2000;
pub const BUF_FLAG_TIMESTAMP_COPY: u32 = 0x0000_4000;

pub const FRMSIZE_TYPE_DISCRETE: u32 = 1;
pub const FRMSIZE_TYPE_CONTINUOUS: u32 = 2;
pub const FRMSIZE_TYPE_STEPWISE: u32 = 3;
pub const FRMIVAL_TYPE_DISCRETE: u32 = 1;
pub const FRMIVAL_TYPE_CONTINUOUS: u32 = 2;
pub const FRMIVAL_TYPE_STEPWISE: u32 = 3;

/// `v4l2_fourcc(a, b, c, d)`: the four characters, first one in the low byte.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

pub const PIX_FMT_MJPEG: u32 = fourcc(b"MJPG");
pub const PIX_FMT_JPEG: u32 = fourcc(b"JPEG");
pub const PIX_FMT_YUYV: u32 = fourcc(b"YUYV");
pub const PIX_FMT_NV12: u32 = fourcc(b"NV12");
pub const PIX_FMT_YUV420: u32 = fourcc(b"YU12");

/// `struct v4l2_capability`
#[repr(C)]
pub struct Capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

/// `struct v4l2_fmtdesc`
#[repr(C)]
pub struct FmtDesc {
    pub index: u32,
    pub type_: u32,
    pub flags: u32,
    pub description: [u8; 32],
    pub pixelformat: u32,
    pub mbus_code: u32,
    pub reserved: [u32; 3],
}

/// `struct v4l2_frmsizeenum`
#[repr(C)]
pub struct FrmSizeEnum {
    pub index: u32,
    pub pixel_format: u32,
    pub type_: u32,
    /// The union: discrete `[width, height, ..]`, or stepwise `[min_width, max_width,
    /// step_width, min_height, max_height, step_height]`.
    pub size: [u32; 6],
    pub reserved: [u32; 2],
}

/// `struct v4l2_frmivalenum`
#[repr(C)]
pub struct FrmIvalEnum {
    pub index: u32,
    pub pixel_format: u32,
    pub width: u32,
    pub height: u32,
    pub type_: u32,
    /// The union of fractions (numerator, denominator): discrete `[num, den, ..]`, or
    /// stepwise `[min_num, min_den, max_num, max_den, step_num, step_den]`.
    pub ival: [u32; 6],
    pub reserved: [u32; 2],
}

/// `struct v4l2_fract`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Fract {
    pub numerator: u32,
    pub denominator: u32,
}

/// `struct v4l2_pix_format`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PixFormat {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
    pub colorspace: u32,
    pub priv_: u32,
    pub flags: u32,
    pub ycbcr_enc: u32,
    pub quantization: u32,
    pub xfer_func: u32,
}

/// `struct v4l2_format`
#[repr(C)]
pub struct Format {
    pub type_: u32,
    pub fmt: FormatUnion,
}

/// The 200-byte `fmt` union of `struct v4l2_format`, as far as single-planar capture
/// uses it. Its other members hold pointers, which give it pointer alignment (and
/// `v4l2_format` 4 bytes of padding before it on 64-bit).
#[repr(C)]
pub struct FormatUnion {
    pub pix: PixFormat,
    pub rest: [u8; 200 - size_of::<PixFormat>()],
    pub align: [c_ulong; 0],
}

/// `struct v4l2_captureparm`
#[repr(C)]
pub struct CaptureParm {
    pub capability: u32,
    pub capturemode: u32,
    pub timeperframe: Fract,
    pub extendedmode: u32,
    pub readbuffers: u32,
    pub reserved: [u32; 4],
}

/// `struct v4l2_streamparm`, with its 200-byte `parm` union seen as the capture member.
#[repr(C)]
pub struct StreamParm {
    pub type_: u32,
    pub capture: CaptureParm,
    pub rest: [u8; 200 - size_of::<CaptureParm>()],
}

/// `struct v4l2_requestbuffers`
#[repr(C)]
pub struct RequestBuffers {
    pub count: u32,
    pub type_: u32,
    pub memory: u32,
    pub capabilities: u32,
    pub flags: u8,
    pub reserved: [u8; 3],
}

/// `struct v4l2_timecode`
#[repr(C)]
pub struct Timecode {
    pub type_: u32,
    pub flags: u32,
    pub frames: u8,
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub userbits: [u8; 4],
}

/// The `m` union of `struct v4l2_buffer`.
#[repr(C)]
pub union BufferMemory {
    pub offset: u32,
    pub userptr: c_ulong,
    pub fd: i32,
}

/// `struct v4l2_buffer`
#[repr(C)]
pub struct Buffer {
    pub index: u32,
    pub type_: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    pub timestamp: timeval,
    pub timecode: Timecode,
    pub sequence: u32,
    pub memory: u32,
    pub m: BufferMemory,
    pub length: u32,
    pub reserved2: u32,
    pub request_fd: i32,
}

impl Buffer {
    /// A request about MMAP capture buffer `index` (QUERYBUF, QBUF; DQBUF fills it in).
    pub fn for_index(index: u32) -> Buffer {
        let mut buf = Buffer::zeroed();
        buf.index = index;
        buf.type_ = BUF_TYPE_VIDEO_CAPTURE;
        buf.memory = MEMORY_MMAP;
        buf
    }
}

// ---- memory-to-memory codecs (multi-planar API) and controls ------------------------------

pub const BUF_TYPE_VIDEO_CAPTURE_MPLANE: u32 = 9;
pub const BUF_TYPE_VIDEO_OUTPUT_MPLANE: u32 = 10;
pub const BUF_FLAG_KEYFRAME: u32 = 0x0000_0008;
pub const PIX_FMT_H264: u32 = fourcc(b"H264");
/// Most planes a multi-planar format or buffer has.
pub const VIDEO_MAX_PLANES: usize = 8;

pub const CTRL_CLASS_CODEC: u32 = 0x0099_0000;
pub const CID_CODEC_BITRATE_MODE: u32 = 0x0099_09ce;
pub const CID_CODEC_BITRATE: u32 = 0x0099_09cf;
pub const CID_CODEC_REPEAT_SEQ_HEADER: u32 = 0x0099_09e2;
pub const CID_CODEC_FORCE_KEY_FRAME: u32 = 0x0099_09e5;
pub const CID_CODEC_H264_I_PERIOD: u32 = 0x0099_0a66;
pub const CID_CODEC_H264_LEVEL: u32 = 0x0099_0a67;
pub const CID_CODEC_H264_PROFILE: u32 = 0x0099_0a6b;
pub const BITRATE_MODE_VBR: i32 = 0;
pub const H264_LEVEL_4_0: i32 = 11;
pub const H264_LEVEL_4_1: i32 = 12;
pub const H264_LEVEL_4_2: i32 = 13;
pub const H264_PROFILE_HIGH: i32 = 4;

/// `struct v4l2_plane_pix_format`
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct PlanePixFormat {
    pub sizeimage: u32,
    pub bytesperline: u32,
    pub reserved: [u16; 6],
}

/// `struct v4l2_pix_format_mplane` (packed in the kernel header)
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct PixFormatMplane {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub colorspace: u32,
    pub plane_fmt: [PlanePixFormat; VIDEO_MAX_PLANES],
    pub num_planes: u8,
    pub flags: u8,
    pub ycbcr_enc: u8,
    pub quantization: u8,
    pub xfer_func: u8,
    pub reserved: [u8; 7],
}

/// `struct v4l2_format` seen through its `pix_mp` member.
#[repr(C)]
pub struct FormatMplane {
    pub type_: u32,
    pub fmt: FormatMplaneUnion,
}

#[repr(C)]
pub struct FormatMplaneUnion {
    pub pix_mp: PixFormatMplane,
    pub rest: [u8; 200 - size_of::<PixFormatMplane>()],
    pub align: [c_ulong; 0],
}

/// The `m` union of `struct v4l2_plane`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union PlaneMemory {
    pub mem_offset: u32,
    pub userptr: c_ulong,
    pub fd: i32,
}

/// `struct v4l2_plane`
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Plane {
    pub bytesused: u32,
    pub length: u32,
    pub m: PlaneMemory,
    pub data_offset: u32,
    pub reserved: [u32; 11],
}

impl Plane {
    pub const fn zeroed_plane() -> Plane {
        Plane {
            bytesused: 0,
            length: 0,
            m: PlaneMemory { userptr: 0 },
            data_offset: 0,
            reserved: [0; 11],
        }
    }
}

/// `struct v4l2_buffer` for the multi-planar API: `m` holds a pointer to `length` planes.
#[repr(C)]
pub struct BufferMplane {
    pub index: u32,
    pub type_: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    pub timestamp: timeval,
    pub timecode: Timecode,
    pub sequence: u32,
    pub memory: u32,
    pub planes: *mut Plane,
    pub length: u32,
    pub reserved2: u32,
    pub request_fd: i32,
}

/// `struct v4l2_ext_control` (packed in the kernel header), for 32-bit values.
#[repr(C, packed)]
pub struct ExtControl {
    pub id: u32,
    pub size: u32,
    pub reserved2: u32,
    pub value: i64,
}

/// `struct v4l2_ext_controls`
#[repr(C)]
pub struct ExtControls {
    pub which: u32,
    pub count: u32,
    pub error_idx: u32,
    pub request_fd: i32,
    pub reserved: u32,
    pub controls: *mut ExtControl,
}

/// `struct v4l2_control`
#[repr(C)]
pub struct Control {
    pub id: u32,
    pub value: i32,
}

pub const VIDIOC_S_CTRL: Request<Control> = Request::read_write(28);
pub const VIDIOC_S_EXT_CTRLS: Request<ExtControls> = Request::read_write(72);
pub const VIDIOC_S_FMT_MPLANE: Request<FormatMplane> = Request::read_write(5);
pub const VIDIOC_QUERYBUF_MPLANE: Request<BufferMplane> = Request::read_write(9);
pub const VIDIOC_QBUF_MPLANE: Request<BufferMplane> = Request::read_write(15);
pub const VIDIOC_DQBUF_MPLANE: Request<BufferMplane> = Request::read_write(17);

// SAFETY: repr(C) mirrors of the kernel structs (sizes checked below); all-zero is valid
// for each (null pointers included: the caller sets them before the call).
unsafe impl Arg for FormatMplane {}
unsafe impl Arg for BufferMplane {}
unsafe impl Arg for ExtControls {}
unsafe impl Arg for Control {}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<PlanePixFormat>() == 20);
    assert!(size_of::<PixFormatMplane>() == 192);
    assert!(size_of::<FormatMplane>() == 208);
    assert!(size_of::<Plane>() == 64);
    assert!(size_of::<BufferMplane>() == 88);
    assert!(size_of::<ExtControl>() == 20);
    assert!(size_of::<ExtControls>() == 32);
    assert!(size_of::<Control>() == 8);
};

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<Capability>() == 104);
    assert!(size_of::<FmtDesc>() == 64);
    assert!(size_of::<FrmSizeEnum>() == 44);
    assert!(size_of::<FrmIvalEnum>() == 52);
    assert!(size_of::<Format>() == 208);
    assert!(size_of::<StreamParm>() == 204);
    assert!(size_of::<RequestBuffers>() == 20);
    assert!(size_of::<Buffer>() == 88);
};

/// An ioctl argument: a `#[repr(C)]` mirror of a kernel struct.
///
/// # Safety
/// Implementors must match the kernel's layout for the requests they are used with, and
/// every bit pattern (all zeroes in particular) must be a valid value.
pub unsafe trait Arg: Sized {
    fn zeroed() -> Self {
        // SAFETY: the trait's contract says all-zero is a valid value.
        unsafe { std::mem::zeroed() }
    }
}

unsafe impl Arg for c_int {}
unsafe impl Arg for Capability {}
unsafe impl Arg for FmtDesc {}
unsafe impl Arg for FrmSizeEnum {}
unsafe impl Arg for FrmIvalEnum {}
unsafe impl Arg for Format {}
unsafe impl Arg for StreamParm {}
unsafe impl Arg for RequestBuffers {}
unsafe impl Arg for Buffer {}

// The generic ioctl encoding (x86, arm, aarch64, riscv): number in bits 0-7, type in
// 8-15, argument size in 16-29, direction in 30-31.
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// A V4L2 ioctl request whose argument is a `T`.
pub struct Request<T> {
    pub code: u32,
    arg: PhantomData<fn(&mut T)>,
}

impl<T> Clone for Request<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Request<T> {}

impl<T> Request<T> {
    const fn new(dir: u32, nr: u8) -> Request<T> {
        let size = size_of::<T>();
        assert!(size < 1 << 14, "ioctl argument too large to encode");
        Request {
            code: (dir << 30) | ((size as u32) << 16) | ((b'V' as u32) << 8) | nr as u32,
            arg: PhantomData,
        }
    }

    /// `_IOR('V', nr, T)`: the kernel writes the argument.
    const fn read(nr: u8) -> Request<T> {
        Request::new(IOC_READ, nr)
    }

    /// `_IOW('V', nr, T)`: the kernel reads the argument.
    const fn write(nr: u8) -> Request<T> {
        Request::new(IOC_WRITE, nr)
    }

    /// `_IOWR('V', nr, T)`: both.
    const fn read_write(nr: u8) -> Request<T> {
        Request::new(IOC_READ | IOC_WRITE, nr)
    }
}

pub const VIDIOC_QUERYCAP: Request<Capability> = Request::read(0);
pub const VIDIOC_ENUM_FMT: Request<FmtDesc> = Request::read_write(2);
pub const VIDIOC_S_FMT: Request<Format> = Request::read_write(5);
pub const VIDIOC_REQBUFS: Request<RequestBuffers> = Request::read_write(8);
pub const VIDIOC_QUERYBUF: Request<Buffer> = Request::read_write(9);
pub const VIDIOC_QBUF: Request<Buffer> = Request::read_write(15);
pub const VIDIOC_DQBUF: Request<Buffer> = Request::read_write(17);
pub const VIDIOC_STREAMON: Request<c_int> = Request::write(18);
pub const VIDIOC_STREAMOFF: Request<c_int> = Request::write(19);
pub const VIDIOC_S_PARM: Request<StreamParm> = Request::read_write(22);
pub const VIDIOC_ENUM_FRAMESIZES: Request<FrmSizeEnum> = Request::read_write(74);
pub const VIDIOC_ENUM_FRAMEINTERVALS: Request<FrmIvalEnum> = Request::read_write(75);

/// Issues `request` on `fd`, retrying when a signal interrupts it.
pub fn ioctl<T: Arg>(fd: BorrowedFd<'_>, request: Request<T>, arg: &mut T) -> io::Result<()> {
    loop {
        // SAFETY: `request` encodes `T`'s size and `T: Arg` mirrors the kernel struct, so
        // the kernel accesses exactly the `T` behind the exclusive borrow.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request.code as libc::Ioctl, arg as *mut T) };
        if rc != -1 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// One driver buffer mapped read-only into our address space; unmapped on drop.
pub struct Mmap {
    ptr: NonNull<u8>,
    pub len: usize,
    writable: bool,
}

// SAFETY: the mapping belongs to exactly one `Mmap` and is only read through `&self`, so
// moving it to the capture thread is sound.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Maps a capture buffer read-only: videobuf2 needs only PROT_READ for capture queues,
    /// and a write through the mapping would be a bug.
    pub fn new(fd: BorrowedFd<'_>, len: usize, offset: u32) -> io::Result<Mmap> {
        Mmap::map(fd, len, offset, libc::PROT_READ, false)
    }

    /// Maps a buffer we fill (an encoder's raw OUTPUT buffers) read-write.
    pub fn new_rw(fd: BorrowedFd<'_>, len: usize, offset: u32) -> io::Result<Mmap> {
        Mmap::map(fd, len, offset, libc::PROT_READ | libc::PROT_WRITE, true)
    }

    fn map(
        fd: BorrowedFd<'_>,
        len: usize,
        offset: u32,
        prot: libc::c_int,
        writable: bool,
    ) -> io::Result<Mmap> {
        // SAFETY: a new shared mapping at an address the kernel picks; it aliases no memory
        // Rust knows about.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Mmap { ptr, len, writable })
    }

    /// The mapped bytes to fill; only for mappings made with `new_rw`, and only while the
    /// buffer is not queued to the driver.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        assert!(self.writable, "a read-only mapping is never written");
        // SAFETY: `ptr` is a live, writable mapping of `len` bytes owned by `self`, and
        // `&mut self` makes this the only slice of it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes. Read them only while the buffer is dequeued: while it is queued the
    /// driver writes into it.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is a live, readable mapping of `len` bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;

    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn m2m_layouts_and_requests_match_videodev2_h() {
        // Printed by gcc from linux/videodev2.h (linux-libc-dev 6.1, x86_64).
        assert_eq!(offset_of!(Plane, m), 8);
        assert_eq!(offset_of!(Plane, data_offset), 16);
        assert_eq!(offset_of!(PixFormatMplane, plane_fmt), 20);
        assert_eq!(offset_of!(PixFormatMplane, num_planes), 180);
        assert_eq!(offset_of!(BufferMplane, planes), 64);
        assert_eq!(offset_of!(ExtControls, controls), 24);
        assert_eq!(VIDIOC_S_EXT_CTRLS.code, 0xC020_5648);
        assert_eq!(VIDIOC_S_CTRL.code, 0xC008_561C);
        assert_eq!(VIDIOC_QBUF_MPLANE.code, 0xC058_560F);
        assert_eq!(PIX_FMT_H264, 0x3436_3248);
    }
}
