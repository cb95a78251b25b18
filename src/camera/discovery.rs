//! detect_cameras: which capture devices exist, per `[camera] source`.
//!
//! `auto` lists V4L2 cameras, then libcamera cameras (builds with the `libcamera`
//! feature), then falls back to the test pattern. A camera is listed once: V4L2 discovery
//! skips CSI receivers (unicam, rp1-cfe), which only libcamera can drive, and libcamera
//! cameras whose kernel nodes V4L2 already lists (UVC webcams) are left out in `auto`.

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

/// Discovery as the config says: V4L2 devices, libcamera cameras, test patterns, or all
/// real cameras with a test-pattern fallback (`auto`).
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
                        .with_jitter(c.pattern_jitter.0)
                        .with_noise(c.pattern_noise);
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

    /// libcamera cameras, leaving out those whose kernel nodes (device numbers) are in
    /// `skip_devices` because another backend already lists them.
    #[cfg(feature = "libcamera")]
    fn libcamera(&self, skip_devices: &[u64]) -> Vec<Arc<dyn CaptureDevice>> {
        use crate::capture::libcamera::{discover, SensorControls};
        discover(&SensorControls::from_config(&self.camera))
            .into_iter()
            .filter(|d| {
                let dup = d.system_devices().iter().any(|n| skip_devices.contains(n));
                if dup {
                    log::debug!(
                        "discovery: libcamera {} is listed through V4L2",
                        d.info().device
                    );
                }
                !dup
            })
            .map(|d| Arc::new(d) as Arc<dyn CaptureDevice>)
            .collect()
    }

    #[cfg(not(feature = "libcamera"))]
    fn libcamera(&self, _skip_devices: &[u64]) -> Vec<Arc<dyn CaptureDevice>> {
        Vec::new()
    }
}

/// Device numbers (st_rdev) of the device nodes behind `devices`.
fn device_numbers(devices: &[Arc<dyn CaptureDevice>]) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    devices
        .iter()
        .filter_map(|d| std::fs::metadata(&d.info().device).ok())
        .map(|m| m.rdev())
        .collect()
}

impl Discoverer for ConfigDiscoverer {
    fn discover(&self) -> Vec<Arc<dyn CaptureDevice>> {
        let mut found = match self.camera.source {
            CameraSource::Pattern => self.patterns(),
            CameraSource::V4l2 => self.v4l2(),
            // Config validation refuses this source in builds without the feature.
            CameraSource::Libcamera => self.libcamera(&[]),
            CameraSource::Auto => {
                let mut found = self.v4l2();
                let listed = device_numbers(&found);
                found.extend(self.libcamera(&listed));
                if found.is_empty() {
                    log::info!("discovery: no camera found; using the test pattern");
                    self.patterns()
                } else {
                    found
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
