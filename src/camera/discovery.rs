//! detect_cameras: which capture devices exist, per `[camera] source`.

use std::path::Path;
use std::sync::Arc;

use crate::capture::pattern::PatternDevice;
use crate::capture::{v4l2, CaptureDevice, PixelFormat};
use crate::clock::Clock;
use crate::config::{CameraConfig, CameraSource};

/// Finds cameras. Real hardware and test setups provide their own.
pub trait Discoverer: Send + Sync {
    fn discover(&self) -> Vec<Arc<dyn CaptureDevice>>;
}

/// Discovery as the config says: V4L2 devices, test patterns, or V4L2 with a
/// test-pattern fallback (`auto`).
pub struct ConfigDiscoverer {
    pub camera: CameraConfig,
    pub clock: Arc<dyn Clock>,
}

impl ConfigDiscoverer {
    fn patterns(&self) -> Vec<Arc<dyn CaptureDevice>> {
        let c = &self.camera;
        (0..c.pattern_cameras)
            .map(|i| {
                let format = PixelFormat::parse(&c.pattern_format).unwrap_or(PixelFormat::I420);
                let device =
                    PatternDevice::new(i, c.width, c.height, c.fps, Arc::clone(&self.clock))
                        .with_formats(&[format])
                        .with_jitter(c.pattern_jitter.0);
                Arc::new(device) as Arc<dyn CaptureDevice>
            })
            .collect()
    }

    fn v4l2(&self) -> Vec<Arc<dyn CaptureDevice>> {
        if self.camera.devices.is_empty() {
            return v4l2::discover()
                .into_iter()
                .map(|d| Arc::new(d) as Arc<dyn CaptureDevice>)
                .collect();
        }
        self.camera
            .devices
            .iter()
            .filter_map(|path| match v4l2::V4l2Device::probe(Path::new(path)) {
                Ok(d) => Some(Arc::new(d) as Arc<dyn CaptureDevice>),
                Err(e) => {
                    log::warn!("discovery: configured camera {path} unusable: {e}");
                    None
                }
            })
            .collect()
    }
}

impl Discoverer for ConfigDiscoverer {
    fn discover(&self) -> Vec<Arc<dyn CaptureDevice>> {
        let mut found = match self.camera.source {
            CameraSource::Pattern => self.patterns(),
            CameraSource::V4l2 => self.v4l2(),
            CameraSource::Libcamera => {
                log::error!("discovery: this build has no libcamera backend");
                Vec::new()
            }
            CameraSource::Auto => {
                let v = self.v4l2();
                if v.is_empty() {
                    log::info!("discovery: no V4L2 camera found; using the test pattern");
                    self.patterns()
                } else {
                    v
                }
            }
        };
        found.truncate(self.camera.max_cameras);
        found
    }
}

/// Discovery that always returns the same devices (tests, benchmarks).
pub struct FixedDiscoverer(pub Vec<Arc<dyn CaptureDevice>>);

impl Discoverer for FixedDiscoverer {
    fn discover(&self) -> Vec<Arc<dyn CaptureDevice>> {
        self.0.clone()
    }
}
