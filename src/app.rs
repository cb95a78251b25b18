//! Wiring: open storage, discover cameras, start capture and recording, serve the web
//! page; shut down in reverse order so the open clips are finalised.

use std::sync::Arc;

use crate::camera::discovery::{ConfigDiscoverer, Discoverer};
use crate::camera::CameraService;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::experiment::ExperimentService;
use crate::record::index::RecordingType;
use crate::storage::{Limits, SpaceProbe, Statvfs, Storage};
use crate::web::{self, AppState};

/// The hardware the service runs on: real, or simulated for tests.
pub struct Hardware {
    pub clock: Arc<dyn Clock>,
    pub discoverer: Box<dyn Discoverer>,
    pub space: Box<dyn SpaceProbe>,
}

impl Hardware {
    /// The machine's clocks, V4L2 cameras (or the test pattern), statvfs.
    pub fn real(config: &Config) -> Hardware {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Hardware {
            discoverer: Box::new(ConfigDiscoverer {
                camera: config.camera.clone(),
                clock: Arc::clone(&clock),
            }),
            clock,
            space: Box::new(Statvfs),
        }
    }
}

pub fn limits(config: &Config) -> Limits {
    Limits {
        max_clips: config.recording.rolling_clips_count,
        max_bytes: config.recording.max_rolling_size.0,
        min_free: config.recording.min_free_space.0,
    }
}

/// A started service; `shutdown` stops it in reverse order.
pub struct App {
    pub service: Arc<CameraService>,
    pub experiments: Arc<ExperimentService>,
    pub state: Arc<AppState>,
}

impl App {
    /// Opens storage (recovering clips left open by a crash), discovers cameras,
    /// starts capture and, if configured, rolling recording.
    pub fn start(config: Config, hardware: Hardware) -> Result<App> {
        // Settings changed from the web page (data_dir/settings.toml) override the file.
        let config = crate::settings::overlay_saved(config);
        let (config_auto, config_experiments) =
            (config.auto_recording.clone(), config.experiments.clone());
        let storage = Storage::open(&config.service.data_dir, limits(&config), hardware.space)?;
        let service =
            CameraService::new(config.clone(), hardware.clock, storage, hardware.discoverer);
        let cameras = service.detect_cameras()?;
        let auto = &config.auto_recording;
        if auto.enabled && auto.start_on_boot {
            for camera in &cameras {
                if let Err(e) = service.start_recording(&camera.id, RecordingType::Rolling) {
                    log::error!("auto recording {}: {e}", camera.id);
                }
            }
        }
        let state = AppState::new(Arc::clone(&service), config);
        let experiments = ExperimentService::new(
            Arc::clone(&service),
            Arc::clone(&service.storage),
            config_auto,
            config_experiments,
        );
        experiments.recover();
        Ok(App {
            service,
            experiments,
            state,
        })
    }

    pub fn shutdown(&self) {
        self.service.shutdown();
    }
}

/// Runs the service until `shutdown` fires: the web server on `listener`, everything
/// else on threads. Returns after clips are finalised.
pub fn run(
    config: Config,
    hardware: Hardware,
    listener: std::net::TcpListener,
    shutdown: async_channel::Receiver<()>,
) -> Result<()> {
    let app = App::start(config, hardware)?;
    let listener = smol::net::TcpListener::try_from(listener)
        .map_err(|e| Error::io(e, "registering listener"))?;
    log::info!(
        "web: listening on http://{}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    notify_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("capturing"),
    ]);
    smol::block_on(web::run(listener, Arc::clone(&app.state), shutdown));
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    app.shutdown();
    log::info!("benchcam stopped; clips finalised");
    Ok(())
}

fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    // A no-op without NOTIFY_SOCKET (not started by systemd).
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("systemd notify: {e}");
    }
}
