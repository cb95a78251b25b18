//! `/metrics`: Prometheus text exposition of the capture, recorder, storage, live-view
//! and process figures (DESIGN §4).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use hyper::{Response, StatusCode};
use serde_json::Value;

use super::http::{full, Body};
use super::AppState;

/// Prometheus text exposition, one metric family at a time.
struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(
            self.0,
            "# HELP benchcam_{name} {help}\n# TYPE benchcam_{name} {kind}"
        );
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.0, "benchcam_{name}");
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{escaped}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// GET /metrics.
pub fn render(state: &AppState) -> Response<Body> {
    let mut m = Metrics(String::with_capacity(8 * 1024));
    let cameras = state.service.cameras();
    let relaxed = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

    m.family(
        "frames_captured_total",
        "counter",
        "Frames captured into the ring.",
    );
    for c in &cameras {
        m.sample(
            "frames_captured_total",
            &[("camera", &c.id)],
            relaxed(&c.capture.stats.frames_captured),
        );
    }
    m.family(
        "frames_dropped_total",
        "counter",
        "Frames lost before any consumer, by cause.",
    );
    for c in &cameras {
        let s = &c.capture.stats;
        let corrupt = c.corrupt_frames();
        for (reason, v) in [
            ("ring_full", relaxed(&s.ring_full_drops)),
            ("oversize", relaxed(&s.oversize_drops)),
            ("driver", relaxed(&s.driver_drops)),
            ("corrupt", corrupt),
        ] {
            m.sample(
                "frames_dropped_total",
                &[("camera", &c.id), ("reason", reason)],
                v,
            );
        }
    }
    m.family("camera_fps", "gauge", "Measured capture frame rate.");
    for c in &cameras {
        m.sample(
            "camera_fps",
            &[("camera", &c.id)],
            relaxed(&c.capture.stats.fps_milli) as f64 / 1000.0,
        );
    }
    m.family(
        "camera_reopens_total",
        "counter",
        "Times the capture loop reopened the device.",
    );
    for c in &cameras {
        m.sample(
            "camera_reopens_total",
            &[("camera", &c.id)],
            relaxed(&c.capture.stats.reopens),
        );
    }
    m.family(
        "camera_reconnects_total",
        "counter",
        "Times the camera came back after it was lost or stopped sending.",
    );
    for c in &cameras {
        m.sample(
            "camera_reconnects_total",
            &[("camera", &c.id)],
            relaxed(&c.capture.stats.reconnects),
        );
    }
    m.family(
        "camera_lost",
        "gauge",
        "1 while the camera is unplugged or gone.",
    );
    for c in &cameras {
        let lost = matches!(
            c.capture.state(),
            crate::capture::worker::CaptureState::Disconnected(_)
        );
        m.sample("camera_lost", &[("camera", &c.id)], u8::from(lost));
    }
    m.family("recording", "gauge", "1 while the camera records.");
    for c in &cameras {
        m.sample(
            "recording",
            &[("camera", &c.id)],
            u8::from(c.is_recording()),
        );
    }
    m.family(
        "recorder_frames_dropped_total",
        "counter",
        "Frames the recorder lost (fell behind).",
    );
    for c in &cameras {
        m.sample(
            "recorder_frames_dropped_total",
            &[("camera", &c.id)],
            c.recorder_drops(),
        );
    }
    // The encoder stage: one encode per frame for clips and live H.264 viewers.
    let encoder_counters: [EncoderFigure; 8] = [
        ("encoder_frames_total", "counter", "Frames the encoder stage encoded (clips and live H.264 share them).", |s| s.frames_encoded.load(Ordering::Relaxed)),
        ("encoder_keyframes_total", "counter", "Keyframes among them.", |s| s.keyframes.load(Ordering::Relaxed)),
        ("encoder_keyframes_requested_total", "counter", "Keyframes made on request (a clip or a live viewer starting).", |s| s.keyframes_requested.load(Ordering::Relaxed)),
        ("encoder_seconds_total", "counter", "Time spent encoding (decode of camera JPEGs included).", |s| s.encode_us_total.load(Ordering::Relaxed) / 1_000_000),
        ("encoder_bytes_total", "counter", "Bytes of encoded samples.", |s| s.bytes_encoded.load(Ordering::Relaxed)),
        ("encoder_frames_dropped_total", "counter", "Raw frames the encoder lost by falling behind capture, or encoded frames not published (ring full).", |s| s.raw_dropped.load(Ordering::Relaxed) + s.ring_full.load(Ordering::Relaxed)),
        ("encoder_viewer_frames_dropped_total", "counter", "Encoded frames live H.264 viewers lost (mailbox full or waiting for a keyframe).", |s| s.viewer_drops.load(Ordering::Relaxed)),
        ("encoder_ring_slots_grown", "gauge", "Encoded-ring slots whose buffer exists (most held at once).", |s| s.ring_slots_grown.load(Ordering::Relaxed)),
    ];
    for (name, kind, help, value) in encoder_counters {
        m.family(name, kind, help);
        for c in &cameras {
            m.sample(name, &[("camera", &c.id)], value(&c.encoder.stats));
        }
    }
    m.family(
        "live_h264_viewers",
        "gauge",
        "Live viewers of the recording's H.264 stream.",
    );
    for c in &cameras {
        m.sample(
            "live_h264_viewers",
            &[("camera", &c.id)],
            c.encoder.viewer_count(),
        );
    }
    m.family(
        "subscriber_frames_delivered_total",
        "counter",
        "Frames offered to each frame subscriber.",
    );
    let stats: Vec<_> = cameras
        .iter()
        .map(|c| {
            // Raw frames (the encoder stage, live JPEG) and encoded ones (the recorder).
            let mut subs = c.capture.fanout.stats();
            subs.extend(c.encoder.unit_subscribers());
            (c.id.as_str(), subs)
        })
        .collect();
    for (id, subs) in &stats {
        for (name, delivered, _) in subs {
            m.sample(
                "subscriber_frames_delivered_total",
                &[("camera", id), ("subscriber", name)],
                delivered,
            );
        }
    }
    m.family(
        "subscriber_frames_dropped_total",
        "counter",
        "Frames each subscriber lost by not keeping up.",
    );
    for (id, subs) in &stats {
        for (name, _, dropped) in subs {
            m.sample(
                "subscriber_frames_dropped_total",
                &[("camera", id), ("subscriber", name)],
                dropped,
            );
        }
    }

    let index = &state.service.storage.index;
    let clip_cameras = index.cameras();
    m.family("clips", "gauge", "Rolling clips in the index.");
    for cam in &clip_cameras {
        m.sample("clips", &[("camera", cam)], index.list(Some(cam)).len());
    }
    m.family("clip_bytes", "gauge", "Bytes of rolling clips.");
    for cam in &clip_cameras {
        m.sample(
            "clip_bytes",
            &[("camera", cam)],
            index.total_bytes(Some(cam)),
        );
    }
    m.one(
        "clips_deleted_total",
        "counter",
        "Clips deleted by retention since start.",
        relaxed(&state.service.storage.deleted_clips),
    );
    let space = state.service.storage.report();
    m.one(
        "storage_free_bytes",
        "gauge",
        "Free bytes on the data filesystem.",
        space.free,
    );
    m.one(
        "storage_total_bytes",
        "gauge",
        "Size of the data filesystem.",
        space.total,
    );
    m.one(
        "storage_full",
        "gauge",
        "1 while recording is paused for lack of space.",
        u8::from(space.full),
    );
    m.one(
        "storage_present",
        "gauge",
        "0 while the data filesystem is removed, unmounted or read-only.",
        u8::from(space.presence.is_present()),
    );

    let live = &state.live;
    m.one(
        "live_streaming_enabled",
        "gauge",
        "1 while live streaming is enabled.",
        u8::from(live.is_enabled()),
    );
    m.family("live_sessions", "gauge", "Open live sessions by kind.");
    let sessions = live.sessions();
    for kind in ["mjpeg", "ws"] {
        let n = sessions
            .iter()
            .filter(|s| {
                serde_json::to_value(s.kind)
                    .ok()
                    .as_ref()
                    .and_then(Value::as_str)
                    == Some(kind)
            })
            .count();
        m.sample("live_sessions", &[("kind", kind)], n);
    }
    let t = &live.totals;
    m.one(
        "live_sessions_started_total",
        "counter",
        "Live sessions admitted.",
        relaxed(&t.sessions_started),
    );
    m.one(
        "live_sessions_refused_total",
        "counter",
        "Live sessions refused (over capacity).",
        relaxed(&t.sessions_refused),
    );
    m.one(
        "live_bytes_sent_total",
        "counter",
        "Bytes sent to live viewers.",
        relaxed(&t.bytes_sent),
    );
    m.one(
        "live_frames_sent_total",
        "counter",
        "Frames sent to live viewers.",
        relaxed(&t.frames_sent),
    );
    m.one(
        "live_quality_step",
        "gauge",
        "Quality levels live sessions are lowered by for CPU load.",
        live.cpu_step(),
    );
    let encoders = live.hub.stats();
    let labels = |e: &crate::live::EncoderStats| {
        [
            ("camera", e.camera.clone()),
            ("quality", e.quality.name().to_string()),
        ]
    };
    for (name, kind, help, get) in [
        (
            "live_frames_encoded_total",
            "counter",
            "Frames JPEG-encoded for live view.",
            (|e: &crate::live::EncoderStats| e.frames_encoded as f64)
                as fn(&crate::live::EncoderStats) -> f64,
        ),
        (
            "live_frames_passed_through_total",
            "counter",
            "MJPEG frames sent on without re-encoding.",
            |e| e.frames_passed_through as f64,
        ),
        (
            "live_frames_skipped_fps_total",
            "counter",
            "Frames skipped to keep the preset's fps.",
            |e| e.frames_skipped_fps as f64,
        ),
        (
            "live_encode_errors_total",
            "counter",
            "Live JPEG encode failures.",
            |e| e.encode_errors as f64,
        ),
        (
            "live_encode_seconds_total",
            "counter",
            "Time spent encoding live JPEGs.",
            |e| e.encode_seconds,
        ),
        (
            "live_jpeg_bytes_total",
            "counter",
            "Bytes of live JPEGs produced.",
            |e| e.jpeg_bytes as f64,
        ),
        (
            "live_viewer_skips_total",
            "counter",
            "Frames replaced before a slow viewer took them.",
            |e| e.viewer_skips as f64,
        ),
        ("live_viewers", "gauge", "Viewers per encoder.", |e| {
            e.viewers as f64
        }),
    ] {
        m.family(name, kind, help);
        for e in &encoders {
            let l = labels(e);
            m.sample(name, &[("camera", &l[0].1), ("quality", &l[1].1)], get(e));
        }
    }

    let w = &state.web;
    m.one(
        "http_requests_total",
        "counter",
        "HTTP requests served.",
        relaxed(&w.requests),
    );
    m.one(
        "http_connections_open",
        "gauge",
        "Client connections open.",
        w.connections_open.load(Ordering::Relaxed),
    );
    m.one(
        "http_connections_refused_total",
        "counter",
        "Connections refused: every connection was busy answering a request.",
        relaxed(&w.connections_refused),
    );
    let admitted = state.admission.stats();
    m.one(
        "http_connections_evicted_total",
        "counter",
        "Idle connections closed to make room for a new client.",
        admitted.evicted,
    );
    m.one(
        "http_connections_timed_out_total",
        "counter",
        "Idle connections closed for sending no request in time.",
        admitted.timed_out,
    );
    m.one(
        "clip_bytes_sent_total",
        "counter",
        "Clip download bytes sent.",
        relaxed(&w.clip_bytes_sent),
    );
    m.one(
        "downloads_producing",
        "gauge",
        "Span MP4s and experiment ZIPs being written to a client now.",
        w.downloads_producing.load(Ordering::Relaxed),
    );
    if let Some(r) = &state.replication {
        let s = r.summary();
        m.family(
            "replication_experiments",
            "gauge",
            "Archived experiments by upload state (pending, uploading, verified, failed).",
        );
        for (state, n) in [
            ("pending", s.pending),
            ("uploading", s.uploading),
            ("verified", s.verified),
            ("failed", s.failed),
        ] {
            m.sample("replication_experiments", &[("state", state)], n);
        }
        m.one(
            "replication_failing_seconds",
            "gauge",
            "Seconds since uploads to object storage began failing (0: none failing).",
            s.failing_s,
        );
        m.one(
            "replication_uploaded_bytes_total",
            "counter",
            "Bytes sent to object storage since the service started, every try counted.",
            s.uploaded_bytes,
        );
        m.one(
            "replication_resent_bytes_total",
            "counter",
            "Bytes sent again because an earlier try of the same part was cut off.",
            s.resent_bytes,
        );
        m.one(
            "replication_problem",
            "gauge",
            "1 when replication cannot run at all (secret file, endpoint); see /api/v1/health.",
            u8::from(s.problem.is_some()),
        );
    }
    m.one(
        "process_cpu_percent",
        "gauge",
        "Process CPU use over the last 2 s, percent of all cores.",
        live.cpu_percent(),
    );
    if let Some(cpu) = crate::live::process_cpu_seconds() {
        m.one(
            "process_cpu_seconds_total",
            "counter",
            "CPU time used by the process.",
            cpu,
        );
    }
    if let Some(rss) = crate::live::resident_bytes() {
        m.one(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
            rss,
        );
    }

    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
        .header("cache-control", "no-store")
        .body(full(m.0))
        .expect("static headers are valid")
}

/// A metric of the encoder stage: name, type, help, and how to read it.
type EncoderFigure = (
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::encode::stage::StageStats) -> u64,
);
