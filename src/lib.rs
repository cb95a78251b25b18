//! benchcam: the camera service of a lab-bench appliance.

pub mod app;
pub mod board;
pub mod camera;
pub mod capture;
pub mod clock;
pub mod config;
pub mod encode;
pub mod error;
pub mod experiment;
pub mod fleet;
pub mod frame;
pub mod gpio;
pub mod host;
pub mod live;
pub mod malloc;
pub mod record;
pub mod replicate;
pub mod settings;
pub mod storage;
pub mod v4l2;
pub mod web;
