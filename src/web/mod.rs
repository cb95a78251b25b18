//! The web server: `run(listener, state, shutdown)` serves the page and the API on
//! smol with hyper, one task per connection.

pub mod api;

use std::net::SocketAddr;
use std::sync::Arc;

use futures_lite::FutureExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use smol::net::TcpListener;
use smol_hyper::rt::{FuturesIo, SmolTimer};

use crate::camera::CameraService;
use crate::config::Config;

/// What every request handler can reach. Lives as long as the server.
pub struct AppState {
    pub service: Arc<CameraService>,
    /// The configuration the service started with.
    pub config: Config,
}

/// Serves until `shutdown` fires (a message or the sender dropped).
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: async_channel::Receiver<()>,
) {
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let state = Arc::clone(&state);
                    smol::spawn(serve_connection(stream, peer, state)).detach();
                }
                Err(e) => {
                    log::warn!("web: accept failed: {e}");
                    smol::Timer::after(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    };
    let stop = async {
        let _ = shutdown.recv().await;
    };
    accept.or(stop).await;
    log::info!("web: stopped accepting connections");
}

async fn serve_connection(stream: smol::net::TcpStream, peer: SocketAddr, state: Arc<AppState>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, std::convert::Infallible>(api::handle(req, peer, state).await) }
    });
    let conn = http1::Builder::new()
        .timer(SmolTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(20))
        .serve_connection(FuturesIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        log::debug!("web: connection from {peer}: {e}");
    }
}
