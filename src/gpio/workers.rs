//! The bodies of the GPIO threads: one per input (edges into triggers, the line reopened
//! with backoff after an error), one for the LEDs, one lowering the TTL line after each
//! frame pulse. Each ends when the `Gpio` shuts down.

use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{leds, Edge, GpioBackend, InputLine, InputMode, InputRole, InputSpec, Shared, Ttl};
use crate::error::{Error, Result};

/// How long an input thread waits for an edge before checking for shutdown.
const INPUT_POLL: Duration = Duration::from_millis(100);
/// Longest sleep of the LED and TTL threads between looks at the clock: bounds how late
/// they notice a simulated clock moving (the system clock they compute exactly).
const CLOCK_POLL: Duration = Duration::from_millis(100);
/// Reopen backoff of a failed input line.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(super) fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(body)
        .map_err(|e| Error::io(e, format!("starting thread {name}")))
}

/// Watches one input until shutdown, reopening its line with backoff after errors.
pub(super) fn run_input(
    shared: &Shared,
    index: usize,
    line: Box<dyn InputLine>,
    backend: &dyn GpioBackend,
    spec: &InputSpec,
) {
    let mut line = Some(line);
    let mut backoff = BACKOFF_MIN;
    while !shared.shutting_down() {
        match run_input_once(shared, index, &mut line, backend, spec, &mut backoff) {
            Ok(()) => return,
            Err(e) => {
                log::warn!("gpio: input {}: {e}; retrying in {backoff:?}", spec.name);
                shared.set_fault(index, Some(e.to_string()));
                line = None;
                sleep_unless_shutdown(shared, backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Opens the line if needed, then turns its edges into triggers until shutdown
/// (`Ok`) or a line error (`Err`).
fn run_input_once(
    shared: &Shared,
    index: usize,
    line: &mut Option<Box<dyn InputLine>>,
    backend: &dyn GpioBackend,
    spec: &InputSpec,
    backoff: &mut Duration,
) -> Result<()> {
    let line = match line {
        Some(line) => line,
        None => line.insert(backend.open_input(spec)?),
    };
    // A level input that is active when watching starts (or resumes after an error)
    // means "running" now; other roles only react to edges.
    let level = line.level()?;
    shared.set_fault(index, None);
    *backoff = BACKOFF_MIN;
    let state = &shared.inputs[index];
    if level != state.level.load(Ordering::SeqCst) {
        if state.config.role == InputRole::Experiment
            && state.config.effective_mode() == InputMode::Level
        {
            let edge = Edge {
                rising: level,
                timestamp_us: shared.clock.monotonic_us(),
            };
            shared.on_edge(index, edge);
        } else {
            state.level.store(level, Ordering::SeqCst);
        }
    }
    while !shared.shutting_down() {
        if let Some(edge) = line.wait_edge(INPUT_POLL)? {
            shared.on_edge(index, edge);
        }
    }
    Ok(())
}

fn sleep_unless_shutdown(shared: &Shared, total: Duration) {
    let step = Duration::from_millis(50);
    let mut left = total;
    while !left.is_zero() && !shared.shutting_down() {
        std::thread::sleep(left.min(step));
        left = left.saturating_sub(step);
    }
}

/// Drives the LEDs from the state and the clock until shutdown.
pub(super) fn run_leds(shared: &Shared) {
    let mut state = shared.led_state.lock().expect("led state poisoned");
    while !shared.shutting_down() {
        let now = shared.clock.monotonic_us();
        let current = *state;
        drop(state);
        let fault = shared.trigger_fault().is_some();
        let want = leds::levels(&current, fault, now);
        for led in &shared.leds {
            let on = match led.name {
                "status" => want.status,
                "recording" => want.recording,
                _ => want.error,
            };
            if led.on.load(Ordering::SeqCst) != on {
                shared.write_led(led, on);
            }
        }
        let wait = leds::next_change(&current, now)
            .map(|at| Duration::from_micros(at - now).min(CLOCK_POLL))
            .unwrap_or(CLOCK_POLL);
        state = shared.led_state.lock().expect("led state poisoned");
        if *state == current && !shared.shutting_down() {
            state = shared
                .led_wake
                .wait_timeout(state, wait)
                .expect("led state poisoned")
                .0;
        }
    }
}

/// Lowers the TTL line when each frame pulse ends, until the `Gpio` is dropped.
pub(super) fn run_frame_pulses(ttl: &Ttl) {
    let mut end = ttl.pulse_end_us.lock().expect("ttl lock poisoned");
    while !ttl.closed.load(Ordering::SeqCst) {
        let wait = match *end {
            None => CLOCK_POLL,
            Some(at) => {
                let now = ttl.clock.monotonic_us();
                if now >= at {
                    ttl.set(false);
                    *end = None;
                    continue;
                }
                Duration::from_micros(at - now).min(CLOCK_POLL)
            }
        };
        end = ttl
            .wake
            .wait_timeout(end, wait)
            .expect("ttl lock poisoned")
            .0;
    }
}
