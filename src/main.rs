//! Command line: parse arguments, load the config, pick real hardware, run the app.

use std::path::PathBuf;
use std::process::ExitCode;

use benchcam::app::{self, Hardware};
use benchcam::camera::discovery::{ConfigDiscoverer, Discoverer};
use benchcam::config::{self, Config};

const HELP: &str = "\
benchcam — camera service of a lab-bench appliance

USAGE:
    benchcam [run] [--config PATH]          run the service (default)
    benchcam probe [--config PATH]          list cameras, their modes, and the board
    benchcam check-config [--config PATH]   validate and print the effective config
    benchcam fleet-targets [--seconds N] [--out FILE]
                                            browse mDNS for N seconds (default 5) and write
                                            the benches found as Prometheus file_sd JSON
                                            (to FILE atomically, or to stdout)
    benchcam --version | --help

Without --config the built-in defaults are used: V4L2 cameras or a test pattern,
data in ./benchcam-data, web page on http://0.0.0.0:8080.";

enum Command {
    Run,
    Probe,
    CheckConfig,
    FleetTargets,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut command = None;
    let mut config_path: Option<PathBuf> = None;
    let mut seconds: u64 = 5;
    let mut out: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => {
                println!("{HELP}");
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("benchcam {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--config" | "-c" => match args.next() {
                Some(p) => config_path = Some(PathBuf::from(p)),
                None => return usage("--config needs a path"),
            },
            "--seconds" if matches!(command, Some(Command::FleetTargets)) => {
                match args.next().and_then(|s| s.parse().ok()) {
                    Some(n) if (1..=3600).contains(&n) => seconds = n,
                    _ => return usage("--seconds needs a number of seconds from 1 to 3600"),
                }
            }
            "--out" if matches!(command, Some(Command::FleetTargets)) => match args.next() {
                Some(p) => out = Some(PathBuf::from(p)),
                None => return usage("--out needs a file path"),
            },
            "run" | "probe" | "check-config" | "fleet-targets" if command.is_none() => {
                command = Some(match arg.as_str() {
                    "run" => Command::Run,
                    "probe" => Command::Probe,
                    "fleet-targets" => Command::FleetTargets,
                    _ => Command::CheckConfig,
                })
            }
            other => return usage(&format!("unexpected argument '{other}'")),
        }
    }
    let config = match &config_path {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("benchcam: refusing to start: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let level = config::log_level(&config.service.log_level).expect("validated");
    // Under journald (JOURNAL_STREAM set) the journal adds timestamps itself.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_module_level("hyper", log::LevelFilter::Warn)
        .env()
        .init();
    match command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            // The token is a secret: say that it is set, never what it is (the output
            // goes to terminals, logs and bug reports).
            let mut shown = config.clone();
            if !shown.service.access_token.is_empty() {
                shown.service.access_token = "(set; hidden)".into();
            }
            match toml::to_string_pretty(&shown) {
                Ok(text) => print!("{text}"),
                Err(e) => {
                    eprintln!("benchcam: cannot print config: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Probe => probe(&config),
        Command::FleetTargets => fleet_targets(seconds, out.as_deref()),
        Command::Run => run(config),
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("benchcam: {problem}\n\n{HELP}");
    ExitCode::from(2)
}

fn probe(config: &Config) -> ExitCode {
    let clock: std::sync::Arc<dyn benchcam::clock::Clock> =
        std::sync::Arc::new(benchcam::clock::SystemClock);
    let discoverer = ConfigDiscoverer {
        camera: config.camera.clone(),
        clock,
    };
    let devices = discoverer.discover();
    if devices.is_empty() {
        println!("no cameras");
    }
    for (i, device) in devices.iter().enumerate() {
        let info = device.info();
        println!("cam{i}: {} ({}, {})", info.name, info.device, info.backend);
        for m in &info.modes {
            println!(
                "    {:>5} {}x{} @ {} fps",
                m.format.name(),
                m.width,
                m.height,
                m.fps
            );
        }
    }
    ExitCode::SUCCESS
}

fn fleet_targets(seconds: u64, out: Option<&std::path::Path>) -> ExitCode {
    let found = benchcam::fleet::targets::browse(std::time::Duration::from_secs(seconds)).and_then(
        |peers| {
            benchcam::fleet::targets::write(&peers, out)?;
            Ok(peers.len())
        },
    );
    match found {
        Ok(n) => {
            if let Some(path) = out {
                eprintln!("benchcam: {n} bench(es) written to {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchcam: fleet-targets: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> ExitCode {
    let addr = config.listen_addr();
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("benchcam: cannot listen on {addr} (service.listen): {e}");
            return ExitCode::from(2);
        }
    };
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]);
    match signals {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    log::info!("signal {sig}: shutting down");
                    let _ = stop_tx.try_send(());
                }
            });
        }
        Err(e) => log::warn!("cannot install signal handlers: {e}"),
    }
    let hardware = Hardware::real(&config);
    match app::run(config, hardware, listener, stop_rx) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchcam: {e}");
            ExitCode::FAILURE
        }
    }
}
