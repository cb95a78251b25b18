//! Encoders: H.264 for clips, JPEG for live view, and the YUV views they read.

pub mod h264;
pub mod jpeg;
pub mod yuv;
