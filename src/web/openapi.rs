//! The OpenAPI 3.1 document of the HTTP API, served at `GET /api/v1/openapi.json`.
//!
//! `openapi.json` beside this file is the document, embedded as written. tests/openapi.rs
//! holds it to the router's table (`api::ROUTES`) in both directions, and
//! tests/schemathesis/run.sh checks the running service's answers against it.

use hyper::{Response, StatusCode};

use super::http::{full, Body};

/// The document's text.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn serve() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache")
        .body(full(DOCUMENT))
        .expect("static headers are valid")
}
