//! The MJPEG fallback: `multipart/x-mixed-replace`, one JPEG per part, for browsers or
//! tools without WebSocket. Each part carries Content-Type and Content-Length, and the
//! next boundary is sent right after each JPEG so browsers (Chrome, Firefox, iOS Safari)
//! show a frame as soon as it is complete instead of waiting for the next one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};

use super::http::{error_response, Body, BoxError};
use super::AppState;
use crate::encode::placeholder::no_signal_jpeg;
use crate::live::{Quality, Refused, Session, SessionKind, Viewer};

pub const BOUNDARY: &str = "benchcamframe";
/// Ends a part and opens the next one.
const TRAILER: &[u8] = b"\r\n--benchcamframe\r\n";

/// A stream with no camera frame for this long is ended, so a client that vanished
/// without closing (Wi-Fi gone while the camera is down) does not hold a session forever;
/// the page reconnects by itself.
const IDLE_END: Duration = Duration::from_secs(120);
/// Without a camera frame for this long, the viewer gets the "no signal" picture, and
/// again at this interval, instead of a stream that seems to hang.
const NO_SIGNAL_EVERY: Duration = Duration::from_secs(1);

/// State of one MJPEG response body.
struct Parts {
    session: Session,
    viewer: Viewer,
    /// Chunks of the current part not yet handed to hyper (header, JPEG, boundary).
    queued: VecDeque<Bytes>,
    /// Wakes the stream every `NO_SIGNAL_EVERY` (one timer per stream, not one per frame)
    /// to send the placeholder or end an idle stream.
    idle_check: smol::Timer,
    last_frame: Instant,
}

/// Answers `GET /api/v1/cameras/{cam}/stream.mjpg`; the camera is known to exist.
pub fn stream(
    state: &Arc<AppState>,
    camera: &str,
    quality: Quality,
    client: &str,
) -> Response<Body> {
    let live = &state.live;
    if !live.is_enabled() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "streaming_disabled",
            "live streaming is disabled in the settings",
        );
    }
    let session = match live.create_session(SessionKind::Mjpeg, camera, client, quality) {
        Ok(s) => s,
        Err(Refused::OverCapacity { max_sessions }) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_sessions",
                &format!(
                    "{max_sessions} live sessions are open, the most allowed; try again later"
                ),
            )
        }
    };
    let viewer = live.hub.watch(camera, session.quality());
    let opening = Bytes::from(format!("--{BOUNDARY}\r\n"));
    session.add_bytes(opening.len());
    let parts = Parts {
        session,
        viewer,
        queued: VecDeque::from([opening]),
        idle_check: smol::Timer::interval(NO_SIGNAL_EVERY),
        last_frame: Instant::now(),
    };
    let chunks = futures_lite::stream::unfold(parts, |mut parts| async move {
        let chunk = next_chunk(&mut parts).await?;
        Some((Ok::<_, BoxError>(Frame::data(chunk)), parts))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(
            "content-type",
            format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
        )
        .header(
            "cache-control",
            "no-store, no-cache, must-revalidate, max-age=0",
        )
        .header("pragma", "no-cache")
        .header("x-content-type-options", "nosniff")
        // Tells a reverse proxy not to buffer the stream.
        .header("x-accel-buffering", "no")
        .body(StreamBody::new(chunks).boxed_unsync())
        .expect("static headers are valid")
}

/// The next chunk to send; `None` ends the stream.
async fn next_chunk(parts: &mut Parts) -> Option<Bytes> {
    if let Some(chunk) = parts.queued.pop_front() {
        return Some(chunk);
    }
    loop {
        let next = {
            let (viewer, idle_check) = (&parts.viewer, &mut parts.idle_check);
            futures_lite::future::or(async { Some(viewer.next().await) }, async {
                idle_check.next().await;
                None
            })
            .await
        };
        let frame = match next {
            Some(frame) => frame?,
            None if parts.last_frame.elapsed() > IDLE_END => return None,
            None if parts.last_frame.elapsed() >= NO_SIGNAL_EVERY => {
                let jpeg = no_signal_jpeg();
                let header = Bytes::from(format!(
                    "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-No-Signal: 1\r\n\r\n",
                    jpeg.len()
                ));
                let trailer = Bytes::from_static(TRAILER);
                parts
                    .session
                    .add_bytes(header.len() + jpeg.len() + trailer.len());
                parts.queued.push_back(jpeg);
                parts.queued.push_back(trailer);
                return Some(header);
            }
            None => continue,
        };
        parts.last_frame = Instant::now();
        let live = Arc::clone(parts.session.live());
        if !live.is_enabled() {
            return None;
        }
        let quality = parts.session.quality();
        if quality != parts.viewer.quality() {
            // CPU load changed the quality level: follow it.
            parts.viewer = live.hub.watch(parts.session.camera(), quality);
            continue;
        }
        if !parts.session.admit(frame.jpeg.len()) {
            continue;
        }
        let header = Bytes::from(format!(
            "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame-Number: {}\r\nX-Timestamp-Us: {}\r\n\r\n",
            frame.jpeg.len(),
            frame.frame_number,
            frame.timestamp_us
        ));
        let trailer = Bytes::from_static(TRAILER);
        parts
            .session
            .add_bytes(header.len() + frame.jpeg.len() + trailer.len());
        parts.session.frame_sent();
        parts.queued.push_back(frame.jpeg.clone());
        parts.queued.push_back(trailer);
        return Some(header);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trailer_carries_the_boundary() {
        assert_eq!(
            super::TRAILER,
            format!("\r\n--{}\r\n", super::BOUNDARY).as_bytes()
        );
    }
}
