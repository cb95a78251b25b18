//! Frame memory: the preallocated ring a camera captures into, and per-consumer delivery
//! (`fanout` for raw frames, `mailbox` for a viewer's encoded ones).

pub mod fanout;
pub mod mailbox;
pub mod ring;

pub use fanout::{Delivery, Fanout, Subscription};
pub use mailbox::{mailbox, Mailbox, MailboxSender};
pub use ring::{Frame, FrameMeta, FrameRing, PublishError};
