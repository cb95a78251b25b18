//! The encoded ring: a camera's encoded frames (H.264 access units, or JPEGs when clips are
//! MJPEG), each in a reusable buffer, shared by the clip recorder and the live H.264
//! viewers without a copy.
//!
//! A slot is a buffer from which each unit is split off as a `Bytes` (the consumers'
//! [`Unit`]s share it); it is free again when none of them is left, and is then written
//! over in place (no allocation once each slot's buffer has grown to the largest frame
//! it held).
//! The encoder stage owns the ring and never waits: with every slot held, the frame is
//! not published and the ring says so.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::fmp4::TrackCodec;

/// What is known about one encoded frame; the first four fields are its raw frame's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitMeta {
    /// The raw frame's number (`FrameMeta::number`).
    pub number: u64,
    /// Capture time on CLOCK_MONOTONIC, µs.
    pub timestamp_us: u64,
    /// Wall-clock capture time, µs since the Unix epoch.
    pub wall_us: i64,
    pub driver_dropped_before: u32,
    /// An IDR (H.264) or a JPEG: decodable on its own.
    pub keyframe: bool,
    /// A keyframe on the stage's fragment grid (every `fragment_duration`): clips start
    /// their fragments here. Requested keyframes are not on it.
    pub boundary: bool,
}

/// The stream an encoder produces until it is reopened: the codec with its parameter
/// sets and the fMP4 init segment a player (or clip) starts with. Shared by every unit of
/// that stream; a new `Arc` means a new stream (size changed, encoder restarted).
#[derive(Debug)]
pub struct StreamParams {
    pub codec: TrackCodec,
    pub width: u32,
    pub height: u32,
    /// `avc1.PPCCLL` from the SPS (RFC 6381), or `jpeg`.
    pub codec_string: String,
    /// `ftyp` + `moov` for this stream.
    pub init: Bytes,
}

/// One encoded frame held by a consumer. Cloning is an atomic increment.
///
/// The bytes are laid out for both consumers: for H.264, a one-sample `moof` + `mdat`
/// (what a live viewer sends as is) whose payload is the AVCC sample (what a clip stores);
/// for JPEG, just the JPEG.
#[derive(Clone, Debug)]
pub struct Unit {
    pub meta: UnitMeta,
    pub params: Arc<StreamParams>,
    bytes: Bytes,
    sample_at: usize,
}

impl Unit {
    /// The sample as a clip stores it (AVCC NAL units, or the JPEG).
    pub fn sample(&self) -> &[u8] {
        &self.bytes[self.sample_at..]
    }

    /// `moof` + `mdat` of this frame alone, for live viewers (H.264 streams only: for
    /// JPEG this is the JPEG).
    pub fn fragment(&self) -> &Bytes {
        &self.bytes
    }
}

impl std::ops::Deref for Unit {
    type Target = UnitMeta;

    fn deref(&self) -> &UnitMeta {
        &self.meta
    }
}

/// One buffer of the ring. Each unit written into it is split off as a `Bytes` sharing the
/// buffer; once every such `Bytes` is gone, `try_reclaim` gives the whole buffer back
/// without allocating (the buffer's shared header lives as long as the slot).
struct Slot {
    buf: BytesMut,
    /// The buffer's whole capacity (what a reclaim gets back).
    cap: usize,
}

impl Slot {
    fn is_free(&mut self) -> bool {
        self.buf.try_reclaim(self.cap)
    }
}

/// The ring of encoded-frame buffers; owned by the encoder stage.
pub struct EncodedRing {
    slots: Vec<Slot>,
    /// Capacity given to a slot the first time it is used.
    slot_bytes: usize,
}

impl EncodedRing {
    /// A ring of `slots` buffers. The first `preallocate` get `slot_bytes` now; the rest
    /// get theirs the first time so many units are held at once (many viewers), and keep
    /// it. A buffer grows once if a frame is larger than it.
    pub fn new(slots: usize, preallocate: usize, slot_bytes: usize) -> Self {
        let slots = slots.max(2);
        EncodedRing {
            slots: (0..slots)
                .map(|i| {
                    let cap = if i < preallocate { slot_bytes } else { 0 };
                    let mut buf = BytesMut::with_capacity(cap);
                    if cap > 0 {
                        // The first split of a buffer allocates its shared header: done
                        // here, not when a burst first reaches this slot mid-stream.
                        drop(buf.split_to(0));
                    }
                    Slot { buf, cap }
                })
                .collect(),
            slot_bytes,
        }
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Slots held by consumers right now.
    pub fn slots_in_use(&mut self) -> usize {
        self.slots
            .iter_mut()
            .map(|s| usize::from(!s.is_free()))
            .sum()
    }

    /// Slots whose buffers exist (the lowest free slot is always taken, so beyond the
    /// preallocated ones this is the most that were held at once).
    pub fn slots_grown(&self) -> usize {
        self.slots.iter().filter(|s| s.cap > 0).count()
    }

    /// Fills the lowest free slot with `write` (which returns where the sample starts in
    /// what it wrote) and hands it out as a unit. `None` when every slot is held; an
    /// error is `write`'s.
    pub fn publish<E>(
        &mut self,
        meta: UnitMeta,
        params: &Arc<StreamParams>,
        write: impl FnOnce(&mut BytesMut) -> Result<usize, E>,
    ) -> Result<Option<Unit>, E> {
        let Some(slot) = self.slots.iter_mut().find_map(|s| s.is_free().then_some(s)) else {
            return Ok(None);
        };
        if slot.cap == 0 {
            slot.buf.reserve(self.slot_bytes);
        }
        let written = write(&mut slot.buf);
        slot.cap = slot.cap.max(slot.buf.capacity());
        let sample_at = match written {
            Ok(at) => at,
            Err(e) => {
                slot.buf.clear();
                return Err(e);
            }
        };
        let bytes = slot.buf.split().freeze();
        Ok(Some(Unit {
            meta,
            params: Arc::clone(params),
            sample_at: sample_at.min(bytes.len()),
            bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Arc<StreamParams> {
        Arc::new(StreamParams {
            codec: TrackCodec::Jpeg,
            width: 2,
            height: 2,
            codec_string: "jpeg".into(),
            init: Bytes::new(),
        })
    }

    fn meta(number: u64) -> UnitMeta {
        UnitMeta {
            number,
            timestamp_us: number,
            wall_us: 0,
            driver_dropped_before: 0,
            keyframe: true,
            boundary: false,
        }
    }

    fn fill(ring: &mut EncodedRing, n: u64, bytes: &[u8]) -> Option<Unit> {
        ring.publish(meta(n), &params(), |b| {
            b.extend_from_slice(bytes);
            Ok::<_, ()>(1)
        })
        .unwrap()
    }

    #[test]
    fn a_held_unit_keeps_its_bytes_and_a_full_ring_refuses() {
        let mut ring = EncodedRing::new(2, 2, 16);
        let a = fill(&mut ring, 0, b"abc").unwrap();
        let b = fill(&mut ring, 1, b"defg").unwrap();
        assert!(fill(&mut ring, 2, b"x").is_none(), "both slots held");
        assert_eq!((a.sample(), b.sample()), (&b"bc"[..], &b"efg"[..]));
        assert_eq!(ring.slots_in_use(), 2);
        drop(a);
        let c = fill(&mut ring, 3, b"hi").unwrap();
        assert_eq!((c.number, c.fragment().as_ref()), (3, &b"hi"[..]));
        assert_eq!(b.sample(), b"efg", "another slot's bytes are untouched");
    }

    #[test]
    fn slots_are_reused_in_place_lowest_first() {
        let mut ring = EncodedRing::new(8, 1, 64);
        let first = fill(&mut ring, 0, &[7; 40]).unwrap();
        let at = first.fragment().as_ptr();
        drop(first);
        for n in 1..100 {
            let u = fill(&mut ring, n, &[n as u8; 40]).unwrap();
            assert_eq!(u.fragment().as_ptr(), at, "the same buffer every time");
        }
        assert_eq!(ring.slots_grown(), 1, "one consumer at a time: one buffer");
        let held: Vec<Unit> = (0..3).map(|n| fill(&mut ring, n, b"z").unwrap()).collect();
        assert_eq!(ring.slots_grown(), 3);
        assert_eq!(ring.slots_in_use(), 3);
        assert_eq!(held.len(), 3);
    }

    #[test]
    fn a_failed_write_leaves_the_slot_free() {
        let mut ring = EncodedRing::new(2, 2, 16);
        let r = ring.publish(meta(0), &params(), |b| {
            b.extend_from_slice(b"partial");
            Err("codec")
        });
        assert_eq!(r.unwrap_err(), "codec");
        assert_eq!(ring.slots_in_use(), 0);
        assert!(fill(&mut ring, 1, b"ok").is_some());
    }
}
