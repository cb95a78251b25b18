//! Per-consumer delivery of frames (and of encoded units: the fanout is generic over what
//! it carries). The producer offers every item to every subscriber and never waits: an in-order subscriber (the recorder) gets a bounded
//! queue, a latest-only subscriber (live view, callbacks) a single mailbox. Whatever
//! does not fit is dropped and counted on that subscriber.
//!
//! When the stream breaks (camera lost, no signal) the capture loop calls
//! [`Fanout::interrupt`]: each subscriber is woken and can see, once its queue is empty,
//! that no frame will follow the last one soon (the recorder closes its clip there).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::ring::Frame;

/// How a subscriber wants frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Every frame in order, at most this many waiting; newer frames are dropped when full.
    InOrder(usize),
    /// Only the newest frame; an unread one is replaced (and counted as dropped).
    Latest,
}

/// One subscriber's mailbox and counters.
pub struct Subscriber<T = Frame> {
    name: String,
    delivery: Delivery,
    queue: Mutex<VecDeque<T>>,
    ready: Condvar,
    delivered: AtomicU64,
    dropped: AtomicU64,
    closed: AtomicBool,
    /// Set by [`Fanout::interrupt`], cleared by [`Subscriber::take_interruption`].
    interrupted: AtomicBool,
    /// Set with `interrupted`; makes one waiting `recv_timeout` return early.
    wake: AtomicBool,
}

impl<T: Clone> Subscriber<T> {
    fn offer(&self, frame: &T) {
        // A closed subscriber drains what it has and takes nothing new: a recorder that
        // is behind capture would otherwise never reach an empty queue and never stop.
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut queue = self.queue.lock().expect("subscriber queue poisoned");
        match self.delivery {
            Delivery::InOrder(capacity) if queue.len() >= capacity => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Delivery::InOrder(_) => queue.push_back(frame.clone()),
            Delivery::Latest => {
                if queue.pop_front().is_some() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                queue.push_back(frame.clone());
            }
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        drop(queue);
        self.ready.notify_one();
    }

    /// Waits up to `timeout` for the next frame. `None` on timeout or after close.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        let mut queue = self.queue.lock().expect("subscriber queue poisoned");
        loop {
            if let Some(frame) = queue.pop_front() {
                return Some(frame);
            }
            if self.closed.load(Ordering::Acquire) || self.wake.swap(false, Ordering::AcqRel) {
                return None;
            }
            let (q, result) = self
                .ready
                .wait_timeout(queue, timeout)
                .expect("subscriber queue poisoned");
            queue = q;
            if result.timed_out() {
                return queue.pop_front();
            }
        }
    }

    /// Wakes the consuming thread; `recv_timeout` returns `None` once the queue is empty.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether the stream broke since the last call, once every frame sent before the
    /// break has been taken (`false` while frames are still queued).
    pub fn take_interruption(&self) -> bool {
        let queue = self.queue.lock().expect("subscriber queue poisoned");
        queue.is_empty() && self.interrupted.swap(false, Ordering::AcqRel)
    }

    /// Takes a waiting frame without blocking.
    pub fn try_recv(&self) -> Option<T> {
        self.queue
            .lock()
            .expect("subscriber queue poisoned")
            .pop_front()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Frames put in this subscriber's mailbox.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Frames this subscriber lost because it was not keeping up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn pending(&self) -> usize {
        self.queue.lock().expect("subscriber queue poisoned").len()
    }
}

/// The list of subscribers of one camera.
pub struct Fanout<T = Frame> {
    subscribers: Mutex<Vec<Arc<Subscriber<T>>>>,
}

impl<T> Default for Fanout<T> {
    fn default() -> Self {
        Fanout {
            subscribers: Mutex::new(Vec::new()),
        }
    }
}

impl<T: Clone> Fanout<T> {
    pub fn new() -> Arc<Fanout<T>> {
        Arc::new(Fanout::default())
    }

    /// Offers `frame` to every subscriber. Never blocks beyond the short list lock.
    pub fn publish(&self, frame: &T) {
        for subscriber in self.subscribers.lock().expect("fanout poisoned").iter() {
            subscriber.offer(frame);
        }
    }

    /// Adds a subscriber; it receives frames until the returned guard is dropped.
    pub fn subscribe(self: &Arc<Self>, name: &str, delivery: Delivery) -> Subscription<T> {
        let capacity = match delivery {
            Delivery::InOrder(n) => n,
            Delivery::Latest => 1,
        };
        let subscriber = Arc::new(Subscriber {
            name: name.to_string(),
            delivery,
            queue: Mutex::new(VecDeque::with_capacity(capacity + 1)),
            ready: Condvar::new(),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            wake: AtomicBool::new(false),
        });
        self.subscribers
            .lock()
            .expect("fanout poisoned")
            .push(Arc::clone(&subscriber));
        Subscription {
            fanout: Arc::clone(self),
            subscriber,
        }
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.lock().expect("fanout poisoned").len()
    }

    /// Names, delivered and dropped counts of the current subscribers.
    pub fn stats(&self) -> Vec<(String, u64, u64)> {
        self.subscribers
            .lock()
            .expect("fanout poisoned")
            .iter()
            .map(|s| (s.name.clone(), s.delivered(), s.dropped()))
            .collect()
    }

    /// Tells every subscriber that the stream broke after the last frame published (the
    /// camera was lost or stopped sending); wakes the waiting ones.
    pub fn interrupt(&self) {
        for s in self.subscribers.lock().expect("fanout poisoned").iter() {
            s.interrupted.store(true, Ordering::Release);
            s.wake.store(true, Ordering::Release);
            // Taking the queue lock orders the flag before a waiter's check.
            drop(s.queue.lock().expect("subscriber queue poisoned"));
            s.ready.notify_all();
        }
    }

    /// Wakes every waiting subscriber so its thread can notice shutdown.
    pub fn close_all(&self) {
        for s in self.subscribers.lock().expect("fanout poisoned").iter() {
            s.close();
        }
    }
}

/// RAII guard for one subscriber: dropping it unsubscribes and releases queued frames.
pub struct Subscription<T = Frame> {
    fanout: Arc<Fanout<T>>,
    subscriber: Arc<Subscriber<T>>,
}

impl<T> Subscription<T> {
    pub fn subscriber(&self) -> &Arc<Subscriber<T>> {
        &self.subscriber
    }
}

impl<T> std::ops::Deref for Subscription<T> {
    type Target = Subscriber<T>;

    fn deref(&self) -> &Subscriber<T> {
        &self.subscriber
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        self.fanout
            .subscribers
            .lock()
            .expect("fanout poisoned")
            .retain(|s| !Arc::ptr_eq(s, &self.subscriber));
        self.subscriber
            .queue
            .lock()
            .expect("subscriber queue poisoned")
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::PixelFormat;
    use crate::frame::{FrameMeta, FrameRing};

    fn meta(number: u64) -> FrameMeta {
        FrameMeta {
            number,
            timestamp_us: number,
            wall_us: 0,
            width: 2,
            height: 2,
            format: PixelFormat::I420,
            driver_dropped_before: 0,
        }
    }

    #[test]
    fn in_order_keeps_order_and_counts_overflow() {
        let fanout = Fanout::new();
        let mut ring = FrameRing::new(8, 8, PixelFormat::I420, 2, 2);
        let recorder = fanout.subscribe("recorder", Delivery::InOrder(3));
        for n in 0..5 {
            let f = ring.publish(meta(n), &[n as u8; 6]).unwrap();
            fanout.publish(&f);
        }
        let got: Vec<u64> = std::iter::from_fn(|| recorder.try_recv())
            .map(|f| f.number)
            .collect();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!((recorder.delivered(), recorder.dropped()), (3, 2));
    }

    #[test]
    fn latest_only_replaces_and_frees_slots() {
        let fanout = Fanout::new();
        let mut ring = FrameRing::new(2, 8, PixelFormat::I420, 2, 2);
        let viewer = fanout.subscribe("viewer", Delivery::Latest);
        // A viewer that never reads holds at most one slot: the ring never fills.
        for n in 0..10 {
            let f = ring
                .publish(meta(n), &[0; 6])
                .expect("a slow viewer must not fill the ring");
            fanout.publish(&f);
        }
        assert_eq!(viewer.try_recv().unwrap().number, 9);
        // Once closed, nothing new is queued, so a slow consumer's drain ends.
        viewer.close();
        let f = ring.publish(meta(10), &[0; 6]).unwrap();
        fanout.publish(&f);
        assert!(viewer.try_recv().is_none());
        drop(f);
        assert_eq!(viewer.dropped(), 9);
        drop(viewer);
        assert_eq!(ring.slots_in_use(), 0);
        assert!(fanout.stats().is_empty());
    }

    #[test]
    fn an_interruption_is_seen_after_the_frames_sent_before_it() {
        let fanout = Fanout::new();
        let mut ring = FrameRing::new(4, 8, PixelFormat::I420, 2, 2);
        let recorder = fanout.subscribe("recorder", Delivery::InOrder(3));
        let f = ring.publish(meta(0), &[0; 6]).unwrap();
        fanout.publish(&f);
        drop(f);
        fanout.interrupt();
        // The queued frame first; the break only once the queue is empty.
        assert!(!recorder.take_interruption());
        let t0 = std::time::Instant::now();
        assert_eq!(
            recorder
                .recv_timeout(Duration::from_secs(5))
                .unwrap()
                .number,
            0
        );
        assert!(recorder.recv_timeout(Duration::from_secs(5)).is_none());
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "the break wakes the reader"
        );
        assert!(recorder.take_interruption());
        assert!(!recorder.take_interruption(), "seen once");
        // Only one early return: a reader that ignores breaks does not spin.
        let t0 = std::time::Instant::now();
        assert!(recorder.recv_timeout(Duration::from_millis(200)).is_none());
        assert!(t0.elapsed() >= Duration::from_millis(150));
    }
}
