//! Supported boards: the `board/*.toml` pin maps and hardware hints, embedded in the
//! binary, and detection of the board we run on from the device-tree model string.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::gpio::InputConfig;

/// The board files, embedded so the binary needs nothing beside it. Adding a board is a
/// new `board/<name>.toml` plus one line here.
const BOARD_FILES: [(&str, &str); 5] = [
    ("rpi3", include_str!("../board/rpi3.toml")),
    ("rpi4", include_str!("../board/rpi4.toml")),
    ("rpi5", include_str!("../board/rpi5.toml")),
    ("zero2w", include_str!("../board/zero2w.toml")),
    ("cm4", include_str!("../board/cm4.toml")),
];

/// The board assumed when `board = "auto"` finds no Raspberry Pi (a laptop, CI): its
/// pin map only shapes the simulated GPIO.
pub const FALLBACK_BOARD: &str = "rpi4";

/// Where the kernel publishes the device-tree model string (NUL-terminated).
const MODEL_PATHS: [&str; 2] = [
    "/proc/device-tree/model",
    "/sys/firmware/devicetree/base/model",
];

/// One supported board, as read from its `board/<name>.toml`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Short name used in the config (`gpio.board`) and in `board/<name>.toml`.
    pub name: String,
    /// Human-readable list of the models covered.
    pub description: String,
    /// Prefixes of the device-tree model string that identify this board.
    pub models: Vec<String>,
    pub gpio: BoardGpio,
    pub hints: BoardHints,
}

/// The board's GPIO header.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardGpio {
    /// Labels of the gpiochip carrying the header pins, tried in order.
    pub chip_labels: Vec<String>,
    /// BCM GPIO numbers usable on the header (line offsets on that chip).
    pub pins: Vec<u32>,
    /// Pins with a pull-up resistor on the board: an internal pull-down cannot win.
    #[serde(default)]
    pub fixed_pull_up: Vec<u32>,
    /// Default LED pins when the config does not set them.
    pub leds: BoardLeds,
    /// Default trigger inputs when the config has no `[[gpio.inputs]]`.
    pub inputs: Vec<InputConfig>,
}

/// Default LED pins (BCM numbers).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BoardLeds {
    pub status: u32,
    pub recording: u32,
    pub error: u32,
}

/// What the board is good for: read by camera and encoder setup and by `benchcam probe`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardHints {
    /// "v4l2m2m" when the board has a hardware H.264 encoder, else "software".
    pub h264_encoder: String,
    /// The encoder's V4L2 memory-to-memory device, when there is one.
    #[serde(default)]
    pub encoder_device: Option<String>,
    /// The V4L2 driver name the encoder device reports (to check it is the right node).
    #[serde(default)]
    pub encoder_driver: Option<String>,
    /// Recommended capture size and rate for one camera.
    pub capture_width: u32,
    pub capture_height: u32,
    pub capture_fps: u32,
    /// Recommended `camera.ring_slots` (RAM is the limit on small boards).
    pub ring_slots: usize,
    pub notes: String,
}

impl Board {
    /// Every embedded board, parsed once.
    pub fn all() -> &'static [Board] {
        static BOARDS: OnceLock<Vec<Board>> = OnceLock::new();
        BOARDS.get_or_init(|| {
            BOARD_FILES
                .iter()
                .map(|(name, text)| {
                    let board: Board = toml::from_str(text)
                        .expect("embedded board files parse (checked by board::tests)");
                    debug_assert_eq!(&board.name, name);
                    board
                })
                .collect()
        })
    }

    /// Names accepted by `gpio.board` besides "auto".
    pub fn names() -> Vec<&'static str> {
        BOARD_FILES.iter().map(|(name, _)| *name).collect()
    }

    pub fn by_name(name: &str) -> Option<&'static Board> {
        Board::all().iter().find(|b| b.name == name)
    }

    /// The board whose model prefix matches `model` (the longest matching prefix wins).
    pub fn from_model(model: &str) -> Option<&'static Board> {
        let model = model.trim_end_matches('\0').trim();
        Board::all()
            .iter()
            .filter_map(|b| {
                b.models
                    .iter()
                    .filter(|prefix| model.starts_with(prefix.as_str()))
                    .map(|prefix| prefix.len())
                    .max()
                    .map(|len| (len, b))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, b)| b)
    }

    /// The board we run on, from the device tree; `None` off a supported Pi.
    pub fn detect() -> Option<&'static Board> {
        Board::from_model(&device_tree_model()?)
    }

    /// Resolves the `gpio.board` setting: a board name, or "auto" for the detected
    /// board, falling back to [`FALLBACK_BOARD`] (logged) when none is detected.
    pub fn resolve(choice: &str) -> Result<&'static Board> {
        if choice != "auto" {
            return Board::by_name(choice).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "config key `gpio.board` = \"{choice}\": allowed: auto, {}",
                        Board::names().join(", ")
                    ),
                )
            });
        }
        if let Some(board) = Board::detect() {
            return Ok(board);
        }
        match device_tree_model() {
            Some(model) => log::info!(
                "board: model {model:?} has no board file; using the {FALLBACK_BOARD} pin map"
            ),
            None => log::info!("board: no device tree; using the {FALLBACK_BOARD} pin map"),
        }
        Ok(Board::by_name(FALLBACK_BOARD).expect("the fallback board is embedded"))
    }

    /// The pins as the allowed-values text of a config error: "0 to 27".
    pub fn describe_pins(&self) -> String {
        describe_ranges(&self.gpio.pins)
    }
}

/// The device-tree model string ("Raspberry Pi 4 Model B Rev 1.4"), if the machine has one.
pub fn device_tree_model() -> Option<String> {
    MODEL_PATHS.iter().find_map(|path| {
        let bytes = std::fs::read(path).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let model = text.trim_end_matches('\0').trim();
        (!model.is_empty()).then(|| model.to_string())
    })
}

/// Whether the machine is a Raspberry Pi of any kind, by its device-tree model.
pub fn is_raspberry_pi() -> bool {
    device_tree_model().is_some_and(|m| m.contains("Raspberry Pi"))
}

/// "0 to 27" or "2 to 4, 7, 9 to 27" for a list of numbers.
fn describe_ranges(values: &[u32]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start} to {end}")
        });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpio::{InputMode, InputRole};

    #[test]
    fn every_board_file_parses_and_is_consistent() {
        assert_eq!(Board::all().len(), BOARD_FILES.len());
        for (name, text) in BOARD_FILES {
            let board: Board = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(board.name, name);
            assert!(!board.models.is_empty(), "{name}");
            assert!(!board.gpio.chip_labels.is_empty(), "{name}");
            let leds = board.gpio.leds;
            for pin in [leds.status, leds.recording, leds.error] {
                assert!(board.gpio.pins.contains(&pin), "{name}: LED pin {pin}");
            }
            assert!(board
                .gpio
                .inputs
                .iter()
                .any(|i| i.role == InputRole::Experiment && i.mode == Some(InputMode::Level)));
            assert!(board
                .gpio
                .inputs
                .iter()
                .any(|i| i.role == InputRole::Marker));
            assert!(["v4l2m2m", "software"].contains(&board.hints.h264_encoder.as_str()));
            assert_eq!(
                board.hints.h264_encoder == "v4l2m2m",
                board.hints.encoder_device.is_some(),
                "{name}"
            );
            // The board's own defaults pass the config validation.
            crate::gpio::GpioConfig {
                board: name.to_string(),
                ..Default::default()
            }
            .validate()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn detects_boards_from_model_strings() {
        let cases = [
            ("Raspberry Pi 3 Model B Rev 1.2", Some("rpi3")),
            ("Raspberry Pi 3 Model B Plus Rev 1.3\0", Some("rpi3")),
            ("Raspberry Pi 3 Model A+", Some("rpi3")),
            ("Raspberry Pi 4 Model B Rev 1.4\0", Some("rpi4")),
            ("Raspberry Pi 400 Rev 1.0", Some("rpi4")),
            ("Raspberry Pi 5 Model B Rev 1.0", Some("rpi5")),
            ("Raspberry Pi 500 Rev 1.0", Some("rpi5")),
            ("Raspberry Pi Compute Module 5 Rev 1.0", Some("rpi5")),
            ("Raspberry Pi Zero 2 W Rev 1.0\0", Some("zero2w")),
            ("Raspberry Pi Compute Module 4 Rev 1.0", Some("cm4")),
            ("Raspberry Pi Compute Module 4S Rev 1.0", Some("cm4")),
            ("Raspberry Pi Compute Module 3 Plus Rev 1.0", None),
            ("Raspberry Pi Zero W Rev 1.1", None),
            ("Raspberry Pi Model B Rev 2", None),
            ("Pine64 RockPro64 v2.1", None),
            ("", None),
        ];
        for (model, want) in cases {
            assert_eq!(
                Board::from_model(model).map(|b| b.name.as_str()),
                want,
                "{model:?}"
            );
        }
    }

    #[test]
    fn resolves_names_and_refuses_unknown_boards() {
        assert_eq!(Board::resolve("rpi5").unwrap().name, "rpi5");
        assert_eq!(
            Board::by_name("rpi5").unwrap().gpio.chip_labels,
            ["pinctrl-rp1"]
        );
        assert_eq!(
            Board::by_name("rpi3").unwrap().gpio.chip_labels,
            ["pinctrl-bcm2835"]
        );
        assert_eq!(
            Board::by_name("cm4").unwrap().gpio.chip_labels,
            ["pinctrl-bcm2711"]
        );
        let err = Board::resolve("rpi2").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "config key `gpio.board` = \"rpi2\": allowed: auto, rpi3, rpi4, rpi5, zero2w, cm4"
        );
        // "auto" always yields a board: the detected one or the fallback.
        assert!(Board::resolve("auto").is_ok());
    }

    #[test]
    fn hardware_encoder_hints() {
        for name in ["rpi3", "rpi4", "zero2w", "cm4"] {
            let hints = &Board::by_name(name).unwrap().hints;
            assert_eq!(
                hints.encoder_device.as_deref(),
                Some("/dev/video11"),
                "{name}"
            );
            assert_eq!(
                hints.encoder_driver.as_deref(),
                Some("bcm2835-codec"),
                "{name}"
            );
        }
        assert_eq!(
            Board::by_name("rpi5").unwrap().hints.h264_encoder,
            "software"
        );
    }

    #[test]
    fn describes_pin_ranges() {
        assert_eq!(describe_ranges(&(0..=27).collect::<Vec<_>>()), "0 to 27");
        assert_eq!(describe_ranges(&[9, 2, 3, 4, 7, 10]), "2 to 4, 7, 9 to 10");
        assert_eq!(describe_ranges(&[]), "");
    }
}
