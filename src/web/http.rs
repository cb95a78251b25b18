//! HTTP plumbing shared by the endpoints: the response body type, JSON and error
//! responses, bounded request bodies, query strings, byte ranges, the access token,
//! and the write-stall guard that drops clients who stop reading.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH};
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};

/// Error type of streamed bodies (file reads); hyper ends the connection on one.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body: whole (JSON, page) or streamed (clips, MJPEG).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Largest request body accepted (settings, login, recording start).
pub const MAX_REQUEST_BODY: usize = 16 * 1024;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("JSON values serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(full(body))
        .expect("static headers are valid")
}

/// JSON error body of DESIGN §4: `{"error": {"code", "message"}}`.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// A refusal on its way to becoming a JSON error response (small, unlike a response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn response(&self) -> Response<Body> {
        error_response(self.status, self.code, &self.message)
    }
}

/// Why a request body could not be read.
pub enum BodyError {
    TooLarge,
    Broken(String),
}

impl BodyError {
    pub fn response(&self) -> Response<Body> {
        match self {
            BodyError::TooLarge => error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("request bodies are limited to {MAX_REQUEST_BODY} bytes"),
            ),
            BodyError::Broken(why) => error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("cannot read the request body: {why}"),
            ),
        }
    }
}

/// Reads a request body of at most `MAX_REQUEST_BODY` bytes.
pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BODY as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Broken(e.to_string())),
    }
}

/// Parses a JSON request body; an empty body is `null`.
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// The value of `name` in a query string, percent-decoded. `None` when absent or not
/// valid UTF-8 after decoding.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == name)
            .then(|| percent_decode(v))
            .flatten()
    })
}

/// Decodes `%XX` escapes and `+` (space). `None` on a bad escape or invalid UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// What a `Range` header asks of a file of `len` bytes (one range; RFC 9110 §14).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RangeRequest {
    /// No usable Range header: send the whole file (200). Malformed and multi-range
    /// headers land here too, which RFC 9110 allows.
    Full,
    /// Bytes `start..=end` (206).
    Partial { start: u64, end: u64 },
    /// No byte of the range exists (416).
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), num(first), num(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        (false, Some(start), end) if last.is_empty() || end.is_some() => {
            if start >= len {
                return RangeRequest::Unsatisfiable;
            }
            match end {
                Some(end) if end < start => RangeRequest::Full,
                Some(end) => RangeRequest::Partial {
                    start,
                    end: end.min(len - 1),
                },
                None => RangeRequest::Partial {
                    start,
                    end: len - 1,
                },
            }
        }
        _ => RangeRequest::Full,
    }
}

/// The access token and what it protects (DESIGN §8).
pub struct Auth {
    /// SHA-256 of the token; empty token = no protection.
    token_digest: Option<[u8; 32]>,
    /// The login cookie's value: derived from the token, so the cookie is not the token.
    cookie_value: String,
    protect_reads: bool,
}

pub const COOKIE_NAME: &str = "benchcam_session";

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares two digests in constant time (same length by construction).
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(access_token: &str, protect_reads: bool) -> Auth {
        if access_token.is_empty() {
            return Auth {
                token_digest: None,
                cookie_value: String::new(),
                protect_reads: false,
            };
        }
        let cookie: [u8; 32] = digest(format!("benchcam-login-v1:{access_token}").as_bytes());
        Auth {
            token_digest: Some(digest(access_token.as_bytes())),
            cookie_value: cookie.iter().map(|b| format!("{b:02x}")).collect(),
            protect_reads,
        }
    }

    pub fn enabled(&self) -> bool {
        self.token_digest.is_some()
    }

    /// Whether `token` is the access token (constant time: both sides are hashed first,
    /// so neither the content nor the length leaks through timing).
    pub fn token_matches(&self, token: &str) -> bool {
        self.token_digest
            .as_ref()
            .is_some_and(|want| same(want, &digest(token.as_bytes())))
    }

    /// Whether a request with this method and path needs the token.
    pub fn required(&self, method: &hyper::Method, path: &str) -> bool {
        if !self.enabled() || path == "/api/v1/login" {
            return false;
        }
        let reads = matches!(
            *method,
            hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
        );
        if !reads {
            return true;
        }
        self.protect_reads && !super::assets::is_public(path)
    }

    /// Whether the request carries the token (Bearer header) or the login cookie.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get_all(hyper::header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|t| self.token_matches(t.trim()));
        if bearer {
            return true;
        }
        let cookie = digest(self.cookie_value.as_bytes());
        headers
            .get_all(hyper::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(k, v)| k == COOKIE_NAME && same(&cookie, &digest(v.as_bytes())))
    }

    /// `Set-Cookie` for a successful login: not readable by scripts, never sent cross-site.
    pub fn login_cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000",
            self.cookie_value
        ))
        .expect("hex cookie is a valid header")
    }

    pub fn logout_cookie() -> HeaderValue {
        HeaderValue::from_static("benchcam_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

/// How long a client may leave our writes blocked before it is dropped.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);
/// For clip downloads: phones pause reading a video they have buffered enough of.
pub const DOWNLOAD_STALL_LIMIT: Duration = Duration::from_secs(60);

/// A connection's stall limit, changeable per request (HTTP/1 serves one at a time).
#[derive(Clone)]
pub struct StallLimit(Arc<AtomicU64>);

impl StallLimit {
    pub fn new(limit: Duration) -> Self {
        StallLimit(Arc::new(AtomicU64::new(limit.as_millis() as u64)))
    }

    pub fn set(&self, limit: Duration) {
        self.0.store(limit.as_millis() as u64, Ordering::Relaxed);
    }

    fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

/// Wraps a client socket: a write that stays blocked (the client does not read) longer
/// than the stall limit fails with `TimedOut`, which ends the connection. This is what
/// keeps a stalled MJPEG or WebSocket viewer from holding a session forever.
pub struct StallGuard<S> {
    inner: S,
    limit: StallLimit,
    stalled_since: Option<Instant>,
    timer: Option<smol::Timer>,
}

impl<S> StallGuard<S> {
    pub fn new(inner: S, limit: StallLimit) -> Self {
        StallGuard {
            inner,
            limit,
            stalled_since: None,
            timer: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn progressed(&mut self) {
        self.stalled_since = None;
        self.timer = None;
    }

    /// Called when a write is blocked: arms a timer that wakes the task at the limit.
    fn stalled_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let since = *self.stalled_since.get_or_insert_with(Instant::now);
        let deadline = since + self.limit.get();
        let timer = self.timer.get_or_insert_with(|| smol::Timer::at(deadline));
        Pin::new(timer).poll(cx).is_ready() || Instant::now() >= deadline
    }

    fn stall_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading; connection dropped",
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending if this.stalled_too_long(cx) => Poll::Ready(Err(Self::stall_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending if this.stalled_too_long(cx) => Poll::Ready(Err(Self::stall_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending if this.stalled_too_long(cx) => Poll::Ready(Err(Self::stall_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Runs `fut` for at most `limit`; `None` on timeout.
pub async fn timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        smol::Timer::after(limit).await;
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let r = |h: &str| parse_range(Some(h), 1000);
        assert_eq!(r("bytes=0-99"), Partial { start: 0, end: 99 });
        assert_eq!(
            r("bytes=500-"),
            Partial {
                start: 500,
                end: 999
            }
        );
        assert_eq!(
            r("bytes=-100"),
            Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(r("bytes=-5000"), Partial { start: 0, end: 999 });
        assert_eq!(
            r("bytes=990-5000"),
            Partial {
                start: 990,
                end: 999
            }
        );
        assert_eq!(r("bytes=1000-"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=5-1"), Full);
        assert_eq!(r("bytes=0-1,5-6"), Full);
        assert_eq!(r("items=0-1"), Full);
        assert_eq!(r("bytes=a-b"), Full);
        assert_eq!(r("bytes=+1-2"), Full);
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    }

    #[test]
    fn query_and_percent_decoding() {
        assert_eq!(
            query_param(Some("camera=cam0&quality=low"), "quality").as_deref(),
            Some("low")
        );
        assert_eq!(
            query_param(Some("a=%2e%2e%2F"), "a").as_deref(),
            Some("../")
        );
        assert_eq!(query_param(Some("a=%zz"), "a"), None);
        assert_eq!(query_param(Some("flag"), "flag").as_deref(), Some(""));
        assert_eq!(query_param(None, "a"), None);
    }

    #[test]
    fn token_and_cookie() {
        let auth = Auth::new("s3cret-token", false);
        assert!(auth.token_matches("s3cret-token"));
        assert!(!auth.token_matches("s3cret-tokem"));
        assert!(!auth.token_matches(""));
        let mut headers = HeaderMap::new();
        assert!(!auth.authorized(&headers));
        headers.insert("authorization", "Bearer s3cret-token".parse().unwrap());
        assert!(auth.authorized(&headers));
        let cookie = auth.login_cookie();
        let pair = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert!(!pair.contains("s3cret"));
        let mut headers = HeaderMap::new();
        headers.insert("cookie", format!("other=1; {pair}").parse().unwrap());
        assert!(auth.authorized(&headers));
        assert!(auth.required(&hyper::Method::POST, "/api/v1/cameras/rescan"));
        assert!(!auth.required(&hyper::Method::GET, "/api/v1/health"));
        assert!(!auth.required(&hyper::Method::POST, "/api/v1/login"));
        let closed = Auth::new("s3cret-token", true);
        assert!(closed.required(&hyper::Method::GET, "/api/v1/health"));
        assert!(!closed.required(&hyper::Method::GET, "/"));
        assert!(!closed.required(&hyper::Method::GET, "/app.js"));
        let open = Auth::new("", false);
        assert!(!open.required(&hyper::Method::POST, "/api/v1/cameras/rescan"));
    }
}
