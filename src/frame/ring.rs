//! SharedFrameBuffer: a camera's fixed set of frame slots, all allocated when the camera
//! opens, and `Frame`, the reference-counted guard through which a consumer holds one.
//!
//! The capture thread owns the ring. A slot is free when no `Frame` for it is alive;
//! the ring checks that with `Arc::get_mut`, so reuse needs no lock and no allocation,
//! and a consumer that forgets a frame simply keeps one slot busy until it drops it.

use std::ops::Deref;
use std::sync::Arc;

use crate::capture::PixelFormat;

/// What is known about one captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    /// Counts every frame the camera delivered since the service started, from 0;
    /// gaps never happen here (drops are counted where they happen, downstream).
    pub number: u64,
    /// Capture time on CLOCK_MONOTONIC, microseconds.
    pub timestamp_us: u64,
    /// Wall-clock capture time, microseconds since the Unix epoch.
    pub wall_us: i64,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Frames the driver dropped right before this one (a gap in its sequence numbers);
    /// written into the clip's frames file so a lab sees where the camera lost frames.
    pub driver_dropped_before: u32,
}

/// One slot: metadata plus a buffer whose capacity is fixed at allocation.
#[derive(Debug)]
pub struct FrameSlot {
    meta: FrameMeta,
    data: Vec<u8>,
}

/// A captured frame held by a consumer. Cloning is one atomic increment; the slot
/// returns to the ring when the last clone drops.
#[derive(Clone, Debug)]
pub struct Frame(Arc<FrameSlot>);

impl Frame {
    pub fn meta(&self) -> &FrameMeta {
        &self.0.meta
    }

    pub fn data(&self) -> &[u8] {
        &self.0.data
    }
}

impl Deref for Frame {
    type Target = FrameMeta;

    fn deref(&self) -> &FrameMeta {
        &self.0.meta
    }
}

/// Why a frame was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// Every slot is held by a consumer: the frame is dropped, the producer never waits.
    RingFull,
    /// The frame is larger than a slot (a corrupt or oversized compressed frame).
    TooLarge,
}

/// The ring itself; owned by the capture thread.
pub struct FrameRing {
    slots: Vec<Arc<FrameSlot>>,
    next: usize,
    slot_bytes: usize,
}

impl FrameRing {
    /// Allocates `slots` buffers of `slot_bytes` each. This is the only allocation of
    /// frame memory for as long as the camera stays open.
    pub fn new(
        slots: usize,
        slot_bytes: usize,
        format: PixelFormat,
        width: u32,
        height: u32,
    ) -> Self {
        assert!(slots >= 2, "a ring needs at least two slots");
        let meta = FrameMeta {
            number: 0,
            timestamp_us: 0,
            wall_us: 0,
            width,
            height,
            format,
            driver_dropped_before: 0,
        };
        FrameRing {
            slots: (0..slots)
                .map(|_| {
                    Arc::new(FrameSlot {
                        meta,
                        data: Vec::with_capacity(slot_bytes),
                    })
                })
                .collect(),
            next: 0,
            slot_bytes,
        }
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub fn slot_bytes(&self) -> usize {
        self.slot_bytes
    }

    /// Slots currently held by consumers.
    pub fn slots_in_use(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| Arc::strong_count(s) > 1)
            .count()
    }

    /// Copies `data` into the next free slot and returns a guard for it.
    pub fn publish(&mut self, meta: FrameMeta, data: &[u8]) -> Result<Frame, PublishError> {
        if data.len() > self.slot_bytes {
            return Err(PublishError::TooLarge);
        }
        let n = self.slots.len();
        for step in 0..n {
            let index = (self.next + step) % n;
            if let Some(slot) = Arc::get_mut(&mut self.slots[index]) {
                slot.meta = meta;
                slot.data.clear();
                // Within capacity (checked above), so this never reallocates.
                slot.data.extend_from_slice(data);
                self.next = (index + 1) % n;
                return Ok(Frame(Arc::clone(&self.slots[index])));
            }
        }
        Err(PublishError::RingFull)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(number: u64) -> FrameMeta {
        FrameMeta {
            number,
            timestamp_us: number * 33_333,
            wall_us: 0,
            width: 4,
            height: 2,
            format: PixelFormat::I420,
            driver_dropped_before: 0,
        }
    }

    #[test]
    fn slots_are_reused_only_when_released() {
        let mut ring = FrameRing::new(3, 16, PixelFormat::I420, 4, 2);
        let a = ring.publish(meta(0), &[1; 12]).unwrap();
        let b = ring.publish(meta(1), &[2; 12]).unwrap();
        let c = ring.publish(meta(2), &[3; 12]).unwrap();
        assert_eq!(ring.slots_in_use(), 3);
        assert_eq!(
            ring.publish(meta(3), &[4; 12]).unwrap_err(),
            PublishError::RingFull
        );
        // Earlier frames are untouched by the failed publish.
        assert_eq!((a.number, a.data()[0]), (0, 1));
        drop(b);
        let d = ring.publish(meta(4), &[5; 12]).unwrap();
        assert_eq!((d.number, d.data(), c.data()[0]), (4, &[5u8; 12][..], 3));
        drop((a, c, d));
        assert_eq!(ring.slots_in_use(), 0);
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut ring = FrameRing::new(2, 8, PixelFormat::Mjpeg, 4, 2);
        assert_eq!(
            ring.publish(meta(0), &[0; 9]).unwrap_err(),
            PublishError::TooLarge
        );
        assert_eq!(ring.publish(meta(0), &[0; 8]).unwrap().data().len(), 8);
    }
}
