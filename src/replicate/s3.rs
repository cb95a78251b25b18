//! The object store: the `ObjectStore` trait the uploader drives, and `S3`, its
//! implementation for any S3-compatible server (AWS, Garage, MinIO, Ceph RGW).
//!
//! Requests are signed by rusty-s3 (sans-IO, presigned URLs; the `x-amz-checksum-*` and
//! `x-amz-meta-*` headers are among the signed ones) and sent by ureq, a blocking HTTP
//! client with rustls, on the uploader's own thread: no second async runtime. Every
//! object and part carries `x-amz-checksum-sha256`, which the server checks against the
//! bytes it received before it acknowledges them.

use std::io::Read;
use std::time::Duration;

use rusty_s3::actions::{
    CompleteMultipartUpload, CreateMultipartUpload, HeadObject, ListParts, PutObject, S3Action,
    UploadPart,
};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use crate::error::{Error, ErrorKind, Result};

/// How long a signed request stays valid (a 1 GiB part at 1 MB/s fits).
const SIGNED_FOR: Duration = Duration::from_secs(3 * 3600);

/// What the store says about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    /// `x-amz-checksum-sha256` as the server reports it (base64, `-N` for a multipart
    /// object's composite checksum), when it keeps checksums.
    pub checksum: Option<String>,
    /// `x-amz-meta-sha256`: the whole file's SHA-256 (hex) as benchcam sent it.
    pub sha256: Option<String>,
}

/// A part the store holds for an unfinished multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPart {
    pub number: u16,
    pub etag: String,
    pub size: u64,
}

/// The S3 operations replication needs. Nothing here deletes.
pub trait ObjectStore: Send + Sync {
    /// Uploads a whole object; `sha256_b64` is the body's SHA-256, `file_sha256` the
    /// hex digest kept in the object's metadata.
    fn put(
        &self,
        key: &str,
        body: &mut dyn Read,
        len: u64,
        sha256_b64: &str,
        file_sha256: &str,
    ) -> Result<()>;
    /// Starts a multipart upload with SHA-256 part checksums; returns its id.
    fn create_multipart(&self, key: &str, file_sha256: &str) -> Result<String>;
    /// Uploads part `number` (from 1); returns its ETag.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        body: &mut dyn Read,
        len: u64,
        sha256_b64: &str,
    ) -> Result<String>;
    /// The parts the store already holds (for a resumed upload).
    fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<StoredPart>>;
    /// Joins the parts, given as (number, ETag, SHA-256 base64) in order.
    fn complete(&self, key: &str, upload_id: &str, parts: &[(u16, String, String)]) -> Result<()>;
    /// `None` when there is no such object.
    fn head(&self, key: &str) -> Result<Option<Head>>;
    /// Where objects go, for the page and the log: `s3://bucket/`.
    fn location(&self) -> String;
}

/// An S3-compatible server.
pub struct S3 {
    agent: ureq::Agent,
    bucket: Bucket,
    credentials: Credentials,
}

impl S3 {
    pub fn new(
        endpoint: &str,
        url_style: &str,
        bucket: &str,
        region: &str,
        key_id: &str,
        secret: &str,
    ) -> Result<S3> {
        let invalid = |why: String| Error::new(ErrorKind::InvalidInput, why);
        let url =
            url::Url::parse(endpoint).map_err(|e| invalid(format!("endpoint {endpoint}: {e}")))?;
        let style = if url_style == "virtual" {
            UrlStyle::VirtualHost
        } else {
            UrlStyle::Path
        };
        let bucket = Bucket::new(url, style, bucket.to_string(), region.to_string())
            .map_err(|e| invalid(format!("bucket {bucket} at {endpoint}: {e}")))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            // A stalled server must not hold the uploader forever; a part at the
            // bandwidth cap may take long, so this bounds each read/write, not the call.
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .user_agent(concat!("benchcam/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(S3 {
            agent,
            bucket,
            credentials: Credentials::new(key_id, secret),
        })
    }

    /// A request that got no reply: the network, or the store is down.
    fn unreachable(&self, what: &str, e: ureq::Error) -> Error {
        let host = self.bucket.base_url().host_str().unwrap_or("?").to_string();
        let port = self.bucket.base_url().port_or_known_default().unwrap_or(0);
        Error::new(
            ErrorKind::Io,
            format!("{what}: the connection to {host}:{port} failed: {e}"),
        )
    }

    /// Reads a response: the body on 2xx, else an error saying what the server said.
    fn finish(
        &self,
        what: &str,
        response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(ureq::http::HeaderMap, String)> {
        let mut response = response.map_err(|e| self.unreachable(what, e))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|e| Error::new(ErrorKind::Io, format!("{what}: reading the reply: {e}")))?;
        if status.is_success() {
            return Ok((response.headers().clone(), body));
        }
        Err(s3_error(what, status.as_u16(), &body))
    }
}

/// An S3 error reply as an `Error`: 5xx and throttling are transient (`Io`), a missing
/// upload is `NotFound` (start again), the rest (keys, permissions, bucket) `InvalidInput`.
fn s3_error(what: &str, status: u16, body: &str) -> Error {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].chars().take(200).collect::<String>())
    };
    let code = tag("Code").unwrap_or_default();
    let message = tag("Message").unwrap_or_default();
    let kind = match (status, code.as_str()) {
        (_, "NoSuchUpload") => ErrorKind::NotFound,
        (500..=599, _) | (429, _) | (_, "SlowDown") | (_, "RequestTimeout") => ErrorKind::Io,
        _ => ErrorKind::InvalidInput,
    };
    let said = match (code.is_empty(), message.is_empty()) {
        // A HEAD reply has no body to say why.
        (true, _) if status == 403 => "HTTP 403 (access denied: check replication.access_key_id, \
             the secret, and the key's rights on the bucket)"
            .to_string(),
        (true, _) => format!("HTTP {status}"),
        (false, true) => format!("HTTP {status} {code}"),
        (false, false) => format!("HTTP {status} {code}: {message}"),
    };
    Error::new(kind, format!("{what}: {said}"))
}

fn header(headers: &ureq::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl ObjectStore for S3 {
    fn put(
        &self,
        key: &str,
        body: &mut dyn Read,
        len: u64,
        sha256_b64: &str,
        file_sha256: &str,
    ) -> Result<()> {
        let mut action = PutObject::new(&self.bucket, Some(&self.credentials), key);
        action
            .headers_mut()
            .insert("x-amz-checksum-sha256", sha256_b64.to_string());
        action
            .headers_mut()
            .insert("x-amz-meta-sha256", file_sha256.to_string());
        let url = action.sign(SIGNED_FOR);
        let response = self
            .agent
            .put(url.as_str())
            .header("x-amz-checksum-sha256", sha256_b64)
            .header("x-amz-meta-sha256", file_sha256)
            .header("content-length", len.to_string())
            .send(ureq::SendBody::from_reader(body));
        self.finish(&format!("PUT {key}"), response).map(|_| ())
    }

    fn create_multipart(&self, key: &str, file_sha256: &str) -> Result<String> {
        let mut action = CreateMultipartUpload::new(&self.bucket, Some(&self.credentials), key);
        action
            .headers_mut()
            .insert("x-amz-checksum-algorithm", "SHA256");
        action
            .headers_mut()
            .insert("x-amz-meta-sha256", file_sha256.to_string());
        let url = action.sign(SIGNED_FOR);
        let response = self
            .agent
            .post(url.as_str())
            .header("x-amz-checksum-algorithm", "SHA256")
            .header("x-amz-meta-sha256", file_sha256)
            .send_empty();
        let (_, body) = self.finish(&format!("starting the upload of {key}"), response)?;
        CreateMultipartUpload::parse_response(&body)
            .map(|r| r.upload_id().to_string())
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("starting the upload of {key}: reply not understood: {e}"),
                )
            })
    }

    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        body: &mut dyn Read,
        len: u64,
        sha256_b64: &str,
    ) -> Result<String> {
        let mut action = UploadPart::new(
            &self.bucket,
            Some(&self.credentials),
            key,
            number,
            upload_id,
        );
        action
            .headers_mut()
            .insert("x-amz-checksum-sha256", sha256_b64.to_string());
        let url = action.sign(SIGNED_FOR);
        let response = self
            .agent
            .put(url.as_str())
            .header("x-amz-checksum-sha256", sha256_b64)
            .header("content-length", len.to_string())
            .send(ureq::SendBody::from_reader(body));
        let what = format!("part {number} of {key}");
        let (headers, _) = self.finish(&what, response)?;
        header(&headers, "etag")
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("{what}: no ETag in the reply")))
    }

    fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<StoredPart>> {
        let mut parts = Vec::new();
        let mut marker = None;
        loop {
            let mut action = ListParts::new(&self.bucket, Some(&self.credentials), key, upload_id);
            if let Some(m) = marker {
                action.set_part_number_marker(m);
            }
            let url = action.sign(SIGNED_FOR);
            let response = self.agent.get(url.as_str()).call();
            let what = format!("listing the parts of {key}");
            let (_, body) = self.finish(&what, response)?;
            let list = ListParts::parse_response(&body).map_err(|e| {
                Error::new(ErrorKind::Io, format!("{what}: reply not understood: {e}"))
            })?;
            parts.extend(list.parts.iter().map(|p| StoredPart {
                number: p.number,
                etag: p.etag.clone(),
                size: p.size,
            }));
            match list.next_part_number_marker {
                Some(m) if marker != Some(m) && !list.parts.is_empty() => marker = Some(m),
                _ => break,
            }
        }
        Ok(parts)
    }

    fn complete(&self, key: &str, upload_id: &str, parts: &[(u16, String, String)]) -> Result<()> {
        let etags = parts.iter().map(|(_, etag, _)| etag.as_str());
        let action = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&self.credentials),
            key,
            upload_id,
            etags,
        );
        let url = action.sign(SIGNED_FOR);
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (number, etag, sha) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag><ChecksumSHA256>{sha}</ChecksumSHA256></Part>",
                xml_escape(etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let response = self.agent.post(url.as_str()).send(xml.as_bytes());
        let what = format!("completing the upload of {key}");
        let (_, body) = self.finish(&what, response)?;
        // S3 may answer 200 and put the error in the body.
        if body.contains("<Error>") {
            return Err(s3_error(&what, 500, &body));
        }
        Ok(())
    }

    fn head(&self, key: &str) -> Result<Option<Head>> {
        let mut action = HeadObject::new(&self.bucket, Some(&self.credentials), key);
        action
            .headers_mut()
            .insert("x-amz-checksum-mode", "ENABLED");
        let url = action.sign(SIGNED_FOR);
        let response = self
            .agent
            .head(url.as_str())
            .header("x-amz-checksum-mode", "ENABLED")
            .call()
            .map_err(|e| self.unreachable(&format!("HEAD {key}"), e))?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(s3_error(&format!("HEAD {key}"), status, ""));
        }
        let headers = response.headers();
        let size = header(headers, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("HEAD {key}: no Content-Length")))?;
        Ok(Some(Head {
            size,
            checksum: header(headers, "x-amz-checksum-sha256"),
            sha256: header(headers, "x-amz-meta-sha256"),
        }))
    }

    fn location(&self) -> String {
        format!("s3://{}/", self.bucket.name())
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_say_what_the_server_said_and_whether_to_retry() {
        let body = "<?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code>\
                    <Message>The access key does not exist</Message></Error>";
        let e = s3_error("PUT a/b", 403, body);
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .contains("HTTP 403 InvalidAccessKeyId: The access key does not exist"),
            "{e}"
        );
        assert_eq!(s3_error("x", 503, "").kind, ErrorKind::Io);
        assert_eq!(
            s3_error("x", 404, "<Error><Code>NoSuchUpload</Code></Error>").kind,
            ErrorKind::NotFound
        );
        assert!(s3_error("x", 502, "").to_string().contains("HTTP 502"));
    }
}
