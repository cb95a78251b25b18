//! A viewer's mailbox: a small bounded queue between one producer thread (an encoder) and
//! one async reader (a viewer's session). The producer never waits: it puts a value in if
//! there is room (`try_send`) or replaces the oldest (`force_send`). The reader waits for
//! the next value without allocating, on a listener on its own future's stack; the
//! channel's own `recv` boxes a new listener each time it waits, which is once per frame
//! per viewer here.

use std::sync::Arc;

use event_listener::Event;

pub use async_channel::TrySendError;

/// The producer's end. Dropping it (or `close`) ends the mailbox: the reader gets what is
/// left, then `None`.
pub struct MailboxSender<T> {
    queue: async_channel::Sender<T>,
    ready: Arc<Event>,
}

/// The reader's end.
pub struct Mailbox<T> {
    queue: async_channel::Receiver<T>,
    ready: Arc<Event>,
}

/// A mailbox of `capacity` values (at least 1).
pub fn mailbox<T>(capacity: usize) -> (MailboxSender<T>, Mailbox<T>) {
    let (tx, rx) = async_channel::bounded(capacity.max(1));
    let ready = Arc::new(Event::new());
    (
        MailboxSender {
            queue: tx,
            ready: Arc::clone(&ready),
        },
        Mailbox { queue: rx, ready },
    )
}

impl<T> MailboxSender<T> {
    /// Puts `value` in if there is room; a full or closed mailbox gives it back.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.queue.try_send(value)?;
        self.ready.notify(usize::MAX);
        Ok(())
    }

    /// Puts `value` in, replacing the oldest value when full (returned: the reader never
    /// took it). A closed mailbox gives `value` back as the error.
    pub fn force_send(&self, value: T) -> Result<Option<T>, T> {
        let replaced = self.queue.force_send(value).map_err(|e| e.into_inner())?;
        self.ready.notify(usize::MAX);
        Ok(replaced)
    }

    /// Ends the mailbox now; the reader wakes and finds it closed once it is empty.
    pub fn close(&self) {
        self.queue.close();
        self.ready.notify(usize::MAX);
    }
}

impl<T> Drop for MailboxSender<T> {
    fn drop(&mut self) {
        // However the producer's end goes, a reader waiting on it wakes.
        self.close();
    }
}

impl<T> Mailbox<T> {
    /// The next value; `None` once the mailbox is closed and empty.
    pub async fn next(&self) -> Option<T> {
        loop {
            match self.queue.try_recv() {
                Ok(value) => return Some(value),
                Err(async_channel::TryRecvError::Closed) => return None,
                Err(async_channel::TryRecvError::Empty) => {}
            }
            event_listener::listener!(self.ready => listener);
            // A value put in before the listener was registered is not missed.
            match self.queue.try_recv() {
                Ok(value) => return Some(value),
                Err(async_channel::TryRecvError::Closed) => return None,
                Err(async_channel::TryRecvError::Empty) => listener.await,
            }
        }
    }

    /// The value waiting, if any.
    pub fn try_next(&self) -> Option<T> {
        self.queue.try_recv().ok()
    }

    /// Values waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_waiting_reader_wakes_for_a_value_sent_from_another_thread() {
        let (tx, rx) = mailbox::<u32>(1);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.try_send(7).unwrap();
            tx
        });
        assert_eq!(smol::block_on(rx.next()), Some(7));
        drop(sender.join().unwrap());
        assert_eq!(
            smol::block_on(rx.next()),
            None,
            "closed once the sender is gone"
        );
    }

    #[test]
    fn force_send_replaces_the_oldest_and_try_send_refuses_when_full() {
        let (tx, rx) = mailbox::<u32>(1);
        assert_eq!(tx.force_send(1).unwrap(), None);
        assert_eq!(tx.force_send(2).unwrap(), Some(1));
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.len(), 1);
        assert_eq!(rx.try_next(), Some(2));
        assert!(rx.is_empty());
    }

    #[test]
    fn closing_wakes_a_waiting_reader_after_what_is_left() {
        let (tx, rx) = mailbox::<u32>(2);
        tx.try_send(1).unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.close();
            tx
        });
        assert_eq!(smol::block_on(rx.next()), Some(1));
        assert_eq!(smol::block_on(rx.next()), None);
        let tx = closer.join().unwrap();
        assert!(matches!(tx.try_send(2), Err(TrySendError::Closed(2))));
        assert_eq!(tx.force_send(3), Err(3));
    }
}
