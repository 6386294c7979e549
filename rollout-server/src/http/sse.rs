//! Server-sent events as OpenAI streams them: `data: {json}\n\n` per chunk and a final
//! `data: [DONE]\n\n`. A producer task sends frames into a bounded channel; the response body
//! reads it, so a client that disconnects drops the channel and the producer stops (which drops
//! the engine's receiver and aborts the request).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use tokio::sync::mpsc;

/// Frames queued between a producer and the response body.
pub const CHANNEL_CAPACITY: usize = 64;

/// One `data:` event carrying `json` (which must be a single line, as serde_json writes it).
pub fn data_frame(json: &str) -> Bytes {
    let mut s = String::with_capacity(json.len() + 8);
    s.push_str("data: ");
    s.push_str(json);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// The event serialising `value`.
pub fn json_frame<T: Serialize>(value: &T) -> Bytes {
    match serde_json::to_string(value) {
        Ok(s) => data_frame(&s),
        Err(e) => data_frame(
            &serde_json::json!({"error": {"message": format!("serialisation failed: {e}"),
                "type": "server_error", "param": null, "code": null}})
            .to_string(),
        ),
    }
}

/// The final `data: [DONE]` event.
pub fn done_frame() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// A sender of frames and the streaming response that delivers them.
pub fn channel() -> (mpsc::Sender<Bytes>, Response) {
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_CAPACITY);
    (tx, response(rx))
}

/// A `text/event-stream` response that forwards every frame of `rx` until it closes.
pub fn response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(&data_frame("{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        assert_eq!(&done_frame()[..], b"data: [DONE]\n\n");
        assert_eq!(
            &json_frame(&serde_json::json!({"x": "a\nb"}))[..],
            b"data: {\"x\":\"a\\nb\"}\n\n"
        );
    }

    #[tokio::test]
    async fn response_streams_frames_until_close() {
        let (tx, resp) = channel();
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/event-stream; charset=utf-8"
        );
        tokio::spawn(async move {
            tx.send(data_frame("1")).await.ok();
            tx.send(done_frame()).await.ok();
        });
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(&body[..], b"data: 1\n\ndata: [DONE]\n\n");
    }
}
