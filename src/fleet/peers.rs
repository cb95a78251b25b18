//! The peer table: the other benches seen on the LAN, bounded in entries and in what each
//! entry holds, so a flood of hostile announcements costs a fixed amount of memory.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::record::{bounded, BenchRecord};

/// Most peers kept; a new one beyond this replaces the one heard from longest ago. A lab
/// has tens of benches; 256 leaves room and bounds the table (~150 KiB at most).
pub const MAX_PEERS: usize = 256;

/// Most addresses kept per peer (a box has one or two interfaces, each IPv4 + IPv6).
pub const MAX_ADDRESSES: usize = 8;

/// Longest service instance or host name kept (a DNS name is at most 255 bytes).
pub const MAX_DNS_NAME: usize = 255;

/// One other bench, as last announced.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The mDNS service instance (`bench-3-1a2b3c4d._benchcam._tcp.local.`): the key.
    pub instance: String,
    /// The SRV target host (`bench-3-1a2b3c4d.local.`).
    pub host: String,
    pub addresses: Vec<IpAddr>,
    /// The web page's TCP port.
    pub port: u16,
    pub record: BenchRecord,
    /// When it first appeared, and when its record last arrived (monotonic).
    pub first_seen: Instant,
    pub last_seen: Instant,
}

impl Peer {
    /// The page link: the first IPv4 address (phones resolve `.local` names unevenly), else
    /// a routable IPv6 one in brackets (a link-local one needs a zone browsers do not take),
    /// else the host name.
    pub fn url(&self) -> String {
        let routable_v6 = |a: &&IpAddr| match a {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => false,
        };
        let authority = match self
            .addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(self.addresses.iter().find(routable_v6))
        {
            Some(IpAddr::V4(a)) => a.to_string(),
            Some(IpAddr::V6(a)) => format!("[{a}]"),
            None => self.host.trim_end_matches('.').to_string(),
        };
        format!("http://{authority}:{}{}", self.port, self.record.path)
    }
}

/// Peers by instance name.
#[derive(Default, Debug)]
pub struct PeerTable {
    peers: BTreeMap<String, Peer>,
    /// Peers pushed out because the table was full (a busy or hostile LAN).
    pub evicted: u64,
}

impl PeerTable {
    /// Records an announcement; returns true when the peer is new.
    pub fn upsert(
        &mut self,
        instance: &str,
        host: &str,
        mut addresses: Vec<IpAddr>,
        port: u16,
        record: BenchRecord,
        now: Instant,
    ) -> bool {
        let instance = bounded(instance, MAX_DNS_NAME);
        addresses.sort();
        addresses.dedup();
        addresses.truncate(MAX_ADDRESSES);
        let host = bounded(host, MAX_DNS_NAME);
        if let Some(peer) = self.peers.get_mut(&instance) {
            peer.host = host;
            peer.addresses = addresses;
            peer.port = port;
            peer.record = record;
            peer.last_seen = now;
            return false;
        }
        if self.peers.len() >= MAX_PEERS {
            let stalest = self
                .peers
                .values()
                .min_by_key(|p| p.last_seen)
                .map(|p| p.instance.clone())
                .expect("a full table has peers");
            self.peers.remove(&stalest);
            self.evicted += 1;
        }
        self.peers.insert(
            instance.clone(),
            Peer {
                instance,
                host,
                addresses,
                port,
                record,
                first_seen: now,
                last_seen: now,
            },
        );
        true
    }

    /// A goodbye or an expired record; returns whether the peer was known.
    pub fn remove(&mut self, instance: &str) -> bool {
        self.peers.remove(instance).is_some()
    }

    /// Drops peers not heard from for `max_age` (a box that lost power sends no goodbye;
    /// live ones refresh well within it). Returns how many went.
    pub fn expire(&mut self, now: Instant, max_age: Duration) -> usize {
        let before = self.peers.len();
        self.peers
            .retain(|_, p| now.saturating_duration_since(p.last_seen) <= max_age);
        before - self.peers.len()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Peers ordered by name, then instance.
    pub fn sorted(&self) -> Vec<Peer> {
        let mut out: Vec<Peer> = self.peers.values().cloned().collect();
        out.sort_by(|a, b| {
            (a.record.name.as_str(), a.instance.as_str())
                .cmp(&(b.record.name.as_str(), b.instance.as_str()))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::record::BenchState;

    fn record(name: &str) -> BenchRecord {
        BenchRecord::from_txt([("name", name), ("state", "ok")], name)
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_is_added_updated_and_removed() {
        let mut t = PeerTable::default();
        let t0 = Instant::now();
        assert!(t.upsert(
            "a._benchcam._tcp.local.",
            "a.local.",
            vec![addr("10.0.0.2")],
            8080,
            record("a"),
            t0
        ));
        let mut changed = record("a");
        changed.state = BenchState::Error;
        let t1 = t0 + Duration::from_secs(5);
        assert!(!t.upsert(
            "a._benchcam._tcp.local.",
            "a.local.",
            vec![addr("10.0.0.2")],
            8080,
            changed,
            t1
        ));
        let peers = t.sorted();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].record.state, BenchState::Error);
        assert_eq!((peers[0].first_seen, peers[0].last_seen), (t0, t1));
        assert!(t.remove("a._benchcam._tcp.local."));
        assert!(!t.remove("a._benchcam._tcp.local."));
        assert!(t.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_the_stalest_peer_makes_room() {
        let mut t = PeerTable::default();
        let t0 = Instant::now();
        for i in 0..MAX_PEERS {
            let at = t0 + Duration::from_millis(i as u64 + 1);
            t.upsert(&format!("p{i}"), "h", vec![], 1, record("p"), at);
        }
        // p0 speaks again, so p1 is now the stalest.
        t.upsert(
            "p0",
            "h",
            vec![],
            1,
            record("p"),
            t0 + Duration::from_secs(10),
        );
        for i in 0..10 {
            let at = t0 + Duration::from_secs(20 + i);
            t.upsert(&format!("flood{i}"), "h", vec![], 1, record("f"), at);
        }
        assert_eq!(t.len(), MAX_PEERS);
        assert_eq!(t.evicted, 10);
        let names: Vec<String> = t.sorted().into_iter().map(|p| p.instance).collect();
        assert!(names.contains(&"p0".to_string()));
        assert!(!names.contains(&"p1".to_string()));
    }

    #[test]
    fn what_a_peer_holds_is_bounded() {
        let mut t = PeerTable::default();
        let many: Vec<IpAddr> = (0..100).map(|i| addr(&format!("10.0.1.{i}"))).collect();
        let long = "x".repeat(5000);
        t.upsert(&long, &long, many, 1, record("x"), Instant::now());
        let p = &t.sorted()[0];
        assert_eq!(p.addresses.len(), MAX_ADDRESSES);
        assert_eq!(
            (p.instance.len(), p.host.len()),
            (MAX_DNS_NAME, MAX_DNS_NAME)
        );
    }

    #[test]
    fn silent_peers_expire() {
        let mut t = PeerTable::default();
        let t0 = Instant::now();
        t.upsert("old", "h", vec![], 1, record("old"), t0);
        t.upsert(
            "new",
            "h",
            vec![],
            1,
            record("new"),
            t0 + Duration::from_secs(100),
        );
        assert_eq!(
            t.expire(t0 + Duration::from_secs(150), Duration::from_secs(90)),
            1
        );
        assert_eq!(t.sorted()[0].instance, "new");
    }

    #[test]
    fn the_link_prefers_ipv4_then_ipv6_then_the_host() {
        let mut p = Peer {
            instance: "a".into(),
            host: "a-1.local.".into(),
            addresses: vec![addr("fe80::1"), addr("192.168.1.7")],
            port: 8080,
            record: record("a"),
            first_seen: Instant::now(),
            last_seen: Instant::now(),
        };
        assert_eq!(p.url(), "http://192.168.1.7:8080/");
        p.addresses = vec![addr("fd00::7")];
        assert_eq!(p.url(), "http://[fd00::7]:8080/");
        p.addresses = vec![addr("fe80::7")];
        assert_eq!(p.url(), "http://a-1.local:8080/");
    }
}
