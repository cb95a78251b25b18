//! Experiment and GPIO endpoints of DESIGN §4.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::api::service_error;
use super::http::{error_response, json, parse_json, read_body, Body};
use super::AppState;
use crate::experiment::{ExperimentService, Stamp};

/// The request's JSON body (`{}` when empty), or the 4xx response to send. Boxed: a
/// response is large and this is the rare path.
async fn body_json(req: Request<Incoming>) -> Result<Value, Box<Response<Body>>> {
    let body = read_body(req).await.map_err(|e| Box::new(e.response()))?;
    if body.is_empty() {
        return Ok(json!({}));
    }
    parse_json(&body).map_err(|e| Box::new(e.response()))
}

fn bad(message: &str) -> Response<Body> {
    error_response(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn string_field(value: &Value, key: &str) -> Result<Option<String>, Box<Response<Body>>> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Box::new(bad(&format!("`{key}` must be a string")))),
    }
}

/// POST /api/v1/experiments: `{"experiment_id", "method", "arm": bool, "cameras": [..]}`.
pub async fn create(req: Request<Incoming>, state: &Arc<AppState>) -> Response<Body> {
    let value = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if !value.is_object() {
        return bad("send a JSON object: {\"experiment_id\": \"...\", \"method\": \"...\"}");
    }
    let id = match string_field(&value, "experiment_id") {
        Ok(Some(id)) => id,
        Ok(None) => return bad("`experiment_id` is required"),
        Err(r) => return *r,
    };
    let method = match string_field(&value, "method") {
        Ok(m) => m.unwrap_or_default(),
        Err(r) => return *r,
    };
    let arm = match value.get("arm") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return bad("`arm` must be true or false"),
    };
    let cameras = match value.get("cameras") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => {
            let names: Option<Vec<String>> = list
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect();
            match names {
                Some(n) if n.len() <= 8 => Some(n),
                _ => return bad("`cameras` must be a list of camera ids like [\"cam0\"]"),
            }
        }
        Some(_) => return bad("`cameras` must be a list of camera ids"),
    };
    let (experiments, gpio) = (Arc::clone(&state.experiments), state.gpio.clone());
    let result = smol::unblock(move || {
        let result = if arm {
            experiments.arm(&id, &method, cameras)
        } else {
            experiments.start(&id, &method, cameras, "api", None)
        };
        sync_gpio(&experiments, gpio.as_deref());
        result
    })
    .await;
    match result {
        Ok(exp) => json(StatusCode::CREATED, &exp),
        Err(e) => service_error(&e),
    }
}

/// Tells the GPIO side whether an experiment runs (pulse-mode inputs toggle from it).
/// Blocks on the experiments' lock, which a start holds while it writes: call it off
/// the executor, like everything here that reads or writes experiments.
fn sync_gpio(experiments: &ExperimentService, gpio: Option<&crate::gpio::Gpio>) {
    if let Some(gpio) = gpio {
        let running = experiments
            .active()
            .is_some_and(|e| e.phase == crate::experiment::Phase::Running);
        gpio.set_experiment_running(running);
    }
}

/// GET /api/v1/experiments: reads every experiment's state file (and a manifest it has not
/// seen before), so off the executor.
pub async fn list(state: &Arc<AppState>) -> Response<Body> {
    let experiments = Arc::clone(&state.experiments);
    let mut list = smol::unblock(move || experiments.list()).await;
    for item in &mut list {
        super::replication::decorate(state, item);
    }
    json(StatusCode::OK, &list)
}

pub async fn manifest(state: &Arc<AppState>, id: &str) -> Response<Body> {
    let (experiments, id) = (Arc::clone(&state.experiments), id.to_string());
    match smol::unblock(move || experiments.manifest(&id)).await {
        Ok(mut m) => {
            super::replication::decorate(state, &mut m);
            json(StatusCode::OK, &m)
        }
        Err(e) => service_error(&e),
    }
}

/// POST /api/v1/experiments/{id}/stop: waits for the post-roll and the archive.
pub async fn stop(state: &Arc<AppState>, id: &str) -> Response<Body> {
    let (experiments, gpio) = (Arc::clone(&state.experiments), state.gpio.clone());
    let id = id.to_string();
    let result = smol::unblock(move || {
        let result = experiments.stop(&id, "api", None);
        sync_gpio(&experiments, gpio.as_deref());
        result
    })
    .await;
    match result {
        Ok(m) => json(StatusCode::OK, &m),
        Err(e) => service_error(&e),
    }
}

/// POST /api/v1/experiments/{id}/archive `{"method": "..."}`: archive_experiment_videos.
pub async fn archive(req: Request<Incoming>, state: &Arc<AppState>, id: &str) -> Response<Body> {
    let value = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    // schemathesis sent `""` and it was taken as no method: a body is an object or nothing.
    if !value.is_object() {
        return bad("send a JSON object: {\"method\": \"...\"}, or no body");
    }
    let method = match string_field(&value, "method") {
        Ok(m) => m.unwrap_or_default(),
        Err(r) => return *r,
    };
    let experiments = Arc::clone(&state.experiments);
    let id = id.to_string();
    match smol::unblock(move || experiments.archive(&id, &method)).await {
        Ok(m) => json(StatusCode::OK, &m),
        Err(e) => service_error(&e),
    }
}

/// POST /api/v1/experiments/{id}/marker: logs a marker event now, with an optional
/// `{"label": "..."}` (≤ 64 characters).
pub async fn marker(req: Request<Incoming>, state: &Arc<AppState>, id: &str) -> Response<Body> {
    let value = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if !value.is_object() {
        return bad("send nothing, or a JSON object: {\"label\": \"...\"}");
    }
    let label = match string_field(&value, "label") {
        Ok(l) => l.filter(|l| !l.trim().is_empty()),
        Err(r) => return *r,
    };
    let (experiments, id) = (Arc::clone(&state.experiments), id.to_string());
    // The manifest is written (and fsynced) before the answer.
    let result = smol::unblock(move || match experiments.active() {
        Some(e) if e.experiment_id == id => experiments.marker_labelled("api", None, label),
        _ => Err(crate::error::Error::new(
            crate::error::ErrorKind::WrongState,
            format!("experiment {id} is not running"),
        )),
    })
    .await;
    match result {
        Ok(()) => json(StatusCode::OK, &json!({"ok": true})),
        Err(e) => service_error(&e),
    }
}

/// GET /api/v1/gpio
pub fn gpio_status(state: &AppState) -> Response<Body> {
    match &state.gpio {
        Some(gpio) => json(StatusCode::OK, &gpio.status()),
        None => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "GPIO is off (gpio.backend = \"none\")",
        ),
    }
}

/// POST /api/v1/gpio/sim/{input} `{"level": true}`: only with the simulated backend.
pub async fn gpio_sim(
    req: Request<Incoming>,
    state: &Arc<AppState>,
    input: &str,
) -> Response<Body> {
    let Some(gpio) = state.gpio.as_ref().filter(|g| g.sim().is_some()) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "simulated inputs exist only with gpio.backend = \"sim\"",
        );
    };
    let value = match body_json(req).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(level) = value.get("level").and_then(Value::as_bool) else {
        return bad("send {\"level\": true} or {\"level\": false}");
    };
    match gpio.sim_set_input(input, level) {
        Ok(()) => json(StatusCode::OK, &json!({"input": input, "level": level})),
        Err(e) => service_error(&e),
    }
}

/// Feeds trigger events from the GPIO service to the experiments, off the executor.
/// Runs until the GPIO service is dropped: its input threads hold the event senders, so
/// this thread holds it only weakly (a strong reference kept it, its threads and this
/// one alive after the app shut down).
pub fn spawn_trigger_loop(
    experiments: Arc<ExperimentService>,
    gpio: std::sync::Weak<crate::gpio::Gpio>,
    events: async_channel::Receiver<crate::gpio::TriggerEvent>,
    clock: Arc<dyn crate::clock::Clock>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("triggers".into())
        .spawn(move || {
            while let Ok(event) = events.recv_blocking() {
                let at = Stamp {
                    monotonic_us: event.timestamp_us,
                    wall_us: clock.wall_at_us(event.timestamp_us),
                };
                let kind = match event.kind {
                    crate::gpio::TriggerKind::Start => crate::experiment::TriggerKind::Start,
                    crate::gpio::TriggerKind::Stop => crate::experiment::TriggerKind::Stop,
                    crate::gpio::TriggerKind::Marker => crate::experiment::TriggerKind::Marker,
                };
                log::info!(
                    "trigger {}: {:?} at {} µs",
                    event.input,
                    event.kind,
                    event.timestamp_us
                );
                experiments.on_trigger(&event.input, kind, at);
                let running = experiments
                    .active()
                    .is_some_and(|e| e.phase == crate::experiment::Phase::Running);
                if let Some(gpio) = gpio.upgrade() {
                    gpio.set_experiment_running(running);
                }
            }
        })
        .expect("spawning the trigger thread")
}
