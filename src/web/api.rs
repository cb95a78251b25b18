//! REST endpoints of DESIGN §4.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::AppState;
use crate::error::{Error, ErrorKind};

pub type Body = Full<Bytes>;

/// JSON error body of DESIGN §4.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("JSON values serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

/// Maps a service error to its HTTP status.
pub fn service_error(e: &Error) -> Response<Body> {
    let (status, code) = match e.kind {
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::WrongState => (StatusCode::CONFLICT, "wrong_state"),
        ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "bad_request"),
        ErrorKind::StorageFull => (StatusCode::SERVICE_UNAVAILABLE, "storage_full"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, e.kind.code()),
    };
    error_response(status, code, &e.to_string())
}

pub async fn handle(
    req: Request<Incoming>,
    _peer: SocketAddr,
    state: Arc<AppState>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/api/v1/health") => json(StatusCode::OK, &state.service.health_check()),
        _ => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no endpoint {path}"),
        ),
    }
}
