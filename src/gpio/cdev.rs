//! Linux GPIO character device (uAPI v2 through gpiocdev): the header pins of a Raspberry
//! Pi (any model, Pi 5 included) or any board with /dev/gpiochip*.
//!
//! Edge times are the kernel's CLOCK_MONOTONIC stamps, taken in the interrupt handler,
//! so they compare directly with V4L2 frame timestamps. Debounce runs in benchcam over
//! those raw edges (see `debounce.rs` for why) unless `gpio.kernel_debounce` is set.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gpiocdev::line::{Bias, EdgeDetection, EdgeKind, EventClock, Value};
use gpiocdev::request::Request;
use gpiocdev::Chip;

use super::debounce::DebouncedInput;
use super::{Edge, GpioBackend, InputLine, InputSpec, OutputLine, OutputSpec, Pull};
use crate::clock::{monotonic_now_us, SystemClock};
use crate::error::{Error, ErrorKind, Result};

/// Raw edges the kernel holds per input until we read them (its default is 16): a
/// bouncing contact can produce dozens within one debounce period.
const KERNEL_EVENT_BUFFER: u32 = 256;

/// The gpiochip holding the board's header pins.
pub struct CdevGpio {
    chip: PathBuf,
    label: String,
    num_lines: u32,
    kernel_debounce: bool,
}

impl CdevGpio {
    /// Opens `chip` when given, else the first gpiochip whose label is in `labels`
    /// (e.g. "pinctrl-rp1" on a Pi 5, "pinctrl-bcm2711" on a Pi 4).
    pub fn open(chip: Option<&Path>, labels: &[String], kernel_debounce: bool) -> Result<Self> {
        let (path, info) = match chip {
            Some(path) => {
                let info = Chip::from_path(path)
                    .and_then(|c| c.info())
                    .map_err(|e| cdev_error(e, format!("opening {}", path.display())))?;
                (path.to_path_buf(), info)
            }
            None => find_chip(labels)?,
        };
        log::info!(
            "gpio: using {} ({}, {} lines)",
            path.display(),
            info.label,
            info.num_lines
        );
        Ok(CdevGpio {
            chip: path,
            label: info.label,
            num_lines: info.num_lines,
            kernel_debounce,
        })
    }

    pub fn chip_path(&self) -> &Path {
        &self.chip
    }

    pub fn chip_label(&self) -> &str {
        &self.label
    }

    fn check_pin(&self, name: &str, pin: u32) -> Result<()> {
        if pin >= self.num_lines {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "gpio {name}: pin {pin} does not exist on {} ({} lines)",
                    self.chip.display(),
                    self.num_lines
                ),
            ));
        }
        Ok(())
    }

    fn input_request(&self, spec: &InputSpec, kernel_debounce: bool) -> gpiocdev::Result<Request> {
        let mut builder = Request::builder();
        builder
            .on_chip(&self.chip)
            .with_consumer(consumer(&spec.name))
            .with_kernel_event_buffer_size(KERNEL_EVENT_BUFFER)
            .with_line(spec.pin)
            .as_input()
            .with_bias(match spec.pull {
                Pull::Up => Bias::PullUp,
                Pull::Down => Bias::PullDown,
                Pull::None => Bias::Disabled,
            })
            .with_edge_detection(EdgeDetection::BothEdges)
            .with_event_clock(EventClock::Monotonic);
        if spec.active_low {
            builder.as_active_low();
        }
        if kernel_debounce {
            builder.with_debounce_period(spec.debounce);
        }
        builder.request()
    }
}

/// Finds the gpiochip whose label is one of `labels`.
fn find_chip(labels: &[String]) -> Result<(PathBuf, gpiocdev::chip::Info)> {
    let paths = gpiocdev::chip::chips().map_err(|e| cdev_error(e, "listing /dev/gpiochip*"))?;
    let mut seen = Vec::new();
    for path in paths {
        let info = match Chip::from_path(&path).and_then(|c| c.info()) {
            Ok(info) => info,
            Err(e) => {
                seen.push(format!("{} (unreadable: {e})", path.display()));
                continue;
            }
        };
        if labels.contains(&info.label) {
            return Ok((path, info));
        }
        seen.push(format!("{} ({})", path.display(), info.label));
    }
    Err(Error::new(
        ErrorKind::NoDevice,
        format!(
            "no gpiochip labelled {}; found: {}; set gpio.chip or gpio.board",
            labels.join(" or "),
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        ),
    ))
}

fn consumer(name: &str) -> String {
    format!("benchcam-{name}")
}

impl GpioBackend for CdevGpio {
    fn name(&self) -> &'static str {
        "cdev"
    }

    fn open_input(&self, spec: &InputSpec) -> Result<Box<dyn InputLine>> {
        self.check_pin(&spec.name, spec.pin)?;
        let what = format!(
            "opening gpio input {} (BCM {}) on {}",
            spec.name,
            spec.pin,
            self.chip.display()
        );
        let wants_kernel = self.kernel_debounce && !spec.debounce.is_zero();
        let (request, kernel_debounced) = match self.input_request(spec, wants_kernel) {
            Ok(request) => (request, wants_kernel),
            Err(first) if wants_kernel => {
                // Kernels before 5.10 (uAPI v1 only) and some drivers refuse debounce.
                let request = self
                    .input_request(spec, false)
                    .map_err(|_| cdev_error(first.clone(), &what))?;
                log::warn!(
                    "gpio: kernel refused debounce on {} ({first}); debouncing in benchcam",
                    spec.name
                );
                (request, false)
            }
            Err(e) => return Err(cdev_error(e, what)),
        };
        let raw = CdevInput {
            request,
            name: spec.name.clone(),
            // A kernel-debounced edge is stamped when the debounce period ends.
            stamp_correction_us: if kernel_debounced {
                spec.debounce.as_micros() as u64
            } else {
                0
            },
            last_seqno: None,
        };
        if kernel_debounced || spec.debounce.is_zero() {
            Ok(Box::new(raw))
        } else {
            // Kernel stamps are CLOCK_MONOTONIC: debounce against the same clock.
            Ok(Box::new(DebouncedInput::new(
                raw,
                spec.debounce,
                Arc::new(SystemClock),
            )?))
        }
    }

    fn open_output(&self, spec: &OutputSpec) -> Result<Box<dyn OutputLine>> {
        self.check_pin(&spec.name, spec.pin)?;
        let mut builder = Request::builder();
        builder
            .on_chip(&self.chip)
            .with_consumer(consumer(&spec.name))
            .with_line(spec.pin)
            .as_output(Value::Inactive);
        if spec.active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(|e| {
            cdev_error(
                e,
                format!(
                    "opening gpio output {} (BCM {}) on {}",
                    spec.name,
                    spec.pin,
                    self.chip.display()
                ),
            )
        })?;
        Ok(Box::new(CdevOutput {
            request,
            name: spec.name.clone(),
        }))
    }
}

/// One requested input line.
struct CdevInput {
    request: Request,
    name: String,
    /// Subtracted from kernel-debounced stamps to estimate the transition time.
    stamp_correction_us: u64,
    /// The kernel's per-line event counter, to notice events lost to a full buffer.
    last_seqno: Option<u32>,
}

impl InputLine for CdevInput {
    fn wait_edge(&mut self, timeout: Duration) -> Result<Option<Edge>> {
        let ready = self
            .request
            .wait_edge_event(timeout)
            .map_err(|e| cdev_error(e, format!("waiting for gpio {}", self.name)))?;
        if !ready {
            return Ok(None);
        }
        let event = self
            .request
            .read_edge_event()
            .map_err(|e| cdev_error(e, format!("reading gpio {}", self.name)))?;
        if let Some(last) = self.last_seqno {
            let lost = event.line_seqno.wrapping_sub(last).wrapping_sub(1);
            if lost > 0 {
                log::warn!("gpio {}: {lost} edges lost (kernel buffer full)", self.name);
            }
        }
        self.last_seqno = Some(event.line_seqno);
        let stamp_us = event.timestamp_ns / 1000;
        // A zero stamp would mean a kernel without monotonic event stamps: use now.
        let stamp_us = if stamp_us == 0 {
            monotonic_now_us()
        } else {
            stamp_us.saturating_sub(self.stamp_correction_us)
        };
        Ok(Some(Edge {
            rising: event.kind == EdgeKind::Rising,
            timestamp_us: stamp_us,
        }))
    }

    fn level(&self) -> Result<bool> {
        let value = self
            .request
            .lone_value()
            .map_err(|e| cdev_error(e, format!("reading gpio {}", self.name)))?;
        Ok(value == Value::Active)
    }
}

/// One requested output line; released switched off.
struct CdevOutput {
    request: Request,
    name: String,
}

impl OutputLine for CdevOutput {
    fn set(&self, on: bool) -> Result<()> {
        let value = if on { Value::Active } else { Value::Inactive };
        self.request
            .set_lone_value(value)
            .map_err(|e| cdev_error(e, format!("setting gpio {}", self.name)))
    }
}

impl Drop for CdevOutput {
    fn drop(&mut self) {
        // The kernel keeps a released line at its last level: switch it off first.
        if let Err(e) = self.set(false) {
            log::warn!("gpio: {e}");
        }
    }
}

/// The errno inside a gpiocdev error. gpiocdev does not re-export its uAPI error type,
/// so errors from uAPI calls are read from their "(os error N)" text.
fn errno_of(e: &gpiocdev::Error) -> Option<i32> {
    if let gpiocdev::Error::Os(errno) = e {
        return Some(errno.0);
    }
    let text = e.to_string();
    let start = text.rfind("(os error ")? + "(os error ".len();
    text[start..].split(')').next()?.parse().ok()
}

/// Maps a gpiocdev error to our kinds, with a hint for the errors a user can fix.
fn cdev_error(e: gpiocdev::Error, context: impl Into<String>) -> Error {
    let context = context.into();
    let (kind, hint) = match errno_of(&e) {
        Some(libc::EBUSY) => (
            ErrorKind::Io,
            "; another program holds the line (see `gpioinfo`)",
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => (
            ErrorKind::Io,
            "; the service user needs the `gpio` group and DeviceAllow for /dev/gpiochip*",
        ),
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => (ErrorKind::NoDevice, ""),
        Some(libc::EINVAL) => (ErrorKind::Unsupported, ""),
        _ => match e {
            gpiocdev::Error::NoGpioChips() | gpiocdev::Error::GpioChip(..) => {
                (ErrorKind::NoDevice, "")
            }
            gpiocdev::Error::UnsupportedAbi(..)
            | gpiocdev::Error::NoAbiSupport()
            | gpiocdev::Error::AbiLimitation(..) => (
                ErrorKind::Unsupported,
                "; the kernel lacks GPIO uAPI v2 (needs Linux 5.10 or later)",
            ),
            _ => (ErrorKind::Io, ""),
        },
    };
    Error::new(kind, format!("{context}: {e}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    #[test]
    fn errno_is_read_from_gpiocdev_errors() {
        let busy = gpiocdev::Error::from(std::io::Error::from_raw_os_error(libc::EBUSY));
        assert_eq!(errno_of(&busy), Some(libc::EBUSY));
        let err = cdev_error(busy, "opening gpio input experiment (BCM 23)");
        assert_eq!(err.kind, ErrorKind::Io);
        assert!(
            err.to_string().contains("another program holds the line"),
            "{err}"
        );
        let other = gpiocdev::Error::InvalidArgument("nonsense".into());
        assert_eq!(errno_of(&other), None);
        assert_eq!(cdev_error(other, "x").kind, ErrorKind::Io);
    }

    #[test]
    fn a_missing_chip_is_no_device() {
        let err = CdevGpio::open(Some(Path::new("/dev/gpiochip99")), &[], false)
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::NoDevice, "{err}");
    }

    /// Loopback on real hardware: wire the output pin to the input pin through a 1 kOhm
    /// resistor and run
    /// `BENCHCAM_GPIO_LOOPBACK=/dev/gpiochip0:25:23 cargo test -- --ignored loopback`.
    /// Checks that edges arrive debounced, in order, with kernel stamps bracketed by the
    /// monotonic clock read before and after driving the output.
    #[test]
    #[ignore = "needs a board with a wire between two GPIO pins"]
    fn loopback_on_real_hardware() {
        let setting =
            std::env::var("BENCHCAM_GPIO_LOOPBACK").expect("BENCHCAM_GPIO_LOOPBACK=chip:out:in");
        let parts: Vec<&str> = setting.split(':').collect();
        let (chip, out_pin, in_pin) = (
            parts[0],
            parts[1].parse().unwrap(),
            parts[2].parse().unwrap(),
        );
        let gpio = CdevGpio::open(Some(Path::new(chip)), &[], false).unwrap();
        let out = gpio
            .open_output(&OutputSpec {
                name: "loop-out".into(),
                pin: out_pin,
                active_low: false,
            })
            .unwrap();
        let mut input = gpio
            .open_input(&InputSpec {
                name: "loop-in".into(),
                pin: in_pin,
                active_low: false,
                pull: Pull::Down,
                debounce: Duration::from_millis(5),
            })
            .unwrap();
        assert!(!input.level().unwrap());
        for _ in 0..5 {
            let before = SystemClock.monotonic_us();
            out.set(true).unwrap();
            let after = SystemClock.monotonic_us();
            let edge = input
                .wait_edge(Duration::from_secs(1))
                .unwrap()
                .expect("rising edge");
            assert!(edge.rising);
            assert!(
                (before..=after + 1000).contains(&edge.timestamp_us),
                "{edge:?} {before} {after}"
            );
            // A 1 ms pulse is shorter than the 5 ms debounce: ignored.
            out.set(false).unwrap();
            let falling = input
                .wait_edge(Duration::from_secs(1))
                .unwrap()
                .expect("falling edge");
            assert!(!falling.rising);
            out.set(true).unwrap();
            std::thread::sleep(Duration::from_millis(1));
            out.set(false).unwrap();
            assert_eq!(input.wait_edge(Duration::from_millis(50)).unwrap(), None);
        }
    }
}
