//! Wiring: open storage, discover cameras, start capture and recording, serve the web
//! page; shut down in reverse order so the open clips are finalised.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::board::Board;
use crate::camera::discovery::{ConfigDiscoverer, Discoverer};
use crate::camera::CameraService;
use crate::clock::{Clock, StepWatch, SystemClock};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::experiment::ExperimentService;
use crate::fleet::record::{BenchRecord, BenchState, LastExperiment};
use crate::gpio::{Backend, Gpio, Health as LedHealth, LedState};
use crate::record::index::RecordingType;
use crate::storage::{DataDevice, Limits, SpaceProbe, Statvfs, Storage};
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
    supervisor: Mutex<Option<Supervisor>>,
    pub service: Arc<CameraService>,
    pub experiments: Arc<ExperimentService>,
    pub state: Arc<AppState>,
}

impl App {
    /// Opens storage (recovering clips left open by a crash), discovers cameras,
    /// starts capture and, if configured, rolling recording.
    pub fn start(config: Config, hardware: Hardware) -> Result<App> {
        // Here rather than in main: the benches and tests then measure the service as it runs.
        crate::malloc::limit_arenas();
        // Settings changed from the web page (data_dir/settings.toml) override the file.
        let config = crate::settings::overlay_saved(config);
        let (config_auto, config_experiments) =
            (config.auto_recording.clone(), config.experiments.clone());
        let device = DataDevice::parse(&config.service.data_device)
            .map_err(|why| Error::new(ErrorKind::InvalidInput, why))?;
        let storage = Storage::open(
            &config.service.data_dir,
            device,
            limits(&config),
            hardware.space,
        )?;
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
        let experiments = ExperimentService::new(
            Arc::clone(&service),
            Arc::clone(&service.storage),
            config_auto,
            config_experiments,
        );
        let replication = crate::replicate::start(
            &config.replication,
            Arc::clone(&service.storage),
            Arc::clone(service.clock()),
        );
        if let Some((r, _)) = &replication {
            experiments.set_replica(Arc::clone(r) as Arc<dyn crate::experiment::Replica>);
        }
        experiments.recover();
        let gpio = start_gpio(&config, &service, &experiments);
        let state = AppState::new(
            Arc::clone(&service),
            Arc::clone(&experiments),
            gpio.clone(),
            replication.as_ref().map(|(r, _)| Arc::clone(r)),
            config,
        );
        let supervisor = Supervisor::start(Arc::clone(&state));
        Ok(App {
            service,
            experiments,
            state,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }

    /// Stops the supervisor, finalises clips, stops capture; GPIO outputs go off when
    /// the last reference to the `Gpio` drops.
    pub fn shutdown(&self) {
        // The goodbye goes out first: the other benches drop this one at once.
        self.state.fleet.stop();
        if let Some(s) = self.supervisor.lock().expect("supervisor poisoned").take() {
            s.stop();
        }
        // An upload stops at its next read; the journal has what was acknowledged.
        if let Some(r) = &self.state.replication {
            r.shutdown();
        }
        self.service.shutdown();
    }
}

/// Opens the GPIO backend the config and board call for and starts the trigger loop.
/// A GPIO failure never stops the service: it runs without GPIO and logs why.
fn start_gpio(
    config: &Config,
    service: &Arc<CameraService>,
    experiments: &Arc<ExperimentService>,
) -> Option<Arc<Gpio>> {
    let clock = Arc::clone(service.clock());
    let board = match Board::resolve(&config.gpio.board) {
        Ok(b) => b,
        Err(e) => {
            log::error!("gpio: {e}; running without GPIO");
            return None;
        }
    };
    let backend = match Backend::open(&config.gpio, board, Arc::clone(&clock)) {
        Ok(b) => b,
        Err(e) => {
            log::error!("gpio: {e}; running without GPIO");
            return None;
        }
    };
    if matches!(backend, Backend::None) {
        return None;
    }
    let (tx, rx) = async_channel::unbounded();
    match Gpio::start(&config.gpio, board, backend, Arc::clone(&clock), tx) {
        Ok(gpio) => {
            let gpio = Arc::new(gpio);
            log::info!("gpio: {} backend on {}", gpio.backend_name(), gpio.board());
            crate::web::experiments::spawn_trigger_loop(
                Arc::clone(experiments),
                Arc::downgrade(&gpio),
                rx,
                clock,
            );
            Some(gpio)
        }
        Err(e) => {
            log::error!("gpio: {e}; running without GPIO");
            None
        }
    }
}

/// Once a second: drives the LEDs from health, and feeds the systemd watchdog only
/// while every capture thread delivers frames (or reports its camera's fault) and the
/// web executor answers.
struct Supervisor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Supervisor {
    fn start(state: Arc<AppState>) -> Supervisor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || {
                let mut last_frames: Vec<u64> = Vec::new();
                let mut lost: Vec<String> = Vec::new();
                // 3: the once-a-second work also runs on the first pass, so the fleet
                // announces this box right after the start.
                let mut tick = 3u64;
                let mut storage_present = state.service.storage.is_present();
                let mut steps = StepWatch::default();
                let mut last_experiment: Option<LastExperiment> = None;
                let mut experiment_lookup_due = true;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    tick += 1;
                    if let Some(step) = steps.observe(&**state.service.clock()) {
                        log::warn!(
                            "clock: the wall clock stepped by {:+.3} s (NTP, date -s?); clip order and experiment windows follow the monotonic clock",
                            step as f64 / 1e6
                        );
                        state.experiments.clock_step(step);
                    }
                    let health = state.service.health_check();
                    // A camera lost or back: the running experiment records the gap.
                    for c in &health.cameras {
                        let was_lost = lost.contains(&c.id);
                        if c.state == "lost" && !was_lost {
                            lost.push(c.id.clone());
                            state.experiments.camera_event("camera_lost", &c.id);
                        } else if c.state == "capturing" && was_lost {
                            lost.retain(|id| *id != c.id);
                            state.experiments.camera_event("camera_restored", &c.id);
                        }
                    }
                    if let Some(gpio) = &state.gpio {
                        let led_health = match health.status {
                            "ok" if gpio.trigger_fault().is_none() => LedHealth::Ok,
                            "error" => LedHealth::Error,
                            _ => LedHealth::Degraded,
                        };
                        gpio.set_led_state(LedState {
                            health: led_health,
                            recording: health
                                .cameras
                                .iter()
                                .any(|c| c.recording && !c.recording_paused),
                            archiving: state.experiments.is_archiving(),
                        });
                    }
                    if !tick.is_multiple_of(4) {
                        continue;
                    }
                    // The newest experiment: the active one at once, otherwise looked up
                    // every 5 s (it reads the experiments' state files).
                    if experiment_lookup_due
                        || tick.is_multiple_of(20)
                        || state.experiments.active().is_some()
                    {
                        experiment_lookup_due = false;
                        last_experiment = state.experiments.latest().map(|e| LastExperiment {
                            id: e.experiment_id,
                            method: crate::fleet::record::bounded(
                                &e.method,
                                crate::fleet::record::MAX_VALUE,
                            ),
                            state: serde_json::to_value(e.phase)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default(),
                        });
                    }
                    state
                        .fleet
                        .publish(bench_record(&state, &health, last_experiment.clone()));
                    // The data drive: checked once a second even when nothing records, so
                    // health shows a pulled drive and its return reloads the index.
                    let storage = &state.service.storage;
                    let present = storage.refresh().is_present();
                    let clock = state.service.clock();
                    storage.sample_history(clock.wall_us(), clock.monotonic_us());
                    // Experiment retention (and deletion after a verified upload) once a
                    // minute, off this thread: deleting a folder can take a while.
                    if tick.is_multiple_of(240) {
                        let experiments = Arc::clone(&state.experiments);
                        let _ = std::thread::Builder::new()
                            .name("retention".into())
                            .spawn(move || experiments.apply_retention());
                    }
                    if present != storage_present {
                        storage_present = present;
                        if present {
                            state.experiments.storage_event("storage_restored");
                            // Archives that failed while it was away are redone, off
                            // this thread (it feeds the watchdog).
                            let experiments = Arc::clone(&state.experiments);
                            let _ = std::thread::Builder::new()
                                .name("recover".into())
                                .spawn(move || experiments.recover());
                        } else {
                            state.experiments.storage_event("storage_removed");
                        }
                    }
                    // Capture is alive when each camera either delivered frames since the
                    // last look or has a state that explains why not (unplugged, no signal).
                    let frames: Vec<u64> =
                        health.cameras.iter().map(|c| c.frames_captured).collect();
                    let capture_alive = health.cameras.iter().enumerate().all(|(i, c)| {
                        c.state != "capturing"
                            || last_frames.get(i).is_none_or(|&before| frames[i] > before)
                    });
                    last_frames = frames;
                    let web_alive = state.web.heartbeat_age() < Duration::from_secs(5);
                    if capture_alive && web_alive {
                        let status = format!(
                            "{}: {} camera(s), {} viewer(s)",
                            health.status,
                            health.cameras.len(),
                            state.live.session_count()
                        );
                        let _ = sd_notify::notify(&[
                            sd_notify::NotifyState::Watchdog,
                            sd_notify::NotifyState::Status(&status),
                        ]);
                    }
                }
            })
            .expect("spawning the supervisor thread");
        Supervisor { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// This box's fleet record, from its health and its newest experiment.
fn bench_record(
    state: &AppState,
    health: &crate::camera::Health,
    last_experiment: Option<LastExperiment>,
) -> BenchRecord {
    let storage = state.service.storage.report();
    BenchRecord {
        name: state.fleet.name.clone(),
        version: health.version.to_string(),
        state: BenchState::parse(health.status),
        cameras: health.cameras.len() as u32,
        cameras_recording: health.cameras.iter().filter(|c| c.recording).count() as u32,
        last_experiment,
        free_bytes: storage.presence.is_present().then_some(storage.free),
        uptime_s: health.uptime_s,
        path: "/".into(),
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
    let port = listener.local_addr().map_or(0, |a| a.port());
    app.state.fleet.start(port);
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
