//! Downloads: clip and experiment files (with Range), an experiment as one streamed ZIP,
//! and a span of a camera's recording as one MP4 (`record::span`).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures_lite::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, RANGE};
use hyper::{Request, Response, StatusCode};

use super::api::{bad_path, not_found, service_error, suspicious};
use super::http::{
    empty, error_response, parse_range, query_param, Body, BoxError, RangeRequest,
    DOWNLOAD_STALL_LIMIT,
};
use super::{AppState, ConnInfo};
use crate::clock::{compact_utc_ms, parse_time, rfc3339_ms};
use crate::config::is_camera_id;
use crate::record::span;

/// Size of one read from a clip file; also the most a download buffers per chunk.
const CLIP_CHUNK: usize = 64 * 1024;

pub async fn clip(
    req: &Request<Incoming>,
    conn: &ConnInfo,
    state: &Arc<AppState>,
    cam: &str,
    file: &str,
    head: bool,
) -> Response<Body> {
    if suspicious(cam) || suspicious(file) {
        return bad_path();
    }
    if !is_camera_id(cam) {
        return not_found(&format!("no clips of {cam:?}"));
    }
    // The index is the whitelist: only names it holds reach the filesystem.
    let index = &state.service.storage.index;
    let Some(record) = index.get(cam, file) else {
        return not_found(&format!("no clip {cam}/{file}"));
    };
    let path = index.camera_dir(cam).join(&record.file);
    serve_file(req, conn, state, path, &record.file, "video/mp4", head).await
}

/// GET /api/v1/experiments/{id}/files/{file}: only names the manifest lists.
pub async fn experiment_file(
    req: &Request<Incoming>,
    conn: &ConnInfo,
    state: &Arc<AppState>,
    id: &str,
    file: &str,
    head: bool,
) -> Response<Body> {
    if suspicious(id) || suspicious(file) {
        return bad_path();
    }
    let path = match state.experiments.file_path(id, file) {
        Ok(p) => p,
        Err(e) => return service_error(&e),
    };
    let content_type = match file.rsplit('.').next() {
        Some("mp4") => "video/mp4",
        Some("csv") => "text/csv; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    serve_file(req, conn, state, path, file, content_type, head).await
}

/// Streams a file that a whitelist (clip index, experiment manifest) named, with HTTP
/// Range support. `name` is the download name.
async fn serve_file(
    req: &Request<Incoming>,
    conn: &ConnInfo,
    state: &Arc<AppState>,
    path: std::path::PathBuf,
    name: &str,
    content_type: &'static str,
    head: bool,
) -> Response<Body> {
    let shown = name.to_string();
    let opened = smol::unblock(move || -> std::io::Result<(File, u64)> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            // A symlink planted in the clip folder is refused, never followed.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a regular file",
            ));
        }
        Ok((file, meta.len()))
    })
    .await;
    let (file, len) = match opened {
        Ok(f) => f,
        Err(e) => {
            log::warn!("web: {shown} is listed but cannot be opened: {e}");
            return not_found(&format!("{shown} is not readable"));
        }
    };
    let range_header = req.headers().get(RANGE).and_then(|v| v.to_str().ok());
    let (status, start, count) = match parse_range(range_header, len) {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            let mut r = error_response(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                &format!("the file has {len} bytes"),
            );
            let headers = r.headers_mut();
            headers.insert(
                "content-range",
                HeaderValue::from_str(&format!("bytes */{len}"))
                    .expect("digits are a valid header"),
            );
            headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
            return r;
        }
    };
    let download = query_param(req.uri().query(), "download").is_some();
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", count)
        .header("accept-ranges", "bytes")
        .header("cache-control", "no-cache")
        .header(
            "content-disposition",
            format!(
                "{}; filename=\"{}\"",
                if download { "attachment" } else { "inline" },
                name
            ),
        );
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            "content-range",
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    if head || count == 0 {
        return builder.body(empty()).expect("static headers are valid");
    }
    conn.stall.set(DOWNLOAD_STALL_LIMIT);
    builder
        .body(file_body(file, start, count, Arc::clone(state)))
        .expect("static headers are valid")
}

/// Streams `count` bytes of `file` from `start`, each chunk read (pread) by one short
/// task on the blocking pool when the connection wants it: a clip of gigabytes never sits
/// in memory, and a slow client holds no thread, only the file.
fn file_body(file: File, start: u64, count: u64, state: Arc<AppState>) -> Body {
    let file = Arc::new(file);
    let chunks = futures_lite::stream::unfold((start, count), move |(offset, remaining)| {
        let file = Arc::clone(&file);
        let state = Arc::clone(&state);
        async move {
            if remaining == 0 {
                return None;
            }
            let want = remaining.min(CLIP_CHUNK as u64) as usize;
            let read = smol::unblock(move || {
                let mut buf = vec![0u8; want];
                let n = file.read_at(&mut buf, offset)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>(buf)
            })
            .await;
            match read {
                Ok(buf) if buf.is_empty() => {
                    let e: BoxError = "clip ended early (truncated while being sent)".into();
                    Some((Err(e), (offset, 0)))
                }
                Ok(buf) => {
                    let n = buf.len() as u64;
                    state.web.clip_bytes_sent.fetch_add(n, Ordering::Relaxed);
                    Some((
                        Ok(Frame::data(Bytes::from(buf))),
                        (offset + n, remaining - n),
                    ))
                }
                Err(e) => Some((Err(BoxError::from(e)), (offset, 0))),
            }
        }
    });
    StreamBody::new(chunks).boxed_unsync()
}

/// Bytes a blocking writer hands the response per chunk, and chunks in flight: a
/// download holds at most (CHANNEL_CHUNKS + 1) × STREAM_CHUNK however large it is and
/// however slow the client.
const STREAM_CHUNK: usize = 64 * 1024;
const CHANNEL_CHUNKS: usize = 2;

/// A `Write` on a blocking thread whose bytes become the response body. A write fails
/// (BrokenPipe) once the client is gone, which ends the producer.
struct BodyWriter {
    tx: async_channel::Sender<Result<Bytes, BoxError>>,
    buf: Vec<u8>,
    state: Arc<AppState>,
}

impl BodyWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(STREAM_CHUNK));
        let n = chunk.len() as u64;
        self.tx
            .send_blocking(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        self.state
            .web
            .clip_bytes_sent
            .fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(STREAM_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == STREAM_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Span MP4s and experiment ZIPs written at once. Each holds a blocking thread and its
/// buffers (and a span its plan, up to ~2 MB for 6 hours) until its client has it all.
pub const MAX_DOWNLOADS: usize = 4;

/// One of the MAX_DOWNLOADS places, given back when dropped (also if a producer panics).
pub struct DownloadSlot(Arc<AppState>);

impl DownloadSlot {
    /// A place, if one is free (else answer `busy()`).
    fn take(state: &Arc<AppState>) -> Option<DownloadSlot> {
        state
            .web
            .downloads_producing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_DOWNLOADS).then_some(n + 1)
            })
            .ok()?;
        Some(DownloadSlot(Arc::clone(state)))
    }

    fn busy() -> Response<Body> {
        let mut r = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            &format!("{MAX_DOWNLOADS} downloads are being sent; try again in a moment"),
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("5"));
        r
    }
}

impl Drop for DownloadSlot {
    fn drop(&mut self) {
        self.0
            .web
            .downloads_producing
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// A body produced by `produce` on a blocking thread, chunk by chunk, as the client
/// reads it. An error ends the body with that error (the client sees a cut download).
/// `slot` is held until the producer ends.
fn blocking_body(
    state: &Arc<AppState>,
    slot: DownloadSlot,
    what: String,
    produce: impl FnOnce(&mut BodyWriter) -> std::io::Result<()> + Send + 'static,
) -> Body {
    let (tx, rx) = async_channel::bounded(CHANNEL_CHUNKS);
    let mut writer = BodyWriter {
        tx,
        buf: Vec::with_capacity(STREAM_CHUNK),
        state: Arc::clone(state),
    };
    smol::unblock(move || {
        let _slot = slot;
        let result = produce(&mut writer).and_then(|_| writer.flush());
        if let Err(e) = result {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                log::warn!("web: {what}: {e}");
                let _ = writer.tx.send_blocking(Err(BoxError::from(e)));
            }
        }
    })
    .detach();
    StreamBody::new(rx.map(|chunk| chunk.map(Frame::data))).boxed_unsync()
}

/// GET /api/v1/experiments/{id}/download.zip: the manifest, frames.csv and every clip
/// of an archived experiment as one ZIP, stored (video does not compress), written while
/// it is sent: nothing is staged in memory or on disk.
pub async fn experiment_zip(conn: &ConnInfo, state: &Arc<AppState>, id: &str) -> Response<Body> {
    if suspicious(id) {
        return bad_path();
    }
    let Some(slot) = DownloadSlot::take(state) else {
        return DownloadSlot::busy();
    };
    let experiments = Arc::clone(&state.experiments);
    let wanted = id.to_string();
    let files = match smol::unblock(move || experiments.bundle_files(&wanted)).await {
        Ok(f) => f,
        Err(e) => return service_error(&e),
    };
    conn.stall.set(DOWNLOAD_STALL_LIMIT);
    let folder = id.to_string();
    let body = blocking_body(state, slot, format!("zip of {id}"), move |out| {
        use zip::write::SimpleFileOptions;
        let mut zip = zip::ZipWriter::new_stream(out);
        for (name, path) in files {
            let mut file = File::open(&path)?;
            let len = file.metadata()?.len();
            let options = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(len >= u64::from(u32::MAX));
            zip.start_file(format!("{folder}/{name}"), options)
                .map_err(std::io::Error::other)?;
            std::io::copy(&mut file, &mut zip)?;
        }
        zip.finish().map_err(std::io::Error::other)?;
        Ok(())
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/zip")
        .header("cache-control", "no-cache")
        .header(
            "content-disposition",
            format!("attachment; filename=\"{id}.zip\""),
        )
        .body(body)
        .expect("static headers are valid")
}

/// GET /api/v1/cameras/{cam}/recording.mp4?start=&end=: the recording between two times
/// (RFC 3339 or Unix seconds) as one MP4, with its length up front. It starts at the
/// keyframe at or before `start` (up to one fragment early) and ends with the last frame
/// captured by `end`; the `x-benchcam-span-*` headers say what it holds.
pub async fn recording_span(
    req: &Request<Incoming>,
    conn: &ConnInfo,
    state: &Arc<AppState>,
    cam: &str,
    head: bool,
) -> Response<Body> {
    if !is_camera_id(cam) {
        return not_found(&format!("no recording of {cam:?}; ids are cam0, cam1, ..."));
    }
    let bad = |m: &str| error_response(StatusCode::BAD_REQUEST, "bad_request", m);
    let query = req.uri().query();
    let time = |name: &str| -> Result<i64, String> {
        let text = query_param(query, name)
            .ok_or_else(|| format!("`{name}` is required (RFC 3339 or Unix seconds)"))?;
        parse_time(&text).ok_or_else(|| {
            format!(
                "`{name}` must be an RFC 3339 time like 2026-12-01T14:30:00Z or Unix seconds, not {text:?}"
            )
        })
    };
    let (from, to) = match (time("start"), time("end")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(m), _) | (_, Err(m)) => return bad(&m),
    };
    if to <= from {
        return bad("`end` must be after `start`");
    }
    let Some(slot) = DownloadSlot::take(state) else {
        return DownloadSlot::busy();
    };
    let storage = Arc::clone(&state.service.storage);
    let camera = cam.to_string();
    let plan = smol::unblock(move || {
        storage.require_present()?;
        span::plan(&storage.index, &camera, from, to)
    })
    .await;
    let plan = match plan {
        Ok(p) => p,
        Err(e) => return service_error(&e),
    };
    let name = format!(
        "{cam}_{}_{}.mp4",
        compact_utc_ms(plan.first_wall_us),
        compact_utc_ms(plan.last_wall_us)
    );
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "video/mp4")
        .header("content-length", plan.len)
        .header("cache-control", "no-cache")
        .header(
            "content-disposition",
            format!("attachment; filename=\"{name}\""),
        )
        .header("x-benchcam-span-start", rfc3339_ms(plan.first_wall_us))
        .header("x-benchcam-span-end", rfc3339_ms(plan.last_wall_us))
        .header("x-benchcam-span-frames", plan.frames)
        .header(
            "x-benchcam-span-duration",
            format!("{:.6}", plan.duration_us as f64 / 1e6),
        );
    if let Some(why) = &plan.cut_short {
        builder = builder.header("x-benchcam-span-cut-short", why.replace(['\r', '\n'], " "));
    }
    if head {
        return builder.body(empty()).expect("static headers are valid");
    }
    conn.stall.set(DOWNLOAD_STALL_LIMIT);
    let what = format!("span of {cam}");
    let body = blocking_body(state, slot, what, move |out| plan.write(out));
    builder.body(body).expect("static headers are valid")
}
