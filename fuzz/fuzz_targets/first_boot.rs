//! The image's first-boot settings parser (image-build/overlay/usr/lib/benchcam/
//! benchcam-setup, bash): the `benchcam-setup.txt` a user edits on the boot partition,
//! applied to a scratch root as image-build/test-setup.sh does. libFuzzer sees no coverage
//! inside bash, so this target mutates blindly from the seeds, at the speed of one bash run
//! per input. Checked: the script ends with status 0 and prints nothing on stderr (no bash
//! error); no secret stays readable in the rewritten file; a hostname it applied is a valid
//! one; a token it wrote into benchcam.toml is one the service accepts; an unchanged file is
//! not applied twice.
#![no_main]

use std::path::{Path, PathBuf};
use std::process::Command;

use benchcam::config::Config;
use libfuzzer_sys::fuzz_target;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A directory with a no-op `sync`: the script syncs every filesystem twice per run.
fn shims() -> &'static tempfile::TempDir {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sync = dir.path().join("sync");
        std::fs::write(&sync, "#!/bin/sh\nexit 0\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sync, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
}

fn config_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let text = std::fs::read_to_string(repo().join("config/benchcam.toml")).unwrap();
        text.lines()
            .map(|l| {
                if l.starts_with("data_dir = ") {
                    "data_dir = \"/var/lib/benchcam\"".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    })
}

fn run(root: &Path) -> (i32, String, String) {
    let path = format!(
        "{}:{}",
        shims().path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(repo().join("image-build/overlay/usr/lib/benchcam/benchcam-setup"))
        .env("BENCHCAM_SETUP_ROOT", root)
        .env("PATH", path)
        // What systemd (>= 251) gives a service when no locale is configured, as on the image.
        .env_remove("LC_ALL")
        .env("LANG", "C.UTF-8")
        .output()
        .expect("bash runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn key_value(line: &str) -> Option<(String, String)> {
    let (k, v) = line.split_once('=')?;
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|_| v.len() >= 2)
        .unwrap_or(v);
    Some((k.trim().to_ascii_lowercase(), v.to_string()))
}

fuzz_target!(|data: &[u8]| {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    for d in [
        "boot/firmware",
        "etc/benchcam",
        "var/lib/benchcam",
        "usr/share",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("/usr/share/zoneinfo", root.join("usr/share/zoneinfo")).unwrap();
    let config_path = root.join("etc/benchcam/benchcam.toml");
    std::fs::write(&config_path, config_text()).unwrap();
    std::fs::write(root.join("etc/hostname"), "benchcam\n").unwrap();
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n127.0.1.1\tbenchcam\n",
    )
    .unwrap();
    let setup = root.join("boot/firmware/benchcam-setup.txt");
    std::fs::write(&setup, data).unwrap();

    let (status, stdout, stderr) = run(root);
    let stderr: Vec<&str> = stderr
        .lines()
        // bash drops NUL bytes from what `read` returns, and says so.
        .filter(|l| !l.contains("ignored null byte"))
        .collect();
    assert!(
        status == 0 && stderr.is_empty(),
        "status {status}, stderr:\n{}\nstdout:\n{stdout}",
        stderr.join("\n")
    );

    // No secret left readable: every uncommented psk/token line, and every one commented out
    // under a NOT APPLIED reason, shows `<redacted>` (or nothing).
    let rewritten = std::fs::read(&setup).unwrap();
    let rewritten = String::from_utf8_lossy(&rewritten);
    let lines: Vec<&str> = rewritten.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim_start_matches('\u{feff}').trim_end_matches('\r');
        let trimmed = line.trim_start();
        let candidate = if let Some(rest) = trimmed.strip_prefix("# ") {
            let after_reason = i > 0 && lines[i - 1].starts_with("# NOT APPLIED: ");
            after_reason.then_some(rest)
        } else if trimmed.starts_with('#') {
            None
        } else {
            Some(trimmed)
        };
        if let Some((key, value)) = candidate.and_then(key_value) {
            if key == "wifi_psk" || key == "access_token" {
                assert!(
                    value.is_empty() || value == "<redacted>",
                    "secret left in the rewritten file, line {}: {line:?}\n{rewritten}",
                    i + 1
                );
            }
        }
    }

    let hostname = std::fs::read_to_string(root.join("etc/hostname")).unwrap();
    let h = hostname.trim_end_matches('\n');
    assert!(
        !h.is_empty()
            && h.len() <= 63
            && h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !h.starts_with('-')
            && !h.ends_with('-'),
        "hostname {h:?}"
    );

    let config = std::fs::read_to_string(&config_path).unwrap();
    if config != config_text() {
        if let Err(e) = Config::parse(&config) {
            panic!("the script wrote a config the service refuses: {e}");
        }
    }

    let (status, stdout, _) = run(root);
    assert_eq!(status, 0);
    assert!(
        stdout.contains("unchanged since it was applied"),
        "applied a second time:\n{stdout}"
    );
});
