//! gRPC over HTTP/2 with the `h2` crate: handshakes over [`Stream`]s
//! (h2c with prior knowledge), sending DATA with flow control, request and
//! response headers, and status codes and messages.

use std::future::poll_fn;

use bytes::Bytes;
use h2::SendStream;
use http::{HeaderMap, HeaderValue, Request, Response};

use crate::net::Stream;

/// The largest frame plugtap asks peers to accept; go-plugin hosts allow
/// 2 GiB messages, so windows are generous too.
const WINDOW: u32 = 4 * 1024 * 1024;

/// Status codes by number, as gRPC names them.
pub const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// `UNIMPLEMENTED`.
pub const UNIMPLEMENTED: u32 = 12;
/// `UNAVAILABLE`.
pub const UNAVAILABLE: u32 = 14;
/// `INTERNAL`.
pub const INTERNAL: u32 = 13;
/// `DEADLINE_EXCEEDED`.
pub const STATUS_DEADLINE: u32 = 4;
/// `NOT_FOUND`.
pub const NOT_FOUND: u32 = 5;

/// The name of a status code (`"NOT_FOUND"`), or the number as text.
pub fn status_name(code: u32) -> String {
    STATUS_NAMES
        .get(code as usize)
        .map_or_else(|| code.to_string(), |s| (*s).to_owned())
}

/// A status code from its number or name (`5`, `"NOT_FOUND"`).
pub fn status_from_json(v: &serde_json::Value) -> Option<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => STATUS_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|p| p as u32),
        _ => None,
    }
}

/// Starts an HTTP/2 server connection (the peer speaks first).
pub async fn server(io: Stream) -> Result<h2::server::Connection<Stream, Bytes>, h2::Error> {
    h2::server::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(1 << 20)
        .max_send_buffer_size(WINDOW as usize)
        .handshake(io)
        .await
}

/// Starts an HTTP/2 client connection and drives it on a task. The task
/// ends when the connection does.
pub async fn client(io: Stream) -> Result<h2::client::SendRequest<Bytes>, h2::Error> {
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(1 << 20)
        .max_send_buffer_size(WINDOW as usize)
        .handshake(io)
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("HTTP/2 client connection ended: {e}");
        }
    });
    send.ready().await
}

/// Sends `data` on a stream, waiting for flow-control capacity instead of
/// buffering without bound.
pub async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        return send.send_data(data, end);
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(h2::Reason::STREAM_CLOSED)),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        send.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

/// A gRPC request for `path` with the headers grpc-go sends.
pub fn request(path: &str) -> Request<()> {
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("http://unused{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", concat!("plugtap/", env!("CARGO_PKG_VERSION")))
        .body(())
        .expect("static request parts are valid");
    *req.version_mut() = http::Version::HTTP_2;
    req
}

/// A `200` gRPC response head.
pub fn response() -> Response<()> {
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .expect("static response parts are valid")
}

/// Trailers carrying a status.
pub fn status_trailers(code: u32, message: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from(code));
    if !message.is_empty()
        && let Ok(v) = HeaderValue::from_str(&percent_encode(message))
    {
        t.insert("grpc-message", v);
    }
    t
}

/// The status in headers or trailers: code and decoded message.
pub fn status_of(h: &HeaderMap) -> Option<(u32, String)> {
    let code = h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let msg = h
        .get("grpc-message")
        .map(|v| percent_decode(&String::from_utf8_lossy(v.as_bytes())))
        .unwrap_or_default();
    Some((code, msg))
}

/// Headers as ordered name/value pairs (values lossily as text).
pub fn header_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable
/// ASCII, and `%`, become `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes [`percent_encode`]; malformed escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let pair = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = pair.and_then(|p| u8::from_str_radix(p, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `/pkg.Service/Method` into service and method.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (svc, m) = rest.split_once('/')?;
    (!svc.is_empty() && !m.is_empty() && !m.contains('/')).then_some((svc, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        let s = "bad: 100% \u{e9}\n";
        assert_eq!(percent_encode(s), "bad: 100%25 %C3%A9%0A");
        assert_eq!(percent_decode(&percent_encode(s)), s);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn paths() {
        assert_eq!(split_path("/proto.KV/Get"), Some(("proto.KV", "Get")));
        assert_eq!(split_path("proto.KV/Get"), None);
        assert_eq!(split_path("/x"), None);
    }
}
