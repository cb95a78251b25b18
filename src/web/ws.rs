//! The WebSocket live view of DESIGN §5 at `GET /api/v1/cameras/{cam}/ws`.
//!
//! Client → server (JSON text): `request_frame`, `subscribe` (with `"codec": "h264"` for
//! the recording's H.264), `set_quality`, `ping`.
//! Server → client: `frame` (JSON) + one binary message with the JPEG, `no_frame` with a
//! reason, `status` about once a second, `error` for bad messages (the session stays
//! open), `pong`. Over capacity: close 1013; a client message over 4 KiB: close 1009.
//! H.264: `init` (codec string, size) + the fMP4 init segment, then per frame `frame`
//! (with `keyframe`) + that frame's `moof` + `mdat`, from a keyframe on; `error`
//! `h264_unavailable` when clips are MJPEG (the page then asks for JPEG).
//!
//! One task per session waits on three things at once: the client's next message, the
//! next live frame or H.264 unit (only while subscribed or a pull is pending), and a 250 ms
//! tick for status, deadlines and quality changes. Every send has the stall limit as a
//! timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use async_tungstenite::WebSocketStream;
use bytes::BytesMut;
use futures_lite::{AsyncReadExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use smol_hyper::rt::FuturesIo;

use super::http::{empty, error_response, timeout, Body, StallGuard, STALL_LIMIT};
use super::AppState;
use crate::camera::NoFrame;
use crate::encode::ring::{StreamParams, Unit};
use crate::encode::stage::{H264Viewer, NoH264};
use crate::live::{LiveFrame, Quality, Refused, Session, SessionKind, Viewer};

/// The socket under a WebSocket session (what `serve_connection` gave hyper).
pub type ClientIo = StallGuard<smol::net::TcpStream>;
type Ws = WebSocketStream<ClientIo>;

/// Largest client message (DESIGN §5); larger ones close the session with 1009.
pub const MAX_CLIENT_MESSAGE: usize = 4096;
const TICK: Duration = Duration::from_millis(250);
/// Status goes out every this many ticks (1 s).
const STATUS_TICKS: u32 = 4;
/// A subscriber without a frame for this long is told why (`no_frame`).
const NO_FRAME_AFTER: Duration = Duration::from_secs(2);
/// How long a `request_frame` waits for a frame before `no_frame`.
const PULL_WAIT: Duration = Duration::from_secs(2);
/// A pulling client keeps its encoder warm this long after its last request.
const PULL_KEEP: Duration = Duration::from_secs(3);

/// Bytes tungstenite holds before it writes to the socket: more than a `frame` message's
/// JSON (`FRAME_TEXT_BYTES`), less than any picture.
const WRITE_BUFFER: usize = 2 * FRAME_TEXT_BYTES;

/// The session's WebSocket limits (message and frame sizes, buffers).
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        // Client messages are tiny; a small eager read buffer keeps idle sessions cheap.
        .read_buffer_size(8 * 1024)
        // A frame's JSON waits here (`Conn::queue`) for its bytes: one write for both.
        // Every other message is flushed when sent.
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        // Frames past this are refused before their payload is read.
        .max_frame_size(Some(64 * 1024))
}

fn has_token(headers: &HeaderMap, name: hyper::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Answers the upgrade request (101) and starts the session once hyper hands over the
/// connection. The camera is known to exist.
pub fn upgrade(
    mut req: Request<Incoming>,
    state: Arc<AppState>,
    camera: String,
    client: String,
) -> Response<Body> {
    let headers = req.headers();
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let version_ok = headers
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let (Some(accept), true, true, true) = (
        key,
        version_ok,
        has_token(headers, UPGRADE, "websocket"),
        has_token(headers, CONNECTION, "upgrade"),
    ) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "not_websocket",
            "this endpoint speaks WebSocket (version 13); see DESIGN §5",
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    smol::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                log::debug!("ws: upgrade from {client} failed: {e}");
                return;
            }
        };
        let parts = match upgraded.downcast::<FuturesIo<ClientIo>>() {
            Ok(parts) => parts,
            Err(_) => {
                log::error!("ws: upgraded connection is not the server's socket type");
                return;
            }
        };
        let ws = WebSocketStream::from_partially_read(
            parts.io.into_inner(),
            parts.read_buf.to_vec(),
            Role::Server,
            Some(config()),
        )
        .await;
        run_session(ws, state, camera, client).await;
    })
    .detach();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "Upgrade")
        .header("sec-websocket-accept", accept)
        .body(empty())
        .expect("static headers are valid")
}

/// A client → server message of DESIGN §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMessage {
    Ping,
    /// `h264`: the recording's H.264 stream instead of JPEGs.
    Subscribe {
        h264: bool,
    },
    RequestFrame,
    SetQuality(Quality),
}

/// A client message that was refused: the `error` message's code and text (the session
/// stays open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    pub code: &'static str,
    pub message: String,
}

/// Parses one client text message.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, BadMessage> {
    let bad = |code, message: String| Err(BadMessage { code, message });
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return bad("bad_json", format!("not JSON: {e}")),
    };
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return bad(
            "bad_message",
            "a message is a JSON object with a string \"type\"".into(),
        );
    };
    match kind {
        "ping" => Ok(ClientMessage::Ping),
        "subscribe" => match value.get("codec").map(|c| c.as_str()) {
            None | Some(Some("jpeg")) => Ok(ClientMessage::Subscribe { h264: false }),
            Some(Some("h264")) => Ok(ClientMessage::Subscribe { h264: true }),
            Some(_) => bad(
                "bad_codec",
                "\"codec\" must be \"h264\" or \"jpeg\"".into(),
            ),
        },
        "request_frame" => Ok(ClientMessage::RequestFrame),
        "set_quality" => match value
            .get("quality")
            .and_then(Value::as_str)
            .and_then(Quality::parse)
        {
            Some(q) => Ok(ClientMessage::SetQuality(q)),
            None => bad(
                "bad_quality",
                "\"quality\" must be \"low\", \"medium\" or \"high\"".into(),
            ),
        },
        other => bad(
            "unknown_type",
            format!(
                "unknown message type {other:?}; expected request_frame, subscribe, set_quality or ping"
            ),
        ),
    }
}

/// What the session loop woke up for.
enum Event {
    Client(Option<Result<Message, WsError>>),
    Frame(Option<Arc<LiveFrame>>),
    Unit(Option<Unit>),
    Tick,
}

/// The client went away or stopped reading; the session ends.
struct Gone;

/// One WebSocket viewer.
struct Conn {
    ws: Ws,
    state: Arc<AppState>,
    session: Session,
    camera: String,
    /// Registered with the hub while subscribed or pulling; `None` otherwise, so an idle
    /// session costs no encoding.
    viewer: Option<Viewer>,
    /// The recording's H.264 while subscribed with `codec: h264` (then `viewer` serves
    /// pulls only).
    h264: Option<H264Viewer>,
    /// Subscribed with `codec: h264` (the viewer is made again if the camera comes back).
    wants_h264: bool,
    /// The stream whose init segment the client has; another one is sent first.
    h264_stream: Option<Arc<StreamParams>>,
    /// Where each frame's JSON text is written (see [`frame_text`]).
    frame_text: BytesMut,
    /// A unit was left out (bandwidth): the next one sent must be a keyframe.
    h264_resync: bool,
    subscribed: bool,
    /// A `request_frame` waiting for a frame until this instant.
    pull_deadline: Option<Instant>,
    last_pull: Option<Instant>,
    last_frame: Instant,
    /// A `no_frame` was sent and no frame has come since: do not repeat it.
    no_frame_sent: bool,
}

async fn close(ws: &mut Ws, code: CloseCode, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
    // Read what the client still sends (the rest of an oversize message, its close
    // reply) so the close frame is not lost to a TCP reset from unread data.
    let mut sink = [0u8; 4096];
    let _ = timeout(Duration::from_secs(1), async {
        while let Ok(n) = ws.get_mut().read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn run_session(mut ws: Ws, state: Arc<AppState>, camera: String, client: String) {
    let live = Arc::clone(&state.live);
    let session =
        match live.create_session(SessionKind::Ws, &camera, &client, live.default_quality()) {
            Ok(s) => s,
            Err(Refused::OverCapacity { max_sessions }) => {
                log::info!("ws: refused {client}: {max_sessions} live sessions already open");
                let reason =
                    format!("too many live sessions (max {max_sessions}); try again later");
                close(&mut ws, CloseCode::Again, &reason).await;
                return;
            }
        };
    let mut conn = Conn {
        ws,
        state,
        session,
        camera,
        viewer: None,
        h264: None,
        wants_h264: false,
        h264_stream: None,
        frame_text: BytesMut::with_capacity(FRAME_TEXT_BYTES),
        h264_resync: false,
        subscribed: false,
        pull_deadline: None,
        last_pull: None,
        last_frame: Instant::now(),
        no_frame_sent: false,
    };
    if conn.send_status().await.is_err() {
        return;
    }
    let mut ticker = smol::Timer::interval(TICK);
    let mut ticks = 0u32;
    loop {
        let wants_frame = conn.subscribed || conn.pull_deadline.is_some();
        let event = {
            let ws = &mut conn.ws;
            // Pulls are JPEG; a JPEG subscription too unless it is H.264.
            let viewer = conn
                .viewer
                .as_ref()
                .filter(|_| conn.pull_deadline.is_some() || (wants_frame && conn.h264.is_none()));
            let h264 = conn.h264.as_ref().filter(|_| conn.subscribed);
            let ticker = &mut ticker;
            let client = async { Event::Client(ws.next().await) };
            let frame = async {
                match viewer {
                    Some(v) => Event::Frame(v.next().await),
                    None => futures_lite::future::pending().await,
                }
            };
            let unit = async {
                match h264 {
                    Some(v) => Event::Unit(v.next().await),
                    None => futures_lite::future::pending().await,
                }
            };
            let frame = futures_lite::future::race(frame, unit);
            let tick = async {
                ticker.next().await;
                Event::Tick
            };
            futures_lite::future::race(client, futures_lite::future::race(frame, tick)).await
        };
        let result = match event {
            Event::Client(None) => break,
            Event::Client(Some(Err(e))) => {
                conn.client_error(e).await;
                break;
            }
            Event::Client(Some(Ok(message))) => conn.on_message(message).await,
            Event::Frame(None) => {
                close(&mut conn.ws, CloseCode::Away, "benchcam is shutting down").await;
                break;
            }
            Event::Frame(Some(frame)) => conn.on_frame(frame).await,
            Event::Unit(None) => {
                // The camera went away (rescan, unplug): the tick asks again.
                conn.h264 = None;
                Ok(())
            }
            Event::Unit(Some(unit)) => conn.on_unit(unit).await,
            Event::Tick => {
                ticks = ticks.wrapping_add(1);
                conn.on_tick(ticks.is_multiple_of(STATUS_TICKS)).await
            }
        };
        conn.session.set_h264(conn.h264.is_some());
        if result.is_err() {
            break;
        }
    }
}

/// Room for one `frame` message's JSON (about 130 bytes).
const FRAME_TEXT_BYTES: usize = 256;

/// A text message of `args`, written into a session's own buffer `buf`: this runs per frame
/// per viewer, and once the previous message has been sent (tungstenite copies it into its
/// write buffer and lets it go) the buffer is taken back whole, so nothing is allocated
/// (`format!` and `Message::text` allocated twice per message).
fn frame_text(buf: &mut BytesMut, args: std::fmt::Arguments<'_>) -> Message {
    use std::fmt::Write;
    if !buf.try_reclaim(FRAME_TEXT_BYTES) {
        // Still held (not once sends complete): a fresh buffer.
        *buf = BytesMut::with_capacity(FRAME_TEXT_BYTES);
    }
    // Writing into a BytesMut cannot fail; it grows if a message is longer.
    let _ = buf.write_fmt(args);
    let text = buf.split().freeze();
    Message::Text(Utf8Bytes::try_from(text).expect("formatted text is UTF-8"))
}

impl Conn {
    /// Sends one message. No timer per send: the socket's `StallGuard` fails a write
    /// that stays blocked past the stall limit, which ends the session here.
    async fn send(&mut self, message: Message) -> Result<(), Gone> {
        let len = message.len();
        match self.ws.send(message).await {
            Ok(()) => {
                self.session.add_bytes(len);
                Ok(())
            }
            Err(e) => self.failed(e),
        }
    }

    fn failed(&self, e: WsError) -> Result<(), Gone> {
        match e {
            WsError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => log::info!(
                "ws: session {} dropped: the client did not read for {} s",
                self.session.id(),
                STALL_LIMIT.as_secs()
            ),
            e => log::debug!("ws: session {}: send failed: {e}", self.session.id()),
        }
        Err(Gone)
    }

    /// Queues one message without flushing it: the next `send` writes both at once (a
    /// frame's JSON and its bytes: half the system calls and TCP segments per frame).
    async fn queue(&mut self, message: Message) -> Result<(), Gone> {
        let len = message.len();
        match futures_util::SinkExt::feed(&mut self.ws, message).await {
            Ok(()) => {
                self.session.add_bytes(len);
                Ok(())
            }
            Err(e) => self.failed(e),
        }
    }

    async fn send_json(&mut self, value: Value) -> Result<(), Gone> {
        self.send(Message::text(value.to_string())).await
    }

    async fn send_error(&mut self, code: &str, message: &str) -> Result<(), Gone> {
        self.send_json(json!({"type": "error", "code": code, "message": message}))
            .await
    }

    async fn send_no_frame(&mut self, reason: NoFrame) -> Result<(), Gone> {
        self.no_frame_sent = true;
        self.send_json(json!({"type": "no_frame", "reason": reason.reason()}))
            .await
    }

    async fn send_frame(&mut self, frame: Arc<LiveFrame>) -> Result<(), Gone> {
        // Formatted directly: this runs per frame per viewer. Camera ids are `camN`.
        let meta = frame_text(
            &mut self.frame_text,
            format_args!(
                r#"{{"type":"frame","camera":"{}","frame_number":{},"timestamp_us":{},"size":{},"quality":"{}"}}"#,
                frame.camera,
                frame.frame_number,
                frame.timestamp_us,
                frame.jpeg.len(),
                frame.quality.name()
            ),
        );
        self.queue(meta).await?;
        self.send(Message::Binary(frame.jpeg.clone())).await?;
        self.session.frame_sent();
        Ok(())
    }

    async fn send_unit(&mut self, unit: Unit) -> Result<(), Gone> {
        let new_stream = self
            .h264_stream
            .as_ref()
            .is_none_or(|s| !Arc::ptr_eq(s, &unit.params));
        if new_stream {
            let p = &unit.params;
            let init = json!({
                "type": "init", "codec": p.codec_string, "width": p.width, "height": p.height,
            });
            self.send_json(init).await?;
            self.send(Message::Binary(p.init.clone())).await?;
            self.h264_stream = Some(Arc::clone(&unit.params));
        }
        let fragment = unit.fragment();
        let meta = frame_text(
            &mut self.frame_text,
            format_args!(
                r#"{{"type":"frame","camera":"{}","frame_number":{},"timestamp_us":{},"size":{},"codec":"h264","keyframe":{}}}"#,
                self.camera,
                unit.number,
                unit.timestamp_us,
                fragment.len(),
                unit.keyframe
            ),
        );
        self.queue(meta).await?;
        self.send(Message::Binary(fragment.clone())).await?;
        self.session.frame_sent();
        Ok(())
    }

    /// Starts (or keeps) the H.264 viewer; false when the camera has none to give.
    async fn watch_h264(&mut self) -> Result<bool, Gone> {
        if self.h264.is_some() {
            return Ok(true);
        }
        match self.state.service.watch_h264(&self.camera) {
            Ok(Ok(viewer)) => {
                self.h264 = Some(viewer);
                self.h264_resync = false;
                Ok(true)
            }
            Ok(Err(NoH264::ClipsAreMjpeg)) => {
                self.wants_h264 = false;
                self.send_error(
                    "h264_unavailable",
                    "this camera's clips are MJPEG, so there is no H.264 stream; subscribe without codec for JPEG frames",
                )
                .await?;
                Ok(false)
            }
            Ok(Err(NoH264::NotStarted(why))) => {
                self.wants_h264 = false;
                self.send_error(
                    "h264_unavailable",
                    &format!("the H.264 encoder did not start: {why}"),
                )
                .await?;
                Ok(false)
            }
            // Gone after a rescan: the tick tries again.
            Err(_) => Ok(false),
        }
    }

    async fn on_unit(&mut self, unit: Unit) -> Result<(), Gone> {
        self.last_frame = Instant::now();
        self.no_frame_sent = false;
        if self.h264_resync && !unit.keyframe {
            return Ok(());
        }
        if !self.session.admit(unit.fragment().len()) {
            // Over the session's bandwidth: this unit and the rest up to a keyframe.
            self.h264_resync = true;
            return Ok(());
        }
        self.h264_resync = false;
        self.send_unit(unit).await
    }

    async fn send_status(&mut self) -> Result<(), Gone> {
        let live = &self.state.live;
        let camera = self.state.service.camera(&self.camera).ok();
        let status = json!({
            "type": "status",
            "camera": self.camera,
            "state": camera.as_ref().map_or("unknown", |c| c.capture.state().name()),
            "fps": camera.as_ref().map_or(0.0, |c| {
                c.capture.stats.fps_milli.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0
            }),
            "recording": camera.as_ref().is_some_and(|c| c.is_recording()),
            "viewers": live.viewers_of(&self.camera),
            "quality": self.session.quality(),
            "requested_quality": self.session.requested_quality(),
            "streaming": live.is_enabled(),
            "subscribed": self.subscribed,
            "codec": if self.h264.is_some() { "h264" } else { "jpeg" },
            "sent_fps": self.session.fps(),
            "bytes_sent": self.session.bytes_sent(),
        });
        self.send_json(status).await
    }

    /// Registers with the hub at the session's current quality, if not already.
    fn start_watching(&mut self) {
        let quality = self.session.quality();
        if self.viewer.as_ref().is_none_or(|v| v.quality() != quality) {
            self.viewer = Some(self.state.live.hub.watch(&self.camera, quality));
        }
    }

    /// The reason to give when there is no frame to send now, if there is one.
    fn source_problem(&self) -> Option<NoFrame> {
        let live = &self.state.live;
        if !live.is_enabled() {
            return Some(NoFrame::StreamingDisabled);
        }
        match self.state.service.latest_frame(&self.camera) {
            Err(_) => Some(NoFrame::CameraError),
            Ok(Err(reason)) => Some(reason),
            Ok(Ok(_frame)) => None,
        }
    }

    async fn client_error(&mut self, e: WsError) {
        match e {
            WsError::Capacity(why) => {
                log::info!(
                    "ws: session {} closed: client message too large ({why})",
                    self.session.id()
                );
                let reason = format!("client messages are limited to {MAX_CLIENT_MESSAGE} bytes");
                close(&mut self.ws, CloseCode::Size, &reason).await;
            }
            WsError::Utf8(_) => {
                close(
                    &mut self.ws,
                    CloseCode::Invalid,
                    "text messages must be UTF-8",
                )
                .await
            }
            WsError::Protocol(why) => {
                log::debug!("ws: session {}: protocol error: {why}", self.session.id());
                close(
                    &mut self.ws,
                    CloseCode::Protocol,
                    "WebSocket protocol error",
                )
                .await;
            }
            e => log::debug!("ws: session {}: {e}", self.session.id()),
        }
    }

    async fn on_message(&mut self, message: Message) -> Result<(), Gone> {
        match message {
            Message::Text(text) => self.on_text(text.as_str()).await,
            Message::Binary(_) => {
                self.send_error(
                    "bad_message",
                    "binary messages are not part of the protocol; send JSON text",
                )
                .await
            }
            Message::Close(_) => {
                // Sends tungstenite's queued close reply; then the session ends.
                let _ = timeout(Duration::from_secs(2), self.ws.close(None)).await;
                Err(Gone)
            }
            // Pings are answered by tungstenite; pongs and raw frames need nothing.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Gone> {
        let message = match parse_client_message(text) {
            Ok(m) => m,
            Err(bad) => return self.send_error(bad.code, &bad.message).await,
        };
        match message {
            ClientMessage::Ping => self.send_json(json!({"type": "pong"})).await,
            ClientMessage::Subscribe { h264 } => {
                self.no_frame_sent = false;
                self.last_frame = Instant::now();
                if !h264 {
                    self.wants_h264 = false;
                    self.h264 = None;
                    self.h264_stream = None;
                }
                match self.source_problem() {
                    Some(NoFrame::StreamingDisabled) => {
                        self.subscribed = true;
                        self.wants_h264 = h264;
                        self.send_no_frame(NoFrame::StreamingDisabled).await
                    }
                    problem => {
                        if h264 {
                            self.wants_h264 = true;
                            if !self.watch_h264().await? && !self.wants_h264 {
                                // Refused (MJPEG clips): the subscription stays as it was.
                                return Ok(());
                            }
                            self.viewer = None;
                        }
                        self.subscribed = true;
                        // Watch even while the camera has no frame: frames flow as soon
                        // as it recovers.
                        if !self.wants_h264 {
                            self.start_watching();
                        }
                        match problem {
                            Some(reason) => self.send_no_frame(reason).await,
                            None => Ok(()),
                        }
                    }
                }
            }
            ClientMessage::RequestFrame => self.request_frame().await,
            ClientMessage::SetQuality(q) => {
                self.session.set_quality(q);
                if self.viewer.is_some() {
                    self.start_watching();
                }
                self.send_status().await
            }
        }
    }

    async fn request_frame(&mut self) -> Result<(), Gone> {
        if let Some(reason) = self.source_problem() {
            return self.send_no_frame(reason).await;
        }
        let now = Instant::now();
        self.last_pull = Some(now);
        self.start_watching();
        let waiting = self.viewer.as_ref().and_then(Viewer::try_next);
        match waiting {
            Some(frame) => self.send_frame(frame).await,
            None => {
                self.pull_deadline = Some(now + PULL_WAIT);
                Ok(())
            }
        }
    }

    async fn on_frame(&mut self, frame: Arc<LiveFrame>) -> Result<(), Gone> {
        self.last_frame = Instant::now();
        self.no_frame_sent = false;
        if self.pull_deadline.take().is_some() {
            // A pull is paced by the client itself: no bandwidth check.
            return self.send_frame(frame).await;
        }
        if self.subscribed && self.session.admit(frame.jpeg.len()) {
            return self.send_frame(frame).await;
        }
        Ok(())
    }

    async fn on_tick(&mut self, status_due: bool) -> Result<(), Gone> {
        let now = Instant::now();
        let live = Arc::clone(&self.state.live);
        if live.is_stopped() {
            close(&mut self.ws, CloseCode::Away, "benchcam is shutting down").await;
            return Err(Gone);
        }
        if !live.is_enabled() {
            // Streaming switched off: stop the encoder for this session, say why once.
            self.viewer = None;
            self.h264 = None;
            if self.subscribed && !self.no_frame_sent {
                self.send_no_frame(NoFrame::StreamingDisabled).await?;
            }
        } else if self.subscribed && self.wants_h264 {
            if self.h264.is_none() {
                self.last_frame = now;
                self.watch_h264().await?;
            }
        } else if self.subscribed {
            if self.viewer.is_none() {
                self.last_frame = now;
            }
            // Also follows a quality change from CPU load.
            self.start_watching();
        } else if let Some(viewer) = &self.viewer {
            if viewer.quality() != self.session.quality() {
                self.start_watching();
            }
        }
        if let Some(deadline) = self.pull_deadline {
            if now >= deadline {
                self.pull_deadline = None;
                let reason = live.no_frame_reason(&self.camera);
                self.send_no_frame(reason).await?;
            }
        }
        let watching = self.viewer.is_some() || self.h264.is_some();
        if self.subscribed && watching && !self.no_frame_sent {
            // A camera known to be gone is said at once (within a tick); frames that just
            // stopped coming get NO_FRAME_AFTER to turn up.
            let idle = now.duration_since(self.last_frame);
            let gone = matches!(
                self.state.service.latest_frame(&self.camera),
                Ok(Err(NoFrame::CameraError)) | Err(_)
            );
            if idle > NO_FRAME_AFTER || (idle > TICK && gone) {
                let reason = live.no_frame_reason(&self.camera);
                self.send_no_frame(reason).await?;
            }
        }
        let pulling = self.pull_deadline.is_some()
            || self
                .last_pull
                .is_some_and(|t| now.duration_since(t) < PULL_KEEP);
        if !self.subscribed && !pulling {
            self.viewer = None;
        }
        if status_due {
            self.send_status().await?;
        }
        Ok(())
    }
}
