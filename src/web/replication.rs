//! Replication endpoints: the summary, a retry, and each experiment's upload state.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::http::{error_response, json, Body};
use super::AppState;

/// GET /api/v1/replication.
pub fn summary(state: &AppState) -> Response<Body> {
    let c = &state.config.replication;
    let Some(r) = &state.replication else {
        return json(StatusCode::OK, &json!({"enabled": false}));
    };
    let s = r.summary();
    json(
        StatusCode::OK,
        &json!({
            "enabled": true,
            "endpoint": s.endpoint,
            "destination": s.destination,
            "send": c.send,
            "max_rate": c.max_rate.0,
            "window": c.window,
            "waiting_for_window": s.waiting_for_window,
            "experiments": {
                "pending": s.pending,
                "uploading": s.uploading,
                "verified": s.verified,
                "failed": s.failed,
            },
            "rolling_clips": {
                "pending": s.clips_pending,
                "verified": s.clips_verified,
                "failed": s.clips_failed,
            },
            "failing_s": s.failing_s,
            "last_error": s.last_error,
            "problem": s.problem,
            "uploaded_bytes": s.uploaded_bytes,
            "resent_bytes": s.resent_bytes,
        }),
    )
}

/// POST /api/v1/replication/retry: look for work now, without waiting out a backoff.
pub fn retry(state: &AppState) -> Response<Body> {
    match &state.replication {
        Some(r) => {
            r.wake();
            json(StatusCode::ACCEPTED, &json!({"retrying": true}))
        }
        None => error_response(
            StatusCode::CONFLICT,
            "wrong_state",
            "replication is off: set [replication] enabled = true",
        ),
    }
}

/// With replication on, adds `replication` (null until the experiment is planned) to an
/// experiment's JSON object; with it off the object stays as it is (the manifest as filed).
pub fn decorate(state: &AppState, value: &mut Value) {
    let Some(r) = &state.replication else {
        return;
    };
    let Some(id) = value["experiment_id"].as_str().map(str::to_string) else {
        return;
    };
    if let Some(obj) = value.as_object_mut() {
        let status = r.experiment_status(&id);
        obj.insert("replication".into(), status.unwrap_or(Value::Null));
    }
}
