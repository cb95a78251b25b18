//! benchcam: the camera service of a lab-bench appliance.

pub mod app;
pub mod camera;
pub mod capture;
pub mod clock;
pub mod config;
pub mod encode;
pub mod error;
pub mod frame;
pub mod record;
pub mod storage;
pub mod web;
