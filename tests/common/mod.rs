//! Helpers for the web integration tests: start the real app in-process on 127.0.0.1:0
//! with the test-pattern camera and a temp data dir, a tiny blocking HTTP/1.1 client on
//! std TcpStream (it sends paths exactly as given, `..` and `%2e` included), and
//! WebSocket helpers over tungstenite.

#![allow(dead_code)]

pub mod net;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benchcam::app::{App, Hardware};
use benchcam::camera::discovery::FixedDiscoverer;
use benchcam::capture::pattern::{PatternDevice, PatternFaults};
use benchcam::clock::{Clock, SystemClock};
use benchcam::config::{CameraSource, Config, HumanDuration};
use benchcam::storage::Statvfs;
use benchcam::web::{serve_in_background, BackgroundServer};
use serde_json::Value;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

/// Set by tests/run.sh for the aarch64 run under qemu, which is 5-20x slower.
pub fn emulated() -> bool {
    std::env::var_os("BENCHCAM_EMULATED").is_some()
}

/// A time limit, stretched under emulation.
pub fn patience(limit: Duration) -> Duration {
    if emulated() {
        limit * 6
    } else {
        limit
    }
}

pub const WIDTH: u32 = 320;
pub const HEIGHT: u32 = 240;

/// A running app: the service, its web server on a loopback port, its data dir.
pub struct TestApp {
    pub app: App,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Switches for the pattern camera's faults (stall, unplug).
    pub faults: Arc<PatternFaults>,
    server: Option<BackgroundServer>,
}

/// The config every test starts from: one 320x240 pattern camera at 30 fps, no
/// recording at boot, room for many viewers, CPU step-down off (tests share 2 cores).
pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.service.data_dir = data_dir.to_path_buf();
    c.service.listen = "127.0.0.1:0".into();
    c.camera.source = CameraSource::Pattern;
    c.camera.width = WIDTH;
    c.camera.height = HEIGHT;
    c.camera.fps = 30;
    // Real drivers' timestamps jitter; every clip test must hold with it.
    c.camera.pattern_jitter = HumanDuration(Duration::from_millis(10));
    // Generous recorder queue (ring_slots - 3): the tests share a busy machine.
    c.camera.ring_slots = 12;
    c.auto_recording.enabled = false;
    c.recording.clip_length = HumanDuration(Duration::from_secs(2));
    c.recording.fragment_duration = HumanDuration(Duration::from_millis(500));
    c.streaming.max_sessions = 32;
    c.streaming.cpu_high_water = 100;
    c
}

impl TestApp {
    pub fn start() -> TestApp {
        TestApp::start_with(|_| {})
    }

    /// Starts with the test config changed by `tweak`.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        TestApp::start_in(dir, config)
    }

    /// Starts on an existing data dir (a restart).
    pub fn start_in(dir: tempfile::TempDir, config: Config) -> TestApp {
        TestApp::start_on(dir, config, Box::new(Statvfs))
    }

    /// Starts with `space` answering for the data disk (a `SimSpace`).
    pub fn start_on(
        dir: tempfile::TempDir,
        config: Config,
        space: Box<dyn benchcam::storage::SpaceProbe>,
    ) -> TestApp {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let device = PatternDevice::new(
            0,
            config.camera.width,
            config.camera.height,
            config.camera.fps,
            Arc::clone(&clock),
        )
        .with_jitter(config.camera.pattern_jitter.0);
        let faults = device.faults();
        let hardware = Hardware {
            clock,
            discoverer: Box::new(FixedDiscoverer(vec![Arc::new(device)])),
            space,
        };
        let app = App::start(config, hardware).expect("app starts");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = serve_in_background(Arc::clone(&app.state), listener).expect("serve");
        let addr = server.addr;
        let t = TestApp {
            app,
            addr,
            dir,
            faults,
            server: Some(server),
        };
        t.wait_for_frames();
        t
    }

    /// Waits until the camera has delivered a few frames.
    pub fn wait_for_frames(&self) {
        wait_for(patience(Duration::from_secs(10)), "first frames", || {
            let h = self.health();
            h["cameras"][0]["frames_captured"].as_u64().unwrap_or(0) >= 3
        });
    }

    /// `Authorization` for this app's access token, if it has one.
    fn auth(&self) -> Vec<(&'static str, String)> {
        let token = &self.app.state.config.service.access_token;
        if token.is_empty() {
            Vec::new()
        } else {
            vec![("Authorization", format!("Bearer {token}"))]
        }
    }

    /// GET with the access token when the app has one.
    pub fn get(&self, path: &str) -> Resp {
        let auth = self.auth();
        let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(self.addr, "GET", path, &headers, b"")
    }

    /// Stops the server and the app, keeping the data dir (for a restart).
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
            self.app.shutdown();
        }
    }

    pub fn health(&self) -> Value {
        self.get("/api/v1/health").json()
    }

    /// Waits (up to `limit`) for a complete clip in the index and returns its JSON.
    pub fn complete_clip(&self, limit: Duration) -> Value {
        let find = || {
            self.get("/api/v1/clips")
                .json()
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["complete"] == true)
                .cloned()
        };
        wait_for(limit, "a complete clip", || find().is_some());
        find().expect("a complete clip")
    }

    pub fn sessions(&self) -> Vec<Value> {
        self.get("/api/v1/streaming/sessions")
            .json()
            .as_array()
            .expect("sessions are a list")
            .clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", String::from_utf8_lossy(&self.body)))
            .to_string()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads a response head: status and headers.
pub fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("header has a colon");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    (status, headers)
}

/// Sends one request on a new connection (`Connection: close`) and reads the response.
/// `path` goes on the wire exactly as given.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(patience(Duration::from_secs(30))))
        .unwrap();
    // The caller's Host, if it gives one, replaces the default.
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or("127.0.0.1", |(_, v)| *v);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    let headers: Vec<_> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        .collect();
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading all of a large body.
    let _ = stream.write_all(body);
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let mut body = Vec::new();
    if method == "HEAD" || status == 304 || status == 204 {
        // No body.
    } else if chunked {
        ChunkedReader::new(reader).read_to_end(&mut body).unwrap();
    } else {
        let len: Option<usize> = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap());
        match len {
            Some(n) => {
                body.resize(n, 0);
                reader.read_exact(&mut body).unwrap();
            }
            None => {
                reader.read_to_end(&mut body).unwrap();
            }
        }
    }
    Resp {
        status,
        headers,
        body,
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"")
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Decodes `Transfer-Encoding: chunked` as the bytes arrive.
pub struct ChunkedReader<R> {
    inner: R,
    left_in_chunk: usize,
    done: bool,
}

impl<R: BufRead> ChunkedReader<R> {
    pub fn new(inner: R) -> Self {
        ChunkedReader {
            inner,
            left_in_chunk: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left_in_chunk == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                // The CRLF after the previous chunk.
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("bad chunk size line {line:?}"),
                    )
                })?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left_in_chunk = size;
        }
        let n = buf.len().min(self.left_in_chunk);
        let n = self.inner.read(&mut buf[..n])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left_in_chunk -= n;
        Ok(n)
    }
}

pub type Ws = WebSocket<TcpStream>;

/// Opens the live-view WebSocket of `camera`, with extra request headers.
pub fn ws_connect_with(
    addr: SocketAddr,
    camera: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tungstenite::Error> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(patience(Duration::from_secs(10))))
        .unwrap();
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{addr}/api/v1/cameras/{camera}/ws"
    ))
    .unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tungstenite::client(request, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("blocking handshake interrupted")
        }
    }
}

pub fn ws_connect(addr: SocketAddr, camera: &str) -> Ws {
    ws_connect_with(addr, camera, &[]).expect("WebSocket handshake")
}

pub fn ws_send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).expect("send");
}

/// Reads messages until a JSON text message whose `type` is `kind`, skipping others
/// (status, frames and their JPEGs); panics after `limit`.
pub fn ws_until(ws: &mut Ws, kind: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        assert!(
            Instant::now() < deadline,
            "no {kind:?} message in {limit:?}"
        );
        match ws.read().expect("read") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
                if v["type"] == kind {
                    return v;
                }
            }
            Message::Close(c) => panic!("closed while waiting for {kind:?}: {c:?}"),
            _ => {}
        }
    }
}

/// Reads the next `frame` message and the binary JPEG after it.
pub fn ws_frame(ws: &mut Ws, limit: Duration) -> (Value, Vec<u8>) {
    let meta = ws_until(ws, "frame", limit);
    match ws.read().expect("read JPEG") {
        Message::Binary(b) => (meta, b.to_vec()),
        other => panic!("expected the binary JPEG right after the frame message, got {other:?}"),
    }
}

/// Reads until the server's close frame; returns its code and reason.
pub fn ws_close_code(ws: &mut Ws) -> (u16, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Ok(Message::Close(None)) => panic!("close without a code"),
            Ok(_) => {}
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

/// Checks that `bytes` is one complete JPEG and decodes it; returns (width, height).
pub fn decode_jpeg(bytes: &[u8]) -> (u16, u16) {
    assert_eq!(&bytes[..2], &[0xFF, 0xD8], "JPEG starts with SOI");
    assert_eq!(
        &bytes[bytes.len() - 2..],
        &[0xFF, 0xD9],
        "JPEG ends with EOI"
    );
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    let pixels = decoder.decode().expect("decodable JPEG");
    let info = decoder.info().expect("JPEG info");
    assert_eq!(
        pixels.len(),
        info.width as usize * info.height as usize * 3,
        "decoded a full colour picture"
    );
    (info.width, info.height)
}
