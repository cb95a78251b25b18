//! The web page, embedded in the binary: `/` (index.html), `/app.js`, `/style.css`.
//! Served with an ETag from the content's hash, so phones revalidate cheaply (304) and
//! always pick up a new page after an update.

use std::sync::OnceLock;

use hyper::header::{HeaderMap, IF_NONE_MATCH};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::http::{empty, error_response, full, Body};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 3] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_str!("assets/index.html").as_bytes(),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_str!("assets/app.js").as_bytes(),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_str!("assets/style.css").as_bytes(),
    },
];

/// Paths served without the token even with `protect_reads`: the page must load to show
/// its login form.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/index.html" | "/favicon.ico") || ASSETS.iter().any(|a| a.path == path)
}

fn etags() -> &'static [String; 3] {
    static ETAGS: OnceLock<[String; 3]> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS.each_ref().map(|a| {
            let hash = Sha256::digest(a.bytes);
            let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
    })
}

/// The asset at `path`, or `None` when there is none.
pub fn serve(path: &str, headers: &HeaderMap, head: bool) -> Option<Response<Body>> {
    let path = if path == "/index.html" { "/" } else { path };
    if path == "/favicon.ico" {
        // The page declares an empty icon; answer browsers that ask anyway.
        return Some(
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header("cache-control", "public, max-age=86400")
                .body(empty())
                .expect("static headers are valid"),
        );
    }
    let index = ASSETS.iter().position(|a| a.path == path)?;
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == etag || t.trim() == "*");
    let builder = Response::builder()
        .header("etag", etag.as_str())
        // Revalidate every time: the names carry no version, the ETag does.
        .header("cache-control", "no-cache")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("x-frame-options", "DENY");
    let response = if fresh {
        builder.status(StatusCode::NOT_MODIFIED).body(empty())
    } else {
        builder
            .status(StatusCode::OK)
            .header("content-type", asset.content_type)
            .header("content-length", asset.bytes.len())
            .body(if head { empty() } else { full(asset.bytes) })
    };
    Some(response.unwrap_or_else(|_| {
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cannot build the page response",
        )
    }))
}
