//! The hardware seam: a line is an input (edges, level) or an output (on/off), opened by
//! pin from a `GpioBackend` (cdev on a Pi, sim elsewhere, or a test's own); `Backend`
//! is the one chosen for this run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::board::{self, Board};
use crate::clock::Clock;
use crate::error::Result;

use super::config::{BackendChoice, GpioConfig, InputConfig, Pull};
use super::{CdevGpio, SimGpio};

/// One debounced edge of an input, in logical terms: `rising` means the line became
/// active (after active_low), like the kernel's "rising" edge event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub rising: bool,
    /// CLOCK_MONOTONIC µs of the transition (kernel stamp on cdev, clock on sim).
    pub timestamp_us: u64,
}

/// An output line (LED, TTL out). `set` takes the logical level (true = on).
pub trait OutputLine: Send + Sync {
    fn set(&self, on: bool) -> Result<()>;
}

/// An input line with debounced edges.
pub trait InputLine: Send {
    /// Blocks up to `timeout` (real time) for the next debounced edge.
    fn wait_edge(&mut self, timeout: Duration) -> Result<Option<Edge>>;
    /// The current debounced logical level (true = active).
    fn level(&self) -> Result<bool>;
}

/// How to open an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// Line name; the consumer label becomes `benchcam-<name>`.
    pub name: String,
    /// BCM GPIO number (line offset on the header's gpiochip).
    pub pin: u32,
    pub active_low: bool,
    pub pull: Pull,
    /// Zero: no debounce.
    pub debounce: Duration,
}

impl From<&InputConfig> for InputSpec {
    fn from(c: &InputConfig) -> Self {
        InputSpec {
            name: c.name.clone(),
            pin: c.pin,
            active_low: c.active_low,
            pull: c.effective_pull(),
            debounce: c.debounce.0,
        }
    }
}

/// How to open an output. It starts off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub name: String,
    pub pin: u32,
    pub active_low: bool,
}

/// Opens lines by pin. Implementations debounce inputs as the spec asks.
pub trait GpioBackend: Send + Sync {
    /// "cdev" or "sim".
    fn name(&self) -> &'static str;
    fn open_input(&self, spec: &InputSpec) -> Result<Box<dyn InputLine>>;
    fn open_output(&self, spec: &OutputSpec) -> Result<Box<dyn OutputLine>>;
}

/// The backend chosen for this run.
#[derive(Clone)]
pub enum Backend {
    Cdev(Arc<CdevGpio>),
    Sim(SimGpio),
    /// Any other implementation (tests inject faulty lines this way).
    Other(Arc<dyn GpioBackend>),
    /// `backend = "none"`: no lines; the API shows an empty GPIO.
    None,
}

impl Backend {
    /// Resolves `gpio.backend`: `auto` is cdev on a Raspberry Pi with /dev/gpiochip*,
    /// sim elsewhere. Opening cdev finds the board's gpiochip by label (or `gpio.chip`).
    pub fn open(config: &GpioConfig, board: &Board, clock: Arc<dyn Clock>) -> Result<Backend> {
        let choice = match config.backend {
            BackendChoice::Auto if has_gpiochip() && board::is_raspberry_pi() => {
                BackendChoice::Cdev
            }
            BackendChoice::Auto => BackendChoice::Sim,
            other => other,
        };
        match choice {
            BackendChoice::Cdev => {
                let gpio = CdevGpio::open(
                    config.chip.as_deref().map(Path::new),
                    &board.gpio.chip_labels,
                    config.kernel_debounce,
                )?;
                Ok(Backend::Cdev(Arc::new(gpio)))
            }
            BackendChoice::Sim => Ok(Backend::Sim(SimGpio::new(clock))),
            BackendChoice::None | BackendChoice::Auto => Ok(Backend::None),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cdev(_) => "cdev",
            Backend::Sim(_) => "sim",
            Backend::Other(b) => b.name(),
            Backend::None => "none",
        }
    }

    pub(super) fn lines(&self) -> Option<Arc<dyn GpioBackend>> {
        match self {
            Backend::Cdev(c) => Some(Arc::clone(c) as Arc<dyn GpioBackend>),
            Backend::Sim(s) => Some(Arc::new(s.clone())),
            Backend::Other(b) => Some(Arc::clone(b)),
            Backend::None => None,
        }
    }
}

/// Whether any /dev/gpiochip* exists.
fn has_gpiochip() -> bool {
    std::fs::read_dir("/dev").is_ok_and(|dir| {
        dir.filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("gpiochip"))
    })
}
