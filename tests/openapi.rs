//! The OpenAPI document (`GET /api/v1/openapi.json`, src/web/openapi.json) against the
//! router's table (`api::ROUTES`), in both directions: every documented operation is a
//! route, every route is documented, and every route answers a real request on a running
//! service with something other than 404/405, with a status its operation documents.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use benchcam::web::api::{route, Routed, ROUTES};
use benchcam::web::openapi::DOCUMENT;
use common::{patience, read_head, request, TestApp};
use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
}

/// (METHOD, path template) of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, _) in item.as_object().expect("path item") {
            if METHODS.contains(&key.as_str()) {
                out.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn routed() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
        .collect()
}

#[test]
fn the_document_is_openapi_3_1_with_every_path_parameter_declared() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{id}: no responses"
            );
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{id}: path parameter not required");
                    p["name"].as_str().unwrap()
                })
                .collect();
            assert_eq!(declared, in_path, "{id}: path parameters");
        }
    }
    // Every $ref points at something.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let pointer = r.strip_prefix('#').expect("local $ref");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
}

#[test]
fn every_documented_operation_is_a_route_and_every_route_is_documented() {
    let doc = documented(&document());
    let routes = routed();
    let undocumented: Vec<_> = routes.difference(&doc).collect();
    let unrouted: Vec<_> = doc.difference(&routes).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    assert_eq!(routes.len(), ROUTES.len(), "a route is in the table twice");
}

#[test]
fn no_two_routes_of_one_method_can_match_the_same_path() {
    for (i, a) in ROUTES.iter().enumerate() {
        for b in &ROUTES[i + 1..] {
            if a.method != b.method {
                continue;
            }
            let (sa, sb): (Vec<&str>, Vec<&str>) =
                (a.path.split('/').collect(), b.path.split('/').collect());
            let overlap = sa.len() == sb.len()
                && sa
                    .iter()
                    .zip(&sb)
                    .all(|(x, y)| x == y || x.starts_with('{') || y.starts_with('{'));
            assert!(!overlap, "{} {} and {} overlap", a.method, a.path, b.path);
        }
    }
    // And the router finds each template's own route.
    for r in ROUTES {
        let segments: Vec<&str> = r.path.split('/').skip(1).collect();
        match route(&r.method, &segments) {
            Routed::Found(endpoint, _) => assert_eq!(endpoint, r.endpoint, "{}", r.path),
            other => panic!("{} {}: {other:?}", r.method, r.path),
        }
    }
}

/// The status of `method path`, reading only the head (the MJPEG stream never ends).
fn status_only(app: &TestApp, method: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(app.addr).unwrap();
    stream
        .set_read_timeout(Some(patience(Duration::from_secs(30))))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    read_head(&mut BufReader::new(stream)).0
}

#[test]
fn every_route_answers_a_real_request_with_a_documented_status() {
    let app = TestApp::start_with(|c| {
        c.gpio.backend = benchcam::gpio::config::BackendChoice::Sim;
        c.auto_recording.pre_roll = benchcam::config::HumanDuration(Duration::ZERO);
        c.auto_recording.post_roll = benchcam::config::HumanDuration(Duration::ZERO);
    });
    // A clip and an archived experiment to ask for.
    let post = |path: &str, body: &str| request(app.addr, "POST", path, &[], body.as_bytes());
    assert_eq!(post("/api/v1/cameras/cam0/recording/start", "").status, 200);
    let clip = app.complete_clip(patience(Duration::from_secs(20)))["filename"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        post(
            "/api/v1/experiments",
            r#"{"experiment_id": "routes-1", "method": "m"}"#
        )
        .status,
        201
    );
    assert_eq!(post("/api/v1/experiments/routes-1/stop", "").status, 200);

    let doc = document();
    let mut statuses = BTreeMap::new();
    for r in ROUTES {
        let path = r
            .path
            .replace("{cam}", "cam0")
            .replace("{id}", "routes-1")
            .replace("{input}", "marker")
            .replace(
                "{file}",
                if r.path.starts_with("/api/v1/clips") {
                    clip.as_str()
                } else {
                    "manifest.json"
                },
            );
        let body = match r.path {
            "/api/v1/login" => r#"{"token": "x"}"#,
            "/api/v1/settings" => r#"{"streaming": {"enabled": true}}"#,
            "/api/v1/experiments" => r#"{"experiment_id": "routes-2"}"#,
            "/api/v1/gpio/sim/{input}" => r#"{"level": false}"#,
            _ => "",
        };
        let method = r.method.as_str();
        let status = if r.path.ends_with("stream.mjpg") {
            status_only(&app, method, &path)
        } else {
            request(app.addr, method, &path, &[], body.as_bytes()).status
        };
        assert!(
            status != 404 && status != 405,
            "{method} {path} answered {status}: the route is not served"
        );
        let documented = &doc["paths"][r.path][method.to_lowercase()]["responses"];
        assert!(
            documented.get(status.to_string()).is_some(),
            "{method} {path} answered {status}, which its operation does not document"
        );
        statuses.insert(format!("{method} {}", r.path), status);
    }
    eprintln!("{statuses:#?}");
}

#[test]
fn with_a_token_every_state_changing_route_refuses_requests_without_it() {
    // What schemathesis's ignored_auth check would probe (tests/schemathesis/run.sh leaves it
    // out: after 5 wrong tokens the service answers 429, which that check does not take).
    let app = TestApp::start_with(|c| {
        c.service.access_token = "openapi-test-token".into();
        c.gpio.backend = benchcam::gpio::config::BackendChoice::Sim;
    });
    for r in ROUTES {
        let method = r.method.as_str();
        if matches!(method, "GET" | "HEAD") || r.path == "/api/v1/login" {
            continue;
        }
        let path = r
            .path
            .replace("{cam}", "cam0")
            .replace("{id}", "exp-1")
            .replace("{input}", "marker");
        let none = request(app.addr, method, &path, &[], b"{}");
        assert_eq!(none.status, 401, "{method} {path} without a token");
        let wrong = request(
            app.addr,
            method,
            &path,
            &[("Authorization", "Bearer not-the-token")],
            b"{}",
        );
        assert!(
            matches!(wrong.status, 401 | 429),
            "{method} {path} with a wrong token: {}",
            wrong.status
        );
    }
}

#[test]
fn a_wrong_method_gets_405_with_the_allow_header_of_its_path() {
    // schemathesis found 405s without `Allow` (RFC 9110 §15.5.6).
    let app = TestApp::start();
    let mut by_path: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in ROUTES {
        by_path.entry(r.path).or_default().insert(r.method.as_str());
    }
    for (template, methods) in by_path {
        let path = template
            .replace("{cam}", "cam0")
            .replace("{id}", "exp-1")
            .replace("{input}", "marker")
            .replace("{file}", "x.mp4");
        let r = request(app.addr, "TRACE", &path, &[], b"");
        assert_eq!(r.status, 405, "TRACE {path}");
        let allow: BTreeSet<&str> = r
            .header("allow")
            .unwrap_or_else(|| panic!("TRACE {path}: no Allow"))
            .split(", ")
            .collect();
        assert_eq!(allow, methods, "Allow of {path}");
    }
}

#[test]
fn an_archive_request_body_that_is_not_an_object_is_refused() {
    // schemathesis found `""` taken as "no method".
    let app = TestApp::start();
    let r = request(
        app.addr,
        "POST",
        "/api/v1/experiments/exp-1/archive",
        &[],
        b"\"\"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
}
