//! Rolling clip recording: the recorder thread, MP4 muxing and the clip index.

pub mod fmp4;
pub mod index;
pub mod recorder;
pub mod span;
