//! What a request must show before it is routed, against an attacker on the lab LAN or a
//! page on another site that a logged-in phone has open:
//! - **Host** (DNS rebinding): with an access token set, the `Host` header must name the
//!   box: an IP address, `localhost`, its hostname, `<hostname>.local`, or a name in
//!   `service.allowed_hosts`. A rebinding page's requests carry the attacker's name.
//! - **Origin** (cross-site requests): a state-changing request (anything but GET, HEAD,
//!   OPTIONS) and every WebSocket handshake that carries an `Origin` must come from the
//!   box's own origin (same host and port as `Host`). Browsers always send `Origin` on
//!   such requests; tools like curl send none and are judged by the token alone. The
//!   login cookie is also `SameSite=Strict`: two locks, not one.
//! - **Login attempts**: at most [`LOGIN_ATTEMPTS`] failed logins per client address per
//!   [`LOGIN_WINDOW`]; more get 429 with `Retry-After`, so a token cannot be guessed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::header::{HeaderMap, HOST, ORIGIN};
use hyper::Method;

/// Failed logins allowed per client address within `LOGIN_WINDOW`.
pub const LOGIN_ATTEMPTS: usize = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses whose failures are remembered at once (a flood of addresses must
/// not grow memory without bound); the oldest are forgotten first.
const LOGIN_CLIENTS: usize = 1024;

/// Why a request was turned away before routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// 421-like: the Host is not one of the box's names (DNS rebinding).
    UnknownHost(String),
    /// 403: a browser request from another site.
    CrossOrigin(String),
}

pub struct RequestGuard {
    /// Lower-case names the box answers to, besides IP addresses and `localhost`.
    names: Vec<String>,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl RequestGuard {
    /// `hostname` is the box's own name (may be empty); `extra` are more allowed names.
    pub fn new(hostname: &str, extra: &[String]) -> RequestGuard {
        let mut names: Vec<String> = extra.iter().map(|n| n.to_ascii_lowercase()).collect();
        let hostname = hostname.trim().to_ascii_lowercase();
        if !hostname.is_empty() {
            names.push(format!("{hostname}.local"));
            names.push(hostname);
        }
        RequestGuard {
            names,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Checks Host (only when `token_set`) and Origin (always) of a request.
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        token_set: bool,
    ) -> Result<(), Rejected> {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if token_set && !self.is_own_host(host) {
            return Err(Rejected::UnknownHost(host.to_string()));
        }
        let state_changing = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let upgrade = headers.contains_key(hyper::header::UPGRADE);
        if state_changing || upgrade {
            if let Some(origin) = headers.get(ORIGIN) {
                let origin = origin.to_str().unwrap_or("");
                let origin_host = origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
                    .unwrap_or("");
                if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
                    return Err(Rejected::CrossOrigin(origin.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Whether `host` (a Host header: name or address, optional port) names this box.
    fn is_own_host(&self, host: &str) -> bool {
        let name = if let Some(rest) = host.strip_prefix('[') {
            // [v6]:port
            rest.split(']').next().unwrap_or("")
        } else {
            host.rsplit_once(':').map_or(host, |(n, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    n
                } else {
                    host
                }
            })
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name.parse::<IpAddr>().is_ok() || name == "localhost" || self.names.contains(&name)
    }

    /// `Err(retry_after)` while `ip` has used up its failed logins.
    pub fn login_allowed(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut failures = self.failures.lock().expect("login failures poisoned");
        let Some(times) = failures.get_mut(&ip) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= LOGIN_WINDOW)
        {
            times.pop_front();
        }
        if times.len() < LOGIN_ATTEMPTS {
            return Ok(());
        }
        let oldest = *times.front().expect("at least LOGIN_ATTEMPTS entries");
        Err(LOGIN_WINDOW.saturating_sub(now.saturating_duration_since(oldest)))
    }

    /// Counts a failed login from `ip`.
    pub fn login_failed(&self, ip: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().expect("login failures poisoned");
        if failures.len() >= LOGIN_CLIENTS && !failures.contains_key(&ip) {
            // Forget the address whose latest failure is oldest.
            if let Some(forget) = failures
                .iter()
                .min_by_key(|(_, t)| t.back().copied())
                .map(|(ip, _)| *ip)
            {
                failures.remove(&forget);
            }
        }
        let times = failures.entry(ip).or_default();
        times.push_back(now);
        while times.len() > LOGIN_ATTEMPTS {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn with_a_token_only_the_boxes_own_names_are_served() {
        let g = RequestGuard::new("bench3", &["cams.lab.example".into()]);
        for ok in [
            "192.168.1.20",
            "192.168.1.20:8080",
            "[fe80::1]:8080",
            "localhost:8080",
            "bench3",
            "BENCH3.local",
            "bench3.local.",
            "cams.lab.example",
        ] {
            assert!(g.is_own_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "bench3.evil.example",
            "",
        ] {
            assert!(!g.is_own_host(bad), "{bad}");
        }
        let h = headers(&[("host", "evil.example")]);
        assert_eq!(
            g.check(&Method::GET, &h, true),
            Err(Rejected::UnknownHost("evil.example".into()))
        );
        assert_eq!(
            g.check(&Method::GET, &h, false),
            Ok(()),
            "no token: no Host rule"
        );
    }

    #[test]
    fn cross_site_writes_and_websockets_are_refused() {
        let g = RequestGuard::new("bench3", &[]);
        let same = headers(&[("host", "bench3.local"), ("origin", "http://bench3.local")]);
        let other = headers(&[("host", "bench3.local"), ("origin", "http://evil.example")]);
        let none = headers(&[("host", "bench3.local")]);
        assert_eq!(g.check(&Method::POST, &same, false), Ok(()));
        assert!(matches!(
            g.check(&Method::POST, &other, false),
            Err(Rejected::CrossOrigin(_))
        ));
        assert_eq!(
            g.check(&Method::POST, &none, false),
            Ok(()),
            "curl sends none"
        );
        assert_eq!(
            g.check(&Method::GET, &other, false),
            Ok(()),
            "reads are not writes"
        );
        let ws = headers(&[
            ("host", "bench3.local"),
            ("origin", "http://evil.example"),
            ("upgrade", "websocket"),
        ]);
        assert!(g.check(&Method::GET, &ws, false).is_err());
        let null = headers(&[("host", "bench3.local"), ("origin", "null")]);
        assert!(g.check(&Method::PATCH, &null, false).is_err());
    }

    #[test]
    fn failed_logins_are_limited_per_address() {
        let g = RequestGuard::new("", &[]);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        for i in 0..LOGIN_ATTEMPTS {
            assert!(g.login_allowed(a, t0).is_ok());
            g.login_failed(a, t0 + Duration::from_secs(i as u64));
        }
        let wait = g
            .login_allowed(a, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            g.login_allowed(b, t0).is_ok(),
            "another client is not blocked"
        );
        assert!(
            g.login_allowed(a, t0 + LOGIN_WINDOW).is_ok(),
            "the window passes"
        );
    }
}
