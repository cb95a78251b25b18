//! Encoders: the encoder stage (one H.264 encode per frame for clips and live viewers, into
//! the encoded ring), JPEG for live view, the MJPEG decoder that feeds H.264 from
//! JPEG cameras, and the YUV views they read.

pub mod fmp4;
pub mod h264;
pub mod jpeg;
pub mod jpeg_fdct;
pub mod jpeg_huffman;
pub mod jpeg_planar;
pub mod jpeg_scan;
pub mod live_timeline;
pub mod mjpeg;
pub mod openh264;
pub mod placeholder;
pub mod ring;
pub mod stage;
pub mod v4l2m2m;
pub mod yuv;
