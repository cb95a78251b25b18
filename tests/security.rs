//! What a LAN attacker or another site's page can do (issue 10, item 7): with a token
//! set, a state-changing request needs it; a request for a Host that is not the box's is
//! refused (DNS rebinding); a browser request from another origin may change nothing,
//! WebSocket handshakes included; wrong tokens are rate-limited per client; the token
//! never shows in `check-config` or the log.

mod common;
mod support;

use std::time::Duration;

use common::*;

const TOKEN: &str = "s3cret-token-for-tests";

fn with_token() -> TestApp {
    TestApp::start_with(|c| c.service.access_token = TOKEN.into())
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[test]
fn rebinding_hosts_are_refused_when_a_token_is_set() {
    let t = with_token();
    let r = request(
        t.addr,
        "GET",
        "/api/v1/health",
        &[("Host", "evil.example")],
        b"",
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "unknown_host");
    // Even with the token: a rebinding page could have stolen nothing, but it must not
    // be able to read through the box's name either.
    let auth = bearer();
    let r = request(
        t.addr,
        "POST",
        "/api/v1/cameras/cam0/recording/start",
        &[("Host", "evil.example:8080"), ("Authorization", &auth)],
        b"{}",
    );
    assert_eq!(r.status, 403);
    for host in ["127.0.0.1", "localhost:8080", "[::1]:8080"] {
        let r = request(t.addr, "GET", "/api/v1/health", &[("Host", host)], b"");
        assert_eq!(r.status, 200, "{host}");
    }
}

#[test]
fn another_sites_page_cannot_change_anything() {
    let t = TestApp::start();
    let evil = [("Origin", "http://evil.example")];
    let r = request(
        t.addr,
        "POST",
        "/api/v1/cameras/cam0/recording/start",
        &evil,
        b"{}",
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "cross_origin");
    assert_eq!(
        t.health()["cameras"][0]["recording"],
        false,
        "nothing started"
    );
    let r = request(
        t.addr,
        "PATCH",
        "/api/v1/settings",
        &evil,
        br#"{"recording": {"clip_length": "1m"}}"#,
    );
    assert_eq!(r.status, 403);
    // The box's own page (same origin) and tools without Origin are served.
    let own = format!("http://{}", t.addr);
    let r = request(
        t.addr,
        "POST",
        "/api/v1/cameras/cam0/recording/start",
        &[("Origin", &own), ("Host", &t.addr.to_string())],
        b"{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(t.addr, "/api/v1/cameras/cam0/recording/stop", "{}");
    assert_eq!(r.status, 200);
    // A cross-site WebSocket handshake is refused before the upgrade.
    let r = request(
        t.addr,
        "GET",
        "/api/v1/cameras/cam0/ws",
        &[
            ("Origin", "http://evil.example"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    );
    assert_eq!(r.status, 403);
}

#[test]
fn wrong_tokens_are_rate_limited_per_client() {
    let t = with_token();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(post(t.addr, "/api/v1/login", r#"{"token": "guess-guess"}"#).status);
    }
    assert_eq!(&statuses[..5], &[401; 5]);
    assert_eq!(&statuses[5..], &[429, 429], "{statuses:?}");
    // Bearer guesses count too, and the right token is refused while blocked.
    let r = request(
        t.addr,
        "POST",
        "/api/v1/login",
        &[],
        format!("{{\"token\": \"{TOKEN}\"}}").as_bytes(),
    );
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    let r = request(
        t.addr,
        "POST",
        "/api/v1/cameras/cam0/recording/start",
        &[("Authorization", "Bearer guess")],
        b"{}",
    );
    assert_eq!(r.status, 429);
}

#[test]
fn the_token_never_shows_in_check_config_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = support::write_config(
        dir.path(),
        port,
        // write_config leaves [service] open: the token goes there.
        &format!("access_token = \"{TOKEN}\"\n[camera]\nsource = \"pattern\"\nwidth = 160\nheight = 120\n"),
    );
    let out = std::process::Command::new(support::bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("access_token = \"(set; hidden)\""),
        "{printed}"
    );
    assert!(!printed.contains(TOKEN));
    // A run at debug level, with a failed and a good login: the log has no token.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("log_level = \"info\"", "log_level = \"debug\""),
    )
    .unwrap();
    let mut child = std::process::Command::new(support::bin())
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_for(Duration::from_secs(20), || {
        support::http_get(port, "/api/v1/health").filter(|(s, _)| *s == 200)
    })
    .expect("service answers");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    post(addr, "/api/v1/login", r#"{"token": "wrong-token-1"}"#);
    post(
        addr,
        "/api/v1/login",
        &format!("{{\"token\": \"{TOKEN}\"}}"),
    );
    support::sigterm(&mut child);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("web: listening"), "{log}");
    assert!(
        !log.contains(TOKEN) && !log.contains("wrong-token-1"),
        "{log}"
    );
}
