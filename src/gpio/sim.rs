//! Simulated GPIO: inputs driven by name (the web API's `POST /api/v1/gpio/sim/{input}`,
//! tests), outputs whose levels can be read back. Edges are stamped by the injected
//! clock and debounced in software like real ones.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::debounce::DebouncedInput;
use super::{Edge, GpioBackend, InputLine, InputSpec, OutputLine, OutputSpec};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};

/// Raw edges a simulated input keeps for its reader; the oldest go first, as in the
/// kernel's buffer.
const EDGE_QUEUE: usize = 64;

/// The simulated pins. Cheap to clone; clones share the pins.
#[derive(Clone)]
pub struct SimGpio {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    pins: Mutex<Pins>,
    /// Signalled when an input gets an edge.
    edge_arrived: Condvar,
}

#[derive(Default)]
struct Pins {
    /// Open inputs by name.
    inputs: BTreeMap<String, SimInputState>,
    /// Outputs by name; a closed output stays listed, off.
    outputs: BTreeMap<String, SimOutputState>,
}

struct SimInputState {
    pin: u32,
    /// Logical level (true = active).
    level: bool,
    edges: VecDeque<Edge>,
}

struct SimOutputState {
    pin: u32,
    /// Logical level (true = on).
    on: bool,
    open: bool,
}

impl SimGpio {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        SimGpio {
            inner: Arc::new(Inner {
                clock,
                pins: Mutex::new(Pins::default()),
                edge_arrived: Condvar::new(),
            }),
        }
    }

    fn pins(&self) -> MutexGuard<'_, Pins> {
        self.inner.pins.lock().expect("sim gpio lock poisoned")
    }

    /// Drives the input `name` active or inactive (logical level, after any
    /// active_low). Setting the level it already has makes no edge. Unknown names are
    /// `NotFound`.
    pub fn set_input(&self, name: &str, active: bool) -> Result<()> {
        let mut pins = self.pins();
        let input = pins.inputs.get_mut(name).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no simulated GPIO input {name:?}"),
            )
        })?;
        if input.level != active {
            input.level = active;
            if input.edges.len() == EDGE_QUEUE {
                input.edges.pop_front();
            }
            input.edges.push_back(Edge {
                rising: active,
                timestamp_us: self.inner.clock.monotonic_us(),
            });
            self.inner.edge_arrived.notify_all();
        }
        Ok(())
    }

    /// Names and pins of the open inputs.
    pub fn inputs(&self) -> Vec<(String, u32)> {
        self.pins()
            .inputs
            .iter()
            .map(|(name, i)| (name.clone(), i.pin))
            .collect()
    }

    /// Every output ever opened, by name, with its level (closed outputs read off).
    pub fn outputs(&self) -> Vec<(String, bool)> {
        self.pins()
            .outputs
            .iter()
            .map(|(name, o)| (name.clone(), o.on))
            .collect()
    }

    /// One output's level, if it was ever opened.
    pub fn output(&self, name: &str) -> Option<bool> {
        self.pins().outputs.get(name).map(|o| o.on)
    }
}

impl GpioBackend for SimGpio {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn open_input(&self, spec: &InputSpec) -> Result<Box<dyn InputLine>> {
        {
            let mut pins = self.pins();
            if pins.inputs.contains_key(&spec.name) {
                return Err(Error::new(
                    ErrorKind::WrongState,
                    format!("simulated input {:?} is already open", spec.name),
                ));
            }
            pins.inputs.insert(
                spec.name.clone(),
                SimInputState {
                    pin: spec.pin,
                    level: false,
                    edges: VecDeque::new(),
                },
            );
        }
        let raw = SimInput {
            gpio: self.clone(),
            name: spec.name.clone(),
        };
        if spec.debounce.is_zero() {
            return Ok(Box::new(raw));
        }
        let clock = Arc::clone(&self.inner.clock);
        Ok(Box::new(DebouncedInput::new(raw, spec.debounce, clock)?))
    }

    fn open_output(&self, spec: &OutputSpec) -> Result<Box<dyn OutputLine>> {
        let mut pins = self.pins();
        if pins.outputs.get(&spec.name).is_some_and(|o| o.open) {
            return Err(Error::new(
                ErrorKind::WrongState,
                format!("simulated output {:?} is already open", spec.name),
            ));
        }
        pins.outputs.insert(
            spec.name.clone(),
            SimOutputState {
                pin: spec.pin,
                on: false,
                open: true,
            },
        );
        Ok(Box::new(SimOutput {
            gpio: self.clone(),
            name: spec.name.clone(),
        }))
    }
}

/// One open simulated input (raw: debouncing wraps it). Closing it frees the name.
struct SimInput {
    gpio: SimGpio,
    name: String,
}

impl InputLine for SimInput {
    fn wait_edge(&mut self, timeout: Duration) -> Result<Option<Edge>> {
        let give_up = Instant::now() + timeout;
        let mut pins = self.gpio.pins();
        loop {
            let input = pins
                .inputs
                .get_mut(&self.name)
                .expect("an open SimInput keeps its entry");
            if let Some(edge) = input.edges.pop_front() {
                return Ok(Some(edge));
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            pins = self
                .gpio
                .inner
                .edge_arrived
                .wait_timeout(pins, left)
                .expect("sim gpio lock poisoned")
                .0;
        }
    }

    fn level(&self) -> Result<bool> {
        Ok(self
            .gpio
            .pins()
            .inputs
            .get(&self.name)
            .is_some_and(|i| i.level))
    }
}

impl Drop for SimInput {
    fn drop(&mut self) {
        self.gpio.pins().inputs.remove(&self.name);
    }
}

/// One open simulated output; dropping it switches it off.
struct SimOutput {
    gpio: SimGpio,
    name: String,
}

impl OutputLine for SimOutput {
    fn set(&self, on: bool) -> Result<()> {
        if let Some(output) = self.gpio.pins().outputs.get_mut(&self.name) {
            output.on = on;
        }
        Ok(())
    }
}

impl Drop for SimOutput {
    fn drop(&mut self) {
        if let Some(output) = self.gpio.pins().outputs.get_mut(&self.name) {
            output.on = false;
            output.open = false;
        }
    }
}

impl std::fmt::Debug for SimGpio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pins = self.pins();
        f.debug_struct("SimGpio")
            .field("inputs", &pins.inputs.keys().collect::<Vec<_>>())
            .field(
                "outputs",
                &pins
                    .outputs
                    .iter()
                    .map(|(n, o)| (n, o.pin, o.on))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use crate::gpio::Pull;

    fn spec(name: &str, pin: u32, debounce_ms: u64) -> InputSpec {
        InputSpec {
            name: name.into(),
            pin,
            active_low: false,
            pull: Pull::Down,
            debounce: Duration::from_millis(debounce_ms),
        }
    }

    #[test]
    fn inputs_make_clock_stamped_edges() {
        let clock = Arc::new(SimClock::new(5_000, 0, false));
        let sim = SimGpio::new(clock.clone());
        let mut line = sim.open_input(&spec("experiment", 23, 0)).unwrap();
        assert_eq!(sim.inputs(), [("experiment".to_string(), 23)]);
        assert!(!line.level().unwrap());
        sim.set_input("experiment", true).unwrap();
        sim.set_input("experiment", true).unwrap(); // no change, no edge
        clock.advance(Duration::from_millis(3));
        sim.set_input("experiment", false).unwrap();
        let got =
            |line: &mut Box<dyn InputLine>| line.wait_edge(Duration::from_millis(10)).unwrap();
        assert_eq!(
            got(&mut line),
            Some(Edge {
                rising: true,
                timestamp_us: 5_000
            })
        );
        assert_eq!(
            got(&mut line),
            Some(Edge {
                rising: false,
                timestamp_us: 8_000
            })
        );
        assert_eq!(got(&mut line), None);
    }

    #[test]
    fn unknown_inputs_are_not_found_and_closed_inputs_free_their_name() {
        let sim = SimGpio::new(Arc::new(SimClock::new(0, 0, false)));
        assert_eq!(
            sim.set_input("nope", true).unwrap_err().kind,
            ErrorKind::NotFound
        );
        let line = sim.open_input(&spec("marker", 24, 20)).unwrap();
        assert_eq!(
            sim.open_input(&spec("marker", 24, 20)).err().unwrap().kind,
            ErrorKind::WrongState
        );
        sim.set_input("marker", true).unwrap();
        drop(line);
        assert_eq!(
            sim.set_input("marker", false).unwrap_err().kind,
            ErrorKind::NotFound
        );
        sim.open_input(&spec("marker", 24, 20)).unwrap();
    }

    #[test]
    fn outputs_read_back_and_switch_off_when_dropped() {
        let sim = SimGpio::new(Arc::new(SimClock::new(0, 0, false)));
        let led = sim
            .open_output(&OutputSpec {
                name: "status".into(),
                pin: 17,
                active_low: false,
            })
            .unwrap();
        assert_eq!(sim.output("status"), Some(false));
        led.set(true).unwrap();
        assert_eq!(sim.outputs(), [("status".to_string(), true)]);
        drop(led);
        assert_eq!(sim.output("status"), Some(false));
        assert_eq!(sim.output("recording"), None);
    }
}
