//! The `[gpio]` config section: backend, board, LED pins, trigger inputs, TTL output,
//! and the validation that names the key, the value and what is allowed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::board::Board;
use crate::config::HumanDuration;
use crate::error::{Error, ErrorKind, Result};

/// Debounce when an input does not set one (DESIGN §7).
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(20);
/// Longest debounce accepted: longer would swallow real trigger pulses.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);
const MIN_PULSE_WIDTH: Duration = Duration::from_micros(100);
const MAX_PULSE_WIDTH: Duration = Duration::from_millis(100);
const MAX_NAME_LEN: usize = 32;

/// `[gpio]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GpioConfig {
    pub backend: BackendChoice,
    /// "auto" (detected from the device tree) or a board file name: rpi3, rpi4, ...
    pub board: String,
    /// A gpiochip device to use instead of the one found by the board's chip label.
    pub chip: Option<String>,
    /// Let the kernel debounce (cdev only). Off by default: the kernel then stamps an
    /// edge when its debounce period ends, rounded to the kernel tick, so benchcam
    /// debounces itself and keeps the kernel's interrupt-time stamp of the transition.
    pub kernel_debounce: bool,
    pub leds: LedPins,
    /// `[[gpio.inputs]]`; absent means the board file's defaults, `inputs = []` none.
    pub inputs: Option<Vec<InputConfig>>,
    /// `[gpio.ttl_out]`: a line instruments can record, off unless configured.
    pub ttl_out: Option<TtlOutConfig>,
}

impl Default for GpioConfig {
    fn default() -> Self {
        GpioConfig {
            backend: BackendChoice::Auto,
            board: "auto".into(),
            chip: None,
            kernel_debounce: false,
            leds: LedPins::default(),
            inputs: None,
            ttl_out: None,
        }
    }
}

/// `gpio.backend`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// cdev on a Raspberry Pi with /dev/gpiochip*, sim elsewhere.
    Auto,
    /// The Linux GPIO character device (gpiocdev).
    Cdev,
    /// Simulated pins driven through the web API.
    Sim,
    /// No GPIO at all.
    None,
}

/// `[gpio.leds]`: BCM pins of the LEDs; unset pins come from the board file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LedPins {
    /// false: drive no LEDs (their pins stay free for other uses).
    pub enabled: bool,
    /// LEDs wired from 3.3 V to the pin (lit when the pin is low).
    pub active_low: bool,
    pub status: Option<u32>,
    pub recording: Option<u32>,
    pub error: Option<u32>,
}

impl Default for LedPins {
    fn default() -> Self {
        LedPins {
            enabled: true,
            active_low: false,
            status: None,
            recording: None,
            error: None,
        }
    }
}

/// One `[[gpio.inputs]]` entry (also the format of a board file's default inputs).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Name in events, the API and the consumer label (`benchcam-<name>`).
    pub name: String,
    /// BCM GPIO number.
    pub pin: u32,
    pub role: InputRole,
    /// Experiment inputs only; `level` when unset.
    #[serde(default)]
    pub mode: Option<InputMode>,
    /// Active when the pin is low (open-collector outputs, switches to ground).
    #[serde(default)]
    pub active_low: bool,
    /// Internal bias; unset means towards inactive (down, or up when active_low).
    #[serde(default)]
    pub pull: Option<Pull>,
    /// How long a new level must hold before it counts.
    #[serde(default = "default_debounce")]
    pub debounce: HumanDuration,
}

fn default_debounce() -> HumanDuration {
    HumanDuration(DEFAULT_DEBOUNCE)
}

impl InputConfig {
    /// The bias actually applied: the configured one, or towards the inactive level.
    pub fn effective_pull(&self) -> Pull {
        self.pull.unwrap_or(if self.active_low {
            Pull::Up
        } else {
            Pull::Down
        })
    }

    pub fn effective_mode(&self) -> InputMode {
        self.mode.unwrap_or(InputMode::Level)
    }
}

/// What an input does.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputRole {
    /// Starts and stops experiments.
    Experiment,
    /// Logs an event into the running experiment.
    Marker,
}

/// How an experiment input maps to start and stop.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputMode {
    /// Active = running: the active edge starts, the inactive edge stops.
    Level,
    /// Each active edge toggles between running and stopped.
    Pulse,
}

/// Internal bias resistor of an input.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Pull {
    Up,
    Down,
    None,
}

/// `[gpio.ttl_out]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TtlOutConfig {
    /// BCM GPIO number.
    pub pin: u32,
    pub mode: TtlMode,
    /// High time of each frame pulse (`frame_pulse` only).
    #[serde(default = "default_pulse_width")]
    pub pulse_width: HumanDuration,
    /// Inverts the output (low while recording / low pulses).
    #[serde(default)]
    pub active_low: bool,
}

fn default_pulse_width() -> HumanDuration {
    HumanDuration(Duration::from_millis(1))
}

/// What the TTL output shows.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TtlMode {
    /// High while any camera records.
    Recording,
    /// A pulse per captured frame of the primary camera.
    FramePulse,
}

/// A config refusal in the words of `config::invalid`: which key, what it was, what is allowed.
fn invalid(key: &str, value: impl fmt::Display, allowed: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("config key `{key}` = {value}: {allowed}"),
    )
}

/// `[a-z0-9_-]{1,32}`.
pub fn is_line_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl GpioConfig {
    /// Validates against the configured board, or for "auto" the detected one (the
    /// fallback pin map off a Pi). Returns the first problem.
    pub fn validate(&self) -> Result<()> {
        if self.board != "auto" && Board::by_name(&self.board).is_none() {
            return Err(invalid(
                "gpio.board",
                format!("\"{}\"", self.board),
                &format!("allowed: auto, {}", Board::names().join(", ")),
            ));
        }
        self.validate_for(Board::resolve(&self.board)?)
    }

    /// Validates against one board's pin map.
    pub fn validate_for(&self, board: &Board) -> Result<()> {
        if let Some(chip) = &self.chip {
            let rest = chip.strip_prefix("/dev/gpiochip").unwrap_or("");
            if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(
                    "gpio.chip",
                    format!("\"{chip}\""),
                    "must be a GPIO character device like \"/dev/gpiochip0\"",
                ));
            }
        }
        let allowed_pins = format!("allowed: {} on {}", board.describe_pins(), board.name);
        // Pin -> who holds it, in the words of an error message.
        let mut used: BTreeMap<u32, String> = BTreeMap::new();
        let mut claim = |key: &str, pin: u32, owner: String| -> Result<()> {
            if !board.gpio.pins.contains(&pin) {
                return Err(invalid(key, pin, &allowed_pins));
            }
            if let Some(holder) = used.get(&pin) {
                return Err(invalid(key, pin, &format!("pin already used by {holder}")));
            }
            used.insert(pin, owner);
            Ok(())
        };

        let inputs = self.effective_inputs(board);
        let defaults = self.inputs.is_none();
        // The board's default inputs claim their pins first, so that a clash blames the
        // key the user wrote.
        if defaults {
            for (i, input) in inputs.iter().enumerate() {
                let owner = format!(
                    "the {} board's default input `{}` (replace the defaults with [[gpio.inputs]])",
                    board.name, input.name
                );
                claim(&format!("gpio.inputs[{i}].pin"), input.pin, owner)?;
            }
        }
        if self.leds.enabled {
            let set = [self.leds.status, self.leds.recording, self.leds.error];
            for ((led, pin), set) in self.led_pins(board).into_iter().zip(set) {
                let key = format!("gpio.leds.{led}");
                let owner = match set {
                    Some(_) => format!("`{key}`"),
                    None => format!("the {} board's default for `{key}`", board.name),
                };
                claim(&key, pin, owner)?;
            }
        }

        let mut names = BTreeMap::new();
        for (i, input) in inputs.iter().enumerate() {
            let key = |field: &str| format!("gpio.inputs[{i}].{field}");
            if !is_line_name(&input.name) {
                return Err(invalid(
                    &key("name"),
                    format!("\"{}\"", input.name),
                    "allowed: 1-32 of a-z 0-9 _ -",
                ));
            }
            if let Some(first) = names.insert(input.name.as_str(), i) {
                return Err(invalid(
                    &key("name"),
                    format!("\"{}\"", input.name),
                    &format!("name already used by gpio.inputs[{first}]"),
                ));
            }
            if !defaults {
                claim(&key("pin"), input.pin, format!("`{}`", key("pin")))?;
            }
            if input.role == InputRole::Marker && input.mode.is_some() {
                return Err(invalid(
                    &key("mode"),
                    format!("\"{}\"", mode_name(input.effective_mode())),
                    "mode applies to role = \"experiment\" only; remove it",
                ));
            }
            if input.debounce.0 > MAX_DEBOUNCE {
                return Err(invalid(
                    &key("debounce"),
                    format!("\"{}\"", input.debounce),
                    "allowed: 0ms to 1s",
                ));
            }
            if input.effective_pull() == Pull::Down && board.gpio.fixed_pull_up.contains(&input.pin)
            {
                return Err(invalid(
                    &key("pull"),
                    "\"down\"",
                    &format!(
                        "pin {} has a pull-up on the board; use active_low = true with pull = \"up\", or another pin",
                        input.pin
                    ),
                ));
            }
        }

        if let Some(ttl) = &self.ttl_out {
            claim("gpio.ttl_out.pin", ttl.pin, "`gpio.ttl_out.pin`".into())?;
            if !(MIN_PULSE_WIDTH..=MAX_PULSE_WIDTH).contains(&ttl.pulse_width.0) {
                return Err(invalid(
                    "gpio.ttl_out.pulse_width",
                    format!("\"{:?}\"", ttl.pulse_width.0),
                    "allowed: 0.1ms to 100ms (and shorter than a frame interval)",
                ));
            }
        }
        Ok(())
    }

    /// The LED pins in effect: configured, else the board's.
    pub fn led_pins(&self, board: &Board) -> [(&'static str, u32); 3] {
        let d = board.gpio.leds;
        [
            ("status", self.leds.status.unwrap_or(d.status)),
            ("recording", self.leds.recording.unwrap_or(d.recording)),
            ("error", self.leds.error.unwrap_or(d.error)),
        ]
    }

    /// The inputs in effect: configured, else the board's defaults.
    pub fn effective_inputs<'a>(&'a self, board: &'a Board) -> &'a [InputConfig] {
        self.inputs.as_deref().unwrap_or(&board.gpio.inputs)
    }
}

fn mode_name(mode: InputMode) -> &'static str {
    match mode {
        InputMode::Level => "level",
        InputMode::Pulse => "pulse",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> GpioConfig {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wrapper {
            gpio: GpioConfig,
        }
        toml::from_str::<Wrapper>(text).unwrap().gpio
    }

    fn refusal(text: &str) -> String {
        let rpi4 = Board::by_name("rpi4").unwrap();
        let err = parse(text).validate_for(rpi4).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        err.to_string()
    }

    #[test]
    fn defaults_come_from_the_board() {
        let config = parse("[gpio]\n");
        let rpi5 = Board::by_name("rpi5").unwrap();
        config.validate_for(rpi5).unwrap();
        assert_eq!(
            config.led_pins(rpi5),
            [("status", 17), ("recording", 27), ("error", 22)]
        );
        let inputs = config.effective_inputs(rpi5);
        assert_eq!(inputs.len(), 2);
        assert_eq!((inputs[0].name.as_str(), inputs[0].pin), ("experiment", 23));
        assert_eq!(inputs[0].effective_mode(), InputMode::Level);
        assert_eq!(inputs[0].effective_pull(), Pull::Down);
        assert_eq!(inputs[0].debounce.0, Duration::from_millis(20));
        assert_eq!((inputs[1].name.as_str(), inputs[1].pin), ("marker", 24));
    }

    #[test]
    fn a_full_section_parses() {
        let config = parse(
            r#"
            [gpio]
            backend = "cdev"
            board = "rpi5"
            chip = "/dev/gpiochip4"
            [gpio.leds]
            status = 5
            [[gpio.inputs]]
            name = "start-stop"
            pin = 16
            role = "experiment"
            mode = "pulse"
            active_low = true
            debounce = "5ms"
            [[gpio.inputs]]
            name = "lick_1"
            pin = 20
            role = "marker"
            pull = "none"
            [gpio.ttl_out]
            pin = 25
            mode = "frame_pulse"
            pulse_width = "2ms"
            "#,
        );
        config
            .validate_for(Board::by_name("rpi5").unwrap())
            .unwrap();
        assert_eq!(config.backend, BackendChoice::Cdev);
        let inputs = config.inputs.as_ref().unwrap();
        assert_eq!(inputs[0].effective_mode(), InputMode::Pulse);
        assert_eq!(inputs[0].effective_pull(), Pull::Up);
        assert_eq!(inputs[0].debounce.0, Duration::from_millis(5));
        assert_eq!(inputs[1].effective_pull(), Pull::None);
        let ttl = config.ttl_out.as_ref().unwrap();
        assert_eq!(ttl.mode, TtlMode::FramePulse);
        assert_eq!(ttl.pulse_width.0, Duration::from_millis(2));
    }

    #[test]
    fn refusals_name_key_value_and_what_is_allowed() {
        assert_eq!(
            refusal("[gpio]\n[[gpio.inputs]]\nname = \"x\"\npin = 99\nrole = \"marker\"\n"),
            "config key `gpio.inputs[0].pin` = 99: allowed: 0 to 27 on rpi4"
        );
        assert_eq!(
            refusal(
                "[gpio]\n[[gpio.inputs]]\nname = \"a\"\npin = 5\nrole = \"marker\"\n\
                 [[gpio.inputs]]\nname = \"a\"\npin = 6\nrole = \"marker\"\n"
            ),
            "config key `gpio.inputs[1].name` = \"a\": name already used by gpio.inputs[0]"
        );
        assert_eq!(
            refusal("[gpio]\n[[gpio.inputs]]\nname = \"Trig 1\"\npin = 5\nrole = \"marker\"\n"),
            "config key `gpio.inputs[0].name` = \"Trig 1\": allowed: 1-32 of a-z 0-9 _ -"
        );
        assert_eq!(
            refusal("[gpio]\n[[gpio.inputs]]\nname = \"t\"\npin = 17\nrole = \"experiment\"\n"),
            "config key `gpio.inputs[0].pin` = 17: pin already used by the rpi4 board's default for `gpio.leds.status`"
        );
        assert_eq!(
            refusal(
                "[gpio]\n[[gpio.inputs]]\nname = \"m\"\npin = 5\nrole = \"marker\"\nmode = \"pulse\"\n"
            ),
            "config key `gpio.inputs[0].mode` = \"pulse\": mode applies to role = \"experiment\" only; remove it"
        );
        assert_eq!(
            refusal(
                "[gpio]\n[[gpio.inputs]]\nname = \"m\"\npin = 5\nrole = \"marker\"\ndebounce = \"2s\"\n"
            ),
            "config key `gpio.inputs[0].debounce` = \"2s\": allowed: 0ms to 1s"
        );
        assert!(
            refusal("[gpio]\n[[gpio.inputs]]\nname = \"m\"\npin = 3\nrole = \"marker\"\n")
                .starts_with("config key `gpio.inputs[0].pull` = \"down\": pin 3 has a pull-up")
        );
        assert_eq!(
            refusal("[gpio]\n[gpio.leds]\nerror = 28\n"),
            "config key `gpio.leds.error` = 28: allowed: 0 to 27 on rpi4"
        );
        assert_eq!(
            refusal("[gpio]\n[gpio.leds]\nerror = 23\n"),
            "config key `gpio.leds.error` = 23: pin already used by the rpi4 board's default input `experiment` (replace the defaults with [[gpio.inputs]])"
        );
        assert_eq!(
            refusal("[gpio]\n[gpio.ttl_out]\npin = 24\nmode = \"recording\"\n"),
            "config key `gpio.ttl_out.pin` = 24: pin already used by the rpi4 board's default input `marker` (replace the defaults with [[gpio.inputs]])"
        );
        assert_eq!(
            refusal("[gpio]\ninputs = []\n[gpio.ttl_out]\npin = 24\nmode = \"frame_pulse\"\npulse_width = \"0.05ms\"\n"),
            "config key `gpio.ttl_out.pulse_width` = \"50µs\": allowed: 0.1ms to 100ms (and shorter than a frame interval)"
        );
        assert_eq!(
            refusal("[gpio]\nchip = \"/dev/video0\"\n"),
            "config key `gpio.chip` = \"/dev/video0\": must be a GPIO character device like \"/dev/gpiochip0\""
        );
        let err = parse("[gpio]\nboard = \"rpi2\"\n").validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `gpio.board` = \"rpi2\": allowed: auto, rpi3, rpi4, rpi5, zero2w, cm4"
        );
    }

    #[test]
    fn user_keys_clash_by_name() {
        assert_eq!(
            refusal(
                "[gpio]\n[gpio.leds]\nstatus = 5\n[[gpio.inputs]]\nname = \"a\"\npin = 6\nrole = \"marker\"\n\
                 [[gpio.inputs]]\nname = \"b\"\npin = 6\nrole = \"marker\"\n[gpio.ttl_out]\npin = 5\nmode = \"recording\"\n"
            ),
            "config key `gpio.inputs[1].pin` = 6: pin already used by `gpio.inputs[0].pin`"
        );
        assert_eq!(
            refusal("[gpio]\ninputs = []\n[gpio.leds]\nstatus = 5\n[gpio.ttl_out]\npin = 5\nmode = \"recording\"\n"),
            "config key `gpio.ttl_out.pin` = 5: pin already used by `gpio.leds.status`"
        );
    }

    #[test]
    fn the_effective_config_prints_and_reads_back() {
        #[derive(Deserialize, Serialize)]
        struct Wrapper {
            gpio: GpioConfig,
        }
        for text in [
            "[gpio]\n",
            "[gpio]\ninputs = []\n",
            "[gpio]\n[[gpio.inputs]]\nname = \"a\"\npin = 6\nrole = \"experiment\"\nmode = \"pulse\"\n\
             [gpio.ttl_out]\npin = 5\nmode = \"frame_pulse\"\n",
        ] {
            let config: Wrapper = toml::from_str(text).unwrap();
            let printed = toml::to_string(&config).unwrap();
            let again: Wrapper = toml::from_str(&printed).unwrap();
            assert_eq!(again.gpio, config.gpio, "{printed}");
        }
    }

    #[test]
    fn disabled_leds_free_their_pins_and_empty_inputs_mean_none() {
        let rpi4 = Board::by_name("rpi4").unwrap();
        let config = parse(
            "[gpio]\ninputs = []\n[gpio.leds]\nenabled = false\n[gpio.ttl_out]\npin = 17\nmode = \"recording\"\n",
        );
        config.validate_for(rpi4).unwrap();
        assert!(config.effective_inputs(rpi4).is_empty());
    }

    #[test]
    fn unknown_keys_and_values_are_refused_by_the_parser() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct Wrapper {
            #[allow(dead_code)]
            gpio: GpioConfig,
        }
        let bad = [
            "[gpio]\nbackend = \"rppal\"\n",
            "[gpio]\n[gpio.leds]\nheartbeat = 4\n",
            "[gpio]\n[[gpio.inputs]]\nname = \"a\"\npin = 5\nrole = \"trigger\"\n",
            "[gpio]\n[[gpio.inputs]]\nname = \"a\"\npin = 5\nrole = \"marker\"\npull = \"sideways\"\n",
            "[gpio]\n[[gpio.inputs]]\nname = \"a\"\npin = 5\nrole = \"marker\"\ndebounce = \"20\"\n",
            "[gpio]\n[gpio.ttl_out]\npin = 5\nmode = \"frame\"\n",
        ];
        for text in bad {
            assert!(toml::from_str::<Wrapper>(text).is_err(), "{text}");
        }
    }
}
