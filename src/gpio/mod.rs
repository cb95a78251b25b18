//! GPIO: trigger inputs, status LEDs and the TTL output behind small line traits, and the
//! `Gpio` service that turns debounced edges into trigger events and drives the LEDs.
//!
//! Layout: `config` (the `[gpio]` section), `debounce` (software debounce), `leds` (LED
//! patterns as pure functions of state and time), `cdev` (Linux GPIO character device),
//! `sim` (simulated pins for laptops and tests), behind the line traits of `lines`.
//! `Backend::open` picks cdev or sim once; `Gpio::start` takes the backend, the clock and
//! the event channel as arguments; `workers` holds the threads' bodies.
//!
//! Threads: one per input (blocking waits on its line), one for the LEDs, one for
//! frame pulses when `ttl_out.mode = "frame_pulse"`. All stop when `Gpio` is dropped,
//! and every output is switched off.

pub mod cdev;
pub mod config;
pub mod debounce;
pub mod leds;
mod lines;
pub mod sim;
mod workers;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::board::Board;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};

pub use cdev::CdevGpio;
pub use config::{
    BackendChoice, GpioConfig, InputConfig, InputMode, InputRole, LedPins, Pull, TtlMode,
    TtlOutConfig,
};
pub use leds::{Health, LedState};
pub use lines::{Backend, Edge, GpioBackend, InputLine, InputSpec, OutputLine, OutputSpec};
pub use sim::SimGpio;
use workers::{run_frame_pulses, run_input, run_leds, spawn};

/// Repeated output errors are logged at most this often.
const WARN_EVERY_US: u64 = 60_000_000;

/// What a trigger input asks of the experiment side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    Start,
    Stop,
    Marker,
}

/// One trigger from an input, sent on the channel given to `Gpio::start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TriggerEvent {
    /// The input's configured name.
    pub input: String,
    pub role: InputRole,
    pub kind: TriggerKind,
    /// CLOCK_MONOTONIC µs of the (debounced) transition: compare with frame timestamps.
    pub timestamp_us: u64,
}

/// An input as `GET /api/v1/gpio` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputStatus {
    pub name: String,
    pub pin: u32,
    pub role: InputRole,
    /// `None` for markers.
    pub mode: Option<InputMode>,
    pub active_low: bool,
    /// Debounced logical level: true = active.
    pub level: bool,
    /// Why the line cannot be read right now, if it cannot.
    pub fault: Option<String>,
}

/// An output as `GET /api/v1/gpio` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedStatus {
    pub name: String,
    pub pin: u32,
    pub on: bool,
}

/// The TTL output as `GET /api/v1/gpio` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TtlStatus {
    pub pin: u32,
    pub mode: TtlMode,
    pub on: bool,
}

/// Everything `GET /api/v1/gpio` returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GpioStatus {
    pub backend: &'static str,
    pub board: String,
    pub experiment_running: bool,
    pub led_state: LedState,
    pub inputs: Vec<InputStatus>,
    pub leds: Vec<LedStatus>,
    pub ttl_out: Option<TtlStatus>,
}

/// The GPIO service: owns the opened lines and the threads that watch and drive them.
/// Dropping it stops the threads and switches every output off.
pub struct Gpio {
    shared: Arc<Shared>,
    ttl: Option<Arc<Ttl>>,
    threads: Vec<JoinHandle<()>>,
    backend: Backend,
    board: String,
}

/// State shared with the threads; lives until the last thread has exited.
struct Shared {
    clock: Arc<dyn Clock>,
    shutdown: AtomicBool,
    /// Whether an experiment runs, as `pulse` inputs toggle it and the experiment
    /// service reports it (`set_experiment_running`).
    experiment_running: AtomicBool,
    inputs: Vec<InputState>,
    leds: Vec<Led>,
    led_state: Mutex<LedState>,
    /// Wakes the LED thread on a state change or shutdown.
    led_wake: Condvar,
    events: async_channel::Sender<TriggerEvent>,
    /// Set once the event receiver is gone, so that is logged once.
    events_closed: AtomicBool,
    output_warnings: RateLimit,
}

struct InputState {
    config: InputConfig,
    level: AtomicBool,
    fault: Mutex<Option<String>>,
}

struct Led {
    name: &'static str,
    pin: u32,
    line: Box<dyn OutputLine>,
    /// The level last written to the line.
    on: AtomicBool,
}

/// The TTL output and its pulse timer.
struct Ttl {
    pin: u32,
    mode: TtlMode,
    width_us: u64,
    line: Box<dyn OutputLine>,
    on: AtomicBool,
    clock: Arc<dyn Clock>,
    /// When the current frame pulse ends (monotonic µs); `None` when low.
    pulse_end_us: Mutex<Option<u64>>,
    wake: Condvar,
    closed: AtomicBool,
    warnings: RateLimit,
}

impl Gpio {
    /// Opens every configured line on `backend` and starts the threads. Trigger events
    /// go to `events` (an unbounded channel suits: triggers are rare and never dropped;
    /// a full bounded one makes the input thread wait, the kernel buffering its edges).
    pub fn start(
        config: &GpioConfig,
        board: &Board,
        backend: Backend,
        clock: Arc<dyn Clock>,
        events: async_channel::Sender<TriggerEvent>,
    ) -> Result<Gpio> {
        config.validate_for(board)?;
        let lines = backend.lines();
        let mut inputs = Vec::new();
        let mut opened_inputs = Vec::new();
        let mut leds = Vec::new();
        let mut ttl = None;
        if let Some(lines) = &lines {
            for input in config.effective_inputs(board) {
                let spec = InputSpec::from(input);
                opened_inputs.push((lines.open_input(&spec)?, spec));
                inputs.push(InputState {
                    config: input.clone(),
                    level: AtomicBool::new(false),
                    fault: Mutex::new(None),
                });
            }
            if config.leds.enabled {
                for (name, pin) in config.led_pins(board) {
                    let line = lines.open_output(&OutputSpec {
                        name: name.into(),
                        pin,
                        active_low: config.leds.active_low,
                    })?;
                    leds.push(Led {
                        name,
                        pin,
                        line,
                        on: AtomicBool::new(false),
                    });
                }
            }
            if let Some(t) = &config.ttl_out {
                let line = lines.open_output(&OutputSpec {
                    name: "ttl_out".into(),
                    pin: t.pin,
                    active_low: t.active_low,
                })?;
                ttl = Some(Arc::new(Ttl {
                    pin: t.pin,
                    mode: t.mode,
                    width_us: t.pulse_width.0.as_micros() as u64,
                    line,
                    on: AtomicBool::new(false),
                    clock: Arc::clone(&clock),
                    pulse_end_us: Mutex::new(None),
                    wake: Condvar::new(),
                    closed: AtomicBool::new(false),
                    warnings: RateLimit::default(),
                }));
            }
        }

        let shared = Arc::new(Shared {
            clock,
            shutdown: AtomicBool::new(false),
            experiment_running: AtomicBool::new(false),
            inputs,
            leds,
            led_state: Mutex::new(LedState::default()),
            led_wake: Condvar::new(),
            events,
            events_closed: AtomicBool::new(false),
            output_warnings: RateLimit::default(),
        });
        let mut gpio = Gpio {
            shared: Arc::clone(&shared),
            ttl: ttl.clone(),
            threads: Vec::new(),
            backend,
            board: board.name.clone(),
        };
        // From here on, dropping `gpio` on an error stops what was started.
        for (index, (line, spec)) in opened_inputs.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let lines = lines.clone().expect("inputs were opened on a backend");
            gpio.threads
                .push(spawn(format!("gpio-{}", spec.name), move || {
                    run_input(&shared, index, line, &*lines, &spec)
                })?);
        }
        if !shared.leds.is_empty() {
            let shared = Arc::clone(&shared);
            gpio.threads
                .push(spawn("gpio-leds".into(), move || run_leds(&shared))?);
        }
        if let Some(ttl) = ttl.filter(|t| t.mode == TtlMode::FramePulse) {
            gpio.threads
                .push(spawn("gpio-ttl".into(), move || run_frame_pulses(&ttl))?);
        }
        log::info!(
            "gpio: {} backend on {}: {} inputs, {} LEDs{}",
            gpio.backend.name(),
            gpio.board,
            shared.inputs.len(),
            shared.leds.len(),
            if gpio.ttl.is_some() { ", TTL out" } else { "" }
        );
        Ok(gpio)
    }

    /// Tells the LEDs (and a `recording` TTL output) what the service is doing.
    pub fn set_led_state(&self, state: LedState) {
        let mut current = self.shared.led_state.lock().expect("led state poisoned");
        if *current == state {
            return;
        }
        *current = state;
        // Under the state lock, so concurrent callers leave the line at the last state.
        if let Some(ttl) = self.ttl.as_ref().filter(|t| t.mode == TtlMode::Recording) {
            ttl.set(state.recording);
        }
        drop(current);
        self.shared.led_wake.notify_all();
    }

    pub fn led_state(&self) -> LedState {
        *self.shared.led_state.lock().expect("led state poisoned")
    }

    /// Keeps `pulse` inputs in step with experiments started or stopped elsewhere (the
    /// API, a level input, a refused start): the next pulse then does the opposite.
    pub fn set_experiment_running(&self, running: bool) {
        self.shared
            .experiment_running
            .store(running, Ordering::SeqCst);
    }

    /// The inputs, their debounced levels and faults.
    pub fn inputs(&self) -> Vec<InputStatus> {
        self.shared
            .inputs
            .iter()
            .map(|i| InputStatus {
                name: i.config.name.clone(),
                pin: i.config.pin,
                role: i.config.role,
                mode: (i.config.role == InputRole::Experiment).then(|| i.config.effective_mode()),
                active_low: i.config.active_low,
                level: i.level.load(Ordering::SeqCst),
                fault: i.fault.lock().expect("input fault poisoned").clone(),
            })
            .collect()
    }

    /// The LEDs and the levels last written to them.
    pub fn leds(&self) -> Vec<LedStatus> {
        self.shared
            .leds
            .iter()
            .map(|l| LedStatus {
                name: l.name.into(),
                pin: l.pin,
                on: l.on.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// Everything for `GET /api/v1/gpio`.
    pub fn status(&self) -> GpioStatus {
        GpioStatus {
            backend: self.backend.name(),
            board: self.board.clone(),
            experiment_running: self.shared.experiment_running.load(Ordering::SeqCst),
            led_state: self.led_state(),
            inputs: self.inputs(),
            leds: self.leds(),
            ttl_out: self.ttl.as_ref().map(|t| TtlStatus {
                pin: t.pin,
                mode: t.mode,
                on: t.on.load(Ordering::SeqCst),
            }),
        }
    }

    /// A description of any input fault (for health and the error LED), or `None`.
    pub fn trigger_fault(&self) -> Option<String> {
        self.shared.trigger_fault()
    }

    /// The handle a capture thread calls once per frame, when `ttl_out.mode` is
    /// `frame_pulse`.
    pub fn frame_pulser(&self) -> Option<FramePulser> {
        self.ttl
            .as_ref()
            .filter(|t| t.mode == TtlMode::FramePulse)
            .map(|t| FramePulser { ttl: Arc::clone(t) })
    }

    /// `POST /api/v1/gpio/sim/{input}`: drives a simulated input. `NotFound` for an
    /// unknown input, `WrongState` when the backend is not `sim`.
    pub fn sim_set_input(&self, input: &str, active: bool) -> Result<()> {
        match &self.backend {
            Backend::Sim(sim) => sim.set_input(input, active),
            other => Err(Error::new(
                ErrorKind::WrongState,
                format!(
                    "the gpio backend is {}: simulated inputs exist only with gpio.backend = \"sim\"",
                    other.name()
                ),
            )),
        }
    }

    /// The simulated pins, when the backend is `sim`.
    pub fn sim(&self) -> Option<&SimGpio> {
        match &self.backend {
            Backend::Sim(sim) => Some(sim),
            _ => None,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn board(&self) -> &str {
        &self.board
    }
}

impl Drop for Gpio {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.led_state.lock();
            self.shared.led_wake.notify_all();
        }
        if let Some(ttl) = &self.ttl {
            ttl.closed.store(true, Ordering::SeqCst);
            let _guard = ttl.pulse_end_us.lock();
            ttl.wake.notify_all();
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                log::error!("gpio: a thread panicked");
            }
        }
        for led in &self.shared.leds {
            self.shared.write_led(led, false);
        }
        if let Some(ttl) = &self.ttl {
            ttl.set(false);
        }
    }
}

/// Raises the TTL line for `pulse_width` per call. Cheap to clone; a no-op once the
/// `Gpio` is gone.
///
/// Timing caveat: the line goes high when `pulse` is called (after the frame was
/// dequeued, not at exposure), and is lowered by a user-space thread, so under Linux
/// the width jitters by the scheduling latency (tens of µs idle, milliseconds under
/// load). Instruments should time frames by the rising edge.
#[derive(Clone)]
pub struct FramePulser {
    ttl: Arc<Ttl>,
}

impl FramePulser {
    /// Starts a pulse (or extends the running one) without waiting.
    pub fn pulse(&self) {
        let ttl = &self.ttl;
        if ttl.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut end = ttl.pulse_end_us.lock().expect("ttl lock poisoned");
        if end.is_none() {
            ttl.set(true);
        }
        *end = Some(ttl.clock.monotonic_us() + ttl.width_us);
        ttl.wake.notify_all();
    }
}

impl Ttl {
    fn set(&self, on: bool) {
        match self.line.set(on) {
            Ok(()) => self.on.store(on, Ordering::SeqCst),
            Err(e) => self
                .warnings
                .warn(&*self.clock, || format!("gpio: TTL out: {e}")),
        }
    }
}

impl Shared {
    fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    fn trigger_fault(&self) -> Option<String> {
        self.inputs.iter().find_map(|i| {
            let fault = i.fault.lock().expect("input fault poisoned");
            fault
                .as_ref()
                .map(|f| format!("input {}: {f}", i.config.name))
        })
    }

    fn set_fault(&self, index: usize, fault: Option<String>) {
        let mut slot = self.inputs[index]
            .fault
            .lock()
            .expect("input fault poisoned");
        if *slot != fault {
            *slot = fault;
            drop(slot);
            // The error LED follows input faults.
            let _guard = self.led_state.lock();
            self.led_wake.notify_all();
        }
    }

    fn write_led(&self, led: &Led, on: bool) {
        match led.line.set(on) {
            Ok(()) => led.on.store(on, Ordering::SeqCst),
            Err(e) => self
                .output_warnings
                .warn(&*self.clock, || format!("gpio: LED {}: {e}", led.name)),
        }
    }

    /// Maps a debounced edge to a trigger and sends it.
    fn on_edge(&self, index: usize, edge: Edge) {
        let input = &self.inputs[index];
        input.level.store(edge.rising, Ordering::SeqCst);
        let config = &input.config;
        let kind = match (config.role, config.effective_mode(), edge.rising) {
            (InputRole::Marker, _, true) => TriggerKind::Marker,
            (InputRole::Experiment, InputMode::Level, true) => {
                self.experiment_running.store(true, Ordering::SeqCst);
                TriggerKind::Start
            }
            (InputRole::Experiment, InputMode::Level, false) => {
                self.experiment_running.store(false, Ordering::SeqCst);
                TriggerKind::Stop
            }
            (InputRole::Experiment, InputMode::Pulse, true) => {
                if self.experiment_running.fetch_xor(true, Ordering::SeqCst) {
                    TriggerKind::Stop
                } else {
                    TriggerKind::Start
                }
            }
            (_, _, false) => return,
        };
        log::info!("gpio: {} {kind:?} at {} µs", config.name, edge.timestamp_us);
        let event = TriggerEvent {
            input: config.name.clone(),
            role: config.role,
            kind,
            timestamp_us: edge.timestamp_us,
        };
        if self.events.send_blocking(event).is_err()
            && !self.events_closed.swap(true, Ordering::SeqCst)
        {
            log::warn!("gpio: nobody listens for trigger events any more");
        }
    }
}

/// Logs a repeated warning at most once a minute, with the count of those left out.
#[derive(Default)]
struct RateLimit {
    last_us: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    fn warn(&self, clock: &dyn Clock, message: impl FnOnce() -> String) {
        let now = clock.monotonic_us().max(1);
        let last = self.last_us.load(Ordering::SeqCst);
        if last != 0 && now < last + WARN_EVERY_US {
            self.suppressed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        self.last_us.store(now, Ordering::SeqCst);
        match self.suppressed.swap(0, Ordering::SeqCst) {
            0 => log::warn!("{}", message()),
            n => log::warn!("{} ({n} more like it not logged)", message()),
        }
    }
}

#[cfg(test)]
mod tests;
