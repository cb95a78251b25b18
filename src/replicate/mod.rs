//! Replication: every archived experiment (and, when asked, every finished rolling clip)
//! goes to the lab's S3-compatible object storage, verified end to end.
//!
//! `config` is the `[replication]` section; `s3` the store (rusty-s3 signing over ureq);
//! `journal` the crash-safe record of what the store acknowledged; `replicator` the thread
//! that does the work. Data flows one way: experiment archives → replicator → store.

pub mod config;
pub mod journal;
pub mod replicator;
pub mod s3;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

pub use config::ReplicationConfig;
pub use replicator::{Replicator, Summary};

use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};

/// Reads the secret key: the file must hold one line and be readable by its owner only.
pub fn read_secret(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(e, format!("secret_access_key_file {}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "secret_access_key_file {} is readable by others (mode {mode:03o}): \
                 chmod 600 it, owned by the service user",
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(e, format!("secret_access_key_file {}", path.display())))?;
    let secret = text.trim();
    if secret.is_empty() || secret.contains(char::is_whitespace) || secret.len() > 256 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "secret_access_key_file {} must hold the secret key alone on one line",
                path.display()
            ),
        ));
    }
    Ok(secret.to_string())
}

/// Starts replication when `[replication] enabled`: `None` when off. A replicator that
/// cannot run (secret unreadable, endpoint refused) is returned without its thread, so
/// health and the API say why; replication never stops the service.
pub fn start(
    config: &ReplicationConfig,
    storage: Arc<crate::storage::Storage>,
    clock: Arc<dyn Clock>,
) -> Option<(Arc<Replicator>, Option<std::thread::JoinHandle<()>>)> {
    if !config.enabled {
        return None;
    }
    let secret = read_secret(&config.secret_access_key_file);
    let store = s3::S3::new(
        &config.endpoint,
        &config.url_style,
        &config.bucket,
        &config.region,
        &config.access_key_id,
        secret.as_deref().unwrap_or("-"),
    );
    let (store, problem) = match (store, secret) {
        (Ok(store), Ok(_)) => (store, None),
        (Ok(store), Err(e)) => (store, Some(e.to_string())),
        (Err(e), _) => {
            log::error!("replication: {e}; not replicating");
            return None;
        }
    };
    let replicator = match Replicator::new(config.clone(), Arc::new(store), storage, clock) {
        Ok(r) => r,
        Err(e) => {
            log::error!("replication: {e}; not replicating");
            return None;
        }
    };
    if let Some(why) = problem {
        log::error!("replication: {why}; not replicating");
        replicator.set_problem(why);
        return Some((replicator, None));
    }
    log::info!(
        "replication: to {} at {}",
        replicator.summary().destination,
        config.endpoint
    );
    let thread = replicator.start();
    Some((replicator, Some(thread)))
}
