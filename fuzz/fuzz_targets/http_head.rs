//! Request heads (src/web/http.rs, guard.rs, api.rs): the bytes a client sends before the
//! body, parsed as hyper parses them (httparse), then everything benchcam does with a head
//! before a handler runs: Host and Origin checks, the token and login cookie, routing,
//! path-segment checks, query parameters and the Range header. Never a panic; a routed
//! request's method and path fit its route; a segment that passes the checks is one plain
//! file name; a byte range lies inside the file.
#![no_main]

use std::path::{Component, Path};

use benchcam::web::api::{route, suspicious, Routed, ROUTES};
use benchcam::web::guard::RequestGuard;
use benchcam::web::http::{parse_range, percent_decode, query_param, Auth, RangeRequest};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, RANGE};
use hyper::{Method, Uri};
use libfuzzer_sys::fuzz_target;

fn guard() -> &'static RequestGuard {
    static GUARD: std::sync::OnceLock<RequestGuard> = std::sync::OnceLock::new();
    GUARD.get_or_init(|| RequestGuard::new("bench3", &["cams.lab.example".to_string()]))
}

fn auth(protect_reads: bool) -> &'static Auth {
    static OPEN: std::sync::OnceLock<Auth> = std::sync::OnceLock::new();
    static CLOSED: std::sync::OnceLock<Auth> = std::sync::OnceLock::new();
    if protect_reads {
        CLOSED.get_or_init(|| Auth::new("s3cret-token", true))
    } else {
        OPEN.get_or_init(|| Auth::new("s3cret-token", false))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut raw = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut raw);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(data) else {
        return;
    };
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return;
    };
    // What hyper would refuse with 400 never reaches benchcam.
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return;
        };
        headers.append(name, value);
    }

    let path = uri.path();
    let _ = guard().check(&method, &headers, true);
    let _ = guard().check(&method, &headers, false);
    for protect_reads in [false, true] {
        let auth = auth(protect_reads);
        let _ = auth.required(&method, path);
        let _ = auth.authorized(&headers);
    }

    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for s in &segments {
        let _ = percent_decode(s);
    }
    if !segments.iter().any(|s| *s == ".." || *s == ".") {
        if let Routed::Found(endpoint, params) = route(&method, &segments) {
            let r = ROUTES
                .iter()
                .find(|r| r.endpoint == endpoint && r.method == method)
                .expect("a found endpoint is in the table");
            assert_eq!(
                params.len(),
                r.path.matches('{').count(),
                "{path} → {endpoint:?}"
            );
            for p in params {
                if !suspicious(p) && p != ".." && p != "." {
                    let parts: Vec<Component> = Path::new(p).components().collect();
                    assert_eq!(
                        parts,
                        [Component::Normal(p.as_ref())],
                        "segment {p:?} passed the checks but is not one plain name"
                    );
                }
            }
        }
    }
    for name in ["camera", "quality", "download"] {
        let _ = query_param(uri.query(), name);
    }

    let range = headers.get(RANGE).and_then(|v| v.to_str().ok());
    for len in [0u64, 1, 1000, u64::MAX] {
        match parse_range(range, len) {
            RangeRequest::Partial { start, end } => {
                assert!(
                    start <= end && end < len,
                    "{range:?} on {len} bytes: {start}-{end}"
                )
            }
            RangeRequest::Full | RangeRequest::Unsatisfiable => {}
        }
    }
});
