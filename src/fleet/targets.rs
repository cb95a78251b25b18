//! `benchcam fleet-targets`: browse mDNS for a while and write the benches found as a
//! Prometheus file-based service discovery file (`file_sd_configs`), atomically.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceEvent};
use serde_json::{json, Value};

use super::peers::{Peer, PeerTable};
use super::{resolved_peer, SERVICE_TYPE};
use crate::error::{Error, ErrorKind, Result};

/// The benches that answer within `duration`, this machine's own included.
pub fn browse(duration: Duration) -> Result<Vec<Peer>> {
    let mdns = ServiceDaemon::new()
        .map_err(|e| Error::new(ErrorKind::Io, format!("starting mDNS: {e}")))?;
    let events = mdns
        .browse(SERVICE_TYPE)
        .map_err(|e| Error::new(ErrorKind::Io, format!("browsing {SERVICE_TYPE}: {e}")))?;
    let mut table = PeerTable::default();
    let end = Instant::now() + duration;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(s)) => {
                let (instance, host, addresses, port, record) = resolved_peer(&s);
                table.upsert(&instance, &host, addresses, port, record, Instant::now());
            }
            Ok(ServiceEvent::ServiceRemoved(_, instance)) => {
                table.remove(&instance);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if let Ok(done) = mdns.shutdown() {
        let _ = done.recv_timeout(Duration::from_secs(1));
    }
    Ok(table.sorted())
}

/// `host:port` Prometheus scrapes: the first IPv4 address, else the first IPv6 one, else
/// the host name. `None` for a peer without a port.
fn target(p: &Peer) -> Option<String> {
    if p.port == 0 {
        return None;
    }
    let host = match p
        .addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(p.addresses.first())
    {
        Some(IpAddr::V4(a)) => a.to_string(),
        Some(IpAddr::V6(a)) => format!("[{a}]"),
        None => p.host.trim_end_matches('.').to_string(),
    };
    Some(format!("{host}:{}", p.port))
}

/// The file_sd document: one target group per bench, labelled with its name.
pub fn file_sd(peers: &[Peer]) -> Value {
    let groups: Vec<Value> = peers
        .iter()
        .filter_map(|p| {
            let target = target(p)?;
            Some(json!({
                "targets": [target],
                "labels": {
                    "bench": p.record.name,
                    "benchcam_instance": p.instance.trim_end_matches(&format!(".{SERVICE_TYPE}")),
                    "benchcam_version": p.record.version,
                },
            }))
        })
        .collect();
    Value::Array(groups)
}

/// Writes the file_sd document to `out` (tmp + rename, so Prometheus never reads half a
/// file), or prints it with `out` = None.
pub fn write(peers: &[Peer], out: Option<&Path>) -> Result<()> {
    let mut text = serde_json::to_string_pretty(&file_sd(peers)).expect("JSON values serialise");
    text.push('\n');
    match out {
        Some(path) => crate::storage::write_atomic(path, text.as_bytes()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::record::BenchRecord;

    fn peer(name: &str, addresses: &[&str], port: u16) -> Peer {
        Peer {
            instance: format!("{name}-1a2b3c4d.{SERVICE_TYPE}"),
            host: format!("{name}-1a2b3c4d.local."),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            port,
            record: BenchRecord::from_txt([("name", name), ("ver", "0.1.0")], name),
            first_seen: Instant::now(),
            last_seen: Instant::now(),
        }
    }

    #[test]
    fn each_bench_is_one_labelled_target_group() {
        let peers = [
            peer("bench-a", &["fe80::2", "10.0.0.2"], 8080),
            peer("bench-b", &["fd00::3"], 80),
            peer("bench-c", &[], 8080),
            peer("no-port", &["10.0.0.9"], 0),
        ];
        let sd = file_sd(&peers);
        let groups = sd.as_array().unwrap();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0]["targets"], json!(["10.0.0.2:8080"]));
        assert_eq!(groups[0]["labels"]["bench"], "bench-a");
        assert_eq!(groups[0]["labels"]["benchcam_instance"], "bench-a-1a2b3c4d");
        assert_eq!(groups[1]["targets"], json!(["[fd00::3]:80"]));
        assert_eq!(groups[2]["targets"], json!(["bench-c-1a2b3c4d.local:8080"]));
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("benchcam.json");
        std::fs::write(&path, "old").unwrap();
        write(&[peer("bench-a", &["10.0.0.2"], 8080)], Some(&path)).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v[0]["targets"][0], "10.0.0.2:8080");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }
}
