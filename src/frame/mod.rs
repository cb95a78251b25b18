//! Frame memory: the preallocated ring a camera captures into, and per-consumer delivery.

pub mod fanout;
pub mod ring;

pub use fanout::{Delivery, Fanout, Subscription};
pub use ring::{Frame, FrameMeta, FrameRing, PublishError};
