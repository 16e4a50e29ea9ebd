//! Making one gRPC call over an HTTP/2 connection: send the request
//! messages, collect the response messages, headers and status.
//!
//! Used by the stand-in host, by reflection lookups and by tests. A call
//! that ends without trailers, with a reset, or with bytes that are not
//! gRPC framing is reported as such, never as success.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use tokio_util::codec::Decoder as _;

use super::frame::{self, Framed, MessageDecoder};
use super::grpc;

/// What a call returned.
#[derive(Debug, Clone, Default)]
pub struct CallOutcome {
    /// Response headers (empty when the call failed before them).
    pub headers: Vec<(String, String)>,
    /// Response messages, in order.
    pub messages: Vec<Bytes>,
    /// Status code and message from trailers (or trailers-only headers).
    pub status: Option<(u32, String)>,
    /// Trailers as pairs.
    pub trailers: Vec<(String, String)>,
    /// What went wrong at the transport level, if anything.
    pub transport_error: Option<String>,
}

impl CallOutcome {
    /// The status code, or `UNAVAILABLE`/`INTERNAL` for transport failures
    /// (as gRPC clients report them).
    pub fn code(&self) -> u32 {
        match (&self.status, &self.transport_error) {
            (Some((c, _)), _) => *c,
            (None, Some(_)) => grpc::UNAVAILABLE,
            (None, None) => grpc::INTERNAL,
        }
    }

    /// The status message or the transport error.
    pub fn message(&self) -> String {
        match (&self.status, &self.transport_error) {
            (Some((_, m)), _) => m.clone(),
            (None, Some(e)) => e.clone(),
            (None, None) => "the stream ended without a grpc-status".into(),
        }
    }
}

/// Calls `path` with `requests`, half-closing after them. Stops reading
/// after `take` responses (then resets the stream), and after `timeout`.
pub async fn call(
    send: &mut SendRequest<Bytes>,
    path: &str,
    requests: &[Bytes],
    take: Option<usize>,
    timeout: Duration,
    max_message: usize,
) -> CallOutcome {
    let mut out = CallOutcome::default();
    match tokio::time::timeout(
        timeout,
        call_inner(send, path, requests, take, max_message, &mut out),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => out.transport_error = Some(e),
        Err(_) => {
            out.transport_error = Some(format!("no answer within {timeout:?}"));
            out.status = out.status.take().or(Some((
                grpc::STATUS_DEADLINE,
                format!("plugtap gave up after {timeout:?}"),
            )));
        }
    }
    out
}

async fn call_inner(
    send: &mut SendRequest<Bytes>,
    path: &str,
    requests: &[Bytes],
    take: Option<usize>,
    max_message: usize,
    out: &mut CallOutcome,
) -> Result<(), String> {
    let ready = send
        .clone()
        .ready()
        .await
        .map_err(|e| format!("connection unusable: {e}"))?;
    *send = ready;
    let (response, mut body) = send
        .send_request(grpc::request(path), false)
        .map_err(|e| format!("cannot open a stream: {e}"))?;
    // The last message carries END_STREAM. A server may answer (and close
    // the stream) before it has read everything; then its answer counts,
    // not the failed send.
    let mut send_error = None;
    if requests.is_empty()
        && let Err(e) = body.send_data(Bytes::new(), true)
    {
        send_error = Some(format!("cannot end the request: {e}"));
    }
    for (i, r) in requests.iter().enumerate() {
        if let Err(e) = grpc::send_data(&mut body, frame::encode(r), i + 1 == requests.len()).await
        {
            send_error = Some(format!("cannot send the request: {e}"));
            break;
        }
    }
    let response = response.await.map_err(|e| match &send_error {
        Some(s) => format!("{s}; no response: {e}"),
        None => format!("no response: {e}"),
    })?;
    let (head, mut recv) = response.into_parts();
    out.headers = grpc::header_pairs(&head.headers);
    if recv.is_end_stream() {
        out.trailers = out.headers.clone();
        out.status = grpc::status_of(&head.headers);
        return Ok(());
    }
    let mut decoder = MessageDecoder::new(max_message);
    let mut buf = BytesMut::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| format!("stream failed: {e}"))?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
        while let Some(m) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
            match m {
                Framed::Message(m) => out.messages.push(m.payload),
                Framed::Oversized { len, max } => {
                    return Err(format!(
                        "a {len}-byte response exceeds the {max}-byte limit"
                    ));
                }
            }
            if take.is_some_and(|t| out.messages.len() >= t) {
                body.send_reset(h2::Reason::CANCEL);
                return Ok(());
            }
        }
    }
    if let Err(e) = decoder.decode_eof(&mut buf) {
        return Err(e.to_string());
    }
    let trailers = recv
        .trailers()
        .await
        .map_err(|e| format!("stream failed: {e}"))?;
    if let Some(t) = trailers {
        out.trailers = grpc::header_pairs(&t);
        out.status = grpc::status_of(&t);
    }
    Ok(())
}
