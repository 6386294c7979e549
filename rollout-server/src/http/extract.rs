//! Request-body extractors that answer every rejection with a JSON error: bodies over the limit
//! get 413, malformed JSON, wrong types, unknown fields and invalid UTF-8 get 400 naming the
//! field at fault (axum's own `Json` rejections are plain text).

use super::errors::ApiError;
use super::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

/// Reads a whole body of at most `limit` bytes (413 beyond it, checked against
/// `Content-Length` first and then while reading).
pub async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit as u64 {
            if len <= DRAIN_CAP as u64 {
                drain(req.into_body(), DRAIN_CAP).await;
            }
            return Err(ApiError::payload_too_large(limit));
        }
        // Large bodies (weights): one buffer of the declared size, no regrowth copies.
        if len >= 1 << 20 {
            return read_sized(req.into_body(), len as usize).await;
        }
    }
    let mut body: Body = req.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body, DRAIN_CAP).await;
                return Err(ApiError::payload_too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Oversized bodies up to this size are read and discarded before the 413 is sent, so that
/// clients that write the whole body before reading the answer see the 413 instead of a reset
/// connection; larger ones are refused at once (the connection is then closed).
pub const DRAIN_CAP: usize = 64 << 20;

/// Reads and discards up to `cap` bytes of `body`. Rejections that do not read the body call
/// it so that the client's connection can be reused (hyper closes a connection whose request
/// body was left unread, and a client may already have reused it).
pub async fn drain(mut body: Body, cap: usize) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(d) = frame.into_data() {
            seen += d.len();
            if seen > cap {
                break;
            }
        }
    }
}

/// Reads a body whose `Content-Length` is `len` (already checked against the limit) into one
/// preallocated buffer; a body longer than declared is a 400.
async fn read_sized(mut body: Body, len: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut buf = Vec::with_capacity(len);
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > len {
                return Err(ApiError::bad_request(
                    "the request body is longer than its Content-Length",
                ));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Parses JSON into `T`, naming the path of the offending field in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; expected a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = format!("invalid JSON body: {inner}");
        if path.is_empty() || path == "." || path == "?" {
            ApiError::bad_request(msg)
        } else {
            ApiError::invalid_param(path, msg)
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// A JSON body parsed into `T` under the server's body limit, with JSON errors.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state.cfg().max_body_bytes).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        n: Option<i64>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        x: u32,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_json::<T>(br#"{"n": "three"}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = parse_json::<T>(br#"{"inner": {"x": -1}}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("inner.x"));
        let e = parse_json::<T>(br#"{"nn": 1}"#).unwrap_err();
        assert!(e.message.contains("unknown field `nn`"), "{}", e.message);
        let e = parse_json::<T>(b"{\"n\": 1").unwrap_err();
        assert_eq!(e.status, 400);
        let e = parse_json::<T>(b"").unwrap_err();
        assert!(e.message.contains("empty"));
        let e = parse_json::<T>(b"{} {}").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(parse_json::<T>(br#"{"n": 2}"#).is_ok());
    }

    #[test]
    fn invalid_utf8_is_a_400() {
        let e = parse_json::<serde_json::Value>(b"{\"s\": \"\xff\xfe\"}").unwrap_err();
        assert_eq!(e.status, 400);
    }
}
