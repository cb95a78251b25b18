use super::*;
use crate::clock::SimClock;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);

struct Rig {
    gpio: Gpio,
    sim: SimGpio,
    clock: Arc<SimClock>,
    events: async_channel::Receiver<TriggerEvent>,
}

/// A `Gpio` on simulated pins and a stopped clock at 10 s, from a `[gpio]` section.
fn rig(section: &str) -> Rig {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        gpio: GpioConfig,
    }
    let config = toml::from_str::<Wrapper>(section).unwrap().gpio;
    let board = Board::by_name("rpi4").unwrap();
    let clock = Arc::new(SimClock::new(10_000_000, 1_800_000_000_000_000, false));
    let sim = SimGpio::new(clock.clone());
    let (tx, events) = async_channel::unbounded();
    let gpio = Gpio::start(&config, board, Backend::Sim(sim.clone()), clock.clone(), tx).unwrap();
    Rig {
        gpio,
        sim,
        clock,
        events,
    }
}

impl Rig {
    fn set(&self, input: &str, active: bool) {
        self.gpio.sim_set_input(input, active).unwrap();
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The next trigger, waiting up to 2 s of real time.
    fn next(&self) -> Option<(TriggerKind, String, u64)> {
        let give_up = Instant::now() + Duration::from_secs(2);
        while Instant::now() < give_up {
            if let Ok(e) = self.events.try_recv() {
                return Some((e.kind, e.input, e.timestamp_us));
            }
            std::thread::sleep(MS);
        }
        None
    }

    /// Asserts no trigger arrives within `real` time.
    fn quiet(&self, real: Duration) {
        std::thread::sleep(real);
        assert_eq!(self.events.try_recv().ok(), None);
    }

    /// Waits (real time, up to 2 s) until the simulated output reads `on`.
    fn output_becomes(&self, name: &str, on: bool) {
        let sim = &self.sim;
        let give_up = Instant::now() + Duration::from_secs(2);
        while sim.output(name) != Some(on) {
            assert!(
                Instant::now() < give_up,
                "{name} never turned {} at t = {} µs",
                if on { "on" } else { "off" },
                self.clock.monotonic_us()
            );
            std::thread::sleep(MS);
        }
    }
}

const LEVEL: &str = r#"
    [gpio]
    [[gpio.inputs]]
    name = "experiment"
    pin = 23
    role = "experiment"
    mode = "level"
    [[gpio.inputs]]
    name = "marker"
    pin = 24
    role = "marker"
    [gpio.leds]
    enabled = false
"#;

#[test]
fn level_mode_starts_and_stops_and_ignores_short_pulses() {
    let r = rig(LEVEL);
    use TriggerKind::*;
    // Active for 25 ms: accepted, stamped at the transition.
    r.set("experiment", true);
    r.advance(25 * MS);
    assert_eq!(r.next(), Some((Start, "experiment".into(), 10_000_000)));
    assert!(r.gpio.status().experiment_running);
    // A 5 ms drop-out is shorter than the 20 ms debounce: nothing.
    r.advance(100 * MS);
    r.set("experiment", false);
    r.advance(5 * MS);
    r.set("experiment", true);
    r.advance(50 * MS);
    r.quiet(60 * MS);
    // A real stop.
    r.set("experiment", false);
    let stop_at = r.clock.monotonic_us();
    r.advance(20 * MS);
    assert_eq!(r.next(), Some((Stop, "experiment".into(), stop_at)));
    assert!(!r.gpio.inputs()[0].level);
    assert!(!r.gpio.status().experiment_running);
}

#[test]
fn pulse_mode_toggles_and_agrees_with_the_experiment_side() {
    let r = rig(&LEVEL.replace("mode = \"level\"", "mode = \"pulse\""));
    use TriggerKind::*;
    let pulse = |r: &Rig| {
        r.set("experiment", true);
        let at = r.clock.monotonic_us();
        r.advance(30 * MS);
        r.set("experiment", false);
        r.advance(30 * MS);
        at
    };
    let t1 = pulse(&r);
    assert_eq!(r.next(), Some((Start, "experiment".into(), t1)));
    let t2 = pulse(&r);
    assert_eq!(r.next(), Some((Stop, "experiment".into(), t2)));
    // The API started an experiment: the next pulse stops it.
    r.gpio.set_experiment_running(true);
    let t3 = pulse(&r);
    assert_eq!(r.next(), Some((Stop, "experiment".into(), t3)));
    // The experiment side refused that stop and says it still runs: stop again.
    r.gpio.set_experiment_running(true);
    let t4 = pulse(&r);
    assert_eq!(r.next(), Some((Stop, "experiment".into(), t4)));
    // A pulse shorter than the debounce toggles nothing.
    r.set("experiment", true);
    r.advance(10 * MS);
    r.set("experiment", false);
    r.advance(40 * MS);
    r.quiet(60 * MS);
    let t5 = pulse(&r);
    assert_eq!(r.next(), Some((Start, "experiment".into(), t5)));
}

#[test]
fn markers_log_on_the_active_edge_only() {
    let r = rig(LEVEL);
    r.set("marker", true);
    let at = r.clock.monotonic_us();
    r.advance(25 * MS);
    assert_eq!(r.next(), Some((TriggerKind::Marker, "marker".into(), at)));
    r.set("marker", false);
    r.advance(25 * MS);
    r.quiet(60 * MS);
    assert_eq!(r.gpio.inputs()[1].role, InputRole::Marker);
    assert_eq!(r.gpio.inputs()[1].mode, None);
}

#[test]
fn unknown_sim_inputs_are_not_found() {
    let r = rig(LEVEL);
    let err = r.gpio.sim_set_input("door", true).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[test]
fn board_defaults_give_named_inputs_and_leds() {
    let r = rig("[gpio]\n");
    let inputs = r.gpio.inputs();
    let names: Vec<_> = inputs.iter().map(|i| (i.name.as_str(), i.pin)).collect();
    assert_eq!(names, [("experiment", 23), ("marker", 24)]);
    let leds: Vec<_> = r.gpio.leds().into_iter().map(|l| (l.name, l.pin)).collect();
    assert_eq!(
        leds,
        [
            ("status".to_string(), 17),
            ("recording".to_string(), 27),
            ("error".to_string(), 22)
        ]
    );
    let json = serde_json::to_value(r.gpio.status()).unwrap();
    assert_eq!(json["backend"], "sim");
    assert_eq!(json["board"], "rpi4");
    assert_eq!(json["inputs"][0]["mode"], "level");
    assert_eq!(json["inputs"][0]["role"], "experiment");
    assert_eq!(json["led_state"]["health"], "ok");
}

#[test]
fn leds_follow_the_state_at_known_clock_times() {
    let r = rig("[gpio]\ninputs = []\n");
    // t = 10.000 s, healthy: the heartbeat is in its 100 ms on phase.
    r.output_becomes("status", true);
    assert_eq!(r.gpio.sim().unwrap().output("error"), Some(false));
    r.advance(150 * MS); // 10.150: off phase
    r.output_becomes("status", false);
    r.advance(900 * MS); // 11.050: on again
    r.output_becomes("status", true);

    // Degraded and recording: fast blink, error and recording LEDs on.
    r.gpio.set_led_state(LedState {
        health: Health::Degraded,
        recording: true,
        archiving: false,
    });
    r.output_becomes("error", true);
    r.output_becomes("recording", true);
    r.advance(100 * MS); // 11.150: 4 Hz off phase (125..250 ms)
    r.output_becomes("status", false);
    r.advance(100 * MS); // 11.250: on
    r.output_becomes("status", true);

    // Archiving: the recording LED blinks at 2 Hz; error: status solid.
    r.gpio.set_led_state(LedState {
        health: Health::Error,
        recording: true,
        archiving: true,
    });
    r.output_becomes("recording", false); // 11.250: 250 ms into 500, off phase
    r.advance(260 * MS); // 11.510: on
    r.output_becomes("recording", true);
    r.advance(390 * MS); // 11.900: off; heartbeat and 4 Hz would both be off now
    r.output_becomes("recording", false);
    assert_eq!(r.gpio.sim().unwrap().output("status"), Some(true));

    // Back to healthy: heartbeat off phase, the error LED goes out.
    r.gpio.set_led_state(LedState::default());
    r.output_becomes("error", false);
    r.output_becomes("status", false);

    // Dropping the service switches everything off.
    let sim = r.gpio.sim().unwrap().clone();
    r.gpio.set_led_state(LedState {
        health: Health::Error,
        recording: true,
        archiving: false,
    });
    r.output_becomes("recording", true);
    drop(r);
    assert!(
        sim.outputs().iter().all(|(_, on)| !on),
        "{:?}",
        sim.outputs()
    );
}

#[test]
fn ttl_out_mirrors_recording() {
    let r = rig("[gpio]\ninputs = []\n[gpio.ttl_out]\npin = 25\nmode = \"recording\"\n");
    let sim = r.gpio.sim().unwrap().clone();
    assert_eq!(sim.output("ttl_out"), Some(false));
    assert!(r.gpio.frame_pulser().is_none());
    r.gpio.set_led_state(LedState {
        recording: true,
        ..LedState::default()
    });
    assert_eq!(sim.output("ttl_out"), Some(true), "set synchronously");
    r.gpio.set_led_state(LedState::default());
    assert_eq!(sim.output("ttl_out"), Some(false));
    assert_eq!(r.gpio.status().ttl_out.unwrap().mode, TtlMode::Recording);
}

#[test]
fn frame_pulses_last_their_width_on_the_clock() {
    let r = rig(
        "[gpio]\ninputs = []\n[gpio.ttl_out]\npin = 25\nmode = \"frame_pulse\"\npulse_width = \"2ms\"\n",
    );
    let sim = r.gpio.sim().unwrap().clone();
    let pulser = r.gpio.frame_pulser().unwrap();
    pulser.pulse();
    assert_eq!(sim.output("ttl_out"), Some(true), "raised at once");
    r.quiet(20 * MS); // the clock stands still: the pulse goes on
    assert_eq!(sim.output("ttl_out"), Some(true));
    r.advance(MS);
    pulser.pulse(); // a new frame extends the pulse to 2 ms from now
    r.advance(MS + MS / 2);
    r.quiet(20 * MS);
    assert_eq!(sim.output("ttl_out"), Some(true));
    r.advance(MS);
    r.output_becomes("ttl_out", false);
    drop(r);
    pulser.pulse(); // after the service is gone: nothing
    assert_eq!(sim.output("ttl_out"), Some(false));
}

/// Lines held active since before benchcam started: no edge ever comes.
struct HeldActive;

impl GpioBackend for HeldActive {
    fn name(&self) -> &'static str {
        "held"
    }
    fn open_input(&self, _: &InputSpec) -> Result<Box<dyn InputLine>> {
        struct Line;
        impl InputLine for Line {
            fn wait_edge(&mut self, timeout: Duration) -> Result<Option<Edge>> {
                std::thread::sleep(timeout);
                Ok(None)
            }
            fn level(&self) -> Result<bool> {
                Ok(true)
            }
        }
        Ok(Box::new(Line))
    }
    fn open_output(&self, _: &OutputSpec) -> Result<Box<dyn OutputLine>> {
        unreachable!("LEDs are disabled in this test")
    }
}

#[test]
fn inputs_active_at_start_start_a_level_experiment_only() {
    let clock = Arc::new(SimClock::new(5_000_000, 0, false));
    let (tx, rx) = async_channel::unbounded();
    let shared = Arc::new(Shared {
        clock,
        shutdown: AtomicBool::new(false),
        experiment_running: AtomicBool::new(false),
        inputs: ["level", "pulse", "marker"]
            .iter()
            .map(|name| InputState {
                config: InputConfig {
                    name: name.to_string(),
                    pin: 0,
                    role: if *name == "marker" {
                        InputRole::Marker
                    } else {
                        InputRole::Experiment
                    },
                    mode: match *name {
                        "level" => Some(InputMode::Level),
                        "pulse" => Some(InputMode::Pulse),
                        _ => None,
                    },
                    active_low: false,
                    pull: None,
                    debounce: crate::config::HumanDuration(Duration::ZERO),
                },
                level: AtomicBool::new(false),
                fault: Mutex::new(None),
            })
            .collect(),
        leds: Vec::new(),
        led_state: Mutex::new(LedState::default()),
        led_wake: Condvar::new(),
        events: tx,
        events_closed: AtomicBool::new(false),
        output_warnings: RateLimit::default(),
    });
    let mut threads = Vec::new();
    for index in 0..3 {
        let shared = Arc::clone(&shared);
        threads.push(std::thread::spawn(move || {
            let spec = InputSpec::from(&shared.inputs[index].config);
            let line = HeldActive.open_input(&spec).unwrap();
            run_input(&shared, index, line, &HeldActive, &spec)
        }));
    }
    std::thread::sleep(Duration::from_millis(150));
    shared.shutdown.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let events: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(
        events,
        [TriggerEvent {
            input: "level".into(),
            role: InputRole::Experiment,
            kind: TriggerKind::Start,
            timestamp_us: 5_000_000,
        }]
    );
    assert!(shared.inputs.iter().all(|i| i.level.load(Ordering::SeqCst)));
    assert!(shared.experiment_running.load(Ordering::SeqCst));
}

/// Simulated pins whose first opened input fails on its first wait.
struct FailsOnce {
    sim: SimGpio,
    failed: AtomicBool,
}

struct FailingLine(Box<dyn InputLine>);

impl InputLine for FailingLine {
    fn wait_edge(&mut self, _: Duration) -> Result<Option<Edge>> {
        Err(Error::new(ErrorKind::Disconnected, "line went away"))
    }
    fn level(&self) -> Result<bool> {
        self.0.level()
    }
}

impl GpioBackend for FailsOnce {
    fn name(&self) -> &'static str {
        "fails-once"
    }
    fn open_input(&self, spec: &InputSpec) -> Result<Box<dyn InputLine>> {
        let line = self.sim.open_input(spec)?;
        if self.failed.swap(true, Ordering::SeqCst) {
            Ok(line)
        } else {
            Ok(Box::new(FailingLine(line)))
        }
    }
    fn open_output(&self, spec: &OutputSpec) -> Result<Box<dyn OutputLine>> {
        self.sim.open_output(spec)
    }
}

#[test]
fn a_failing_input_is_a_fault_until_reopened() {
    let clock = Arc::new(SimClock::new(10_000_000, 0, false));
    let sim = SimGpio::new(clock.clone());
    let backend = Backend::Other(Arc::new(FailsOnce {
        sim: sim.clone(),
        failed: AtomicBool::new(false),
    }));
    let config = toml::from_str::<GpioConfig>(
        "[[inputs]]\nname = \"marker\"\npin = 24\nrole = \"marker\"\n",
    )
    .unwrap();
    let (tx, events) = async_channel::unbounded();
    let gpio = Gpio::start(
        &config,
        Board::by_name("rpi4").unwrap(),
        backend,
        clock.clone(),
        tx,
    )
    .unwrap();
    let r = Rig {
        gpio,
        sim: sim.clone(),
        clock,
        events,
    };
    assert_eq!(r.gpio.backend_name(), "fails-once");
    r.output_becomes("error", true);
    let fault = r.gpio.trigger_fault().unwrap();
    assert_eq!(fault, "input marker: line went away");
    assert_eq!(r.gpio.inputs()[0].fault.as_deref(), Some("line went away"));
    // Reopened after the 1 s backoff: the fault clears and edges flow again.
    r.output_becomes("error", false);
    assert_eq!(r.gpio.trigger_fault(), None);
    sim.set_input("marker", true).unwrap();
    r.advance(25 * MS);
    assert_eq!(
        r.next(),
        Some((TriggerKind::Marker, "marker".into(), 10_000_000))
    );
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Gpio>();
    send_sync::<FramePulser>();
    send_sync::<SimGpio>();
    send_sync::<Backend>();
}

#[test]
fn backend_none_has_no_lines_and_refuses_sim_input() {
    let board = Board::by_name("rpi4").unwrap();
    let (tx, _rx) = async_channel::unbounded();
    let clock = Arc::new(SimClock::new(0, 0, false));
    let gpio = Gpio::start(&GpioConfig::default(), board, Backend::None, clock, tx).unwrap();
    assert!(gpio.inputs().is_empty());
    assert!(gpio.leds().is_empty());
    assert_eq!(gpio.backend_name(), "none");
    let err = gpio.sim_set_input("experiment", true).unwrap_err();
    assert_eq!(err.kind, ErrorKind::WrongState);
}

#[test]
fn explicit_sim_backend_is_chosen() {
    let config = GpioConfig {
        backend: BackendChoice::Sim,
        ..GpioConfig::default()
    };
    let board = Board::by_name("rpi5").unwrap();
    let clock = Arc::new(SimClock::new(0, 0, false));
    assert_eq!(Backend::open(&config, board, clock).unwrap().name(), "sim");
}
