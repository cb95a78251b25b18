//! libcamera frame buffers as benchcam reads them: the plane layout of a format, the
//! buffers themselves (the pipeline's, or memfd buffers of ours imported into it), and
//! their read-only mappings, made once when the camera opens.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use libcamera::framebuffer::{AsFrameBuffer, FrameBufferPlane, OwnedFrameBuffer};
use libcamera::framebuffer_allocator::FrameBuffer;

use crate::capture::PixelFormat;
use crate::error::{Error, ErrorKind, Result};

/// One of our frame buffers before it is attached to its request.
pub(super) enum Buffer {
    /// Exported by the pipeline (FrameBufferAllocator; dma-buf heaps).
    Allocated(FrameBuffer),
    /// A memfd of ours, imported (machines without a dma-buf provider).
    Imported(OwnedFrameBuffer),
}

impl Buffer {
    pub(super) fn as_frame_buffer(&self) -> &dyn AsFrameBuffer {
        match self {
            Buffer::Allocated(b) => b,
            Buffer::Imported(b) => b,
        }
    }
}

/// One plane of a format: bytes per packed row, rows, bytes per row in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PlaneShape {
    pub(super) row_bytes: usize,
    pub(super) rows: usize,
    pub(super) stride: usize,
}

/// The planes of `format` at `width`x`height` with a luma stride of `stride` bytes
/// (libcamera's convention: YUV420's chroma rows are half the luma stride, NV12's
/// interleaved chroma rows the full stride).
pub(super) fn plane_shapes(
    format: PixelFormat,
    width: usize,
    height: usize,
    stride: usize,
) -> Vec<PlaneShape> {
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let luma = PlaneShape {
        row_bytes: width,
        rows: height,
        stride,
    };
    match format {
        PixelFormat::Nv12 => vec![
            luma,
            PlaneShape {
                row_bytes: cw * 2,
                rows: ch,
                stride,
            },
        ],
        PixelFormat::I420 => {
            let chroma = PlaneShape {
                row_bytes: cw,
                rows: ch,
                stride: stride.div_ceil(2),
            };
            vec![luma, chroma, chroma]
        }
        PixelFormat::Yuyv | PixelFormat::Mjpeg => unreachable!("not a libcamera format here"),
    }
}

/// Bytes of a plane in a buffer: every row but the last at full stride.
pub(super) fn plane_bytes(shape: &PlaneShape) -> usize {
    if shape.rows == 0 {
        0
    } else {
        (shape.rows - 1) * shape.stride + shape.row_bytes
    }
}

/// One read-only shared mapping of a buffer's file; unmapped on drop.
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    pub(super) fn new(fd: i32, len: usize) -> std::io::Result<Mapping> {
        // SAFETY: mapping `len` bytes of a file we hold open; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned a non-null address"),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped, once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A frame buffer as we read it: its mappings and where each plane starts in them.
pub(super) struct MappedFrame {
    _maps: Vec<Mapping>,
    /// Start of each plane (Y, then chroma) inside `_maps`, with its readable length.
    planes: Vec<(NonNull<u8>, usize)>,
}

impl MappedFrame {
    /// Maps `buffer`'s planes once per underlying file (planes often share one buffer at
    /// different offsets). Formats with more planes than the buffer lists are taken as
    /// contiguous after the last listed plane, as single-plane buffers lay them out.
    pub(super) fn map(buffer: &dyn AsFrameBuffer, shapes: &[PlaneShape]) -> Result<MappedFrame> {
        let planes = buffer.planes();
        let listed: Vec<(i32, usize, usize)> = planes
            .into_iter()
            .map(|p| (p.fd(), p.offset().unwrap_or(0), p.len()))
            .collect();
        if listed.is_empty() {
            return Err(Error::new(ErrorKind::Io, "libcamera buffer has no planes"));
        }
        // One mapping per (device, inode): dup'd fds of one memfd or dma-buf share it.
        let mut files: Vec<((u64, u64), i32, usize)> = Vec::new();
        for &(fd, offset, len) in &listed {
            let key = file_key(fd).map_err(|e| Error::io(e, "fstat of a libcamera buffer"))?;
            match files.iter_mut().find(|f| f.0 == key) {
                Some(f) => f.2 = f.2.max(offset + len),
                None => files.push((key, fd, offset + len)),
            }
        }
        let mut maps = Vec::with_capacity(files.len());
        for &(_, fd, len) in &files {
            maps.push(
                Mapping::new(fd, len).map_err(|e| Error::io(e, "mmap of a libcamera buffer"))?,
            );
        }
        let mut out = Vec::with_capacity(shapes.len());
        for (i, shape) in shapes.iter().enumerate() {
            let (ptr, available) = match listed.get(i) {
                Some(&(fd, offset, len)) => {
                    let key = file_key(fd).map_err(|e| Error::io(e, "fstat"))?;
                    let m = files.iter().position(|f| f.0 == key).expect("mapped above");
                    // SAFETY: offset + len <= the mapping's length by construction.
                    (unsafe { maps[m].ptr.add(offset) }, len)
                }
                None => {
                    let &(prev_ptr, prev_len): &(NonNull<u8>, usize) =
                        out.last().expect("plane 0 is always listed");
                    let prev_shape = &shapes[i - 1];
                    let used = prev_shape.stride * prev_shape.rows;
                    if prev_len < used {
                        return Err(Error::new(
                            ErrorKind::Unsupported,
                            format!("libcamera buffer plane {} too small for its format", i - 1),
                        ));
                    }
                    // SAFETY: stays inside the previous plane's range, checked above.
                    (unsafe { prev_ptr.add(used) }, prev_len - used)
                }
            };
            if available < plane_bytes(shape) {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "libcamera buffer plane {i} has {available} bytes, the format needs {}",
                        plane_bytes(shape)
                    ),
                ));
            }
            out.push((ptr, available));
        }
        Ok(MappedFrame {
            _maps: maps,
            planes: out,
        })
    }

    /// The whole frame as one packed slice, when the buffer already holds it that way
    /// (no row padding, planes back to back).
    pub(super) fn packed(&self, shapes: &[PlaneShape]) -> Option<&[u8]> {
        let base = self.planes[0].0.as_ptr() as usize;
        let mut offset = 0;
        for (shape, &(ptr, _)) in shapes.iter().zip(&self.planes) {
            if shape.stride != shape.row_bytes || ptr.as_ptr() as usize != base + offset {
                return None;
            }
            offset += shape.row_bytes * shape.rows;
        }
        // SAFETY: each plane's rows were checked to lie inside its mapping, and the planes
        // are contiguous in one mapping, so [base, base + offset) is mapped.
        Some(unsafe { std::slice::from_raw_parts(self.planes[0].0.as_ptr(), offset) })
    }

    /// Copies the frame's rows, without padding, into `out` (the packed frame size).
    pub(super) fn repack(&self, shapes: &[PlaneShape], out: &mut [u8]) {
        let mut dst = 0;
        for (shape, &(ptr, len)) in shapes.iter().zip(&self.planes) {
            // SAFETY: `len` readable bytes start at `ptr` (checked in `map`).
            let src = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) };
            for row in 0..shape.rows {
                let s = row * shape.stride;
                out[dst..dst + shape.row_bytes].copy_from_slice(&src[s..s + shape.row_bytes]);
                dst += shape.row_bytes;
            }
        }
    }
}

pub(super) fn file_key(fd: i32) -> std::io::Result<(u64, u64)> {
    // SAFETY: fstat writes into the zeroed struct; the result is checked.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((st.st_dev, st.st_ino))
    }
}

pub(super) fn memfd(bytes: usize) -> std::io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name and flags; the fd is checked and then owned.
    unsafe {
        let fd = libc::memfd_create(c"benchcam-libcamera".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        if libc::ftruncate(fd.as_raw_fd(), bytes as libc::off_t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// A memfd frame buffer holding the planes back to back (each at the configured stride).
pub(super) fn import_buffer(shapes: &[PlaneShape], cookie: u64) -> Result<Buffer> {
    let sizes: Vec<usize> = shapes.iter().map(|s| s.stride * s.rows).collect();
    let total: usize = sizes.iter().sum();
    let fd = memfd(total).map_err(|e| Error::io(e, "memfd for a libcamera buffer"))?;
    let mut planes = Vec::with_capacity(shapes.len());
    let mut offset = 0;
    for size in sizes {
        let plane_fd = fd.try_clone().map_err(|e| Error::io(e, "dup of a memfd"))?;
        planes.push(FrameBufferPlane {
            fd: plane_fd,
            offset: offset as u32,
            length: size as u32,
        });
        offset += size;
    }
    let buffer = OwnedFrameBuffer::new(planes, Some(cookie))
        .map_err(|e| Error::io(e, "importing a memfd buffer into libcamera"))?;
    Ok(Buffer::Imported(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plane_shapes_follow_libcamera_strides() {
        let nv12 = plane_shapes(PixelFormat::Nv12, 6, 4, 8);
        assert_eq!(nv12.len(), 2);
        assert_eq!(
            nv12[1],
            PlaneShape {
                row_bytes: 6,
                rows: 2,
                stride: 8
            }
        );
        let i420 = plane_shapes(PixelFormat::I420, 6, 4, 8);
        assert_eq!(
            i420[1],
            PlaneShape {
                row_bytes: 3,
                rows: 2,
                stride: 4
            }
        );
        assert_eq!(plane_bytes(&i420[0]), 3 * 8 + 6);
    }
}
