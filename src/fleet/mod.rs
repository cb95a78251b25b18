//! The fleet: this bench announces itself as `_benchcam._tcp` over mDNS and browses for the
//! other benches on the LAN (mdns-sd: pure Rust, its own daemon thread, no async runtime).
//!
//! Data flows one way: the wiring (`app.rs`) hands [`Fleet::publish`] this box's
//! [`BenchRecord`] (built from health and the experiment service) about once a second;
//! the fleet re-announces it when it changed notably (at most once per
//! [`MIN_ANNOUNCE_INTERVAL`]) and every [`REFRESH_INTERVAL`]; the web reads
//! [`Fleet::view`]. Peers come only from their mDNS records (TXT), never from HTTP calls
//! between boxes. A peer leaves on its goodbye, when mdns-sd's cache expires it, or after
//! [`PEER_MAX_AGE`] without a refresh.

pub mod peers;
pub mod record;
pub mod targets;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, ErrorKind, Result};
use peers::{Peer, PeerTable};
use record::{bounded, BenchRecord};

/// The DNS-SD service type benches announce.
pub const SERVICE_TYPE: &str = "_benchcam._tcp.local.";

/// A notable change is announced at most this often (a flapping camera must not flood the
/// LAN with multicast).
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);

/// Every bench re-announces this often even when nothing changed; its uptime changes, so
/// browsers see the refresh and keep it.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// A peer not heard from for this long is dropped (three refreshes missed: a box that lost
/// power sends no goodbye).
pub const PEER_MAX_AGE: Duration = Duration::from_secs(100);

/// `[fleet]`: finding the other benches on the LAN.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// mDNS at all; `false` keeps the Benches view to this box.
    pub enabled: bool,
    /// The bench's name in the Benches view; "" = the hostname.
    pub name: String,
    /// Announce this bench (`_benchcam._tcp`).
    pub announce: bool,
    /// Browse for the others.
    pub browse: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            enabled: true,
            name: String::new(),
            announce: true,
            browse: true,
        }
    }
}

/// Longest `fleet.name` (one DNS label).
pub const MAX_NAME: usize = 63;

impl FleetConfig {
    pub fn validate(&self) -> Result<()> {
        let n = &self.name;
        if n.len() > MAX_NAME || n.chars().any(char::is_control) || n.trim() != n {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "config key `fleet.name` = {n:?}: allowed: \"\" (the hostname) or up to {MAX_NAME} bytes of printable text without leading or trailing spaces"
                ),
            ));
        }
        Ok(())
    }
}

/// A DNS label from a bench name: lowercase ASCII letters, digits and '-', at most 40
/// characters ("benchcam" when nothing is left).
pub fn dns_label(name: &str) -> String {
    let mut label = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            label.push(c);
        } else if !label.ends_with('-') {
            label.push('-');
        }
    }
    let label: String = label.trim_matches('-').chars().take(40).collect();
    let label = label.trim_end_matches('-').to_string();
    if label.is_empty() {
        "benchcam".into()
    } else {
        label
    }
}

/// Eight hex digits that tell this machine from others with the same name: the start of
/// /etc/machine-id, else a hash of the hostname.
fn machine_tag(hostname: &str) -> String {
    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let id = id.trim();
    if id.len() >= 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return id[..8].to_ascii_lowercase();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(hostname.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `own` goes out now, given what was announced last and when: the first time; on a
/// notable change once [`MIN_ANNOUNCE_INTERVAL`] has passed; every [`REFRESH_INTERVAL`].
fn announce_due(last: Option<&(BenchRecord, Instant)>, own: &BenchRecord, now: Instant) -> bool {
    match last {
        None => true,
        Some((last, at)) => {
            let since = now.saturating_duration_since(*at);
            since >= REFRESH_INTERVAL
                || (since >= MIN_ANNOUNCE_INTERVAL && last.differs_notably(own))
        }
    }
}

/// How many non-loopback interfaces that are up have an IPv4 or IPv6 address.
fn interfaces_with_addresses() -> std::io::Result<usize> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list it allocates (freed below).
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut count = 0;
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` walks the list getifaddrs returned; each node and its ifa_addr (when
        // not null) stay valid until freeifaddrs.
        let ifa = unsafe { &*at };
        let up = ifa.ifa_flags & libc::IFF_UP as libc::c_uint != 0;
        let loopback = ifa.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0;
        if up && !loopback && !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points at a sockaddr.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET || family == libc::AF_INET6 {
                count += 1;
            }
        }
        at = ifa.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(count)
}

/// What the browse thread and the announcer share.
#[derive(Default)]
struct Shared {
    peers: PeerTable,
    /// This box's newest record.
    own: Option<BenchRecord>,
    /// The record last announced, and when.
    announced: Option<(BenchRecord, Instant)>,
}

/// The running mDNS side: the daemon and the browse thread.
struct Running {
    mdns: ServiceDaemon,
    port: u16,
    stop: Arc<AtomicBool>,
    browser: Option<std::thread::JoinHandle<()>>,
}

/// This bench on the LAN: announces it, keeps the table of the others.
pub struct Fleet {
    config: FleetConfig,
    /// The name shown (`fleet.name` or the hostname).
    pub name: String,
    /// The mDNS instance and host label (`<name label>-<machine tag>`).
    pub instance_label: String,
    shared: Arc<Mutex<Shared>>,
    running: Mutex<Option<Running>>,
}

impl Fleet {
    /// The fleet of a bench named by `config` (or `hostname`); nothing on the network
    /// until [`Fleet::start`].
    pub fn new(config: &FleetConfig, hostname: &str) -> Arc<Fleet> {
        let name = if config.name.is_empty() {
            bounded(hostname, MAX_NAME)
        } else {
            config.name.clone()
        };
        let name = if name.is_empty() {
            "benchcam".to_string()
        } else {
            name
        };
        let instance_label = format!("{}-{}", dns_label(&name), machine_tag(hostname));
        Arc::new(Fleet {
            config: config.clone(),
            name,
            instance_label,
            shared: Arc::new(Mutex::new(Shared::default())),
            running: Mutex::new(None),
        })
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("fleet table poisoned")
    }

    /// The service instance's full name.
    pub fn instance(&self) -> String {
        format!("{}.{SERVICE_TYPE}", self.instance_label)
    }

    /// Starts mDNS for a page on TCP `port` (when `fleet.enabled`). A failure (no
    /// multicast, no interfaces) is logged and the service runs on without the fleet.
    pub fn start(&self, port: u16) {
        if !self.config.enabled || !(self.config.announce || self.config.browse) {
            log::info!("fleet: mDNS off (fleet.enabled/announce/browse)");
            return;
        }
        // mdns-sd lists interfaces with getifaddrs and treats a failure as "none", silently:
        // say so here (a sandbox without AF_NETLINK is the usual cause).
        match interfaces_with_addresses() {
            Ok(0) => log::warn!(
                "fleet: no network interface has an address yet; mDNS starts when one does"
            ),
            Ok(_) => {}
            Err(e) => log::error!(
                "fleet: cannot list network interfaces (getifaddrs: {e}; under systemd, RestrictAddressFamilies= must allow AF_NETLINK); mDNS will not reach the LAN"
            ),
        }
        let mdns = match ServiceDaemon::new() {
            Ok(d) => d,
            Err(e) => {
                log::error!("fleet: cannot start mDNS: {e}; the Benches view shows this box only");
                return;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut browser = None;
        if self.config.browse {
            match mdns.browse(SERVICE_TYPE) {
                Ok(events) => {
                    let (shared, stop, own) =
                        (Arc::clone(&self.shared), Arc::clone(&stop), self.instance());
                    browser = std::thread::Builder::new()
                        .name("fleet-browse".into())
                        .spawn(move || browse_loop(&events, &shared, &stop, &own))
                        .map_err(|e| log::error!("fleet: cannot start the browse thread: {e}"))
                        .ok();
                }
                Err(e) => log::error!("fleet: cannot browse {SERVICE_TYPE}: {e}"),
            }
        }
        log::info!(
            "fleet: mDNS as {} on port {port} (announce {}, browse {})",
            self.instance(),
            self.config.announce,
            self.config.browse
        );
        *self.running.lock().expect("fleet poisoned") = Some(Running {
            mdns,
            port,
            stop,
            browser,
        });
        self.announce_if_due(Instant::now());
    }

    /// This box's current record (from the wiring, about once a second); re-announced when
    /// due.
    pub fn publish(&self, record: BenchRecord) {
        self.shared().own = Some(record);
        self.announce_if_due(Instant::now());
    }

    fn announce_if_due(&self, now: Instant) {
        if !self.config.enabled || !self.config.announce {
            return;
        }
        let running = self.running.lock().expect("fleet poisoned");
        let Some(running) = running.as_ref() else {
            return;
        };
        let record = {
            let mut shared = self.shared();
            let Some(own) = shared.own.clone() else {
                return;
            };
            if !announce_due(shared.announced.as_ref(), &own, now) {
                return;
            }
            shared.announced = Some((own.clone(), now));
            own
        };
        let host = format!("{}.local.", self.instance_label);
        let txt: Vec<(&str, String)> = record.to_txt();
        match ServiceInfo::new(
            SERVICE_TYPE,
            &self.instance_label,
            &host,
            "",
            running.port,
            &txt[..],
        ) {
            Ok(info) => {
                if let Err(e) = running.mdns.register(info.enable_addr_auto()) {
                    log::warn!("fleet: announcing failed: {e}");
                }
            }
            Err(e) => log::warn!("fleet: cannot build the announcement: {e}"),
        }
    }

    /// Says goodbye on the LAN and stops the mDNS daemon (at shutdown).
    pub fn stop(&self) {
        let Some(mut running) = self.running.lock().expect("fleet poisoned").take() else {
            return;
        };
        running.stop.store(true, Ordering::Relaxed);
        if self.config.announce {
            // The goodbye (TTL 0) goes out before the daemon stops; bounded wait.
            if let Ok(done) = running.mdns.unregister(&self.instance()) {
                let _ = done.recv_timeout(Duration::from_secs(1));
            }
        }
        if let Ok(done) = running.mdns.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        if let Some(t) = running.browser.take() {
            let _ = t.join();
        }
        log::info!("fleet: mDNS stopped");
    }

    /// `GET /api/v1/fleet`: this box and its peers.
    pub fn view(&self, listen_port: u16) -> Value {
        let running = self.running.lock().expect("fleet poisoned");
        let port = running.as_ref().map_or(listen_port, |r| r.port);
        let (announcing, browsing) = (
            running.is_some() && self.config.announce,
            running.as_ref().is_some_and(|r| r.browser.is_some()),
        );
        drop(running);
        let now = Instant::now();
        let mut shared = self.shared();
        shared.peers.expire(now, PEER_MAX_AGE);
        let own = shared.own.clone();
        let peers: Vec<Value> = shared
            .peers
            .sorted()
            .iter()
            .map(|p| peer_json(p, now))
            .collect();
        let evicted = shared.peers.evicted;
        drop(shared);
        let this = json!({
            "name": self.name,
            "instance": self.instance(),
            "host": format!("{}.local", self.instance_label),
            "addresses": [],
            "port": port,
            "url": "/",
            "last_seen_s": 0.0,
        });
        json!({
            "announcing": announcing,
            "browsing": browsing,
            "this": merge(this, own.as_ref()),
            "peers": peers,
            "peers_evicted": evicted,
        })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A bench as the API shows it: `base` (where it is) plus its record.
fn merge(mut base: Value, record: Option<&BenchRecord>) -> Value {
    let fields = match record {
        Some(r) => json!({
            "version": r.version,
            "state": r.state,
            "cameras": r.cameras,
            "cameras_recording": r.cameras_recording,
            "last_experiment": r.last_experiment,
            "free_bytes": r.free_bytes,
            "uptime_s": r.uptime_s,
        }),
        None => json!({
            "version": env!("CARGO_PKG_VERSION"),
            "state": "unknown",
            "cameras": 0,
            "cameras_recording": 0,
            "last_experiment": null,
            "free_bytes": null,
            "uptime_s": 0,
        }),
    };
    if let (Some(b), Value::Object(f)) = (base.as_object_mut(), fields) {
        b.extend(f);
    }
    base
}

fn peer_json(p: &Peer, now: Instant) -> Value {
    let base = json!({
        "name": p.record.name,
        "instance": p.instance,
        "host": p.host.trim_end_matches('.'),
        "addresses": p.addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>(),
        "port": p.port,
        "url": p.url(),
        "last_seen_s": now.saturating_duration_since(p.last_seen).as_secs_f64(),
    });
    merge(base, Some(&p.record))
}

/// A resolved service as a peer-table entry: (instance, host, addresses, port, record).
fn resolved_peer(s: &mdns_sd::ResolvedService) -> (String, String, Vec<IpAddr>, u16, BenchRecord) {
    let fallback = s
        .fullname
        .strip_suffix(&format!(".{SERVICE_TYPE}"))
        .unwrap_or(&s.fullname);
    let record = BenchRecord::from_txt(
        s.txt_properties.iter().map(|p| (p.key(), p.val_str())),
        fallback,
    );
    // Bounded before collecting: a hostile record may carry many addresses.
    let addresses = s
        .addresses
        .iter()
        .take(4 * peers::MAX_ADDRESSES)
        .map(|a| a.to_ip_addr())
        .collect();
    (
        s.fullname.clone(),
        s.host.clone(),
        addresses,
        s.port,
        record,
    )
}

/// The browse thread: applies mDNS events to the table until `stop` (or the daemon ends).
fn browse_loop(
    events: &mdns_sd::Receiver<ServiceEvent>,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
    own_instance: &str,
) {
    while !stop.load(Ordering::Relaxed) {
        let event = match events.recv_timeout(Duration::from_millis(500)) {
            Ok(e) => e,
            Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
            Err(_) => break,
        };
        let now = Instant::now();
        let mut shared = shared.lock().expect("fleet table poisoned");
        match event {
            ServiceEvent::ServiceResolved(s) if s.fullname != own_instance => {
                let (instance, host, addresses, port, record) = resolved_peer(&s);
                let name = record.name.clone();
                if shared
                    .peers
                    .upsert(&instance, &host, addresses, port, record, now)
                {
                    log::info!("fleet: bench {name:?} appeared ({instance})");
                }
            }
            ServiceEvent::ServiceRemoved(_, instance) if shared.peers.remove(&instance) => {
                log::info!("fleet: bench {instance} left");
            }
            _ => {}
        }
        let expired = shared.peers.expire(now, PEER_MAX_AGE);
        if expired > 0 {
            log::info!("fleet: {expired} bench(es) silent for {PEER_MAX_AGE:?}, dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_rate_limited_and_refreshed() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let a = BenchRecord::from_txt([("state", "ok"), ("rec", "0")], "a");
        let mut b = a.clone();
        b.cameras_recording = 1;
        assert!(announce_due(None, &a, t0), "the first one goes out at once");
        let last = (a.clone(), t0);
        assert!(
            !announce_due(Some(&last), &b, at(2)),
            "a change within 5 s waits"
        );
        assert!(
            announce_due(Some(&last), &b, at(5)),
            "a change after 5 s goes out"
        );
        let mut older = a.clone();
        older.uptime_s += 20;
        assert!(
            !announce_due(Some(&last), &older, at(29)),
            "no change: wait for the refresh"
        );
        assert!(announce_due(Some(&last), &older, at(30)), "the refresh");
    }

    #[test]
    fn this_machine_has_interfaces_to_list() {
        // getifaddrs works here (no sandbox); the count is whatever the machine has.
        assert!(interfaces_with_addresses().is_ok());
    }

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(dns_label("Bench 3 (optics)"), "bench-3-optics");
        assert_eq!(dns_label("--"), "benchcam");
        assert_eq!(dns_label("Über-Labor"), "ber-labor");
        assert_eq!(dns_label(&"a".repeat(100)).len(), 40);
    }

    #[test]
    fn the_name_is_validated_with_its_key() {
        let mut c = FleetConfig::default();
        assert!(c.validate().is_ok());
        c.name = "x".repeat(64);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("fleet.name"), "{e}");
        c.name = "bench\n1".into();
        assert!(c.validate().is_err());
        c.name = "Bench 1 (optics)".into();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_config_file_refuses_a_bad_fleet_section_naming_the_key() {
        use crate::config::Config;
        let c = Config::parse("[fleet]\nname = \"Optics bench\"\nbrowse = false\n").unwrap();
        assert_eq!(
            (c.fleet.name.as_str(), c.fleet.browse),
            ("Optics bench", false)
        );
        let long = format!("[fleet]\nname = \"{}\"\n", "x".repeat(64));
        let e = Config::parse(&long).unwrap_err().to_string();
        assert!(e.contains("fleet.name"), "{e}");
        let e = Config::parse("[fleet]\nannounced = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("announced"), "{e}");
    }

    #[test]
    fn the_view_of_a_fleet_that_never_started_shows_this_box() {
        let config = FleetConfig {
            name: "bench-a".into(),
            ..FleetConfig::default()
        };
        let fleet = Fleet::new(&config, "host");
        let mut r = BenchRecord::from_txt([("state", "ok"), ("rec", "1")], "bench-a");
        r.name = "bench-a".into();
        fleet.publish(r);
        let v = fleet.view(8080);
        assert_eq!(v["this"]["name"], "bench-a");
        assert_eq!(v["this"]["state"], "ok");
        assert_eq!(v["this"]["cameras_recording"], 1);
        assert_eq!(v["this"]["port"], 8080);
        assert_eq!(v["announcing"], false);
        assert_eq!(v["peers"].as_array().unwrap().len(), 0);
        assert!(fleet.instance().starts_with("bench-a-"));
        assert!(fleet.instance().ends_with("._benchcam._tcp.local."));
    }
}
