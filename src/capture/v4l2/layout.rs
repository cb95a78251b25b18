//! How a raw frame lies in a V4L2 driver buffer, and repacking padded rows into the
//! packed layout the rest of benchcam expects.

use crate::capture::PixelFormat;

/// One plane of a raw frame: where its rows are in the driver buffer and in the packed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plane {
    pub src_offset: usize,
    pub src_stride: usize,
    pub dst_offset: usize,
    pub row_bytes: usize,
    pub rows: usize,
}

/// How a raw frame lies in a driver buffer. Consumers expect frames packed as
/// [`PixelFormat::raw_frame_bytes`] describes; drivers may pad each row (`bytesperline`
/// beyond the pixel width, as the Raspberry Pi camera drivers do), and then the frame is
/// repacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawLayout {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    /// Bytes per row of the first plane in the driver buffer; chroma planes of I420 use half.
    pub stride: usize,
}

impl RawLayout {
    /// The layout for a negotiated raw format; `None` for MJPEG. A `bytesperline` below the
    /// packed row length (0 from drivers that leave it unset) is taken as packed.
    pub fn new(
        format: PixelFormat,
        width: u32,
        height: u32,
        bytesperline: u32,
    ) -> Option<RawLayout> {
        let width = width as usize;
        let packed_stride = match format {
            PixelFormat::Mjpeg => return None,
            PixelFormat::Yuyv => width.div_ceil(2) * 4,
            PixelFormat::Nv12 | PixelFormat::I420 => width,
        };
        Some(RawLayout {
            format,
            width,
            height: height as usize,
            stride: (bytesperline as usize).max(packed_stride),
        })
    }

    /// The planes of this format: Y then chroma, each contiguous after the previous one as
    /// the single-planar V4L2 formats define them.
    pub fn planes(&self) -> ([Plane; 3], usize) {
        let (w, h, stride) = (self.width, self.height, self.stride);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let luma = Plane {
            src_offset: 0,
            src_stride: stride,
            dst_offset: 0,
            row_bytes: w,
            rows: h,
        };
        match self.format {
            PixelFormat::Yuyv | PixelFormat::Mjpeg => {
                let packed = Plane {
                    row_bytes: cw * 4,
                    ..luma
                };
                ([packed, packed, packed], 1)
            }
            PixelFormat::Nv12 => {
                let uv = Plane {
                    src_offset: stride * h,
                    src_stride: stride,
                    dst_offset: w * h,
                    row_bytes: cw * 2,
                    rows: ch,
                };
                ([luma, uv, uv], 2)
            }
            PixelFormat::I420 => {
                let chroma_stride = stride.div_ceil(2);
                let u = Plane {
                    src_offset: stride * h,
                    src_stride: chroma_stride,
                    dst_offset: w * h,
                    row_bytes: cw,
                    rows: ch,
                };
                let v = Plane {
                    src_offset: u.src_offset + chroma_stride * ch,
                    dst_offset: u.dst_offset + cw * ch,
                    ..u
                };
                ([luma, u, v], 3)
            }
        }
    }

    pub fn is_packed(&self) -> bool {
        let (planes, count) = self.planes();
        planes[..count].iter().all(|p| p.src_stride == p.row_bytes)
    }

    /// Bytes a driver buffer must hold for one whole frame in this layout.
    pub fn source_bytes(&self) -> usize {
        let (planes, count) = self.planes();
        planes[..count]
            .iter()
            .map(|p| p.src_offset + p.src_stride * p.rows.saturating_sub(1) + p.row_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Bytes of one packed frame.
    pub fn packed_bytes(&self) -> usize {
        let (planes, count) = self.planes();
        planes[..count].iter().map(|p| p.row_bytes * p.rows).sum()
    }

    /// Copies the frame in `src` (at least `source_bytes` long) into `dst` (exactly
    /// `packed_bytes` long), dropping the row padding.
    pub fn repack(&self, src: &[u8], dst: &mut [u8]) {
        let (planes, count) = self.planes();
        for p in &planes[..count] {
            for row in 0..p.rows {
                let from = p.src_offset + row * p.src_stride;
                let to = p.dst_offset + row * p.row_bytes;
                dst[to..to + p.row_bytes].copy_from_slice(&src[from..from + p.row_bytes]);
            }
        }
    }
}

/// Raw-frame handling of one stream: the layout, and where padded frames are repacked.
pub struct RawFrames {
    pub layout: RawLayout,
    pub source_bytes: usize,
    pub packed_bytes: usize,
    /// One packed frame, allocated at open and used only when the driver pads its rows.
    pub scratch: Vec<u8>,
}

impl RawFrames {
    pub fn new(layout: RawLayout) -> RawFrames {
        let packed_bytes = layout.packed_bytes();
        let scratch = if layout.is_packed() {
            Vec::new()
        } else {
            vec![0; packed_bytes]
        };
        RawFrames {
            layout,
            source_bytes: layout.source_bytes(),
            packed_bytes,
            scratch,
        }
    }

    /// The packed frame held in `used` (the filled part of a driver buffer); `None` when the
    /// driver filled less than a whole frame.
    pub fn frame<'a>(&'a mut self, used: &'a [u8]) -> Option<&'a [u8]> {
        if used.len() < self.source_bytes {
            return None;
        }
        if self.scratch.is_empty() {
            Some(&used[..self.packed_bytes])
        } else {
            self.layout.repack(used, &mut self.scratch);
            Some(&self.scratch)
        }
    }
}
