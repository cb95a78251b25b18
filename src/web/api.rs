//! REST endpoints of DESIGN §4 (all but experiments and GPIO), `/metrics`, the login, and
//! the routing that also hands out the page, the MJPEG stream and the WebSocket.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::guard::Rejected;
use super::http::{
    error_response, full, parse_json, query_param, read_body, ApiError, Auth, Body, STALL_LIMIT,
};
use super::{assets, downloads, experiments, metrics, mjpeg, ws, AppState, ConnInfo};
use crate::camera::Camera;
use crate::capture::PixelFormat;
use crate::config::is_camera_id;
use crate::encode::jpeg;
use crate::error::{Error, ErrorKind};
use crate::live::Quality;
use crate::record::index::RecordingType;
use crate::settings;

pub use super::http::json;

/// Maps a service error to its HTTP status.
pub fn service_error(e: &Error) -> Response<Body> {
    let (status, code) = match e.kind {
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::WrongState => (StatusCode::CONFLICT, "wrong_state"),
        ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "bad_request"),
        ErrorKind::StorageFull => (StatusCode::SERVICE_UNAVAILABLE, "storage_full"),
        ErrorKind::StorageRemoved => (StatusCode::SERVICE_UNAVAILABLE, "storage_removed"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, e.kind.code()),
    };
    error_response(status, code, &e.to_string())
}

pub(super) fn not_found(what: &str) -> Response<Body> {
    error_response(StatusCode::NOT_FOUND, "not_found", what)
}

pub(super) fn bad_path() -> Response<Body> {
    error_response(
        StatusCode::BAD_REQUEST,
        "bad_path",
        "path segments may not be '.', '..', or contain escapes, slashes or backslashes",
    )
}

/// What a route does; `handle` dispatches on it (exhaustively).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Page,
    Metrics,
    OpenApi,
    Login,
    Logout,
    Health,
    Cameras,
    Rescan,
    RecordingStart,
    RecordingStop,
    Snapshot,
    Mjpeg,
    LiveWs,
    Clips,
    ClipFile,
    Sessions,
    SettingsGet,
    SettingsPatch,
    Experiments,
    ExperimentCreate,
    Experiment,
    ExperimentStop,
    ExperimentArchive,
    ExperimentMarker,
    ExperimentFile,
    ExperimentZip,
    RecordingSpan,
    StorageHistory,
    Replication,
    ReplicationRetry,
    Gpio,
    GpioSim,
    Fleet,
}

/// One route: a method, a path template (`{name}` stands for one path segment) and what
/// answers it.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub endpoint: Endpoint,
}

const fn r(method: Method, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

/// Every route the server answers, and nothing else: `handle` finds routes only here, and
/// tests/openapi.rs holds the OpenAPI document (`/api/v1/openapi.json`) to this table in
/// both directions.
pub static ROUTES: &[Route] = {
    use Endpoint::*;
    const GET: Method = Method::GET;
    const HEAD: Method = Method::HEAD;
    const POST: Method = Method::POST;
    const PATCH: Method = Method::PATCH;
    &[
        r(GET, "/", Page),
        r(HEAD, "/", Page),
        r(GET, "/index.html", Page),
        r(HEAD, "/index.html", Page),
        r(GET, "/app.js", Page),
        r(HEAD, "/app.js", Page),
        r(GET, "/style.css", Page),
        r(HEAD, "/style.css", Page),
        r(GET, "/favicon.ico", Page),
        r(HEAD, "/favicon.ico", Page),
        r(GET, "/metrics", Metrics),
        r(GET, "/api/v1/openapi.json", OpenApi),
        r(POST, "/api/v1/login", Login),
        r(POST, "/api/v1/logout", Logout),
        r(GET, "/api/v1/health", Health),
        r(GET, "/api/v1/cameras", Cameras),
        r(POST, "/api/v1/cameras/rescan", Rescan),
        r(
            POST,
            "/api/v1/cameras/{cam}/recording/start",
            RecordingStart,
        ),
        r(POST, "/api/v1/cameras/{cam}/recording/stop", RecordingStop),
        r(GET, "/api/v1/cameras/{cam}/snapshot.jpg", Snapshot),
        r(GET, "/api/v1/cameras/{cam}/recording.mp4", RecordingSpan),
        r(HEAD, "/api/v1/cameras/{cam}/recording.mp4", RecordingSpan),
        r(GET, "/api/v1/cameras/{cam}/stream.mjpg", Mjpeg),
        r(GET, "/api/v1/cameras/{cam}/ws", LiveWs),
        r(GET, "/api/v1/clips", Clips),
        r(GET, "/api/v1/clips/{cam}/{file}", ClipFile),
        r(HEAD, "/api/v1/clips/{cam}/{file}", ClipFile),
        r(GET, "/api/v1/streaming/sessions", Sessions),
        r(GET, "/api/v1/storage/history", StorageHistory),
        r(GET, "/api/v1/settings", SettingsGet),
        r(PATCH, "/api/v1/settings", SettingsPatch),
        r(GET, "/api/v1/experiments", Experiments),
        r(POST, "/api/v1/experiments", ExperimentCreate),
        r(GET, "/api/v1/experiments/{id}", Experiment),
        r(POST, "/api/v1/experiments/{id}/stop", ExperimentStop),
        r(POST, "/api/v1/experiments/{id}/archive", ExperimentArchive),
        r(POST, "/api/v1/experiments/{id}/marker", ExperimentMarker),
        r(GET, "/api/v1/experiments/{id}/files/{file}", ExperimentFile),
        r(
            HEAD,
            "/api/v1/experiments/{id}/files/{file}",
            ExperimentFile,
        ),
        r(GET, "/api/v1/experiments/{id}/download.zip", ExperimentZip),
        r(GET, "/api/v1/replication", Replication),
        r(POST, "/api/v1/replication/retry", ReplicationRetry),
        r(GET, "/api/v1/gpio", Gpio),
        r(POST, "/api/v1/gpio/sim/{input}", GpioSim),
        r(GET, "/api/v1/fleet", Fleet),
    ]
};

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed<'a> {
    /// The endpoint, and the path segments the template's `{…}` parts stand for.
    Found(Endpoint, Vec<&'a str>),
    /// Routes have this path, but not for this method (405): the methods they have.
    WrongMethod(Vec<Method>),
    /// No route has this path (404).
    NotFound,
}

/// Looks up a request's method and path segments (the path split on '/', without the
/// leading empty one) in [`ROUTES`].
pub fn route<'a>(method: &Method, segments: &[&'a str]) -> Routed<'a> {
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_template(route.path, segments) {
            if route.method == *method {
                return Routed::Found(route.endpoint, params);
            }
            allowed.push(route.method.clone());
        }
    }
    if allowed.is_empty() {
        Routed::NotFound
    } else {
        Routed::WrongMethod(allowed)
    }
}

/// The segments that `template`'s `{…}` parts stand for, when `segments` fit it.
fn match_template<'a>(template: &str, segments: &[&'a str]) -> Option<Vec<&'a str>> {
    let mut parts = template.split('/').skip(1);
    let mut segments = segments.iter();
    let mut params = Vec::new();
    loop {
        match (parts.next(), segments.next()) {
            (None, None) => return Some(params),
            (Some(part), Some(segment)) if part.starts_with('{') => params.push(*segment),
            (Some(part), Some(segment)) if part == *segment => {}
            _ => return None,
        }
    }
}

/// Routes one request. Auth is checked first; then the path, split on '/', is matched
/// segment by segment (never joined onto a directory).
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    state: Arc<AppState>,
) -> Response<Body> {
    state.web.requests.fetch_add(1, Ordering::Relaxed);
    conn.stall.set(STALL_LIMIT);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if let Err(rejected) = state
        .guard
        .check(&method, req.headers(), state.auth.enabled())
    {
        return refused(rejected);
    }
    if state.auth.required(&method, &path) && !state.auth.authorized(req.headers()) {
        // A wrong Bearer token counts against the client's login attempts too.
        if req.headers().contains_key(hyper::header::AUTHORIZATION) {
            let now = std::time::Instant::now();
            if let Err(wait) = state.guard.login_allowed(conn.peer.ip(), now) {
                return too_many_attempts(wait);
            }
            state.guard.login_failed(conn.peer.ip(), now);
        }
        return unauthorized();
    }
    let owned: Vec<String> = path.split('/').skip(1).map(str::to_string).collect();
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    if segments.iter().any(|s| *s == ".." || *s == ".") {
        return bad_path();
    }
    let client = conn.peer.to_string();
    let head = method == Method::HEAD;
    let (endpoint, params) = match route(&method, &segments) {
        Routed::Found(endpoint, params) => (endpoint, params),
        Routed::WrongMethod(allowed) => {
            let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            let mut r = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &format!("{method} is not allowed on {path}"),
            );
            // RFC 9110 §15.5.6: a 405 lists the methods the resource has.
            r.headers_mut().insert(
                hyper::header::ALLOW,
                HeaderValue::from_str(&allowed.join(", ")).expect("method names are tokens"),
            );
            return r;
        }
        Routed::NotFound => return not_found(&format!("no endpoint {path}")),
    };
    match endpoint {
        Endpoint::Page => {
            assets::serve(&path, req.headers(), head).unwrap_or_else(|| not_found("no such page"))
        }
        Endpoint::Metrics => metrics::render(&state),
        Endpoint::OpenApi => super::openapi::serve(),
        Endpoint::Login => login(req, &state, conn.peer.ip()).await,
        Endpoint::Logout => json_with_cookie(Auth::logout_cookie()),
        // Health reads the data directory (statvfs, the first-boot problems file): off
        // the executor, which a hung disk must never stop.
        Endpoint::Health => {
            let state = Arc::clone(&state);
            smol::unblock(move || health(&state)).await
        }
        Endpoint::Fleet => json(
            StatusCode::OK,
            &state.fleet.view(state.config.listen_addr().port()),
        ),
        Endpoint::Cameras => json(StatusCode::OK, &cameras_json(&state)),
        Endpoint::Rescan => rescan(&state).await,
        Endpoint::RecordingStart | Endpoint::RecordingStop => {
            let cam = params[0];
            match camera(&state, cam) {
                Ok(_) => recording(req, &state, cam, endpoint == Endpoint::RecordingStart).await,
                Err(e) => e.response(),
            }
        }
        Endpoint::Snapshot => match camera(&state, params[0]) {
            Ok(_) => snapshot(&state, params[0]).await,
            Err(e) => e.response(),
        },
        Endpoint::Mjpeg => {
            let quality = match quality_param(req.uri().query(), &state) {
                Ok(q) => q,
                Err(e) => return e.response(),
            };
            match camera(&state, params[0]) {
                Ok(_) => mjpeg::stream(&state, params[0], quality, &client),
                Err(e) => e.response(),
            }
        }
        Endpoint::LiveWs => match camera(&state, params[0]) {
            Ok(_) => ws::upgrade(req, Arc::clone(&state), params[0].to_string(), client),
            Err(e) => e.response(),
        },
        Endpoint::Clips => clips(&state, req.uri().query()),
        Endpoint::ClipFile => {
            downloads::clip(&req, &conn, &state, params[0], params[1], head).await
        }
        Endpoint::Sessions => json(StatusCode::OK, &state.live.sessions()),
        Endpoint::StorageHistory => {
            let clock = Arc::clone(state.service.clock());
            let storage = Arc::clone(&state.service.storage);
            // statvfs of the data disk: off the executor.
            let report = smol::unblock(move || {
                storage.history_report(clock.wall_us(), clock.monotonic_us())
            })
            .await;
            json(StatusCode::OK, &report)
        }
        Endpoint::SettingsGet => json(StatusCode::OK, &settings::current(&state.service.config())),
        Endpoint::SettingsPatch => patch_settings(req, &state).await,
        Endpoint::Experiments => experiments::list(&state).await,
        Endpoint::Replication => super::replication::summary(&state),
        Endpoint::ReplicationRetry => super::replication::retry(&state),
        Endpoint::ExperimentCreate => experiments::create(req, &state).await,
        Endpoint::Experiment => experiments::manifest(&state, params[0]).await,
        Endpoint::ExperimentStop => experiments::stop(&state, params[0]).await,
        Endpoint::ExperimentArchive => experiments::archive(req, &state, params[0]).await,
        Endpoint::ExperimentMarker => experiments::marker(req, &state, params[0]).await,
        Endpoint::ExperimentFile => {
            downloads::experiment_file(&req, &conn, &state, params[0], params[1], head).await
        }
        Endpoint::ExperimentZip => downloads::experiment_zip(&conn, &state, params[0]).await,
        Endpoint::RecordingSpan => {
            downloads::recording_span(&req, &conn, &state, params[0], head).await
        }
        Endpoint::Gpio => experiments::gpio_status(&state),
        Endpoint::GpioSim => experiments::gpio_sim(req, &state, params[0]).await,
    }
}

fn unauthorized() -> Response<Body> {
    let mut r = error_response(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this request needs the access token: send `Authorization: Bearer <token>` or log in on the page",
    );
    r.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static("Bearer realm=\"benchcam\""),
    );
    r
}

fn json_with_cookie(cookie: HeaderValue) -> Response<Body> {
    let mut r = json(StatusCode::OK, &json!({"ok": true}));
    r.headers_mut().insert("set-cookie", cookie);
    r
}

/// The camera `id`, or the 404 to answer.
fn camera(state: &AppState, id: &str) -> Result<Arc<Camera>, ApiError> {
    let missing = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no camera {id:?}; ids are cam0, cam1, ..."),
        )
    };
    if !is_camera_id(id) {
        return Err(missing());
    }
    state.service.camera(id).map_err(|_| missing())
}

fn quality_param(query: Option<&str>, state: &AppState) -> Result<Quality, ApiError> {
    match query_param(query, "quality") {
        None => Ok(state.live.default_quality()),
        Some(q) => Quality::parse(&q).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_quality",
                "quality must be low, medium or high",
            )
        }),
    }
}

/// 403 for a request the guard turned away (wrong Host, another site's page).
fn refused(rejected: Rejected) -> Response<Body> {
    match rejected {
        Rejected::UnknownHost(host) => error_response(
            StatusCode::FORBIDDEN,
            "unknown_host",
            &format!(
                "this box does not answer to the name {host:?}: use its address or hostname, or add the name to service.allowed_hosts"
            ),
        ),
        Rejected::CrossOrigin(origin) => error_response(
            StatusCode::FORBIDDEN,
            "cross_origin",
            &format!("requests from the page of {origin:?} may not change anything here"),
        ),
    }
}

fn too_many_attempts(wait: Duration) -> Response<Body> {
    let mut r = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "too many wrong tokens from this address; wait and try again",
    );
    r.headers_mut()
        .insert("retry-after", HeaderValue::from(wait.as_secs().max(1)));
    r
}

async fn login(
    req: Request<Incoming>,
    state: &AppState,
    client: std::net::IpAddr,
) -> Response<Body> {
    if let Err(wait) = state.guard.login_allowed(client, std::time::Instant::now()) {
        return too_many_attempts(wait);
    }
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let value = match parse_json(&body) {
        Ok(v) => v,
        Err(e) => return e.response(),
    };
    let Some(token) = value.get("token").and_then(Value::as_str) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send {\"token\": \"...\"}",
        );
    };
    if !state.auth.enabled() {
        return json(StatusCode::OK, &json!({"ok": true, "auth_required": false}));
    }
    if state.auth.token_matches(token) {
        return json_with_cookie(state.auth.login_cookie());
    }
    state.guard.login_failed(client, std::time::Instant::now());
    // Slows down guessing; the connection task waits, the executor does not.
    smol::Timer::after(Duration::from_millis(300)).await;
    error_response(
        StatusCode::UNAUTHORIZED,
        "bad_token",
        "that is not the access token",
    )
}

fn health(state: &AppState) -> Response<Body> {
    let mut value = serde_json::to_value(state.service.health_check()).expect("health serializes");
    if let Some(fault) = state.gpio.as_ref().and_then(|g| g.trigger_fault()) {
        if value["status"] == "ok" {
            value["status"] = "degraded".into();
        }
        if let Some(problems) = value["problems"].as_array_mut() {
            problems.push(format!("trigger input: {fault}").into());
        }
    }
    if let Some(r) = &state.replication {
        let summary = r.summary();
        if let Some(problem) = summary.health_problem() {
            if value["status"] == "ok" {
                value["status"] = "degraded".into();
            }
            if let Some(problems) = value["problems"].as_array_mut() {
                problems.push(problem.into());
            }
        }
        value["replication"] = json!({
            "pending": summary.pending + summary.uploading,
            "failed": summary.failed,
            "verified": summary.verified,
            "failing_s": summary.failing_s,
        });
    }
    let live = &state.live;
    value["streaming"] = json!({
        "enabled": live.is_enabled(),
        "sessions": live.session_count(),
        "max_sessions": live.max_sessions(),
        "cpu_percent": live.cpu_percent(),
        "quality_step": live.cpu_step(),
    });
    json(StatusCode::OK, &value)
}

fn cameras_json(state: &AppState) -> Value {
    state
        .service
        .cameras()
        .iter()
        .map(|c| {
            let stats = &c.capture.stats;
            json!({
                "id": c.id,
                "device": c.info.device,
                "name": c.info.name,
                "backend": c.info.backend,
                "mode": c.mode(),
                "mode_choice": c.mode_choice,
                "modes": c.info.modes,
                "state": c.capture.state().name(),
                "recording": c.is_recording(),
                "fps": stats.fps_milli.load(Ordering::Relaxed) as f64 / 1000.0,
                "frames_captured": stats.frames_captured.load(Ordering::Relaxed),
            })
        })
        .collect()
}

async fn rescan(state: &Arc<AppState>) -> Response<Body> {
    let service = Arc::clone(&state.service);
    match smol::unblock(move || service.detect_cameras()).await {
        Ok(_) => json(StatusCode::OK, &cameras_json(state)),
        Err(e) => service_error(&e),
    }
}

async fn recording(
    req: Request<Incoming>,
    state: &AppState,
    cam: &str,
    start: bool,
) -> Response<Body> {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let value = match parse_json(&body) {
        Ok(v) => v,
        Err(e) => return e.response(),
    };
    // A recording started from the page is manual; `{"recording_type": "rolling"}` asks
    // for rolling clips like the ones started at boot.
    let recording_type = match value.get("recording_type").and_then(Value::as_str) {
        None => RecordingType::Manual,
        Some("manual") => RecordingType::Manual,
        Some("rolling") => RecordingType::Rolling,
        Some(other) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("recording_type {other:?}: allowed: manual, rolling"),
            )
        }
    };
    if !value.is_null() && !value.is_object() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body, if any, is a JSON object",
        );
    }
    let service = Arc::clone(&state.service);
    let id = cam.to_string();
    // Stopping waits for the clip to be finalised on disk: a blocking thread does it.
    let result = smol::unblock(move || {
        if start {
            service.start_recording(&id, recording_type)
        } else {
            service.stop_recording(&id)
        }
    })
    .await;
    match result {
        Ok(()) => json(StatusCode::OK, &json!({"camera": cam, "recording": start})),
        Err(e) => service_error(&e),
    }
}

async fn snapshot(state: &AppState, cam: &str) -> Response<Body> {
    let _permit = state.snapshot_permits.acquire().await;
    let frame = match state.service.latest_frame(cam) {
        Err(e) => return service_error(&e),
        Ok(Err(reason)) => {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": {
                    "code": "no_frame",
                    "message": format!("{cam} has no frame to give ({})", reason.reason()),
                    "reason": reason.reason(),
                }}),
            )
        }
        Ok(Ok(frame)) => frame,
    };
    let meta = *frame.meta();
    let jpeg_bytes = if meta.format == PixelFormat::Mjpeg {
        Bytes::copy_from_slice(frame.data())
    } else {
        // Copy out and release the ring slot at once; encoding takes a while.
        let raw = frame.data().to_vec();
        drop(frame);
        let quality = state.service.config().streaming.quality.high.jpeg_quality;
        let encoded = smol::unblock(move || {
            let mut out = Vec::new();
            jpeg::encode_raw(
                meta.format,
                &raw,
                meta.width,
                meta.height,
                (meta.width, meta.height),
                quality,
                &mut out,
            )
            .map(|()| out)
        })
        .await;
        match encoded {
            Ok(out) => Bytes::from(out),
            Err(e) => return service_error(&e),
        }
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "image/jpeg")
        .header("content-length", jpeg_bytes.len())
        .header("cache-control", "no-store")
        .header(
            "content-disposition",
            format!("inline; filename=\"{cam}_{:06}.jpg\"", meta.number),
        )
        .header("x-frame-number", meta.number)
        .header("x-timestamp-us", meta.timestamp_us)
        .body(full(jpeg_bytes))
        .expect("static headers are valid")
}

fn clips(state: &AppState, query: Option<&str>) -> Response<Body> {
    let camera = query_param(query, "camera").filter(|c| !c.is_empty());
    if let Some(cam) = &camera {
        if !is_camera_id(cam) {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_camera",
                &format!("camera {cam:?} is not a camera id (cam0, cam1, ...)"),
            );
        }
        let index = &state.service.storage.index;
        let known = state.service.camera(cam).is_ok() || index.cameras().iter().any(|c| c == cam);
        if !known {
            return not_found(&format!("no camera {cam} and no clips of it"));
        }
    }
    let list: Vec<Value> = state
        .service
        .storage
        .index
        .list(camera.as_deref())
        .iter()
        .map(|c| c.to_json())
        .collect();
    json(StatusCode::OK, &list)
}

/// A path segment naming a file that must not go near the filesystem: empty, hidden,
/// or carrying escapes, separators, NULs or control characters.
pub fn suspicious(segment: &str) -> bool {
    segment.is_empty()
        || segment.starts_with('.')
        || segment
            .bytes()
            .any(|b| matches!(b, b'%' | b'\\' | b'/' | 0) || b.is_ascii_control())
}

async fn patch_settings(req: Request<Incoming>, state: &Arc<AppState>) -> Response<Body> {
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let patch = match parse_json(&body) {
        Ok(v) => v,
        Err(e) => return e.response(),
    };
    let _guard = state.settings_lock.lock().await;
    let current = state.service.config();
    let next = match settings::apply_patch(&current, &patch) {
        Ok(c) => c,
        Err(e) => {
            return error_response(StatusCode::BAD_REQUEST, "invalid_setting", &e.to_string())
        }
    };
    let saved = {
        let (patch, next) = (patch.clone(), next.clone());
        let storage = Arc::clone(&state.service.storage);
        // settings.toml lives on the data drive: not under an empty mount point.
        smol::unblock(move || {
            storage.require_present()?;
            settings::save(storage.data_dir(), &patch, &next)
        })
        .await
    };
    if let Err(e) = saved {
        log::error!("settings: not saved: {e}");
        return service_error(&e);
    }
    let limits_changed = crate::app::limits(&current) != crate::app::limits(&next);
    state.service.set_config(next.clone());
    state.service.storage.set_limits(crate::app::limits(&next));
    state.live.apply_config(&next.streaming);
    log::info!("settings: changed from the web: {patch}");
    if limits_changed {
        // Apply lowered retention limits now rather than at the next clip rotation.
        let storage = Arc::clone(&state.service.storage);
        smol::unblock(move || {
            for camera in storage.index.cameras() {
                storage.enforce_retention(&camera);
            }
        })
        .await;
    }
    json(StatusCode::OK, &settings::current(&next))
}
