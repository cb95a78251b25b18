//! Who may hold a connection: caps per client address and in all, and what makes way for
//! a new client when they are reached, so that idle or trickling sockets (a broken
//! script, a scanner, slowloris) can never lock a phone out.
//!
//! Every accepted connection gets a [`Ticket`]. A connection is *busy* while a request
//! is being answered (from its complete head until the response body has been sent, which
//! for an MJPEG stream is as long as it plays) and *idle* otherwise: before its first
//! request, or between keep-alive requests. Then:
//! - an idle connection that has not sent a whole request head within [`HEAD_TIMEOUT`]
//!   of connecting, or of its previous response, is closed (the reaper runs once a
//!   second);
//! - at [`PER_CLIENT`] connections from one address, or [`MAX_CONNECTIONS`] in all, the
//!   oldest idle connection (of that address, or of anyone) is closed to make room;
//!   never-served ones go before keep-alive ones. Only when every connection is busy is
//!   the new one refused.
//!
//! Busy connections are bounded elsewhere: viewers by `streaming.max_sessions`, stalled
//! readers by the stall guard (10 s), bodies and heads by size limits.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most connections open at once. Each costs a task and buffers.
pub const MAX_CONNECTIONS: usize = 256;
/// Most connections from one client address (a phone opens ~6; a page with viewers more).
pub const PER_CLIENT: usize = 32;
/// An idle connection must send a whole request head within this (from connecting, or
/// from its previous response); a phone sends it at once.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every connection is answering a request; none can make way.
    AllBusy,
}

struct Entry {
    id: u64,
    ip: IpAddr,
    /// Requests being answered now (0 or 1 for HTTP/1).
    busy: u32,
    /// Whether the connection ever got a whole request head.
    served: bool,
    /// When the connection last became idle (connected, or its last response ended).
    idle_since: Instant,
    /// Closes the connection: its task races this against serving.
    close: async_channel::Sender<()>,
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionStats {
    pub open: usize,
    /// Idle connections closed to make room for a new one.
    pub evicted: u64,
    /// Idle connections closed for sending no request head within `HEAD_TIMEOUT`.
    pub timed_out: u64,
    /// New connections refused because all were busy.
    pub refused: u64,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    entries: Vec<Entry>,
    stats: AdmissionStats,
}

/// The admission state of one server.
#[derive(Default)]
pub struct Admission {
    inner: Mutex<Inner>,
}

/// One admitted connection; dropping it frees its place.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    /// Yields (or closes) when the connection must end.
    pub closed: async_channel::Receiver<()>,
}

/// A request being answered; dropping it makes the connection idle again.
pub struct Busy {
    admission: Arc<Admission>,
    id: u64,
}

impl Admission {
    pub fn new() -> Arc<Admission> {
        Arc::new(Admission::default())
    }

    /// Admits a connection from `ip` at `now`, closing an idle one if a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Ticket, Refused> {
        let mut inner = self.inner.lock().expect("admission poisoned");
        let from_ip = inner.entries.iter().filter(|e| e.ip == ip).count();
        if from_ip >= PER_CLIENT && !inner.evict_oldest_idle(Some(ip)) {
            inner.stats.refused += 1;
            return Err(Refused::AllBusy);
        }
        if inner.entries.len() >= MAX_CONNECTIONS && !inner.evict_oldest_idle(None) {
            inner.stats.refused += 1;
            return Err(Refused::AllBusy);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let (close, closed) = async_channel::bounded(1);
        inner.entries.push(Entry {
            id,
            ip,
            busy: 0,
            served: false,
            idle_since: now,
            close,
        });
        inner.stats.open = inner.entries.len();
        Ok(Ticket {
            admission: Arc::clone(self),
            id,
            closed,
        })
    }

    /// Closes idle connections that sent no request head within `HEAD_TIMEOUT`.
    pub fn reap(&self, now: Instant) {
        let mut inner = self.inner.lock().expect("admission poisoned");
        let mut timed_out = 0;
        for e in &inner.entries {
            let late = now.saturating_duration_since(e.idle_since) >= HEAD_TIMEOUT;
            if e.busy == 0 && late && !e.close.is_closed() {
                e.close.close();
                timed_out += 1;
            }
        }
        // Closed entries leave when their connection task drops its ticket.
        inner.stats.timed_out += timed_out;
    }

    pub fn stats(&self) -> AdmissionStats {
        self.inner.lock().expect("admission poisoned").stats
    }
}

impl Inner {
    /// Closes the oldest idle connection (of `ip` if given): never-served before served.
    /// `false` when there is none.
    fn evict_oldest_idle(&mut self, ip: Option<IpAddr>) -> bool {
        let victim = self
            .entries
            .iter()
            .filter(|e| e.busy == 0 && !e.close.is_closed() && ip.is_none_or(|ip| e.ip == ip))
            .min_by_key(|e| (e.served, e.idle_since, e.id))
            .map(|e| e.id);
        let Some(id) = victim else {
            return false;
        };
        // Dropped from the list now, so the new connection has its place at once; the
        // old task ends as soon as it sees the close.
        if let Some(pos) = self.entries.iter().position(|e| e.id == id) {
            let e = self.entries.swap_remove(pos);
            e.close.close();
        }
        self.stats.evicted += 1;
        self.stats.open = self.entries.len();
        true
    }

    fn entry(&mut self, id: u64) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.id == id)
    }
}

impl Ticket {
    /// A whole request head arrived: the connection is busy until the guard drops (hold
    /// it until the response body has been sent).
    pub fn request_started(&self) -> Busy {
        let mut inner = self.admission.inner.lock().expect("admission poisoned");
        if let Some(e) = inner.entry(self.id) {
            e.busy += 1;
            e.served = true;
        }
        Busy {
            admission: Arc::clone(&self.admission),
            id: self.id,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.admission.inner.lock().expect("admission poisoned");
        inner.entries.retain(|e| e.id != self.id);
        inner.stats.open = inner.entries.len();
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut inner = self.admission.inner.lock().expect("admission poisoned");
        if let Some(e) = inner.entry(self.id) {
            e.busy = e.busy.saturating_sub(1);
            if e.busy == 0 {
                e.idle_since = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_way() {
        let a = Admission::new();
        let t0 = Instant::now();
        let mut tickets: Vec<Ticket> = (0..MAX_CONNECTIONS)
            .map(|i| {
                a.admit(
                    ip((i % 200) as u8 + 1),
                    t0 + Duration::from_millis(i as u64),
                )
                .unwrap()
            })
            .collect();
        // The first one is serving a request: it is not the one to go.
        let _busy = tickets[0].request_started();
        let newcomer = a.admit(ip(250), t0 + Duration::from_secs(1)).unwrap();
        assert!(
            tickets[1].closed.is_closed(),
            "the oldest idle one was closed"
        );
        assert!(!tickets[0].closed.is_closed(), "a busy one never is");
        assert_eq!(a.stats().evicted, 1);
        assert_eq!(a.stats().open, MAX_CONNECTIONS);
        drop(newcomer);
        tickets.truncate(1);
        assert_eq!(a.stats().open, 1);
    }

    #[test]
    fn one_client_cannot_take_every_place() {
        let a = Admission::new();
        let now = Instant::now();
        let mine: Vec<Ticket> = (0..PER_CLIENT)
            .map(|_| a.admit(ip(1), now).unwrap())
            .collect();
        // A 33rd from the same address closes that address's oldest idle connection ...
        let _extra = a.admit(ip(1), now).unwrap();
        assert!(mine[0].closed.is_closed());
        // ... and when all of its connections are busy, it is refused; others are not.
        let busy: Vec<Busy> = mine[1..].iter().map(|t| t.request_started()).collect();
        let _b = _extra.request_started();
        assert_eq!(a.admit(ip(1), now).err(), Some(Refused::AllBusy));
        assert!(a.admit(ip(2), now).is_ok());
        drop(busy);
    }

    #[test]
    fn idle_connections_without_a_request_head_time_out() {
        let a = Admission::new();
        let t0 = Instant::now();
        let idle = a.admit(ip(1), t0).unwrap();
        let served = a.admit(ip(2), t0).unwrap();
        let streaming = a.admit(ip(3), t0).unwrap();
        drop(served.request_started());
        let _stream = streaming.request_started();
        a.reap(t0 + HEAD_TIMEOUT - Duration::from_millis(1));
        assert!(!idle.closed.is_closed());
        a.reap(t0 + HEAD_TIMEOUT);
        assert!(idle.closed.is_closed(), "no request head in time");
        // A keep-alive connection's clock restarts at its last response.
        assert!(!served.closed.is_closed());
        a.reap(Instant::now() + HEAD_TIMEOUT);
        assert!(served.closed.is_closed());
        assert!(!streaming.closed.is_closed(), "a playing stream is busy");
        assert_eq!(a.stats().timed_out, 2);
    }
}
