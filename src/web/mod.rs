//! The web server: `run(listener, state, shutdown)` serves the page, the REST API, the
//! MJPEG stream and the WebSocket live view on smol with hyper, one task per connection.
//!
//! Every client socket is wrapped in a `StallGuard` (a client that leaves our writes
//! blocked for 10 s is dropped) and gets a small kernel send buffer, so a stalled client
//! holds neither frames nor much memory. Connections are admitted by `admission`: capped
//! per client address and in all, idle ones closed to make room for new clients and when
//! they send no request in time.

pub mod admission;
pub mod api;
pub mod assets;
pub mod downloads;
pub mod experiments;
pub mod guard;
pub mod http;
pub mod metrics;
pub mod mjpeg;
pub mod openapi;
pub mod replication;
pub mod ws;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use smol::net::TcpListener;
use smol_hyper::rt::{FuturesIo, SmolTimer};

use crate::camera::CameraService;
use crate::config::Config;
use crate::experiment::ExperimentService;
use crate::fleet::Fleet;
use crate::gpio::Gpio;
use crate::live::LiveStreamingService;
use admission::{Admission, Busy, Ticket};
use http::{Auth, Body, StallGuard, StallLimit, STALL_LIMIT};

/// Kernel send buffer per client: bounds what a stalled client pins in kernel memory while
/// still filling a LAN link (256 KiB at a few ms RTT is tens of MB/s).
const SEND_BUFFER_BYTES: libc::c_int = 256 * 1024;

/// Counters of the web server, for metrics.
#[derive(Default, Debug)]
pub struct WebStats {
    pub requests: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_open: AtomicUsize,
    pub connections_refused: AtomicU64,
    /// Body bytes of clip downloads handed to hyper.
    pub clip_bytes_sent: AtomicU64,
    /// Downloads being planned or written right now (a span MP4, an experiment ZIP; at
    /// most `downloads::MAX_DOWNLOADS`).
    pub downloads_producing: AtomicUsize,
    /// CLOCK_MONOTONIC µs of the executor's last heartbeat (the watchdog checks it).
    pub heartbeat_us: AtomicU64,
}

impl WebStats {
    fn beat(&self) {
        self.heartbeat_us
            .store(crate::clock::monotonic_now_us(), Ordering::Relaxed);
    }

    /// How long ago the web executor last ran its heartbeat task.
    pub fn heartbeat_age(&self) -> Duration {
        let last = self.heartbeat_us.load(Ordering::Relaxed);
        Duration::from_micros(crate::clock::monotonic_now_us().saturating_sub(last))
    }
}

/// What every request handler can reach. Lives as long as the server.
pub struct AppState {
    pub service: Arc<CameraService>,
    /// The configuration the service started with (settings changes live in
    /// `service.config()`; the access token and listen address only change on restart).
    pub config: Config,
    /// Live view: sessions, the JPEG hub.
    pub live: Arc<LiveStreamingService>,
    pub auth: Auth,
    /// Serialises settings changes: read, validate, persist, apply.
    pub settings_lock: smol::lock::Mutex<()>,
    /// Snapshots encoded at once (each copies a frame and runs an encoder).
    pub snapshot_permits: smol::lock::Semaphore,
    pub web: WebStats,
    /// Experiments: start/arm/stop/archive and their archives.
    pub experiments: Arc<ExperimentService>,
    /// GPIO (LEDs, trigger inputs); `None` with `gpio.backend = "none"`.
    pub gpio: Option<Arc<Gpio>>,
    /// Uploads to object storage; `None` with replication off.
    pub replication: Option<Arc<crate::replicate::Replicator>>,
    /// Which connections may stay open (caps, eviction, head timeout).
    pub admission: Arc<Admission>,
    /// Host, Origin and login-attempt checks made before routing.
    pub guard: guard::RequestGuard,
    /// This bench and the others on the LAN (`GET /api/v1/fleet`); the wiring starts its
    /// mDNS side and feeds it this box's record.
    pub fleet: Arc<Fleet>,
}

impl AppState {
    /// The web state for a started camera service; starts the live-view service.
    pub fn new(
        service: Arc<CameraService>,
        experiments: Arc<ExperimentService>,
        gpio: Option<Arc<Gpio>>,
        replication: Option<Arc<crate::replicate::Replicator>>,
        config: Config,
    ) -> Arc<AppState> {
        let live = LiveStreamingService::new(Arc::clone(&service), &config.streaming);
        let hostname = crate::host::hostname();
        let guard = guard::RequestGuard::new(&hostname, &config.service.allowed_hosts);
        let fleet = Fleet::new(&config.fleet, &hostname);
        Arc::new(AppState {
            auth: Auth::new(&config.service.access_token, config.service.protect_reads),
            service,
            config,
            live,
            settings_lock: smol::lock::Mutex::new(()),
            snapshot_permits: smol::lock::Semaphore::new(2),
            web: WebStats::default(),
            experiments,
            gpio,
            replication,
            admission: Admission::new(),
            guard,
            fleet,
        })
    }
}

/// Where a request came from and its connection's stall limit.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub stall: StallLimit,
}

/// Serves until `shutdown` fires (a message or the sender dropped), then ends every
/// live stream.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: async_channel::Receiver<()>,
) {
    let accept = async {
        let mut last_refusal_log: Option<Instant> = None;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => match state.admission.admit(peer.ip(), Instant::now()) {
                    Ok(ticket) => {
                        let state = Arc::clone(&state);
                        smol::spawn(serve_connection(stream, peer, state, ticket)).detach();
                    }
                    Err(_) => {
                        state
                            .web
                            .connections_refused
                            .fetch_add(1, Ordering::Relaxed);
                        if last_refusal_log.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                            log::warn!("web: every connection is busy answering a request; refusing {peer} (logged once a minute)");
                            last_refusal_log = Some(Instant::now());
                        }
                        drop(stream);
                    }
                },
                Err(e) => {
                    log::warn!("web: accept failed: {e}");
                    smol::Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
    };
    // Closes connections that send no request in time.
    let reaper = async {
        loop {
            smol::Timer::after(Duration::from_secs(1)).await;
            state.admission.reap(Instant::now());
        }
    };
    let stop = async {
        let _ = shutdown.recv().await;
    };
    // Proves to the systemd watchdog that the executor serving the connections still
    // runs (it is smol's global executor, not this thread): a handler that blocked it
    // would freeze every page and viewer. Dropping the task at the end stops it.
    let beating = Arc::clone(&state);
    let _heartbeat = smol::spawn(async move {
        loop {
            beating.web.beat();
            smol::Timer::after(Duration::from_secs(1)).await;
        }
    });
    accept.or(reaper).or(stop).await;
    state.live.shutdown();
    log::info!("web: stopped accepting connections; live streams ended");
}

fn set_send_buffer(stream: &smol::net::TcpStream) {
    let fd = stream.as_raw_fd();
    let size = SEND_BUFFER_BYTES;
    // SAFETY: setsockopt reads `size` (a c_int we own) for the given length on an open socket.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!(
            "web: cannot set SO_SNDBUF: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Decrements the open-connection count however the connection ends.
struct OpenConnection<'a>(&'a WebStats);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(
    stream: smol::net::TcpStream,
    peer: SocketAddr,
    state: Arc<AppState>,
    ticket: Ticket,
) {
    state.web.connections_open.fetch_add(1, Ordering::Relaxed);
    state.web.connections_total.fetch_add(1, Ordering::Relaxed);
    let _open = OpenConnection(&state.web);
    let _ = stream.set_nodelay(true);
    set_send_buffer(&stream);
    let stall = StallLimit::new(STALL_LIMIT);
    let conn = Arc::new(ConnInfo {
        peer,
        stall: stall.clone(),
    });
    let closed = ticket.closed.clone();
    let ticket = Arc::new(ticket);
    let service_state = Arc::clone(&state);
    let service = service_fn(move |req| {
        let state = Arc::clone(&service_state);
        let conn = Arc::clone(&conn);
        // Busy from the whole head until the response body has been sent.
        let busy = ticket.request_started();
        async move {
            let response = api::handle(req, conn, state).await;
            Ok::<_, std::convert::Infallible>(response.map(|body| hold_until_sent(body, busy)))
        }
    });
    let io = FuturesIo::new(StallGuard::new(stream, stall));
    let connection = http1::Builder::new()
        .timer(SmolTimer::new())
        .header_read_timeout(admission::HEAD_TIMEOUT)
        // Bounds the request head and the write buffer per connection.
        .max_buf_size(64 * 1024)
        .serve_connection(io, service)
        .with_upgrades();
    let result = async { Some(connection.await) }
        .or(async {
            let _ = closed.recv().await;
            None
        })
        .await;
    match result {
        None => log::debug!(
            "web: closed idle connection from {peer} (room for others, or no request in time)"
        ),
        Some(Ok(())) => {}
        Some(Err(e)) => {
            let stalled = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
            if stalled {
                log::info!("web: dropped {peer}: it stopped reading what was sent to it");
            } else {
                log::debug!("web: connection from {peer}: {e}");
            }
        }
    }
}

/// A response body that keeps its connection marked busy until it has been sent whole
/// (or dropped, when the client goes away).
fn hold_until_sent(body: Body, busy: Busy) -> Body {
    use http_body_util::BodyExt;
    struct Held {
        body: Body,
        _busy: Busy,
    }
    impl hyper::body::Body for Held {
        type Data = bytes::Bytes;
        type Error = http::BoxError;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
            std::pin::Pin::new(&mut self.body).poll_frame(cx)
        }
        fn is_end_stream(&self) -> bool {
            self.body.is_end_stream()
        }
        fn size_hint(&self) -> hyper::body::SizeHint {
            self.body.size_hint()
        }
    }
    Held { body, _busy: busy }.boxed_unsync()
}

/// A server running on its own thread, for tests and benchmarks: serves `state` on
/// `listener` until `stop` (or drop).
pub struct BackgroundServer {
    pub addr: SocketAddr,
    shutdown: Option<async_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Stops accepting, ends live streams, and waits for the server thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send_blocking(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Serves `state` on `listener` from a new thread (`web-server`).
pub fn serve_in_background(
    state: Arc<AppState>,
    listener: std::net::TcpListener,
) -> std::io::Result<BackgroundServer> {
    let addr = listener.local_addr()?;
    let listener = TcpListener::try_from(listener)?;
    let (tx, rx) = async_channel::bounded(1);
    let thread = std::thread::Builder::new()
        .name("web-server".into())
        .spawn(move || smol::block_on(run(listener, state, rx)))?;
    Ok(BackgroundServer {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}
