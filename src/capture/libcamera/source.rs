//! An open libcamera camera: configured, its buffers allocated and mapped once, requests
//! completed on libcamera's thread and requeued by the capture thread.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TrySendError};
use std::time::Duration;

use libcamera::camera::ActiveCamera;
use libcamera::control::ControlList;
use libcamera::controls::{self, ControlId};
use libcamera::framebuffer::{AsFrameBuffer, FrameMetadataStatus, OwnedFrameBuffer};
use libcamera::framebuffer_allocator::{FrameBuffer, FrameBufferAllocator};
use libcamera::geometry::Size;
use libcamera::request::{Request, RequestStatus, ReuseFlag};
use libcamera::stream::{Stream, StreamRole};

use super::buffers::{import_buffer, plane_shapes, Buffer, MappedFrame, PlaneShape};
use super::pacer::Pacer;
use super::{camera, to_libcamera, SensorControls};
use crate::capture::{CaptureSource, CapturedFrame, Mode};
use crate::config::Exposure;
use crate::error::{Error, ErrorKind, Result};

/// What the libcamera thread hands to the capture thread.
enum Event {
    Completed(Request),
    Disconnected,
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An open, streaming libcamera camera.
pub struct LibcameraSource {
    id: String,
    camera: ActiveCamera<'static>,
    stream: Stream,
    mode: Mode,
    events: Receiver<Event>,
    /// Mapped frame buffers, indexed by the cookie of the request that carries each.
    frames: Vec<MappedFrame>,
    shapes: Vec<PlaneShape>,
    packed_bytes: usize,
    /// One packed frame, allocated at open, used only when the buffers pad their rows.
    scratch: Vec<u8>,
    /// Completed requests waiting to be queued again (only while pacing an unpaced
    /// pipeline), and requests libcamera refused (kept to be freed in order on drop).
    held: VecDeque<Request>,
    refused: Vec<Request>,
    pacer: Pacer,
    /// Requests queued and not yet back.
    in_flight: usize,
    /// Per request cookie: queued by the pacer (only those count once it paces).
    paced: Vec<bool>,
    /// Sequence numbers: the pipeline's 32-bit counter extended to 64 bits, minus the
    /// frames the pacer skipped on purpose (not drops), plus grid slots it missed (drops).
    last_raw_sequence: Option<u32>,
    sequence: u64,
    skipped: u64,
    missed: u64,
}

// SAFETY: libcamera's Camera, Request and FrameBuffer may be used from any thread as long
// as calls do not race; a source is owned and used by one capture thread at a time. The
// raw pointers in `frames` point into mappings owned by the same source.
unsafe impl Send for LibcameraSource {}

impl LibcameraSource {
    pub(super) fn open(id: &str, mode: Mode, controls: &SensorControls) -> Result<LibcameraSource> {
        let lc_format = to_libcamera(mode.format).expect("modes hold only NV12 and YUV420");
        let cam = camera(id)?;
        let mut active = cam.acquire().map_err(|e| {
            let kind = if e.raw_os_error() == Some(libc::ENODEV) {
                ErrorKind::NoDevice
            } else {
                ErrorKind::Io
            };
            Error::new(
                kind,
                format!("acquiring libcamera camera {id}: {e} (in use by another program?)"),
            )
        })?;
        let mut config = active
            .generate_configuration(&[StreamRole::VideoRecording])
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unsupported,
                    format!("libcamera camera {id} has no video stream"),
                )
            })?;
        {
            let mut stream = config
                .get_mut(0)
                .expect("one role asked, one stream configuration");
            stream.set_pixel_format(lc_format);
            stream.set_size(Size {
                width: mode.width,
                height: mode.height,
            });
        }
        if config.validate().is_invalid() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "libcamera camera {id} refuses {}x{} {}",
                    mode.width,
                    mode.height,
                    mode.format.name()
                ),
            ));
        }
        let (stride, got_format, got_size) = {
            let s = config
                .get(0)
                .expect("validated configuration has its stream");
            (s.get_stride() as usize, s.get_pixel_format(), s.get_size())
        };
        if got_format != lc_format || got_size.width != mode.width || got_size.height != mode.height
        {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "libcamera camera {id} adjusted {}x{} {} to {}x{} {got_format:?}",
                    mode.width,
                    mode.height,
                    mode.format.name(),
                    got_size.width,
                    got_size.height
                ),
            ));
        }
        active
            .configure(&mut config)
            .map_err(|e| Error::io(e, format!("configuring libcamera camera {id}")))?;
        let stream_config = config.get(0).expect("configured stream");
        let stream = stream_config
            .stream()
            .ok_or_else(|| Error::new(ErrorKind::Io, "configured stream has no Stream"))?;
        let buffer_count = (stream_config.get_buffer_count() as usize).clamp(2, 16);
        let (width, height) = (mode.width as usize, mode.height as usize);
        let shapes = plane_shapes(mode.format, width, height, stride.max(width));
        let packed_bytes = mode
            .format
            .raw_frame_bytes(mode.width, mode.height)
            .expect("raw format");

        // Frame buffers, once: exported by the pipeline where it can, else imported memfds.
        let mut buffers: Vec<Buffer> = match FrameBufferAllocator::new(&active).alloc(&stream) {
            Ok(list) if !list.is_empty() => list.into_iter().map(Buffer::Allocated).collect(),
            Ok(_) => Vec::new(),
            Err(e) => {
                log::info!("libcamera: {id}: no exported buffers ({e}); importing memfd buffers");
                Vec::new()
            }
        };
        if buffers.is_empty() {
            for i in 0..buffer_count {
                buffers.push(import_buffer(&shapes, i as u64)?);
            }
        }
        let mut frames = Vec::with_capacity(buffers.len());
        let mut requests = Vec::with_capacity(buffers.len());
        for (i, buffer) in buffers.into_iter().enumerate() {
            frames.push(MappedFrame::map(buffer.as_frame_buffer(), &shapes)?);
            let mut request = active
                .create_request(Some(i as u64))
                .ok_or_else(|| Error::new(ErrorKind::Io, "libcamera cannot create a request"))?;
            match buffer {
                Buffer::Allocated(b) => request.add_buffer(&stream, b),
                Buffer::Imported(b) => request.add_buffer(&stream, b),
            }
            .map_err(|e| Error::io(e, "attaching a buffer to a libcamera request"))?;
            requests.push(request);
        }
        let packed = frames.iter().all(|f| f.packed(&shapes).is_some());
        let scratch = if packed {
            Vec::new()
        } else {
            vec![0; packed_bytes]
        };

        // Capacity = requests + one disconnect: the callback's try_send never meets a full
        // channel, so it never blocks libcamera's thread and never drops a request there.
        let (tx, events) = mpsc::sync_channel::<Event>(requests.len() + 1);
        let disconnect_tx = tx.clone();
        active.on_request_completed(move |request| {
            if let Err(e) = tx.try_send(Event::Completed(request)) {
                // Unreachable (see the capacity above) unless the source is being torn
                // down; destroying a request inside libcamera's completion would be unsound,
                // so it is leaked instead.
                let (TrySendError::Full(event) | TrySendError::Disconnected(event)) = e;
                std::mem::forget(event);
            }
        });
        active.on_disconnected(move || {
            let _ = disconnect_tx.try_send(Event::Disconnected);
        });

        let start_controls = start_controls(&active, id, mode.fps, controls);
        active
            .start(Some(&start_controls))
            .map_err(|e| Error::io(e, format!("starting libcamera camera {id}")))?;
        let mut source = LibcameraSource {
            id: id.to_owned(),
            camera: active,
            stream,
            mode,
            events,
            frames,
            shapes,
            packed_bytes,
            scratch,
            held: VecDeque::with_capacity(requests.len()),
            refused: Vec::with_capacity(requests.len()),
            pacer: Pacer::new(mode.fps),
            in_flight: 0,
            paced: vec![false; requests.len()],
            last_raw_sequence: None,
            sequence: 0,
            skipped: 0,
            missed: 0,
        };
        for request in requests {
            source.queue(request)?;
        }
        log::info!(
            "libcamera: {id} streaming {}x{} {} at {} fps, stride {stride}, {} buffers ({})",
            mode.width,
            mode.height,
            mode.format.name(),
            mode.fps,
            source.frames.len(),
            if packed { "lent in place" } else { "repacked" },
        );
        Ok(source)
    }

    fn queue(&mut self, request: Request) -> Result<()> {
        let cookie = request.cookie() as usize;
        self.paced[cookie] = self.pacer.unpaced;
        match self.camera.queue_request(request) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err((request, e)) => {
                // ENODEV after an unplug, EACCES when stopped behind our back: reopen.
                self.refused.push(request);
                Err(Error::new(
                    ErrorKind::Disconnected,
                    format!("libcamera camera {} refused a request: {e}", self.id),
                ))
            }
        }
    }

    /// Gives a finished request back: queued again at once, or held for the pacer.
    fn recycle(&mut self, mut request: Request) -> Result<()> {
        request.reuse(ReuseFlag::REUSE_BUFFERS);
        if self.pacer.unpaced {
            self.held.push_back(request);
            Ok(())
        } else {
            self.queue(request)
        }
    }

    /// Queues the held request whose slot has come (pacing only).
    fn queue_due(&mut self) -> Result<()> {
        if self.held.is_empty() || self.in_flight > 0 {
            return Ok(());
        }
        if let Some(missed) = self.pacer.take_slot(monotonic_ns()) {
            self.missed += missed;
            let request = self.held.pop_front().expect("checked non-empty");
            self.queue(request)?;
        }
        Ok(())
    }

    /// Handles one completed request; `Ok(true)` when a frame went to `sink`.
    fn complete(
        &mut self,
        request: Request,
        sink: &mut dyn FnMut(CapturedFrame<'_>),
    ) -> Result<bool> {
        if request.status() == RequestStatus::Cancelled {
            self.recycle(request)?;
            return Ok(false);
        }
        let buffer: &dyn AsFrameBuffer = match request.buffer::<FrameBuffer>(&self.stream) {
            Some(b) => b,
            None => request
                .buffer::<OwnedFrameBuffer>(&self.stream)
                .expect("every request carries one of our buffers"),
        };
        let (status, raw_sequence, buffer_ts) = match buffer.metadata() {
            Some(m) => (m.status(), m.sequence(), m.timestamp()),
            None => (FrameMetadataStatus::Error, 0, 0),
        };
        if status != FrameMetadataStatus::Success {
            // A failed frame: not delivered; the gap in sequence numbers counts it.
            self.recycle(request)?;
            return Ok(false);
        }
        let ts_ns = request
            .metadata()
            .get::<controls::SensorTimestamp>()
            .map(|t| t.0 as u64)
            .unwrap_or(buffer_ts);
        match self.last_raw_sequence {
            Some(last) => self.sequence += u64::from(raw_sequence.wrapping_sub(last)),
            None => self.sequence = u64::from(raw_sequence),
        }
        self.last_raw_sequence = Some(raw_sequence);
        let was_unpaced = self.pacer.unpaced;
        let stale = was_unpaced && !self.paced[request.cookie() as usize];
        if stale || self.pacer.skip(ts_ns, monotonic_ns()) {
            self.skipped += 1;
            if self.pacer.unpaced && !was_unpaced {
                log::info!(
                    "libcamera: {} delivers frames faster than {} fps (its pipeline ignores FrameDurationLimits); pacing requests",
                    self.id, self.mode.fps
                );
            }
            self.recycle(request)?;
            return Ok(false);
        }
        let index = request.cookie() as usize;
        let frame = &self.frames[index];
        let data: &[u8] = if self.scratch.is_empty() {
            frame.packed(&self.shapes).expect("checked packed at open")
        } else {
            frame.repack(&self.shapes, &mut self.scratch);
            &self.scratch
        };
        sink(CapturedFrame {
            data,
            timestamp_us: ts_ns / 1000,
            sequence: (self.sequence + self.missed).saturating_sub(self.skipped),
        });
        self.recycle(request)?;
        Ok(true)
    }
}

impl CaptureSource for LibcameraSource {
    fn mode(&self) -> Mode {
        self.mode
    }

    fn max_frame_bytes(&self) -> usize {
        self.packed_bytes
    }

    fn next_frame(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(CapturedFrame<'_>),
    ) -> Result<()> {
        let deadline = monotonic_ns() + timeout.as_nanos() as u64;
        loop {
            self.queue_due()?;
            let now = monotonic_ns();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::NoSignal,
                    format!("no frame from libcamera camera {} in {timeout:?}", self.id),
                ));
            }
            let mut wake = deadline;
            if !self.held.is_empty() && self.in_flight == 0 {
                wake = wake.min(self.pacer.next_queue_ns.max(now));
            }
            match self.events.recv_timeout(Duration::from_nanos(wake - now)) {
                Ok(Event::Completed(request)) => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    if self.complete(request, sink)? {
                        return Ok(());
                    }
                }
                Ok(Event::Disconnected) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        format!("libcamera camera {} disconnected", self.id),
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl Drop for LibcameraSource {
    fn drop(&mut self) {
        if let Err(e) = self.camera.stop() {
            log::debug!("libcamera: stopping {}: {e}", self.id);
        }
        // stop() hands every queued request back through the callback; free them here, on
        // this thread, before the camera is released (field drop order does the rest:
        // camera, then the buffer mappings).
        while let Ok(event) = self.events.try_recv() {
            drop(event);
        }
        self.held.clear();
        self.refused.clear();
    }
}

/// Controls applied once when the camera starts (libcamera keeps them for every later
/// request): frame rate, exposure, gain, white balance. A control the camera does not
/// list is skipped, with a log line when the user asked for something else than auto.
fn start_controls(
    cam: &ActiveCamera<'_>,
    id: &str,
    fps: u32,
    wanted: &SensorControls,
) -> libcamera::utils::UniquePtr<ControlList> {
    let info = cam.controls();
    let has = |c: ControlId| info.find(c as u32).is_ok();
    let mut list = ControlList::new();
    let mut ignored = Vec::new();
    let set = |result: std::result::Result<(), libcamera::control::ControlError>| {
        if let Err(e) = result {
            log::warn!("libcamera: {id}: cannot set a control: {e}");
        }
    };

    if let Ok(limits) = info.find(ControlId::FrameDurationLimits as u32) {
        let mut frame_us = 1_000_000 / i64::from(fps.max(1));
        if let (Ok(min), Ok(max)) = (i64::try_from(limits.min()), i64::try_from(limits.max())) {
            if min > 0 && max >= min {
                frame_us = frame_us.clamp(min, max);
            }
        }
        set(list.set(controls::FrameDurationLimits([frame_us, frame_us])));
    }

    match wanted.exposure {
        Exposure::Auto => {
            if has(ControlId::ExposureTimeMode) {
                set(list.set(controls::ExposureTimeMode::Auto));
            }
        }
        Exposure::Micros(us) => {
            if has(ControlId::ExposureTime) {
                if has(ControlId::ExposureTimeMode) {
                    set(list.set(controls::ExposureTimeMode::Manual));
                } else if has(ControlId::AeEnable) {
                    set(list.set(controls::AeEnable(false)));
                }
                set(list.set(controls::ExposureTime(us.min(i32::MAX as u32) as i32)));
            } else {
                ignored.push(format!("camera.exposure = {us} (no ExposureTime control)"));
            }
        }
    }

    if wanted.analogue_gain > 0.0 {
        if has(ControlId::AnalogueGain) {
            if has(ControlId::AnalogueGainMode) {
                set(list.set(controls::AnalogueGainMode::Manual));
            }
            set(list.set(controls::AnalogueGain(wanted.analogue_gain)));
        } else {
            ignored.push(format!(
                "camera.analogue_gain = {} (no AnalogueGain control)",
                wanted.analogue_gain
            ));
        }
    } else if has(ControlId::AnalogueGainMode) {
        set(list.set(controls::AnalogueGainMode::Auto));
    }

    let awb = match wanted.awb_mode.as_str() {
        "incandescent" => controls::AwbMode::AwbIncandescent,
        "tungsten" => controls::AwbMode::AwbTungsten,
        "fluorescent" => controls::AwbMode::AwbFluorescent,
        "indoor" => controls::AwbMode::AwbIndoor,
        "daylight" => controls::AwbMode::AwbDaylight,
        "cloudy" => controls::AwbMode::AwbCloudy,
        _ => controls::AwbMode::AwbAuto,
    };
    if has(ControlId::AwbMode) {
        if has(ControlId::AwbEnable) {
            set(list.set(controls::AwbEnable(true)));
        }
        set(list.set(awb));
    } else if awb != controls::AwbMode::AwbAuto {
        ignored.push(format!(
            "camera.awb_mode = \"{}\" (no AwbMode control)",
            wanted.awb_mode
        ));
    }

    if !ignored.is_empty() {
        log::warn!("libcamera: {id} ignores {}", ignored.join(", "));
    }
    list
}
